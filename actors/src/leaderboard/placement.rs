//! Which leaderboard, run and group a user's change counts in (SPEC §7.2.3, §7.3, §7.4.1–2).
//! Decided in the user's actor with the user's zone and attributes at that moment, and
//! recorded as an effect, so a board only folds what it is told and never needs the user's
//! profile or today's catalog to place it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::leaderboards::{Leaderboard, LeaderboardStatus, RankBy};
use crate::catalog::Catalog;

/// What changed for the user, in the board's terms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum BoardChange {
    /// A metric or points amount to add to the user's value in the run.
    Add(f64),
    /// The user's streak length (streak boards rank the current length).
    Set(f64),
}

/// One change to one board: the run (by index) and the group (breakdown values in the
/// board's breakdown order; empty without breakdowns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub board_id: Uuid,
    pub run: u64,
    pub group: Vec<String>,
    pub change: BoardChange,
    /// The user's local date of the change (the day of the user's history it belongs to).
    pub date: chrono::NaiveDate,
}

/// What a user record did that boards rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    Metric { metric_id: Uuid, delta: f64 },
    Points { system_id: Uuid, awarded: i64 },
    Streak { length: u32 },
}

/// The user as boards see them at the instant of the change.
pub struct Participant<'a> {
    pub tz: Tz,
    pub attributes: &'a BTreeMap<String, String>,
}

fn matches_source(board: &Leaderboard, source: Source) -> Option<BoardChange> {
    match (board.rank_by, source) {
        (
            RankBy::Metric { metric_id },
            Source::Metric {
                metric_id: m,
                delta,
            },
        ) if m == metric_id => Some(BoardChange::Add(delta)),
        (
            RankBy::Points { system_id },
            Source::Points {
                system_id: s,
                awarded,
            },
        ) if s == system_id => Some(BoardChange::Add(awarded as f64)),
        (RankBy::Streak, Source::Streak { length }) => Some(BoardChange::Set(f64::from(length))),
        _ => None,
    }
}

/// The group of `user` on `board`: the values of every breakdown attribute, or `None` when
/// one is missing (such users are not ranked, SPEC §7.4.1).
pub fn group_of(
    board: &Leaderboard,
    catalog: &Catalog,
    attributes: &BTreeMap<String, String>,
) -> Option<Vec<String>> {
    board
        .breakdown
        .iter()
        .map(|id| {
            catalog
                .attribute_key(*id)
                .and_then(|k| attributes.get(k))
                .cloned()
        })
        .collect()
}

/// Whether the user passes the board's participation filters (SPEC §7.4.1).
fn participates(
    board: &Leaderboard,
    catalog: &Catalog,
    attributes: &BTreeMap<String, String>,
) -> bool {
    board.user_filters.iter().all(|(id, value)| {
        catalog
            .attribute_key(*id)
            .and_then(|k| attributes.get(k))
            .is_some_and(|v| v == value)
    })
}

