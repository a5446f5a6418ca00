//! Leaderboard definitions (SPEC §7.1, §7.5, §11.5) and their admin bulk operations.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{bulk_delete, persisted, AttributeKind, Catalog, Issue, Item};
use crate::leaderboard::ranking::TiePolicy;
use crate::rules::keys::{is_valid_key, KEY_RULE};
use crate::rules::runs::{RunUnit, Schedule};

/// What a leaderboard ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "lowercase")]
pub enum RankBy {
    Metric { metric_id: Uuid },
    Points { system_id: Uuid },
    Streak,
}

impl RankBy {
    pub fn name(self) -> &'static str {
        match self {
            RankBy::Metric { .. } => "metric",
            RankBy::Points { .. } => "points",
            RankBy::Streak => "streak",
        }
    }
}

/// The status an admin sets (SPEC §7.5); `archived` is deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaderboardStatus {
    Inactive,
    Scheduled,
    Active,
    Finished,
}

impl LeaderboardStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaderboardStatus::Inactive => "inactive",
            LeaderboardStatus::Scheduled => "scheduled",
            LeaderboardStatus::Active => "active",
            LeaderboardStatus::Finished => "finished",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "inactive" => Some(LeaderboardStatus::Inactive),
            "scheduled" => Some(LeaderboardStatus::Scheduled),
            "active" => Some(LeaderboardStatus::Active),
            "finished" => Some(LeaderboardStatus::Finished),
            _ => None,
        }
    }
}

/// The participant cap Trophy applies, and Kudos's own (SPEC §11.5.1).
pub const DEFAULT_MAX_PARTICIPANTS: u32 = 1_000;
pub const MAX_PARTICIPANTS: u32 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leaderboard {
    pub id: Uuid,
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub status: LeaderboardStatus,
    pub rank_by: RankBy,
    pub max_participants: u32,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
    pub start_time: Option<NaiveTime>,
    pub end_time: Option<NaiveTime>,
    /// User attribute ids; one group per distinct tuple of their values.
    pub breakdown: Vec<Uuid>,
    pub every: Option<(RunUnit, u32)>,
    /// Participation filters (SDK 1.27 `userAttributes`).
    pub user_filters: Vec<(Uuid, String)>,
    pub tie_policy: TiePolicy,
    pub created: DateTime<Utc>,
    pub deleted: bool,
    pub ord: u64,
    /// When the board first left `inactive` (its activity before then is placed once by a
    /// seeding job, SPEC §7.5.3). Absent in boards stored before it was kept.
    #[serde(default)]
    pub activated: Option<DateTime<Utc>>,
}

persisted!(Leaderboard, "catalog/leaderboard/");

impl Leaderboard {
    pub fn schedule(&self) -> Schedule {
        Schedule {
            start: self.start,
            end: self.end,
            every: self.every,
        }
    }

    /// The status at `now` (SPEC §7.5.2): a scheduled board is active from 10:00 UTC on the
    /// day before its start; an active or scheduled one is finished from 12:00 UTC on the
    /// day after its end.
    pub fn status_at(&self, now: DateTime<Utc>) -> LeaderboardStatus {
        let at = |date: Option<NaiveDate>, hour: u32| {
            date.and_then(|d| d.and_hms_opt(hour, 0, 0))
                .map(|t| t.and_utc())
        };
        let finished = at(self.end.and_then(|e| e.checked_add_days(Days::new(1))), 12)
            .is_some_and(|t| now >= t);
        match self.status {
            LeaderboardStatus::Inactive | LeaderboardStatus::Finished => self.status,
            _ if finished => LeaderboardStatus::Finished,
            LeaderboardStatus::Scheduled
                if at(self.start.checked_sub_days(Days::new(1)), 10).is_some_and(|t| now >= t) =>
            {
                LeaderboardStatus::Active
            }
            other => other,
        }
    }
}

