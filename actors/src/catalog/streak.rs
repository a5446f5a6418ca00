//! Org streak settings (SPEC §5.1) and their validation.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Catalog;
use crate::rules::streak::{FreezeConfig, Frequency, Mode};

/// Org-level streak configuration (SPEC §5.1). Metrics are referenced by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreakSettings {
    pub frequency: Frequency,
    pub mode: Mode,
    pub customization_enabled: bool,
    pub days_off: Vec<u8>,
    pub metrics: Vec<(Uuid, f64)>,
    pub freezes: Option<FreezeConfig>,
}

impl Default for StreakSettings {
    fn default() -> Self {
        Self {
            frequency: Frequency::Daily,
            mode: Mode::Or,
            customization_enabled: false,
            days_off: Vec::new(),
            metrics: Vec::new(),
            freezes: None,
        }
    }
}

/// A partial update of [`StreakSettings`] (`PATCH /streaks/settings`); `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct StreakSettingsPatch {
    pub frequency: Option<Frequency>,
    pub mode: Option<Mode>,
    pub customization_enabled: Option<bool>,
    pub days_off: Option<Vec<i64>>,
    /// Metric keys and thresholds; replaces the whole list.
    pub metrics: Option<Vec<(String, f64)>>,
    /// `Some(None)` disables freezes; `Some(Some(f))` merges `f` into the current ones.
    pub freezes: Option<Option<FreezesPatch>>,
}

/// Freeze settings in a PATCH: provided fields change. `auto_earn_*`: `Some(None)` clears.
#[derive(Debug, Clone, Default)]
pub struct FreezesPatch {
    pub start_count: Option<u32>,
    pub max_count: Option<u32>,
    pub auto_earn_interval: Option<Option<u32>>,
    pub auto_earn_amount: Option<Option<u32>>,
}

/// Validates weekday numbers (0 = Sunday … 6 = Saturday), deduplicated and sorted.
pub fn check_days_off(days: &[i64]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for d in days {
        let day = u8::try_from(*d).ok().filter(|d| *d <= 6).ok_or_else(|| {
            "daysOff must contain integers from 0 (Sunday) to 6 (Saturday)".to_string()
        })?;
        if !out.contains(&day) {
            out.push(day);
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl Catalog {
    /// Metric keys and thresholds → ids, checking keys exist and are unique and thresholds are
    /// positive (SPEC §5.1.1, §2.4.2).
    pub fn streak_metrics(&self, items: &[(String, f64)]) -> Result<Vec<(Uuid, f64)>, String> {
        let mut out: Vec<(Uuid, f64)> = Vec::new();
        for (key, threshold) in items {
            let metric = self
                .metric_by_key(key)
                .ok_or_else(|| format!("Metric not found: {key}"))?;
            if !(threshold.is_finite() && *threshold > 0.0) {
                return Err(format!("Threshold for {key} must be greater than 0"));
            }
            if out.iter().any(|(id, _)| *id == metric.id) {
                return Err(format!("Metric {key} appears more than once"));
            }
            out.push((metric.id, *threshold));
        }
        Ok(out)
    }

    /// Applies a streak settings PATCH, all or nothing; the message is for a 422.
    pub fn update_streak_settings(
        &mut self,
        patch: StreakSettingsPatch,
    ) -> Result<StreakSettings, String> {
        let mut next = self.streak.clone();
        if let Some(f) = patch.frequency {
            if f != Frequency::Daily {
                next.days_off.clear();
            }
            next.frequency = f;
        }
        if let Some(m) = patch.mode {
            next.mode = m;
        }
        if let Some(c) = patch.customization_enabled {
            next.customization_enabled = c;
        }
        if let Some(days) = &patch.days_off {
            let days = check_days_off(days)?;
            if !days.is_empty() && next.frequency != Frequency::Daily {
                return Err("daysOff can only be set for daily streaks".into());
            }
            next.days_off = days;
        }
        if let Some(items) = &patch.metrics {
            next.metrics = self.streak_metrics(items)?;
        }
        match patch.freezes {
            None => {}
            Some(None) => next.freezes = None,
            Some(Some(fp)) => {
                let base = next.freezes.clone().unwrap_or(FreezeConfig {
                    start_count: 0,
                    max_count: 0,
                    auto_earn_interval: None,
                    auto_earn_amount: None,
                });
                let merged = FreezeConfig {
                    start_count: fp.start_count.unwrap_or(base.start_count),
                    max_count: fp
                        .max_count
                        .unwrap_or(base.max_count.max(fp.start_count.unwrap_or(0))),
                    auto_earn_interval: fp.auto_earn_interval.unwrap_or(base.auto_earn_interval),
                    auto_earn_amount: fp.auto_earn_amount.unwrap_or(base.auto_earn_amount),
                };
                if merged.max_count > 100 {
                    return Err("freezes.maxCount cannot exceed 100".into());
                }
                if merged.max_count < merged.start_count {
                    return Err("freezes.maxCount must be at least freezes.startCount".into());
                }
                match (merged.auto_earn_interval, merged.auto_earn_amount) {
                    (Some(i), Some(a)) if i >= 1 && a >= 1 => {}
                    (None, None) => {}
                    (Some(_), Some(_)) => {
                        return Err("freezes.autoEarnInterval and autoEarnAmount must be at least 1".into())
                    }
                    _ => {
                        return Err(
                            "freezes.autoEarnInterval and freezes.autoEarnAmount must both be set or both be null"
                                .into(),
                        )
                    }
                }
                next.freezes = Some(merged);
            }
        }
        self.streak = next.clone();
        Ok(next)
    }
}