/// Every board the change counts in, with its run and group. Only active boards track
/// (SPEC §7.5.3); metric and points boards count activity whose local date falls in a run
/// and whose local time is inside the board's window (§7.3.5); streak boards ignore windows.
pub fn placements(
    catalog: &Catalog,
    source: Source,
    at: DateTime<Utc>,
    user: &Participant<'_>,
) -> Vec<Placement> {
    let local = at.with_timezone(&user.tz);
    let (date, time) = (local.date_naive(), local.time());
    catalog
        .leaderboards()
        .filter(|b| b.status_at(at) == LeaderboardStatus::Active)
        .filter_map(|b| {
            let change = matches_source(b, source)?;
            let outside_window =
                b.start_time.is_some_and(|s| time < s) || b.end_time.is_some_and(|e| time >= e);
            if b.rank_by != RankBy::Streak && outside_window {
                return None;
            }
            if !participates(b, catalog, user.attributes) {
                return None;
            }
            let run = b.schedule().run_at(date)?;
            Some(Placement {
                board_id: b.id,
                run: run.index,
                group: group_of(b, catalog, user.attributes)?,
                change,
                date,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::leaderboards::LeaderboardFields;
    use crate::catalog::{AttributeKind, NewAttribute, NewMetric, UnitType};
    use chrono::{NaiveDate, NaiveTime, TimeZone};

    fn setup() -> (Catalog, Uuid) {
        let mut cat = Catalog::default();
        let t0 = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("t");
        let (m, _) = cat.create_metrics(
            vec![Ok(NewMetric {
                key: "words".into(),
                name: "Words".into(),
                unit_type: UnitType::Number,
                units: None,
            })],
            t0,
        );
        let (attrs, _) = cat.create_attributes(vec![
            Ok(NewAttribute {
                key: "country".into(),
                name: "Country".into(),
                kind: AttributeKind::User,
            }),
            Ok(NewAttribute {
                key: "plan".into(),
                name: "Plan".into(),
                kind: AttributeKind::User,
            }),
        ]);
        let out = cat.create_leaderboards(
            vec![Ok(LeaderboardFields {
                name: Some("Weekly".into()),
                key: Some("weekly".into()),
                rank_by: Some("metric".into()),
                metric_id: Some(m[0].id.to_string()),
                start: Some(NaiveDate::from_ymd_opt(2025, 1, 5).expect("d")),
                run_unit: Some(Some(crate::rules::runs::RunUnit::Day)),
                run_interval: Some(Some(7)),
                start_time: Some(NaiveTime::from_hms_opt(9, 0, 0)),
                breakdown: Some(vec![attrs[0].id.to_string()]),
                user_filters: Some(Some(vec![(attrs[1].id.to_string(), "pro".into())])),
                status: Some(LeaderboardStatus::Active),
                ..Default::default()
            })],
            Utc.with_ymd_and_hms(2025, 1, 5, 12, 0, 0)
                .single()
                .expect("t"),
        );
        assert!(out.issues.is_empty(), "{:?}", out.issues);
        (cat, m[0].id)
    }

    #[test]
    fn local_date_picks_the_run_and_attributes_the_group() {
        let (cat, metric) = setup();
        let attrs: BTreeMap<String, String> = [("country", "FR"), ("plan", "pro")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let tokyo = Participant {
            tz: "Asia/Tokyo".parse().expect("tz"),
            attributes: &attrs,
        };
        let source = Source::Metric {
            metric_id: metric,
            delta: 5.0,
        };
        // 2025-01-11 23:30 UTC is already 01-12 08:30 in Tokyo: before the 09:00 window.
        let at = Utc
            .with_ymd_and_hms(2025, 1, 11, 23, 30, 0)
            .single()
            .expect("t");
        assert!(placements(&cat, source, at, &tokyo).is_empty());
        // 01:00 UTC = 10:00 Tokyo on 01-12: run 1 (01-12..01-18), group FR.
        let at = Utc
            .with_ymd_and_hms(2025, 1, 12, 1, 0, 0)
            .single()
            .expect("t");
        let p = placements(&cat, source, at, &tokyo);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].run, p[0].group.clone()), (1, vec!["FR".to_string()]));
        assert_eq!(p[0].change, BoardChange::Add(5.0));
        // Not on the pro plan, or no country: not ranked.
        let free: BTreeMap<String, String> = [("country", "FR"), ("plan", "free")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = placements(
            &cat,
            source,
            at,
            &Participant {
                tz: tokyo.tz,
                attributes: &free,
            },
        );
        assert!(p.is_empty());
        let nowhere: BTreeMap<String, String> = [("plan".to_string(), "pro".to_string())]
            .into_iter()
            .collect();
        let p = placements(
            &cat,
            source,
            at,
            &Participant {
                tz: tokyo.tz,
                attributes: &nowhere,
            },
        );
        assert!(p.is_empty());
        // Other sources do not count on a metric board.
        let p = placements(&cat, Source::Streak { length: 3 }, at, &tokyo);
        assert!(p.is_empty());
    }
}
