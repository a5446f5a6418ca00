//! "Due" notifications (SPEC §8.5): when a user's recap, reactivation message, streak
//! reminder and achievement notification come due, in their local time. Pure: the caller
//! passes the zone, the recap period and whether the streak is at risk, and folds each
//! notice it emits back in ([`Notices::fold`]), so the same notice never comes twice.

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::rules::streak::Frequency;

/// The zone of users without one (SPEC §8.5).
pub const DEFAULT_ZONE: Tz = chrono_tz::America::New_York;
/// Local hour of recaps, reactivation messages and weekly/monthly streak reminders.
pub const MORNING: u32 = 9;
/// Local hour of daily streak reminders (4 h before the day ends).
pub const EVENING: u32 = 20;
/// Full local days without an event after which reactivation messages 1–5 are due.
pub const REACTIVATION_DAYS: [u32; 5] = [3, 5, 7, 14, 30];
/// A notice more than this late (the server was down, or no endpoint wanted notices when
/// it came due) is recorded but not delivered.
pub fn stale_after() -> chrono::Duration {
    chrono::Duration::hours(24)
}
/// The webhook types of notices.
pub const WEBHOOK_TYPES: [&str; 4] = [
    "emails.recap_due",
    "emails.reactivation_due",
    "emails.streak_reminder_due",
    "emails.achievement_due",
];
/// Achievement notifications: completed before this local hour, due at it.
const ACHIEVEMENT_HOUR: u32 = 17;
/// Completed at or after this local hour: due at [`ACHIEVEMENT_HOUR`] the next day.
const ACHIEVEMENT_LATE: u32 = 21;

/// One notice that came due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Notice {
    /// `emails.recap_due` for the complete period `start..=end`.
    Recap { start: NaiveDate, end: NaiveDate },
    /// `emails.reactivation_due`: message `number` (1–5) after `days` without an event.
    Reactivation { number: u8, days: u32 },
    /// `emails.streak_reminder_due` for the streak period starting `period_start`.
    StreakReminder { period_start: NaiveDate },
    /// `emails.achievement_due` for one completion.
    Achievement {
        achievement_id: Uuid,
        completion_id: Uuid,
        completed: DateTime<Utc>,
    },
}

impl Notice {
    /// The notification preference that governs it (SPEC §2.4).
    pub fn preference(&self) -> &'static str {
        match self {
            Notice::Recap { .. } => "recap",
            Notice::Reactivation { .. } => "reactivation",
            Notice::StreakReminder { .. } => "streak_reminder",
            Notice::Achievement { .. } => "achievement_completed",
        }
    }

    /// The webhook event type it is delivered as.
    pub fn webhook_type(&self) -> &'static str {
        match self {
            Notice::Recap { .. } => "emails.recap_due",
            Notice::Reactivation { .. } => "emails.reactivation_due",
            Notice::StreakReminder { .. } => "emails.streak_reminder_due",
            Notice::Achievement { .. } => "emails.achievement_due",
        }
    }
}

/// A completion whose notification is not due yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAchievement {
    pub due: DateTime<Utc>,
    pub achievement_id: Uuid,
    pub completion_id: Uuid,
    pub completed: DateTime<Utc>,
}

/// What a user's notices depend on besides their own state, at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    pub tz: Tz,
    /// The org's recap period (weekly or monthly).
    pub recap: Frequency,
    /// The streak period that needs an event and is neither satisfied nor bridged by a day
    /// off or a pause; `None` when no streak is at risk.
    pub at_risk: Option<AtRisk>,
}

/// A streak period at risk: its dates, the streak's frequency, and the zone its days are
/// counted in (the reminder comes before the period ends there).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AtRisk {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub frequency: Frequency,
    pub tz: Tz,
}

/// A user's notice bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Notices {
    /// The latest local day with an event, and the latest before it.
    pub last_active: Option<NaiveDate>,
    pub previous_active: Option<NaiveDate>,
    /// Reactivation messages sent since the last event (0–5).
    pub reactivations: u8,
    /// The start of the latest period a recap came due for.
    pub recap_sent: Option<NaiveDate>,
    /// The start of the latest streak period a reminder came due for.
    pub reminder_sent: Option<NaiveDate>,
    /// Completions waiting for their notification, earliest due first.
    pub achievements: Vec<PendingAchievement>,
}