/// The fields of a create or update item, as sent (`None`: absent; `Some(None)`: `null`).
#[derive(Debug, Clone, Default)]
pub struct LeaderboardFields {
    pub name: Option<String>,
    pub key: Option<String>,
    pub description: Option<Option<String>>,
    pub status: Option<LeaderboardStatus>,
    pub rank_by: Option<String>,
    pub metric_id: Option<String>,
    pub points_system_id: Option<String>,
    pub max_participants: Option<Option<i64>>,
    pub start: Option<NaiveDate>,
    pub end: Option<Option<NaiveDate>>,
    pub start_time: Option<Option<NaiveTime>>,
    pub end_time: Option<Option<NaiveTime>>,
    pub breakdown: Option<Vec<String>>,
    pub run_unit: Option<Option<RunUnit>>,
    pub run_interval: Option<Option<i64>>,
    pub user_filters: Option<Option<Vec<(String, String)>>>,
    pub tie_policy: Option<TiePolicy>,
}

#[derive(Debug, Clone, Default)]
pub struct LeaderboardPatch {
    pub id: String,
    pub fields: LeaderboardFields,
}

/// What a leaderboard operation changed.
#[derive(Debug, Default)]
pub struct LeaderboardChanges {
    pub changed: Vec<Leaderboard>,
    pub issues: Vec<Issue>,
}

impl Catalog {
    /// Live leaderboards in creation order.
    pub fn leaderboards(&self) -> impl Iterator<Item = &Leaderboard> {
        self.leaderboards.iter().filter(|l| !l.deleted)
    }

    /// Records `now` as the first activation of board `id` if it is not inactive at `now`
    /// and was never activated; returns the board when it was.
    pub fn mark_activated(&mut self, id: Uuid, now: DateTime<Utc>) -> Option<Leaderboard> {
        let l = self
            .leaderboards
            .iter_mut()
            .find(|l| l.id == id && !l.deleted)?;
        if l.activated.is_some() || l.status_at(now) == LeaderboardStatus::Inactive {
            return None;
        }
        l.activated = Some(now);
        Some(l.clone())
    }

    pub fn leaderboard(&self, id: Uuid) -> Option<&Leaderboard> {
        self.leaderboards().find(|l| l.id == id)
    }

    pub fn leaderboard_by_id(&self, raw: &str) -> Option<&Leaderboard> {
        Uuid::parse_str(raw)
            .ok()
            .and_then(|id| self.leaderboard(id))
    }

    pub fn leaderboard_by_key(&self, key: &str) -> Option<&Leaderboard> {
        self.leaderboards().find(|l| l.key == key)
    }

