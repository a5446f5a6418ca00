//! Webhook delivery (SPEC §8.1, §11.3).
//! - [`dispatch`]: the durable outbox (the `WEBHOOKS` effect consumer) and the sender with
//!   its retries;
//! - [`throttled`]: the 15-minute windows of `points.changed`, `leaderboard.changed` and
//!   `leaderboard.rank_changed` (SPEC §8.2);
//! - [`sign`]: `X-Trophy-Signature` and the Standard Webhooks signature;
//! - [`payloads`]: the §8.3 payloads and the examples of test sends;
//! - [`send`]: one attempt over reqwest (timeout, no redirects, the SSRF guard on the
//!   address actually dialled) and its record.

pub mod dispatch;
pub mod payloads;
pub mod send;
pub mod sign;
pub mod throttled;
