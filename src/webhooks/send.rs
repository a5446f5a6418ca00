//! One delivery attempt: the request of SPEC §11.3.6 over reqwest, and what came of it.
//! Redirects are not followed (a 3xx is a failure, SPEC §8.1.3). With the SSRF guard on,
//! the name is resolved by a resolver that refuses non-public addresses, so the address
//! actually dialled is the one checked (a name that starts resolving to a private address
//! later is still refused); literal addresses are checked before sending.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kudos_actors::catalog::webhooks::Method;
use kudos_actors::rules::ssrf::is_public;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::sign::{standard_signature, trophy_signature};

/// How much of a response body an attempt keeps (SPEC §11.3.8).
pub const RESPONSE_EXCERPT: usize = 1024;

/// The `User-Agent` of every delivery.
pub fn user_agent() -> String {
    format!("Kudos-Webhooks/{}", env!("CARGO_PKG_VERSION"))
}

/// What to send.
pub struct Delivery<'a> {
    /// The endpoint (whose connection pool the attempt uses).
    pub endpoint: uuid::Uuid,
    pub url: &'a str,
    pub method: Method,
    pub headers: &'a BTreeMap<String, String>,
    /// Current secret first, then the previous one during a rotation's overlap.
    pub secrets: Vec<&'a str>,
    /// `webhook-id` and `X-Trophy-Event-Id`: the same on every retry and resend.
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub body: &'a [u8],
}

/// What one attempt did.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The first [`RESPONSE_EXCERPT`] bytes of the response body.
    pub response_body: String,
    /// `Retry-After` on a 429 or 503, in seconds.
    pub retry_after: Option<u64>,
    /// The receiver answered `webhook-delivery: abort-message`.
    pub abort: bool,
}

