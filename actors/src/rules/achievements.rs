//! Achievement qualification (SPEC §4.1, §4.3): pure checks of whether a user, as they are
//! now, satisfies an achievement's trigger and user filters.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};

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