/// `hour`:00 local on `date`, as an instant (the first one when the clock repeats, the end
/// of the gap when it skips).
pub fn local_at(tz: Tz, date: NaiveDate, hour: u32) -> DateTime<Utc> {
    let naive = date.and_hms_opt(hour, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&naive).earliest() {
        Some(t) => t.with_timezone(&Utc),
        None => {
            let later = naive + chrono::Duration::hours(1);
            tz.from_local_datetime(&later)
                .earliest()
                .map_or_else(|| Utc.from_utc_datetime(&naive), |t| t.with_timezone(&Utc))
        }
    }
}

/// When a completion at `at` is notified (SPEC §8.5.4): before 17:00 local at 17:00, from
/// 17:00 to 21:00 at once, after 21:00 at 17:00 the next day.
pub fn achievement_due(at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let local = at.with_timezone(&tz);
    let day = local.date_naive();
    match local.hour() {
        h if h < ACHIEVEMENT_HOUR => local_at(tz, day, ACHIEVEMENT_HOUR),
        h if h < ACHIEVEMENT_LATE => at,
        _ => local_at(tz, day + Days::new(1), ACHIEVEMENT_HOUR),
    }
}

/// When the reminder for the streak period `start..=end` is due (SPEC §8.5.3): daily at
/// 20:00, weekly on the period's Friday at 09:00, monthly on the 25th at 09:00.
pub fn reminder_due(
    start: NaiveDate,
    end: NaiveDate,
    frequency: Frequency,
    tz: Tz,
) -> DateTime<Utc> {
    let (day, hour) = match frequency {
        Frequency::Daily => (start, EVENING),
        Frequency::Weekly => {
            let friday = (0..7)
                .map(|d| start + Days::new(d))
                .find(|d| d.weekday() == chrono::Weekday::Fri && *d <= end)
                .unwrap_or(start);
            (friday, MORNING)
        }
        Frequency::Monthly => (start.with_day(25).unwrap_or(start), MORNING),
    };
    local_at(tz, day, hour)
}

impl Notices {
    /// An event on local day `day`: the reactivation sequence starts over.
    pub fn on_event(&mut self, day: NaiveDate) {
        match self.last_active {
            Some(last) if last == day => {}
            Some(last) if last > day => {
                // A late event (out of order) for an earlier day.
                if self.previous_active.is_none_or(|p| p < day) {
                    self.previous_active = Some(day);
                }
            }
            last => {
                self.previous_active = last;
                self.last_active = Some(day);
            }
        }
        self.reactivations = 0;
    }

    /// A reported (not backdated) completion at `at`.
    pub fn on_completion(
        &mut self,
        at: DateTime<Utc>,
        tz: Tz,
        achievement_id: Uuid,
        completion_id: Uuid,
    ) {
        let due = achievement_due(at, tz);
        let place = self.achievements.partition_point(|p| p.due <= due);
        self.achievements.insert(
            place,
            PendingAchievement {
                due,
                achievement_id,
                completion_id,
                completed: at,
            },
        );
    }

    /// Records that `notice` came due (emitted or skipped).
    pub fn fold(&mut self, notice: &Notice) {
        match notice {
            Notice::Recap { start, .. } => {
                self.recap_sent = self.recap_sent.max(Some(*start));
            }
            Notice::Reactivation { number, .. } => {
                self.reactivations = self.reactivations.max(*number);
            }
            Notice::StreakReminder { period_start } => {
                self.reminder_sent = self.reminder_sent.max(Some(*period_start));
            }
            Notice::Achievement { completion_id, .. } => {
                self.achievements
                    .retain(|p| p.completion_id != *completion_id);
            }
        }
    }

    /// Every notice not yet due-recorded, with when it is due, earliest first.
    fn upcoming(&self, inputs: &Inputs) -> Vec<(DateTime<Utc>, Notice)> {
        let tz = inputs.tz;
        let mut out = Vec::new();
        // Recaps of the periods of the last two active days, once each.
        let mut periods: Vec<(NaiveDate, NaiveDate)> = [self.previous_active, self.last_active]
            .into_iter()
            .flatten()
            .map(|d| inputs.recap.period_of(d))
            .filter(|(start, _)| self.recap_sent.is_none_or(|sent| sent < *start))
            .collect();
        periods.dedup();
        for (start, end) in periods {
            out.push((
                local_at(tz, end + Days::new(1), MORNING),
                Notice::Recap { start, end },
            ));
        }
        if let Some(last) = self.last_active {
            for (i, days) in REACTIVATION_DAYS
                .iter()
                .enumerate()
                .skip(usize::from(self.reactivations))
            {
                out.push((
                    local_at(tz, last + Days::new(u64::from(*days) + 1), MORNING),
                    Notice::Reactivation {
                        number: i as u8 + 1,
                        days: *days,
                    },
                ));
            }
        }
        if let Some(r) = inputs.at_risk {
            if self.reminder_sent.is_none_or(|sent| sent < r.start) {
                out.push((
                    reminder_due(r.start, r.end, r.frequency, r.tz),
                    Notice::StreakReminder {
                        period_start: r.start,
                    },
                ));
            }
        }
        for p in &self.achievements {
            out.push((
                p.due,
                Notice::Achievement {
                    achievement_id: p.achievement_id,
                    completion_id: p.completion_id,
                    completed: p.completed,
                },
            ));
        }
        out.sort_by_key(|(due, _)| *due);
        out
    }