impl Attempt {
    /// Any 2xx (SPEC §8.1.3).
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// Resolves names, refusing any that resolves to a non-public address.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} does not resolve").into());
            }
            if addrs.iter().any(|a| !is_public(a.ip())) {
                return Err(format!("{host} resolves to a private address").into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Sends deliveries (cheap to clone). Each endpoint has an HTTP client, and so a
/// connection pool, of its own: requests hanging on one endpoint's connections never wait
/// in the same pool as another endpoint's, even on the same host.
#[derive(Clone)]
pub struct Sender {
    clients: Arc<std::sync::Mutex<std::collections::HashMap<uuid::Uuid, reqwest::Client>>>,
    timeout: Duration,
    allow_private: bool,
}

impl Sender {
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, reqwest::Error> {
        let sender = Self {
            clients: Default::default(),
            timeout,
            allow_private,
        };
        // Fail at start, not at the first delivery, if no client can be built.
        sender.build_client()?;
        Ok(sender)
    }

    fn build_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        // No proxy from the environment: a proxy would resolve the target itself, out of
        // the guard's sight.
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(user_agent());
        if !self.allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        builder.build()
    }

    /// The client of `endpoint` (made on its first delivery).
    fn client(&self, endpoint: uuid::Uuid) -> Result<reqwest::Client, reqwest::Error> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&endpoint) {
            return Ok(c.clone());
        }
        let c = self.build_client()?;
        clients.insert(endpoint, c.clone());
        Ok(c)
    }

    /// Forgets the clients of endpoints not in `keep` (deleted ones), closing their idle
    /// connections.
    pub fn retain(&self, keep: impl Fn(&uuid::Uuid) -> bool) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| keep(id));
    }

    /// The signed headers of an attempt, then the endpoint's own. `wall`: the wall clock,
    /// even under the test clock (SPEC §11.2.1), so receivers' verifiers, which refuse
    /// timestamps far from their own clock, accept it.
    pub fn headers(d: &Delivery<'_>, wall: DateTime<Utc>) -> Result<HeaderMap, String> {
        let timestamp = wall.timestamp();
        let mut h = HeaderMap::new();
        let mut put = |name: &str, value: String| -> Result<(), String> {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name {name}"))?;
            let value =
                HeaderValue::from_str(&value).map_err(|_| format!("invalid value for {name}"))?;
            h.insert(name, value);
            Ok(())
        };
        put("content-type", "application/json".into())?;
        let current = d.secrets.first().copied().unwrap_or_default();
        put("x-trophy-signature", trophy_signature(current, d.body))?;
        put("x-trophy-event-id", d.event_id.to_string())?;
        put("x-trophy-event-type", d.event_type.to_string())?;
        put("webhook-id", d.event_id.to_string())?;
        put("webhook-timestamp", timestamp.to_string())?;
        put(
            "webhook-signature",
            standard_signature(&d.secrets, d.event_id, timestamp, d.body),
        )?;
        for (name, value) in d.headers {
            put(name, value.clone())?;
        }
        Ok(h)
    }

    /// One attempt, recorded at `now` (the Clock's time); its duration is measured for real
    /// and `webhook-timestamp` is the wall clock.
    pub async fn attempt(&self, d: &Delivery<'_>, now: DateTime<Utc>) -> Attempt {
        let started = Instant::now();
        let failed = |error: String| Attempt {
            at: now,
            status_code: None,
            error: Some(error),
            duration_ms: 0,
            response_body: String::new(),
            retry_after: None,
            abort: false,
        };
        let url = match reqwest::Url::parse(d.url) {
            Ok(u) => u,
            Err(e) => return failed(format!("invalid URL: {e}")),
        };
        if !self.allow_private {
            let literal: Option<IpAddr> = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if literal.is_some_and(|ip| !is_public(ip)) {
                return failed("URL resolves to a private address".into());
            }
        }
        let headers = match Self::headers(d, kudos_actors::clock::wall_clock_now()) {
            Ok(h) => h,
            Err(e) => return failed(e),
        };
        let method = match d.method {
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        let client = match self.client(d.endpoint) {
            Ok(c) => c,
            Err(e) => return failed(format!("no HTTP client: {e}")),
        };
        let sent = client
            .request(method, url)
            .headers(headers)
            .body(d.body.to_vec())
            .send()
            .await;
        let elapsed = |s: Instant| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX);
        match sent {
            Err(e) => Attempt {
                duration_ms: elapsed(started),
                ..failed(describe(&e))
            },
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = matches!(status, 429 | 503)
                    .then(|| resp.headers().get("retry-after"))
                    .flatten()
                    .and_then(|v| v.to_str().ok())
                    .and_then(retry_after_secs);
                let abort = resp
                    .headers()
                    .get("webhook-delivery")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.eq_ignore_ascii_case("abort-message"));
                // Only the excerpt is read: a receiver streaming a huge body is cut off.
                let mut resp = resp;
                let mut body: Vec<u8> = Vec::new();
                while body.len() < RESPONSE_EXCERPT {
                    match resp.chunk().await {
                        Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                        Ok(None) | Err(_) => break,
                    }
                }
                let cut = body.len().min(RESPONSE_EXCERPT);
                Attempt {
                    at: now,
                    status_code: Some(status),
                    error: (!(200..300).contains(&status)).then(|| format!("HTTP {status}")),
                    duration_ms: elapsed(started),
                    response_body: String::from_utf8_lossy(&body[..cut]).into_owned(),
                    retry_after,
                    abort,
                }
            }
        }
    }
}

/// `Retry-After` in seconds: a number of seconds, or an HTTP date (counted from the wall
/// clock, the receiver's frame).
fn retry_after_secs(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(secs);
    }
    let at = DateTime::parse_from_rfc2822(raw).ok()?.with_timezone(&Utc);
    let secs = (at - kudos_actors::clock::wall_clock_now()).num_seconds();
    Some(u64::try_from(secs).unwrap_or(0))
}

/// An error's chain, one line ("error sending request: ...: connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(retry_after_secs(" 120 "), Some(120));
        let later = kudos_actors::clock::wall_clock_now() + chrono::Duration::seconds(300);
        let http_date = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let got = retry_after_secs(&http_date).expect("date");
        assert!((298..=300).contains(&got), "{got}");
        assert_eq!(
            retry_after_secs("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(0),
            "in the past"
        );
        assert_eq!(retry_after_secs("soon"), None);
    }
}
