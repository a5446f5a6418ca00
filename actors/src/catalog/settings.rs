//! The org's settings (SPEC §9.5): branding, experimentation (the control cohort's ratio,
//! §2.5) and the aggregation period of recaps. Pure rules: a nested partial update is
//! validated as a whole and gives the new settings, or the first problem.

use serde::{Deserialize, Serialize};

use crate::rules::streak::Frequency;

/// Fonts of emails (`AdminFontFamily`).
pub const FONTS: &[&str] = &[
    "MODERN_SANS",
    "BOOK_SANS",
    "ORGANIC_SANS",
    "GEOMETRIC_SANS",
    "HEAVY_SANS",
    "ROUNDED_SANS",
    "MODERN_SERIF",
    "BOOK_SERIF",
    "MONOSPACE",
];

/// Longest text setting (names and URLs).
pub const MAX_TEXT: usize = 2048;
/// Longest `userActivationWindow`, in days.
pub const MAX_ACTIVATION_WINDOW: u32 = 365;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branding {
    pub app_name: String,
    pub app_url: String,
    pub brand_color: String,
    pub font: String,
    pub logo: Option<String>,
    pub app_icon: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Experimentation {
    /// Percentage (0–100) of new users placed in the control cohort.
    pub control_ratio: u8,
    /// Days after a user's first event that count as their activation window (analytics).
    pub user_activation_window: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggregationPeriod {
    Weekly,
    Monthly,
}

impl AggregationPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "weekly" => Some(Self::Weekly),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }

    /// The period recaps cover (SPEC §8.5).
    pub fn frequency(self) -> Frequency {
        match self {
            Self::Weekly => Frequency::Weekly,
            Self::Monthly => Frequency::Monthly,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSettings {
    pub branding: Branding,
    pub experimentation: Experimentation,
    pub aggregation_period: AggregationPeriod,
}

impl Default for OrgSettings {
    fn default() -> Self {
        Self {
            branding: Branding {
                app_name: String::new(),
                app_url: String::new(),
                brand_color: "#000000".into(),
                font: "MODERN_SANS".into(),
                logo: None,
                app_icon: None,
            },
            experimentation: Experimentation {
                control_ratio: 0,
                user_activation_window: 7,
            },
            aggregation_period: AggregationPeriod::Weekly,
        }
    }
}

/// A nested partial update: `None` leaves a field as it is; for `logo` and `appIcon`,
/// `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub app_name: Option<String>,
    pub app_url: Option<String>,
    pub brand_color: Option<String>,
    pub font: Option<String>,
    pub logo: Option<Option<String>>,
    pub app_icon: Option<Option<String>>,
    pub control_ratio: Option<i64>,
    pub user_activation_window: Option<i64>,
    pub aggregation_period: Option<String>,
}

/// Whether `color` is `#RGB`, `#RRGGBB`, `rgb(r,g,b)` or `rgba(r,g,b,a)` (channels 0–255,
/// alpha 0–1).
pub fn valid_color(color: &str) -> bool {
    let c = color.trim();
    if let Some(hex) = c.strip_prefix('#') {
        return (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    let (args, alpha) = if let Some(rest) = c.strip_prefix("rgba(") {
        (rest, true)
    } else if let Some(rest) = c.strip_prefix("rgb(") {
        (rest, false)
    } else {
        return false;
    };
    let Some(args) = args.strip_suffix(')') else {
        return false;
    };
    let parts: Vec<&str> = args.split(',').map(str::trim).collect();
    if parts.len() != if alpha { 4 } else { 3 } {
        return false;
    }
    let channels = parts[..3].iter().all(|p| p.parse::<u8>().is_ok());
    let alpha_ok = !alpha
        || parts[3]
            .parse::<f64>()
            .is_ok_and(|a| (0.0..=1.0).contains(&a));
    channels && alpha_ok
}

/// Whether `url` is an absolute http(s) URL.
fn valid_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

impl OrgSettings {
    /// The settings after `patch`, or what is wrong with it (nothing is applied then).
    pub fn patched(&self, patch: SettingsPatch) -> Result<Self, String> {
        let mut next = self.clone();
        let b = &mut next.branding;
        if let Some(name) = patch.app_name {
            if name.trim().is_empty() || name.chars().count() > 255 {
                return Err("branding.appName must be 1 to 255 characters".into());
            }
            b.app_name = name;
        }
        if let Some(url) = patch.app_url {
            if url.len() > MAX_TEXT || !valid_url(&url) {
                return Err("branding.appUrl must be an http or https URL".into());
            }
            b.app_url = url;
        }
        if let Some(color) = patch.brand_color {
            if !valid_color(&color) {
                return Err(
                    "branding.brandColor must be #RGB, #RRGGBB, rgb(r,g,b) or rgba(r,g,b,a)".into(),
                );
            }
            b.brand_color = color.trim().to_string();
        }
        if let Some(font) = patch.font {
            if !FONTS.contains(&font.as_str()) {
                return Err(format!("branding.font must be one of {}", FONTS.join(", ")));
            }
            b.font = font;
        }
        for (field, value, slot) in [
            ("branding.logo.url", patch.logo, &mut b.logo),
            ("branding.appIcon.url", patch.app_icon, &mut b.app_icon),
        ] {
            match value {
                None => {}
                Some(None) => *slot = None,
                Some(Some(url)) => {
                    if url.len() > MAX_TEXT || !valid_url(&url) {
                        return Err(format!("{field} must be an http or https URL"));
                    }
                    *slot = Some(url);
                }
            }
        }
        if let Some(ratio) = patch.control_ratio {
            next.experimentation.control_ratio = u8::try_from(ratio)
                .ok()
                .filter(|r| *r <= 100)
                .ok_or("experimentation.controlRatio must be an integer from 0 to 100")?;
        }
        if let Some(days) = patch.user_activation_window {
            next.experimentation.user_activation_window = u32::try_from(days)
                .ok()
                .filter(|d| (1..=MAX_ACTIVATION_WINDOW).contains(d))
                .ok_or(format!(
                    "experimentation.userActivationWindow must be an integer from 1 to {MAX_ACTIVATION_WINDOW}"
                ))?;
        }
        if let Some(period) = patch.aggregation_period {
            next.aggregation_period = AggregationPeriod::parse(&period)
                .ok_or("aggregationPeriod must be weekly or monthly")?;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn colors_in_the_four_forms_are_accepted_and_others_refused() {
        for ok in [
            "#fff",
            "#A1B2C3",
            "rgb(0, 128, 255)",
            "rgba(10,20,30,0.5)",
            "rgba(10,20,30,1)",
        ] {
            assert!(valid_color(ok), "{ok}");
        }
        for bad in [
            "",
            "fff",
            "#ffff",
            "#ggg",
            "rgb(256,0,0)",
            "rgb(1,2)",
            "rgba(1,2,3)",
            "rgba(1,2,3,1.5)",
            "rgb(1,2,3",
            "red",
        ] {
            assert!(!valid_color(bad), "{bad}");
        }
    }

    #[test]
    fn a_partial_update_changes_only_what_it_names_and_null_clears_the_logo() {
        let start = OrgSettings::default()
            .patched(SettingsPatch {
                app_name: Some("Lingo".into()),
                logo: Some(Some("https://cdn.example.com/logo.png".into())),
                ..Default::default()
            })
            .expect("valid");
        assert_eq!(start.branding.app_name, "Lingo");
        let next = start
            .patched(SettingsPatch {
                control_ratio: Some(20),
                logo: Some(None),
                ..Default::default()
            })
            .expect("valid");
        assert_eq!(next.branding.app_name, "Lingo");
        assert_eq!(next.branding.logo, None);
        assert_eq!(next.experimentation.control_ratio, 20);
        assert_eq!(next.aggregation_period, AggregationPeriod::Weekly);
    }

    #[test]
    fn an_invalid_field_applies_nothing() {
        let start = OrgSettings::default();
        for patch in [
            SettingsPatch {
                control_ratio: Some(101),
                ..Default::default()
            },
            SettingsPatch {
                control_ratio: Some(-1),
                ..Default::default()
            },
            SettingsPatch {
                user_activation_window: Some(0),
                ..Default::default()
            },
            SettingsPatch {
                font: Some("COMIC".into()),
                ..Default::default()
            },
            SettingsPatch {
                app_url: Some("ftp://example.com".into()),
                ..Default::default()
            },
            SettingsPatch {
                aggregation_period: Some("daily".into()),
                ..Default::default()
            },
        ] {
            assert!(start.patched(patch.clone()).is_err(), "{patch:?}");
        }
    }

    proptest! {
        #[test]
        fn any_ratio_from_0_to_100_is_kept_and_any_other_refused(r in -1000i64..1000) {
            let got = OrgSettings::default().patched(SettingsPatch {
                control_ratio: Some(r),
                ..Default::default()
            });
            prop_assert_eq!(got.is_ok(), (0..=100).contains(&r));
            if let Ok(s) = got {
                prop_assert_eq!(i64::from(s.experimentation.control_ratio), r);
            }
        }
    }
}
