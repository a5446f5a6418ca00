//! Webhook endpoints (SPEC §8.1, §11.3): where Kudos delivers events, how, and with which
//! secret. Validation here is pure; whether a URL's host resolves to a public address is
//! checked by the caller (it needs DNS) and again at every delivery.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{bulk_delete, bulk_update, persisted, Catalog, Issue, Item};

/// Every event type (SPEC §8.3) and what it means.
pub const EVENT_TYPES: [(&str, &str); 18] = [
    (
        "achievement.completed",
        "A user completed an achievement (not backdated).",
    ),
    ("streak.started", "A user's streak went from 0 to 1."),
    ("streak.extended", "A user's streak grew by an event."),
    (
        "streak.lost",
        "A user's streak broke at the end of a period.",
    ),
    (
        "streak.freeze_consumed",
        "Streak freezes were used up to keep a streak.",
    ),
    ("streak.freeze_earned", "A user earned streak freezes."),
    (
        "points.changed",
        "A user's points total changed (throttled).",
    ),
    ("points.level_changed", "A user reached a new points level."),
    ("points.boost_started", "A points boost started."),
    ("points.boost_finished", "A points boost finished."),
    ("leaderboard.started", "A leaderboard run started."),
    (
        "leaderboard.changed",
        "A leaderboard run's rankings changed (throttled).",
    ),
    (
        "leaderboard.finished",
        "A leaderboard run finished, with its top 10.",
    ),
    (
        "leaderboard.rank_changed",
        "A user's rank on a leaderboard changed (throttled).",
    ),
    ("emails.recap_due", "A user's recap email is due."),
    (
        "emails.reactivation_due",
        "A user's reactivation email is due.",
    ),
    (
        "emails.streak_reminder_due",
        "A user's streak reminder is due.",
    ),
    (
        "emails.achievement_due",
        "A user's achievement email is due.",
    ),
];

/// Request headers Kudos sets itself, and hop-by-hop headers that would change how the
/// body is framed: an endpoint's custom headers may not use them.
pub const RESERVED_HEADERS: [&str; 19] = [
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-authorization",
    "user-agent",
    "host",
    "x-trophy-signature",
    "x-trophy-event-id",
    "x-trophy-event-type",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Custom headers per endpoint, the longest name and value, the longest URL, name and
/// description.
pub const MAX_HEADERS: usize = 20;
pub const MAX_HEADER_NAME: usize = 128;
pub const MAX_HEADER_VALUE: usize = 1024;
pub const MAX_URL: usize = 2048;
pub const MAX_TEXT: usize = 1000;
/// How long a rotated-out secret still signs (SPEC §11.3.4).
pub const SECRET_OVERLAP_HOURS: i64 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    Post,
    Put,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookStatus {
    Active,
    Inactive,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Active => "active",
            WebhookStatus::Inactive => "inactive",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadFormat {
    /// The §8.3 payload as the body.
    Trophy,
    /// `{id, type, created, data, meta}` around it (SPEC §11.3.7).
    Envelope,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Trophy => "trophy",
            PayloadFormat::Envelope => "envelope",
        }
    }
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: Uuid,
    pub name: Option<String>,
    pub description: Option<String>,
    pub url: String,
    pub method: Method,
    pub headers: BTreeMap<String, String>,
    /// Event types, or `["*"]` for all.
    pub events: Vec<String>,
    pub status: WebhookStatus,
    /// Why Kudos set it inactive (a `410 Gone`), cleared when it is activated again.
    pub disabled_reason: Option<String>,
    pub payload_format: PayloadFormat,
    pub secret: String,
    /// The secret before the last rotation, and until when it still signs.
    pub previous_secret: Option<(String, DateTime<Utc>)>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub deleted: bool,
    pub ord: u64,
}

persisted!(Webhook, "catalog/webhook/");

impl Webhook {
    /// Whether this endpoint gets events of `event_type` now.
    pub fn wants(&self, event_type: &str) -> bool {
        self.status == WebhookStatus::Active
            && self.events.iter().any(|e| e == "*" || e == event_type)
    }

    /// The secrets that sign a delivery at `now`: the current one, then the previous one
    /// during its overlap.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let Some((old, until)) = &self.previous_secret {
            if now < *until {
                out.push(old);
            }
        }
        out
    }
}

/// A new secret: `whsec_` and base64 of 32 random bytes.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The fields of a create or update item as sent (`None`: absent; `Some(None)`: `null`).
#[derive(Debug, Clone, Default)]
pub struct WebhookFields {
    pub name: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub method: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub status: Option<String>,
    pub payload_format: Option<String>,
}

#[derive(Debug, Clone)]
pub struct WebhookPatch {
    pub id: String,
    pub fields: WebhookFields,
}

#[derive(Debug, Clone, Default)]
pub struct WebhookChanges {
    pub changed: Vec<Webhook>,
    pub issues: Vec<Issue>,
}

