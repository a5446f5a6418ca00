//! Achievement qualification (SPEC §4.1, §4.3): pure checks of whether a user, as they are
//! now, satisfies an achievement's trigger and user filters.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use uuid::Uuid;

use crate::achievements::{Achievement, Trigger};
use crate::catalog::Catalog;

/// What qualification needs to know about a user. The user module implements it over its
/// state; tests can implement it over anything.
pub trait UserFacts {
    /// The user's total of a metric (0 when never recorded).
    fn metric_total(&self, metric_id: Uuid) -> f64;
    /// The user's totals of a metric by event attribute combination.
    fn attribute_totals(&self, metric_id: Uuid) -> &[(BTreeMap<String, String>, f64)];
    /// The streak length as of `at` (pending period ends applied).
    fn streak_length(&self, at: DateTime<Utc>) -> u32;
    /// The user's local date at `at`.
    fn local_date(&self, at: DateTime<Utc>) -> NaiveDate;
    fn sign_up_date(&self) -> Option<NaiveDate>;
    fn has_completed(&self, achievement_id: Uuid) -> bool;
    /// The user's current value of a user attribute, by key.
    fn user_attribute(&self, key: &str) -> Option<&str>;
}

/// Whether the user's current attributes satisfy every `(attribute id, value)` filter
/// (SPEC §4.1.2, §6.2.1). A filter naming a deleted attribute never matches.
pub fn matches_user_filters(
    filters: &[(Uuid, String)],
    catalog: &Catalog,
    user: &impl UserFacts,
) -> bool {
    filters.iter().all(|(attr, value)| {
        catalog
            .attribute_key(*attr)
            .and_then(|key| user.user_attribute(key))
            .is_some_and(|v| v == value)
    })
}

/// The event filters of an entity as `(attribute key, value)`; `None` if one names an
/// attribute that no longer exists (then nothing can match).
pub fn event_filter_keys(
    filters: &[(Uuid, String)],
    catalog: &Catalog,
) -> Option<Vec<(String, String)>> {
    filters
        .iter()
        .map(|(id, v)| {
            catalog
                .attribute_key(*id)
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect()
}

/// Whether the user satisfies the trigger of `a` at `at` (api achievements never do; user
/// filters are checked separately by [`matches_user_filters`]).
pub fn qualifies(
    a: &Achievement,
    catalog: &Catalog,
    user: &impl UserFacts,
    at: DateTime<Utc>,
) -> bool {
    match &a.trigger {
        Trigger::Metric {
            metric_id,
            value,
            event_filters,
        } => {
            let total = if event_filters.is_empty() {
                user.metric_total(*metric_id)
            } else {
                event_filter_keys(event_filters, catalog).map_or(0.0, |f| {
                    filtered_total(user.attribute_totals(*metric_id), &f)
                })
            };
            total >= *value
        }
        Trigger::Streak { length } => user.streak_length(at) >= *length,
        Trigger::Anniversary { years } => user
            .sign_up_date()
            .and_then(|d| anniversary(d, *years))
            .is_some_and(|date| user.local_date(at) >= date),
        Trigger::Achievement { prerequisites } => {
            prerequisites.iter().all(|p| user.has_completed(*p))
        }
        Trigger::Api { .. } => false,
    }
}

/// An anniversary date: `years` after `sign_up`, with Feb 29 falling on Feb 28 in non-leap
/// years (SPEC §4.1.5 DECISION).
pub fn anniversary(sign_up: NaiveDate, years: u32) -> Option<NaiveDate> {
    let year = sign_up.year().checked_add(i32::try_from(years).ok()?)?;
    NaiveDate::from_ymd_opt(year, sign_up.month(), sign_up.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, sign_up.month(), 28))
}

/// Whether `attributes` has every `(key, value)` pair of `filters`.
pub fn matches_all(attributes: &BTreeMap<String, String>, filters: &[(String, String)]) -> bool {
    filters
        .iter()
        .all(|(k, v)| attributes.get(k).is_some_and(|actual| actual == v))
}

/// The qualifying total of a metric with event filters: the sum over the user's recorded
/// attribute combinations that match every filter (SPEC §4.1.1).
pub fn filtered_total(
    by_attributes: &[(BTreeMap<String, String>, f64)],
    filters: &[(String, String)],
) -> f64 {
    by_attributes
        .iter()
        .filter(|(attrs, _)| matches_all(attrs, filters))
        .fold(0.0, |acc, (_, v)| acc + v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("valid")
    }

    #[test]
    fn leap_day_anniversaries_fall_on_feb_28() {
        assert_eq!(anniversary(d(2024, 2, 29), 1), Some(d(2025, 2, 28)));
        assert_eq!(anniversary(d(2024, 2, 29), 4), Some(d(2028, 2, 29)));
        assert_eq!(anniversary(d(2020, 6, 15), 5), Some(d(2025, 6, 15)));
    }

    #[test]
    fn filters_need_every_pair() {
        let attrs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let rows = vec![
            (attrs(&[("device", "ios"), ("plan", "pro")]), 2.0),
            (attrs(&[("device", "ios")]), 3.0),
            (attrs(&[("device", "web")]), 5.0),
        ];
        let f = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(filtered_total(&rows, &f(&[("device", "ios")])), 5.0);
        assert_eq!(
            filtered_total(&rows, &f(&[("device", "ios"), ("plan", "pro")])),
            2.0
        );
        assert_eq!(filtered_total(&rows, &f(&[("device", "tv")])), 0.0);
    }
}
