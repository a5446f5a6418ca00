//! Folding records into state: the one replay rule per record kind, shared by live
//! processing and recovery.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use kudos_snapshots::Recoverable;
use uuid::Uuid;

use super::*;
use crate::achievements::{Achievement, AchievementStatus, Trigger};
use crate::catalog::Catalog;
use crate::rules::profile::UserProfile;
use crate::rules::streak::{local_date, StreakConfig, StreakEvent};
use crate::rules::summary::bucket_of;

/// How [`UserState::apply_collect`] treats achievements.
#[derive(Clone, Copy)]
pub enum Apply<'a> {
    /// Live processing: evaluate against this catalog.
    Live(&'a Catalog),
    /// Replay: take the completions from the effects recorded with the entry.
    Replay(&'a [Effect]),
}

/// Which achievements a record may complete (SPEC §4.3).
#[derive(Debug, Default, Clone, Copy)]
struct Scope {
    metric: Option<Uuid>,
    streak: bool,
    anniversary: bool,
    /// A backfill of one achievement.
    only: Option<Uuid>,
    /// Backdated/restored completions: no response entry, no webhook (SPEC §4.4.2).
    silent: bool,
    /// The record itself completed an achievement (api): composites may follow.
    cascade: bool,
}

impl UserState {
    /// Sets the profile; handles creation (initial freezes) and zone changes (re-anchoring).
    fn set_profile(
        &mut self,
        profile: &UserProfile,
        cfg: &StreakConfig,
        at: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        let before = self.profile.as_ref().map(UserProfile::time_zone);
        let tz = profile.time_zone();
        self.profile = Some(profile.clone());
        match before {
            None => {
                self.streak.on_user_created(cfg, local_date(at, tz));
                out.push(Effect::UserCreated {
                    user_id: profile.id.clone(),
                });
            }
            Some(old) if old != tz => {
                let events = self.streak.change_tz(cfg, at, old, tz);
                push_streak(out, &profile.id, at, events);
            }
            Some(_) => {}
        }
    }

    /// Applies `record` and returns the effects it has.
    ///
    /// Live, achievements are evaluated against the catalog and their completions become
    /// effects; on replay the recorded completions are applied as they were, so a later
    /// catalog change cannot alter history.
    pub fn apply_collect(&mut self, record: &UserRecord, mode: Apply<'_>) -> Vec<Effect> {
        let out = match mode {
            Apply::Live(catalog) => self.apply_live(record, catalog).0,
            Apply::Replay(recorded) => {
                let mut out = self.apply_base(record);
                for e in recorded.iter().filter(|e| e.is_decision()) {
                    self.fold(e);
                    out.push(e.clone());
                }
                out
            }
        };
        self.note_for_notices(record, &out);
        let tz = self.time_zone();
        self.wrapped.note(record, &out, tz, &self.streak);
        out
    }

    /// Live processing: the record's own changes, then achievements and points decided
    /// against `catalog`. Also tells whether a `blockIfOutOfPoints` trigger refused it.
    pub(crate) fn apply_live(
        &mut self,
        record: &UserRecord,
        catalog: &Catalog,
    ) -> (Vec<Effect>, bool) {
        let mut out = self.apply_base(record);
        let scope = self.scope_of(record, &out);
        let at = record.at().unwrap_or_else(|| {
            self.profile
                .as_ref()
                .map_or(DateTime::<Utc>::MIN_UTC, |p| p.updated)
        });
        self.evaluate(catalog, scope, at, &mut out);
        let points = self.evaluate_points(catalog, record, at, &mut out);
        self.announce_boosts(catalog, at, &mut out);
        self.notify(catalog, record, &mut out);
        self.place_on_leaderboards(catalog, &mut out);
        if let UserRecord::BoardSeeded {
            board_id, until, ..
        } = record
        {
            self.seed_board(catalog, *board_id, *until, &mut out);
        }
        (out, points.blocked)
    }

    /// Places the user's activity from before `until` on a board activated then, from the
    /// quarter-hour history kept per metric and points system (SPEC §7.5.3).
    fn seed_board(
        &self,
        catalog: &Catalog,
        board_id: Uuid,
        until: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        use crate::catalog::leaderboards::RankBy;
        use crate::leaderboard::placement::{seed, Participant, SeedSource};
        let (Some(profile), Some(board)) = (&self.profile, catalog.leaderboard(board_id)) else {
            return;
        };
        let user = Participant {
            tz: profile.time_zone(),
            attributes: &profile.attributes,
        };
        let empty = Default::default();
        let source = match board.rank_by {
            RankBy::Metric { metric_id } => {
                SeedSource::Buckets(self.metrics.get(&metric_id).map_or(&empty, |m| &m.buckets))
            }
            RankBy::Points { system_id } => {
                SeedSource::Buckets(self.points.get(&system_id).map_or(&empty, |p| &p.buckets))
            }
            RankBy::Streak => SeedSource::Streak(self.streak_view(catalog, until).length),
        };
        let placements = seed(board, catalog, &user, source, until);
        if !placements.is_empty() {
            out.push(Effect::Ranked {
                user_id: profile.id.clone(),
                user_name: profile.name.clone(),
                tz: user.tz.name().to_string(),
                at: until,
                placements,
            });
        }
    }

    /// Places what the record changed on the leaderboards that rank it, in the user's zone
    /// and groups as they are now (one `Ranked` effect per record).
    fn place_on_leaderboards(&self, catalog: &Catalog, out: &mut Vec<Effect>) {
        use crate::leaderboard::placement::{placements, Participant, Source};
        let Some(profile) = &self.profile else {
            return;
        };
        if catalog.leaderboards().next().is_none() {
            return;
        }
        let user = Participant {
            tz: profile.time_zone(),
            attributes: &profile.attributes,
        };
        let mut at = None;
        let mut placed = Vec::new();
        for e in out.iter() {
            let (source, when) = match e {
                Effect::MetricTotalChanged {
                    metric_id,
                    previous,
                    total,
                    at,
                    ..
                } => (
                    Source::Metric {
                        metric_id: *metric_id,
                        delta: total - previous,
                    },
                    *at,
                ),
                Effect::PointsAwarded {
                    system_id, award, ..
                } => (
                    Source::Points {
                        system_id: *system_id,
                        awarded: award.awarded,
                    },
                    award.at,
                ),
                Effect::Streak {
                    at,
                    event: StreakEvent::Started { length } | StreakEvent::Extended { length },
                    ..
                } => (Source::Streak { length: *length }, *at),
                Effect::Streak {
                    at,
                    event: StreakEvent::Lost { .. },
                    ..
                } => (Source::Streak { length: 0 }, *at),
                _ => continue,
            };
            at = Some(at.map_or(when, |a: DateTime<Utc>| a.max(when)));
            placed.extend(placements(catalog, source, when, &user));
        }
        if let (false, Some(at)) = (placed.is_empty(), at) {
            out.push(Effect::Ranked {
                user_id: profile.id.clone(),
                user_name: profile.name.clone(),
                tz: profile.time_zone().name().to_string(),
                at,
                placements: placed,
            });
        }
    }

    /// Folds one decision (the replay rule for decided effects; live evaluation folds each
    /// decision through here too).
    pub(crate) fn fold(&mut self, e: &Effect) {
        match e {
            Effect::AchievementCompleted {
                achievement_id,
                completion_id,
                at,
                ..
            } => {
                self.completed.insert(
                    *achievement_id,
                    Completion {
                        completion_id: *completion_id,
                        at: *at,
                    },
                );
            }
            Effect::NoticeDue { notice, .. } => self.notices.fold(notice),
            other => self.fold_points(other),
        }
    }

    fn scope_of(&self, record: &UserRecord, effects: &[Effect]) -> Scope {
        let streak_grew = effects.iter().any(|e| {
            matches!(
                e,
                Effect::Streak {
                    event: StreakEvent::Started { .. } | StreakEvent::Extended { .. },
                    ..
                }
            )
        });
        match record {
            UserRecord::Event(ev) => Scope {
                metric: Some(ev.metric_id),
                streak: streak_grew,
                anniversary: ev.profile.is_some(),
                ..Scope::default()
            },
            UserRecord::Profile { .. } | UserRecord::Advanced { .. } => Scope {
                anniversary: true,
                ..Scope::default()
            },
            UserRecord::StreakRestored { .. } => Scope {
                streak: true,
                silent: true,
                ..Scope::default()
            },
            UserRecord::ApiCompleted { .. } => Scope {
                cascade: true,
                ..Scope::default()
            },
            UserRecord::Backfill { achievement_id, .. } => Scope {
                only: Some(*achievement_id),
                silent: true,
                ..Scope::default()
            },
            _ => Scope::default(),
        }
    }

    fn complete(
        &mut self,
        a: &Achievement,
        at: DateTime<Utc>,
        silent: bool,
        out: &mut Vec<Effect>,
    ) {
        let completion = Effect::AchievementCompleted {
            user_id: self
                .profile
                .as_ref()
                .map(|p| p.id.clone())
                .unwrap_or_default(),
            achievement_id: a.id,
            completion_id: Uuid::new_v4(),
            at,
            silent,
        };
        self.fold(&completion);
        out.push(completion);
    }

    /// Completes what `scope` allows, in SPEC §3.2.4 order: metric, streak, anniversary (or
    /// the one backfilled achievement), then composites until nothing more completes.
    fn evaluate(
        &mut self,
        catalog: &Catalog,
        scope: Scope,
        at: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        if self.profile.is_none() {
            return;
        }
        let before = self.completed.len();
        let open = |s: &Self, a: &Achievement| {
            a.status == AchievementStatus::Active
                && !s.completed.contains_key(&a.id)
                && s.eligible(catalog, a)
        };
        // The metric's achievements come from the catalog's index; streak and anniversary
        // ones are scanned only when the record can complete them.
        let first_pass: Vec<&Achievement> = match scope.only {
            Some(only) => catalog.achievement(only).into_iter().collect(),
            None => scope
                .metric
                .into_iter()
                .flat_map(|m| catalog.achievements_on_metric(m))
                .chain(
                    catalog
                        .achievements()
                        .filter(|a| match a.trigger {
                            Trigger::Streak { .. } => scope.streak,
                            Trigger::Anniversary { .. } => scope.anniversary,
                            _ => false,
                        })
                        .take(if scope.streak || scope.anniversary {
                            usize::MAX
                        } else {
                            0
                        }),
                )
                .collect(),
        };
        // Metric before streak before anniversary: the order of the response list.
        for kind in ["metric", "streak", "anniversary", "achievement"] {
            for a in first_pass.iter().filter(|a| a.trigger.name() == kind) {
                if open(self, a) && self.qualifies(catalog, a, at) {
                    self.complete(a, at, scope.silent, out);
                }
            }
        }
        if self.completed.len() == before && !scope.cascade {
            return;
        }
        loop {
            let ready: Vec<&Achievement> = catalog
                .achievements()
                .filter(|a| matches!(a.trigger, Trigger::Achievement { .. }))
                .filter(|a| open(self, a) && self.qualifies(catalog, a, at))
                .collect();
            if ready.is_empty() {
                break;
            }
            for a in ready {
                self.complete(a, at, scope.silent, out);
            }
        }
    }

    /// Rebuilds the streak from the metric history when the org switched frequency.
    pub(crate) fn sync_frequency(&mut self, cfg: &StreakConfig, at: DateTime<Utc>) {
        if self.streak.frequency.is_none_or(|f| f == cfg.frequency) {
            return;
        }
        let tz = self.time_zone();
        let from = self
            .profile
            .as_ref()
            .map_or_else(|| local_date(at, tz), |p| local_date(p.created, tz));
        let metrics = &self.metrics;
        let wanted: Vec<Uuid> = cfg.metrics.iter().map(|(id, _)| *id).collect();
        let sums_of = |start: NaiveDate, end: NaiveDate| {
            let lo = bucket_of(crate::rules::summary::local_midnight(tz, start));
            let hi = bucket_of(crate::rules::summary::local_midnight(
                tz,
                end + chrono::Days::new(1),
            ));
            wanted
                .iter()
                .filter_map(|id| {
                    let sum = metrics
                        .get(id)?
                        .buckets
                        .range(lo..hi)
                        .fold(0.0, |acc, (_, v)| acc + v);
                    (sum != 0.0).then_some((*id, sum))
                })
                .collect()
        };
        self.streak.rebuild(cfg, from, at, tz, sums_of);
    }

    /// The record-level changes, without achievement evaluation.
    fn apply_base(&mut self, record: &UserRecord) -> Vec<Effect> {
        if let (Some(cfg), Some(at)) = (record.streak_config(), record.at()) {
            self.sync_frequency(cfg, at);
        }
        let mut out = Vec::new();
        let user_id = self
            .profile
            .as_ref()
            .map(|p| p.id.clone())
            .unwrap_or_default();
        match record {
            UserRecord::Profile {
                profile, streak, ..
            } => {
                self.set_profile(profile, streak, profile.updated, &mut out);
            }
            UserRecord::Event(ev) => {
                if let Some(profile) = &ev.profile {
                    self.set_profile(profile, &ev.streak, ev.at, &mut out);
                }
                let user_id = self
                    .profile
                    .as_ref()
                    .map(|p| p.id.clone())
                    .unwrap_or(user_id);
                let metric = self.metrics.entry(ev.metric_id).or_default();
                let previous = metric.total;
                metric.total += ev.value;
                if ev.value != 0.0 {
                    *metric.buckets.entry(bucket_of(ev.at)).or_default() += ev.value;
                    out.push(Effect::MetricTotalChanged {
                        user_id: user_id.clone(),
                        metric_id: ev.metric_id,
                        previous,
                        total: metric.total,
                        at: ev.at,
                    });
                }
                if !ev.attributes.is_empty() {
                    let rows = self.attr_totals.entry(ev.metric_id).or_default();
                    match rows.iter_mut().find(|(attrs, _)| *attrs == ev.attributes) {
                        Some((_, sum)) => *sum += ev.value,
                        None => rows.push((ev.attributes.clone(), ev.value)),
                    }
                }
                let tz = ev.tz.parse::<Tz>().unwrap_or(Tz::UTC);
                let (events, _) = self
                    .streak
                    .record(&ev.streak, ev.at, tz, ev.metric_id, ev.value);
                push_streak(&mut out, &user_id, ev.at, events);
            }
            UserRecord::Advanced { at, tz, streak, .. } => {
                let events = self.streak.advance(streak, *at, parse_tz(tz));
                push_streak(&mut out, &user_id, *at, events);
            }
            UserRecord::Preferences { preferences, .. } => self.preferences = preferences.clone(),
            UserRecord::FreezesGranted { count, streak, .. } => {
                self.streak.grant_freezes(streak, *count);
            }
            UserRecord::PauseAdded { pause, .. } => self.streak.pauses.push(pause.clone()),
            UserRecord::PauseRemoved { id, .. } => {
                for p in self.streak.pauses.iter_mut().filter(|p| p.id == *id) {
                    p.archived = true;
                }
            }
            UserRecord::StreakRestored { at, tz, streak, .. } => {
                self.streak.restore(streak, *at, parse_tz(tz));
            }
            UserRecord::StreakReset { at, tz, streak, .. } => {
                self.streak.reset(streak, *at, parse_tz(tz));
            }
            UserRecord::ApiCompleted {
                profile,
                streak,
                achievement_id,
                completion_id,
                at,
                ..
            } => {
                if let Some(profile) = profile {
                    self.set_profile(profile, streak, *at, &mut out);
                }
                self.completed.insert(
                    *achievement_id,
                    Completion {
                        completion_id: *completion_id,
                        at: *at,
                    },
                );
                out.push(Effect::AchievementCompleted {
                    user_id: self
                        .profile
                        .as_ref()
                        .map(|p| p.id.clone())
                        .unwrap_or_default(),
                    achievement_id: *achievement_id,
                    completion_id: *completion_id,
                    at: *at,
                    silent: false,
                });
            }
            UserRecord::Backfill { .. } | UserRecord::BoardSeeded { .. } => {}
        }
        out
    }
}

fn parse_tz(tz: &str) -> Tz {
    tz.parse().unwrap_or(Tz::UTC)
}

fn push_streak(out: &mut Vec<Effect>, user_id: &str, at: DateTime<Utc>, events: Vec<StreakEvent>) {
    out.extend(events.into_iter().map(|event| Effect::Streak {
        user_id: user_id.to_string(),
        at,
        event,
    }));
}

impl Recoverable for UserState {
    type Record = Journaled;

    fn decode_legacy(version: u8, body: &[u8]) -> Result<Self, String> {
        match version {
            1 => postcard::from_bytes::<super::points::UserStateV1>(body)
                .map(Into::into)
                .map_err(|e| e.to_string()),
            2 => postcard::from_bytes::<super::points::UserStateV2>(body)
                .map(Into::into)
                .map_err(|e| e.to_string()),
            3 => postcard::from_bytes::<super::points::UserStateV3>(body)
                .map(Into::into)
                .map_err(|e| e.to_string()),
            other => Err(format!("no decoder for user snapshots of version {other}")),
        }
    }

    fn apply(&mut self, entry: &Journaled) {
        self.apply_collect(&entry.record, Apply::Replay(&entry.effects));
        self.filed_due = entry.due;
    }

    /// Records an older Kudos journaled moved no Wrapped distribution counter: the user's
    /// positions stay where the counters have them (they start at the upgrade, like those
    /// of a version-3 snapshot), so the next move starts from a counted position.
    fn apply_legacy(&mut self, version: u8, entry: &Journaled) {
        if version >= super::wrapped::COUNTED_SINCE {
            return self.apply(entry);
        }
        let counted = self.wrapped.periods.clone();
        self.apply(entry);
        self.wrapped.periods = counted;
    }
}
