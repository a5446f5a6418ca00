//! A user's "due" notifications (SPEC §8.5), on the rule of [`crate::rules::notices`]:
//! events and reported completions are noted as records are folded; notices come due on
//! the scheduler's `Advanced` records, are decided live (with the catalog and preferences
//! of that moment) and folded as recorded on replay.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::*;
use crate::catalog::Catalog;
use crate::rules::notices::{AtRisk, Inputs, DEFAULT_ZONE};
use crate::rules::streak::{self, local_date, Frequency, StreakConfig};

impl UserState {
    /// The zone notices are scheduled in: the user's, or New York (SPEC §8.5).
    pub fn notice_zone(&self) -> Tz {
        self.profile
            .as_ref()
            .and_then(|p| p.tz.as_deref())
            .and_then(|tz| tz.parse::<Tz>().ok())
            .unwrap_or(DEFAULT_ZONE)
    }

    /// What the notice rule needs at `at`, under streak settings `cfg` and the org's
    /// aggregation period `recap` (SPEC §9.5).
    fn notice_inputs(&self, cfg: &StreakConfig, recap: Frequency, at: DateTime<Utc>) -> Inputs {
        Inputs {
            tz: self.notice_zone(),
            recap,
            at_risk: self.at_risk(cfg, at),
        }
    }

    /// The streak period that still needs an event at `at`: the streak is on and alive, and
    /// the period it must be extended in (its expiry's) is today's, so it is neither
    /// satisfied nor bridged by a day off or a pause.
    fn at_risk(&self, cfg: &StreakConfig, at: DateTime<Utc>) -> Option<AtRisk> {
        if !cfg.enabled {
            return None;
        }
        let tz = self.time_zone();
        let v = streak::view(&self.streak, cfg, at, tz);
        let today = v.frequency.period_of(local_date(at, tz));
        let required = v.frequency.period_of(v.expires?);
        (v.length > 0 && required == today).then_some(AtRisk {
            start: required.0,
            end: required.1,
            frequency: v.frequency,
            tz,
        })
    }

    /// When the next notice comes due, while an endpoint wants notices.
    pub(crate) fn next_notice(
        &self,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if self.profile.is_none() || !catalog.notices_wanted() {
            return None;
        }
        let cfg = effective_streak(catalog, &self.preferences);
        let recap = catalog.settings.aggregation_period.frequency();
        self.notices.next_due(&self.notice_inputs(&cfg, recap, now))
    }

    /// Live, on an `Advanced` record at `at`: the notices due by then, suppressed for
    /// control users, for types whose preference excludes email (SPEC §8.5), and when more
    /// than a day late (after downtime, or endpoints that came later: no burst of old
    /// notices).
    pub(crate) fn notify(&mut self, catalog: &Catalog, record: &UserRecord, out: &mut Vec<Effect>) {
        let (UserRecord::Advanced { at, streak, .. }, Some(profile)) = (record, &self.profile)
        else {
            return;
        };
        let user_id = profile.id.clone();
        let control = profile.control;
        let due = self.notices.due_with_time(
            &self.notice_inputs(streak, catalog.settings.aggregation_period.frequency(), *at),
            *at,
        );
        for (when, notice) in due {
            let stale = *at - when > crate::rules::notices::stale_after();
            let opted_out = self
                .preferences
                .notifications
                .get(notice.preference())
                .is_some_and(|channels| !channels.iter().any(|c| c == "email"));
            self.notices.fold(&notice);
            out.push(Effect::NoticeDue {
                user_id: user_id.clone(),
                notice,
                at: *at,
                suppressed: control || opted_out || stale,
            });
        }
    }

    /// Notes what a folded record did that notices depend on: its event's local day, and
    /// the completions it reported. The same in live processing and on replay.
    pub(crate) fn note_for_notices(&mut self, record: &UserRecord, effects: &[Effect]) {
        let tz = self.notice_zone();
        if let UserRecord::Event(ev) = record {
            self.notices.on_event(local_date(ev.at, tz));
        }
        for e in effects {
            if let Effect::AchievementCompleted {
                achievement_id,
                completion_id,
                at,
                silent: false,
                ..
            } = e
            {
                let known = self
                    .notices
                    .achievements
                    .iter()
                    .any(|p| p.completion_id == *completion_id);
                if !known {
                    self.notices
                        .on_completion(*at, tz, *achievement_id, *completion_id);
                }
            }
        }
    }
}
