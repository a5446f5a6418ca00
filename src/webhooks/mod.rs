//! Webhook delivery (SPEC §8.1, §11.3): how one request to an endpoint is signed and sent.
//! - [`sign`]: `X-Trophy-Signature` and the Standard Webhooks signature;
//! - [`payloads`]: the §8.3 payloads and the examples of test sends;
//! - [`send`]: one attempt over reqwest (timeout, no redirects, the SSRF guard on the
//!   address actually dialled) and its record.

pub mod payloads;
pub mod send;
pub mod sign;