/// A URL deliveries may go to: absolute `http` or `https` with a host, no credentials.
pub fn check_url(raw: &str) -> Result<url::Url, String> {
    if raw.len() > MAX_URL {
        return Err(format!("URL must be at most {MAX_URL} characters"));
    }
    let url = url::Url::parse(raw).map_err(|_| "URL must be an absolute http or https URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("URL must use http or https".into());
    }
    if url.host().is_none() {
        return Err("URL must have a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URL must not contain credentials".into());
    }
    Ok(url)
}

fn check_events(events: Vec<String>) -> Result<Vec<String>, String> {
    if events.is_empty() {
        return Err("events must not be empty (use [\"*\"] for every type)".into());
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        if e != "*" && !EVENT_TYPES.iter().any(|(t, _)| *t == e) {
            return Err(format!("Unknown event type: {e}"));
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    if out.iter().any(|e| e == "*") {
        return Ok(vec!["*".to_string()]);
    }
    Ok(out)
}

fn check_headers(headers: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    if headers.len() > MAX_HEADERS {
        return Err(format!("At most {MAX_HEADERS} custom headers are allowed"));
    }
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in &headers {
        if name.is_empty() || name.len() > MAX_HEADER_NAME || !name.chars().all(token) {
            return Err(format!("Invalid header name: {name}"));
        }
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(format!("Header {name} is given twice"));
        }
        seen.push(lower);
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!("Header {name} is reserved"));
        }
        if value.len() > MAX_HEADER_VALUE
            || !value.chars().all(|c| c == '\t' || (' '..='~').contains(&c))
        {
            return Err(format!("Invalid value for header {name}"));
        }
    }
    Ok(headers)
}

impl Catalog {
    /// Live endpoints in creation order.
    pub fn webhooks(&self) -> impl Iterator<Item = &Webhook> {
        self.webhooks.iter().filter(|w| !w.deleted)
    }

    /// Whether an active endpoint subscribes to an `emails.*` type: users schedule their
    /// "due" notifications only then (SPEC §8.5), so the scheduler is quiet without one.
    pub fn notices_wanted(&self) -> bool {
        self.webhooks().any(|w| {
            crate::rules::notices::WEBHOOK_TYPES
                .iter()
                .any(|t| w.wants(t))
        })
    }

    pub fn webhook(&self, id: Uuid) -> Option<&Webhook> {
        self.webhooks().find(|w| w.id == id)
    }

    pub fn webhook_by_id(&self, raw: &str) -> Option<&Webhook> {
        Uuid::parse_str(raw).ok().and_then(|id| self.webhook(id))
    }

    fn build_webhook(
        f: WebhookFields,
        base: Option<&Webhook>,
        now: DateTime<Utc>,
    ) -> Result<Webhook, String> {
        let url = match (f.url, base) {
            (Some(u), _) => check_url(&u)?.to_string(),
            (None, Some(b)) => b.url.clone(),
            (None, None) => return Err("url is required".into()),
        };
        let events = match f.events {
            Some(e) => check_events(e)?,
            None => base.map_or_else(|| vec!["*".to_string()], |b| b.events.clone()),
        };
        let method = match f.method.as_deref() {
            None => base.map_or(Method::Post, |b| b.method),
            Some(m) if m.eq_ignore_ascii_case("POST") => Method::Post,
            Some(m) if m.eq_ignore_ascii_case("PUT") => Method::Put,
            Some(_) => return Err("method must be POST or PUT".into()),
        };
        let headers = match f.headers {
            Some(h) => check_headers(h)?,
            None => base.map(|b| b.headers.clone()).unwrap_or_default(),
        };
        let (status, disabled_reason) = match f.status.as_deref() {
            None => base.map_or((WebhookStatus::Active, None), |b| {
                (b.status, b.disabled_reason.clone())
            }),
            Some("active") => (WebhookStatus::Active, None),
            Some("inactive") => (
                WebhookStatus::Inactive,
                base.and_then(|b| b.disabled_reason.clone()),
            ),
            Some(_) => return Err("status must be active or inactive".into()),
        };
        let payload_format = match f.payload_format.as_deref() {
            None => base.map_or(PayloadFormat::Trophy, |b| b.payload_format),
            Some("trophy") => PayloadFormat::Trophy,
            Some("envelope") => PayloadFormat::Envelope,
            Some(_) => return Err("payloadFormat must be trophy or envelope".into()),
        };
        for (what, v) in [("name", &f.name), ("description", &f.description)] {
            if v.as_ref()
                .and_then(Option::as_ref)
                .is_some_and(|s| s.len() > MAX_TEXT)
            {
                return Err(format!("{what} must be at most {MAX_TEXT} characters"));
            }
        }
        let text = |v: Option<Option<String>>, old: Option<&Option<String>>| match v {
            Some(v) => v.filter(|s| !s.trim().is_empty()),
            None => old.cloned().flatten(),
        };
        Ok(Webhook {
            id: base.map_or_else(Uuid::new_v4, |b| b.id),
            name: text(f.name, base.map(|b| &b.name)),
            description: text(f.description, base.map(|b| &b.description)),
            url,
            method,
            headers,
            events,
            status,
            disabled_reason,
            payload_format,
            secret: base.map_or_else(new_secret, |b| b.secret.clone()),
            previous_secret: base.and_then(|b| b.previous_secret.clone()),
            created: base.map_or(now, |b| b.created),
            updated: now,
            deleted: false,
            ord: base.map_or(0, |b| b.ord),
        })
    }

