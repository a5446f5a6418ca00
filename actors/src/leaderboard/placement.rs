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

/// What a board seeded at its activation ranks the user by.
pub enum SeedSource<'a> {
    /// Value changes per quarter-hour (a metric's or a points system's).
    Buckets(&'a crate::rules::summary::Buckets),
    /// The current streak length.
    Streak(u32),
}

/// The placements of a user's activity from before `until` (a board's activation) on
/// `board` (SPEC §7.5.3): per run, the sum of the quarter-hours before the one holding
/// `until` whose local date falls in the run and whose local start is inside the board's
/// window; for a streak board, the current length. The quarter-hour holding `until` is
/// left out: it may hold activity placed live after the activation, and the history cannot
/// tell the two apart, so activity in it from before the activation is not counted.
pub fn seed(
    board: &Leaderboard,
    catalog: &Catalog,
    user: &Participant<'_>,
    source: SeedSource<'_>,
    until: DateTime<Utc>,
) -> Vec<Placement> {
    if !participates(board, catalog, user.attributes) {
        return Vec::new();
    }
    let Some(group) = group_of(board, catalog, user.attributes) else {
        return Vec::new();
    };
    let schedule = board.schedule();
    match source {
        SeedSource::Streak(length) => {
            let date = until.with_timezone(&user.tz).date_naive();
            match schedule.run_at(date) {
                Some(run) if length > 0 => vec![Placement {
                    board_id: board.id,
                    run: run.index,
                    group,
                    change: BoardChange::Set(f64::from(length)),
                    date,
                }],
                _ => Vec::new(),
            }
        }
        SeedSource::Buckets(buckets) => {
            use crate::rules::summary::{bucket_of, BUCKET_SECS};
            let mut runs: BTreeMap<u64, (f64, chrono::NaiveDate)> = BTreeMap::new();
            for (&bucket, &value) in buckets.range(..bucket_of(until)) {
                let Some(start) = DateTime::<Utc>::from_timestamp(bucket * BUCKET_SECS, 0) else {
                    continue;
                };
                let local = start.with_timezone(&user.tz);
                let (date, time) = (local.date_naive(), local.time());
                let outside = board.start_time.is_some_and(|s| time < s)
                    || board.end_time.is_some_and(|e| time >= e);
                if outside {
                    continue;
                }
                let Some(run) = schedule.run_at(date) else {
                    continue;
                };
                let slot = runs.entry(run.index).or_insert((0.0, date));
                slot.0 += value;
                slot.1 = slot.1.max(date);
            }
            runs.into_iter()
                .filter(|(_, (sum, _))| *sum != 0.0)
                .map(|(run, (sum, date))| Placement {
                    board_id: board.id,
                    run,
                    group: group.clone(),
                    change: BoardChange::Add(sum),
                    date,
                })
                .collect()
        }
    }
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
    fn seeding_sums_the_history_per_run_inside_the_window_before_activation() {
        use crate::rules::summary::{bucket_of, Buckets};
        let (cat, _) = setup();
        let board = cat.leaderboard_by_key("weekly").expect("board").clone();
        let attrs: BTreeMap<String, String> = [("country", "FR"), ("plan", "pro")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let user = Participant {
            tz: chrono_tz::Asia::Tokyo,
            attributes: &attrs,
        };
        let t = |d, h, m| {
            Utc.with_ymd_and_hms(2025, 1, d, h, m, 0)
                .single()
                .expect("t")
        };
        let mut buckets = Buckets::new();
        // Tokyo is UTC+9. Jan 4 23:00 UTC = Jan 5 08:00 local: before the 09:00 window.
        buckets.insert(bucket_of(t(4, 23, 0)), 100.0);
        // Jan 5 01:00 UTC = 10:00 local (run 0) and Jan 12 00:30 UTC = Jan 12 09:30 (run 1).
        buckets.insert(bucket_of(t(5, 1, 0)), 5.0);
        buckets.insert(bucket_of(t(12, 0, 30)), 7.0);
        // In the activation's own quarter-hour: placed live, not seeded.
        buckets.insert(bucket_of(t(12, 3, 5)), 1000.0);
        let got = seed(
            &board,
            &cat,
            &user,
            SeedSource::Buckets(&buckets),
            t(12, 3, 10),
        );
        let runs: Vec<(u64, BoardChange, String)> = got
            .iter()
            .map(|p| (p.run, p.change, p.date.to_string()))
            .collect();
        assert_eq!(
            runs,
            vec![
                (0, BoardChange::Add(5.0), "2025-01-05".to_string()),
                (1, BoardChange::Add(7.0), "2025-01-12".to_string())
            ]
        );
        assert!(got.iter().all(|p| p.group == vec!["FR".to_string()]));
        // Not a participant (plan filter): nothing.
        let free: BTreeMap<String, String> = [("country".to_string(), "FR".to_string())].into();
        let outsider = Participant {
            tz: chrono_tz::UTC,
            attributes: &free,
        };
        assert!(seed(
            &board,
            &cat,
            &outsider,
            SeedSource::Buckets(&buckets),
            t(12, 3, 10)
        )
        .is_empty());
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