    /// The notices due at or before `at`, earliest first.
    pub fn due(&self, inputs: &Inputs, at: DateTime<Utc>) -> Vec<Notice> {
        self.due_with_time(inputs, at)
            .into_iter()
            .map(|(_, n)| n)
            .collect()
    }

    /// [`Notices::due`] with when each came due.
    pub fn due_with_time(
        &self,
        inputs: &Inputs,
        at: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, Notice)> {
        self.upcoming(inputs)
            .into_iter()
            .take_while(|(due, _)| *due <= at)
            .collect()
    }

    /// When the next notice comes due (possibly already: it is then due at once).
    pub fn next_due(&self, inputs: &Inputs) -> Option<DateTime<Utc>> {
        self.upcoming(inputs).first().map(|(due, _)| *due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NY: Tz = chrono_tz::America::New_York;
    const TOKYO: Tz = chrono_tz::Asia::Tokyo;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn inputs(tz: Tz) -> Inputs {
        Inputs {
            tz,
            recap: Frequency::Weekly,
            at_risk: None,
        }
    }

    /// Folds every notice due by `until` and returns them.
    fn drain(n: &mut Notices, i: &Inputs, until: DateTime<Utc>) -> Vec<Notice> {
        let due = n.due(i, until);
        for notice in &due {
            n.fold(notice);
        }
        due
    }

    #[test]
    fn achievements_are_notified_at_five_in_the_evening_or_at_once() {
        // 10:00 in New York (UTC-4 in May): at 17:00 local the same day.
        assert_eq!(
            achievement_due(at("2027-05-03T14:00:00Z"), NY),
            at("2027-05-03T21:00:00Z")
        );
        // 18:30 local: at once.
        assert_eq!(
            achievement_due(at("2027-05-03T22:30:00Z"), NY),
            at("2027-05-03T22:30:00Z")
        );
        // 22:00 local: 17:00 the next day.
        assert_eq!(
            achievement_due(at("2027-05-04T02:00:00Z"), NY),
            at("2027-05-04T21:00:00Z")
        );
    }

    #[test]
    fn a_weekly_recap_comes_on_sunday_morning_for_a_week_with_activity() {
        let mut n = Notices::default();
        // Wednesday 2027-05-05, Tokyo.
        n.on_event(day("2027-05-05"));
        let i = inputs(TOKYO);
        // Sunday 2027-05-09 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(n.next_due(&i), Some(at("2027-05-09T00:00:00Z")));
        let recaps: Vec<Notice> = drain(&mut n, &i, at("2027-05-09T00:00:00Z"))
            .into_iter()
            .filter(|x| matches!(x, Notice::Recap { .. }))
            .collect();
        assert_eq!(
            recaps,
            vec![Notice::Recap {
                start: day("2027-05-02"),
                end: day("2027-05-08")
            }]
        );
        // A week without events has no recap.
        assert!(drain(&mut n, &i, at("2027-05-17T00:00:00Z"))
            .iter()
            .all(|x| !matches!(x, Notice::Recap { .. })));
    }

    #[test]
    fn an_event_early_on_the_first_day_still_leaves_the_previous_weeks_recap_due() {
        let mut n = Notices::default();
        n.on_event(day("2027-05-07"));
        // Sunday before 09:00: an event of the new week.
        n.on_event(day("2027-05-09"));
        let due = drain(&mut n, &inputs(NY), at("2027-05-09T13:00:00Z"));
        assert!(due.contains(&Notice::Recap {
            start: day("2027-05-02"),
            end: day("2027-05-08")
        }));
    }

    #[test]
    fn reactivation_messages_follow_3_5_7_14_and_30_quiet_days_then_stop() {
        let mut n = Notices::default();
        n.on_event(day("2027-05-01"));
        let i = Inputs {
            recap: Frequency::Monthly,
            ..inputs(NY)
        };
        // Three full days (2nd–4th) without an event: the morning of the 5th, 09:00 EDT.
        assert_eq!(
            drain(&mut n, &i, at("2027-05-05T12:59:00Z"))
                .iter()
                .filter(|x| matches!(x, Notice::Reactivation { .. }))
                .count(),
            0
        );
        assert_eq!(
            drain(&mut n, &i, at("2027-05-05T13:00:00Z")),
            vec![Notice::Reactivation { number: 1, days: 3 }]
        );
        let rest: Vec<Notice> = drain(&mut n, &i, at("2027-12-31T00:00:00Z"))
            .into_iter()
            .filter(|x| matches!(x, Notice::Reactivation { .. }))
            .collect();
        assert_eq!(
            rest,
            vec![
                Notice::Reactivation { number: 2, days: 5 },
                Notice::Reactivation { number: 3, days: 7 },
                Notice::Reactivation {
                    number: 4,
                    days: 14
                },
                Notice::Reactivation {
                    number: 5,
                    days: 30
                },
            ]
        );
        assert_eq!(n.next_due(&i), None, "nothing after message 5");
        // A new event starts the sequence over.
        n.on_event(day("2028-01-10"));
        assert_eq!(
            n.due(&i, at("2028-01-14T14:00:00Z")),
            vec![Notice::Reactivation { number: 1, days: 3 }]
        );
    }

    #[test]
    fn streak_reminders_come_once_per_period_at_their_hour() {
        let mut n = Notices::default();
        let daily = Inputs {
            at_risk: Some(AtRisk {
                start: day("2027-05-03"),
                end: day("2027-05-03"),
                frequency: Frequency::Daily,
                tz: NY,
            }),
            ..inputs(NY)
        };
        assert_eq!(n.next_due(&daily), Some(at("2027-05-04T00:00:00Z")));
        assert_eq!(
            drain(&mut n, &daily, at("2027-05-04T00:00:00Z")),
            vec![Notice::StreakReminder {
                period_start: day("2027-05-03")
            }]
        );
        assert_eq!(n.next_due(&daily), None, "one per period");
        // Weekly: the period's Friday, 09:00; monthly: the 25th, 09:00.
        assert_eq!(
            reminder_due(day("2027-05-02"), day("2027-05-08"), Frequency::Weekly, NY),
            at("2027-05-07T13:00:00Z")
        );
        assert_eq!(
            reminder_due(day("2027-05-01"), day("2027-05-31"), Frequency::Monthly, NY),
            at("2027-05-25T13:00:00Z")
        );
    }

    #[test]
    fn local_hours_across_a_clock_change_are_real_instants() {
        // 2027-03-14 is the spring-forward day in New York: 09:00 exists (EDT).
        assert_eq!(
            local_at(NY, day("2027-03-14"), 9),
            at("2027-03-14T13:00:00Z")
        );
        // 02:00 does not: the end of the gap.
        assert_eq!(
            local_at(NY, day("2027-03-14"), 2),
            at("2027-03-14T07:00:00Z")
        );
    }

    proptest! {
        /// Whatever the events and the moments looked at, each notice comes due once (a
        /// reactivation message once per quiet spell), and nothing due is left behind.
        #[test]
        fn each_notice_comes_due_once_and_none_is_left_behind(
            steps in proptest::collection::vec((0u32..20, any::<bool>(), 0u32..30), 1..40),
        ) {
            let i = inputs(TOKYO);
            let mut n = Notices::default();
            let mut now = at("2027-01-01T00:00:00Z");
            let mut seen: Vec<(Option<NaiveDate>, Notice)> = Vec::new();
            for (hours, event, completion_hours) in steps {
                now += chrono::Duration::hours(i64::from(hours) * 7);
                if event {
                    n.on_event(now.with_timezone(&TOKYO).date_naive());
                    let done = now - chrono::Duration::hours(i64::from(completion_hours));
                    n.on_completion(done, TOKYO, Uuid::new_v4(), Uuid::new_v4());
                }
                let spell = n.last_active;
                for notice in drain(&mut n, &i, now) {
                    let key = (matches!(notice, Notice::Reactivation { .. }).then_some(spell).flatten(), notice);
                    prop_assert!(!seen.contains(&key), "twice: {:?}", key);
                    seen.push(key);
                }
                prop_assert!(n.next_due(&i).is_none_or(|next| next > now));
            }
        }
    }
}