    pub fn create_webhooks(
        &mut self,
        items: Vec<Item<WebhookFields>>,
        now: DateTime<Utc>,
    ) -> WebhookChanges {
        let (changed, issues) = self.bulk_create(
            items,
            |cat, f| {
                let mut w = Self::build_webhook(f, None, now)?;
                w.ord = cat.take_ord();
                Ok(w)
            },
            |cat, w| cat.webhooks.push(w),
        );
        WebhookChanges { changed, issues }
    }

    pub fn update_webhooks(
        &mut self,
        items: Vec<Result<WebhookPatch, Issue>>,
        now: DateTime<Utc>,
    ) -> WebhookChanges {
        let (changed, issues) = bulk_update(
            &mut self.webhooks,
            items,
            |p| &p.id,
            "Webhook",
            |w, patch| {
                *w = Self::build_webhook(patch.fields, Some(w), now)?;
                Ok(())
            },
        );
        WebhookChanges { changed, issues }
    }

    pub fn delete_webhooks(&mut self, ids: &[String]) -> WebhookChanges {
        let (changed, issues) = bulk_delete(&mut self.webhooks, ids, "Webhook");
        WebhookChanges { changed, issues }
    }

    /// Sets endpoint `id` inactive because its receiver said so (a `410 Gone`), keeping its
    /// pending deliveries (SPEC §11.3.9).
    pub fn disable_webhook(
        &mut self,
        id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Option<Webhook> {
        let w = self
            .webhooks
            .iter_mut()
            .find(|w| w.id == id && !w.deleted && w.status == WebhookStatus::Active)?;
        w.status = WebhookStatus::Inactive;
        w.disabled_reason = Some(reason.to_string());
        w.updated = now;
        Some(w.clone())
    }

    /// Gives endpoint `id` a new secret; the old one still signs for 24 hours.
    pub fn rotate_webhook_secret(&mut self, id: Uuid, now: DateTime<Utc>) -> Option<Webhook> {
        let w = self
            .webhooks
            .iter_mut()
            .find(|w| w.id == id && !w.deleted)?;
        let old = std::mem::replace(&mut w.secret, new_secret());
        w.previous_secret = Some((old, now + Duration::hours(SECRET_OVERLAP_HOURS)));
        w.updated = now;
        Some(w.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(url: &str) -> Item<WebhookFields> {
        Ok(WebhookFields {
            url: Some(url.into()),
            ..Default::default()
        })
    }

    #[test]
    fn defaults_validation_and_rotation() {
        let mut cat = Catalog::default();
        let now = DateTime::<Utc>::MIN_UTC;
        let out = cat.create_webhooks(
            vec![
                item("https://hooks.example.com/kudos"),
                item("ftp://example.com/"),
                Ok(WebhookFields {
                    url: Some("https://example.com/".into()),
                    events: Some(vec!["streak.started".into(), "nope".into()]),
                    ..Default::default()
                }),
                Ok(WebhookFields {
                    url: Some("https://example.com/".into()),
                    headers: Some(
                        [
                            ("X-Signature-Alt".into(), "1".into()),
                            ("Host".into(), "x".into()),
                        ]
                        .into(),
                    ),
                    ..Default::default()
                }),
                Ok(WebhookFields::default()),
            ],
            now,
        );
        assert_eq!(out.changed.len(), 1);
        let w = &out.changed[0];
        assert_eq!(
            (w.method, w.status, w.payload_format),
            (Method::Post, WebhookStatus::Active, PayloadFormat::Trophy)
        );
        assert_eq!(w.events, vec!["*".to_string()]);
        assert!(w.secret.starts_with("whsec_"));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&w.secret["whsec_".len()..])
            .expect("base64");
        assert_eq!(raw.len(), 32);
        let messages: Vec<(Option<usize>, String)> = out
            .issues
            .iter()
            .map(|i| (i.index, i.message.clone()))
            .collect();
        assert_eq!(
            messages,
            vec![
                (Some(1), "URL must use http or https".to_string()),
                (Some(2), "Unknown event type: nope".to_string()),
                (Some(3), "Header Host is reserved".to_string()),
                (Some(4), "url is required".to_string()),
            ]
        );
        // Rotation keeps the old secret signing for 24 hours.
        let old = w.secret.clone();
        let rotated = cat.rotate_webhook_secret(w.id, now).expect("rotated");
        assert_ne!(rotated.secret, old);
        assert_eq!(
            rotated.signing_secrets(now),
            vec![rotated.secret.as_str(), old.as_str()]
        );
        assert_eq!(
            rotated.signing_secrets(now + Duration::hours(24)),
            vec![rotated.secret.as_str()]
        );
        assert!(rotated.wants("streak.lost"));
    }
}