    /// Builds a leaderboard from `fields` over `base` (updates) and checks every rule of
    /// SPEC §7.1 and §7.5.1 against `today` (UTC).
    fn build_leaderboard(
        &self,
        f: LeaderboardFields,
        base: Option<&Leaderboard>,
        today: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Leaderboard, String> {
        let locked = base.is_some_and(|b| b.status != LeaderboardStatus::Inactive);
        if locked {
            let changes = [
                ("key", f.key.is_some()),
                ("rankBy", f.rank_by.is_some()),
                ("metricId", f.metric_id.is_some()),
                ("pointsSystemId", f.points_system_id.is_some()),
                ("breakdownAttributes", f.breakdown.is_some()),
                ("runUnit", f.run_unit.is_some()),
                ("runInterval", f.run_interval.is_some()),
                ("userAttributes", f.user_filters.is_some()),
            ];
            if let Some((field, _)) = changes.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "{field} can only be changed while the leaderboard is inactive"
                ));
            }
        }
        let name = f
            .name
            .or_else(|| base.map(|b| b.name.clone()))
            .ok_or("Name is required")?;
        if name.trim().is_empty() {
            return Err("Name must not be empty".into());
        }
        let key = f
            .key
            .or_else(|| base.map(|b| b.key.clone()))
            .ok_or("Key is required")?;
        if !is_valid_key(&key) {
            return Err(KEY_RULE.into());
        }
        let own_id = base.map(|b| b.id);
        if self
            .leaderboards()
            .any(|l| l.key == key && Some(l.id) != own_id)
        {
            return Err("Key already in use by another leaderboard".into());
        }
        let rank_by = match f.rank_by.as_deref() {
            None => base.map(|b| b.rank_by).ok_or("rankBy is required")?,
            Some("metric") => RankBy::Metric {
                metric_id: f
                    .metric_id
                    .as_deref()
                    .map(|raw| {
                        self.metric_by_id(raw)
                            .map(|m| m.id)
                            .ok_or("Metric not found by ID")
                    })
                    .transpose()?
                    .ok_or("metricId is required for metric leaderboards")?,
            },
            Some("points") => RankBy::Points {
                system_id: f
                    .points_system_id
                    .as_deref()
                    .map(|raw| {
                        self.points_system_by_id(raw)
                            .map(|s| s.id)
                            .ok_or("Points system not found by ID")
                    })
                    .transpose()?
                    .ok_or("pointsSystemId is required for points leaderboards")?,
            },
            Some("streak") => RankBy::Streak,
            Some(other) => {
                return Err(format!(
                    "Unknown rankBy: {other} (one of: metric, points, streak)"
                ))
            }
        };
        if f.metric_id.is_some() && !matches!(rank_by, RankBy::Metric { .. }) {
            return Err("metricId is only allowed on metric leaderboards".into());
        }
        if f.points_system_id.is_some() && !matches!(rank_by, RankBy::Points { .. }) {
            return Err("pointsSystemId is only allowed on points leaderboards".into());
        }
        let max_participants = match f.max_participants {
            None => base.map_or(DEFAULT_MAX_PARTICIPANTS, |b| b.max_participants),
            Some(None) => DEFAULT_MAX_PARTICIPANTS,
            Some(Some(n)) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_PARTICIPANTS).contains(n))
                .ok_or("maxParticipants must be between 1 and 1000000")?,
        };
        let start = f.start.or(base.map(|b| b.start)).unwrap_or(today);
        let end = match f.end {
            Some(e) => e,
            None => base.and_then(|b| b.end),
        };
        if end.is_some_and(|e| e < start) {
            return Err("end must not be before start".into());
        }
        let start_time = f
            .start_time
            .unwrap_or_else(|| base.and_then(|b| b.start_time));
        let end_time = f.end_time.unwrap_or_else(|| base.and_then(|b| b.end_time));
        if let (Some(s), Some(e)) = (start_time, end_time) {
            if s >= e {
                return Err("startTime must be before endTime".into());
            }
        }
        let run_unit = match f.run_unit {
            Some(u) => u,
            None => base.and_then(|b| b.every.map(|e| e.0)),
        };
        let run_interval = match f.run_interval {
            Some(i) => i,
            None => base.and_then(|b| b.every.map(|e| i64::from(e.1))),
        };
        let every = match (run_unit, run_interval) {
            (None, None) => None,
            (Some(unit), Some(i)) => Some((
                unit,
                u32::try_from(i)
                    .ok()
                    .filter(|i| *i >= 1)
                    .ok_or("runInterval must be at least 1")?,
            )),
            (Some(_), None) => return Err("runInterval is required with runUnit".into()),
            (None, Some(_)) => return Err("runInterval is only allowed with runUnit".into()),
        };
        if rank_by == RankBy::Streak {
            if every.is_some() {
                return Err("Streak leaderboards cannot repeat (runUnit must be null)".into());
            }
            if start_time.is_some() || end_time.is_some() {
                return Err("Streak leaderboards cannot have startTime or endTime".into());
            }
        }
        let breakdown = match &f.breakdown {
            Some(raw) => raw
                .iter()
                .map(|id| {
                    self.attribute_by_id(id)
                        .filter(|a| a.kind == AttributeKind::User)
                        .map(|a| a.id)
                        .ok_or_else(|| format!("Attribute {id} is not a user attribute"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => base.map(|b| b.breakdown.clone()).unwrap_or_default(),
        };
        let user_filters = self.filters_patch(
            AttributeKind::User,
            &f.user_filters,
            base.map(|b| b.user_filters.clone()).unwrap_or_default(),
        )?;
        let mut status = f
            .status
            .unwrap_or_else(|| base.map_or(LeaderboardStatus::Inactive, |b| b.status));
        let mut end = end;
        match (f.status, base) {
            (Some(LeaderboardStatus::Active), _) if start > today => {
                return Err(
                    "A leaderboard starting in the future must be scheduled, not active".into(),
                )
            }
            (Some(LeaderboardStatus::Scheduled), _) if start <= today => {
                return Err("Only a leaderboard starting in the future can be scheduled".into())
            }
            (Some(LeaderboardStatus::Finished), None) if end.is_none_or(|e| e >= today) => {
                return Err(
                    "A leaderboard can be created finished only when its end is past".into(),
                )
            }
            // Finishing by hand ends it today (SPEC §7.5.1).
            (Some(LeaderboardStatus::Finished), Some(_)) => {
                if end.is_none_or(|e| e > today) {
                    end = Some(today.max(start));
                }
                status = LeaderboardStatus::Finished;
            }
            _ => {}
        }
        Ok(Leaderboard {
            id: base.map_or_else(Uuid::new_v4, |b| b.id),
            key,
            name,
            description: match f.description {
                Some(d) => d,
                None => base.and_then(|b| b.description.clone()),
            },
            status,
            rank_by,
            max_participants,
            start,
            end,
            start_time,
            end_time,
            breakdown,
            every,
            user_filters,
            tie_policy: f
                .tie_policy
                .or(base.map(|b| b.tie_policy))
                .unwrap_or_default(),
            created: base.map_or(now, |b| b.created),
            deleted: false,
            ord: base.map_or(0, |b| b.ord),
            activated: base.and_then(|b| b.activated),
        })
    }

    pub fn create_leaderboards(
        &mut self,
        items: Vec<Item<LeaderboardFields>>,
        now: DateTime<Utc>,
    ) -> LeaderboardChanges {
        let today = now.date_naive();
        let (changed, issues) = self.bulk_create(
            items,
            |cat, f| {
                let mut l = cat.build_leaderboard(f, None, today, now)?;
                l.ord = cat.take_ord();
                Ok(l)
            },
            |cat, l| cat.leaderboards.push(l),
        );
        LeaderboardChanges { changed, issues }
    }

    pub fn update_leaderboards(
        &mut self,
        items: Vec<Result<LeaderboardPatch, Issue>>,
        now: DateTime<Utc>,
    ) -> LeaderboardChanges {
        let today = now.date_naive();
        let mut out = LeaderboardChanges::default();
        for item in items {
            let patch = match item {
                Ok(p) => p,
                Err(issue) => {
                    out.issues.push(issue);
                    continue;
                }
            };
            let Some(pos) = Uuid::parse_str(&patch.id).ok().and_then(|id| {
                self.leaderboards
                    .iter()
                    .position(|l| l.id == id && !l.deleted)
            }) else {
                out.issues
                    .push(Issue::for_id(&patch.id, "Leaderboard not found by ID"));
                continue;
            };
            let base = self.leaderboards[pos].clone();
            match self.build_leaderboard(patch.fields, Some(&base), today, now) {
                Ok(l) => {
                    self.leaderboards[pos] = l.clone();
                    out.changed.push(l);
                }
                Err(message) => out.issues.push(Issue::for_id(&patch.id, message)),
            }
        }
        out
    }

    pub fn delete_leaderboards(&mut self, ids: &[String]) -> LeaderboardChanges {
        let (changed, issues) = bulk_delete(&mut self.leaderboards, ids, "Leaderboard");
        LeaderboardChanges { changed, issues }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 7, 12, 0, 0)
            .single()
            .expect("valid")
    }

    fn fields(rank_by: &str) -> LeaderboardFields {
        LeaderboardFields {
            name: Some("Weekly".into()),
            key: Some("weekly".into()),
            rank_by: Some(rank_by.into()),
            ..Default::default()
        }
    }

    #[test]
    fn configurations_are_checked_item_by_item() {
        let mut cat = Catalog::default();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let out = cat.create_leaderboards(
            vec![
                Ok(LeaderboardFields {
                    run_unit: Some(Some(RunUnit::Day)),
                    run_interval: Some(Some(7)),
                    start: Some(d("2025-01-05")),
                    max_participants: Some(Some(1_000_000)),
                    ..fields("streak")
                }),
                Ok(LeaderboardFields {
                    key: Some("s".into()),
                    ..fields("streak")
                }),
                Ok(LeaderboardFields {
                    key: Some("m".into()),
                    metric_id: Some(Uuid::new_v4().to_string()),
                    ..fields("metric")
                }),
                Ok(LeaderboardFields {
                    key: Some("t".into()),
                    start_time: Some(NaiveTime::from_hms_opt(18, 0, 0)),
                    end_time: Some(NaiveTime::from_hms_opt(9, 0, 0)),
                    ..fields("points")
                }),
                Ok(LeaderboardFields {
                    key: Some("s".into()),
                    ..fields("streak")
                }),
                Ok(LeaderboardFields {
                    key: Some("big".into()),
                    max_participants: Some(Some(1_000_001)),
                    ..fields("streak")
                }),
                Ok(LeaderboardFields {
                    key: Some("later".into()),
                    status: Some(LeaderboardStatus::Active),
                    start: Some(d("2025-02-01")),
                    ..fields("streak")
                }),
            ],
            now(),
        );
        assert_eq!(out.changed.len(), 1, "{:?}", out.issues);
        let msgs: Vec<(Option<usize>, &str)> = out
            .issues
            .iter()
            .map(|i| (i.index, i.message.as_str()))
            .collect();
        assert_eq!(
            msgs,
            vec![
                (
                    Some(0),
                    "Streak leaderboards cannot repeat (runUnit must be null)"
                ),
                (Some(2), "Metric not found by ID"),
                (
                    Some(3),
                    "pointsSystemId is required for points leaderboards"
                ),
                (Some(4), "Key already in use by another leaderboard"),
                (Some(5), "maxParticipants must be between 1 and 1000000"),
                (
                    Some(6),
                    "A leaderboard starting in the future must be scheduled, not active"
                ),
            ]
        );
        let s = &out.changed[0];
        assert_eq!(
            (s.status, s.max_participants, s.start),
            (LeaderboardStatus::Inactive, 1_000, d("2025-01-07"))
        );
    }

    #[test]
    fn locked_fields_and_manual_finish() {
        let mut cat = Catalog::default();
        let out = cat.create_leaderboards(
            vec![Ok(LeaderboardFields {
                status: Some(LeaderboardStatus::Active),
                ..fields("streak")
            })],
            now(),
        );
        let id = out.changed[0].id.to_string();
        let r = cat.update_leaderboards(
            vec![Ok(LeaderboardPatch {
                id: id.clone(),
                fields: LeaderboardFields {
                    key: Some("other".into()),
                    ..Default::default()
                },
            })],
            now(),
        );
        assert_eq!(
            r.issues[0].message,
            "key can only be changed while the leaderboard is inactive"
        );
        let r = cat.update_leaderboards(
            vec![Ok(LeaderboardPatch {
                id,
                fields: LeaderboardFields {
                    status: Some(LeaderboardStatus::Finished),
                    ..Default::default()
                },
            })],
            now(),
        );
        let l = &r.changed[0];
        assert_eq!(l.status, LeaderboardStatus::Finished);
        assert_eq!(l.end, Some(now().date_naive()));
    }

    #[test]
    fn statuses_move_on_the_clock() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let mut cat = Catalog::default();
        let out = cat.create_leaderboards(
            vec![Ok(LeaderboardFields {
                status: Some(LeaderboardStatus::Scheduled),
                start: Some(d("2025-01-10")),
                end: Some(Some(d("2025-01-20"))),
                ..fields("streak")
            })],
            now(),
        );
        let l = &out.changed[0];
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("instant")
                .with_timezone(&Utc)
        };
        assert_eq!(
            l.status_at(at("2025-01-09T09:59:59Z")),
            LeaderboardStatus::Scheduled
        );
        assert_eq!(
            l.status_at(at("2025-01-09T10:00:00Z")),
            LeaderboardStatus::Active
        );
        assert_eq!(
            l.status_at(at("2025-01-21T11:59:59Z")),
            LeaderboardStatus::Active
        );
        assert_eq!(
            l.status_at(at("2025-01-21T12:00:00Z")),
            LeaderboardStatus::Finished
        );
    }
}
