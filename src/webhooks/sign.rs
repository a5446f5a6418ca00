//! Webhook signatures, over the exact bytes sent.
//! - `X-Trophy-Signature` (SPEC §8.1.2): base64 of HMAC-SHA256 keyed with the endpoint
//!   secret's UTF-8 bytes (the whole `whsec_…` string), over the raw body.
//! - `webhook-signature` (Standard Webhooks, SPEC §11.3.6): `v1,` + base64 of HMAC-SHA256
//!   keyed with the base64-decoded part of the secret after `whsec_`, over
//!   `{webhook-id}.{webhook-timestamp}.{body}`; one entry per signing secret, space
//!   separated (both secrets during a rotation's overlap).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    for p in parts {
        mac.update(p);
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// `X-Trophy-Signature` for `body`.
pub fn trophy_signature(secret: &str, body: &[u8]) -> String {
    hmac(secret.as_bytes(), &[body])
}

/// The Standard Webhooks key of a `whsec_` secret (its base64 part, decoded).
fn standard_key(secret: &str) -> Vec<u8> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD
        .decode(b64)
        .unwrap_or_else(|_| b64.as_bytes().to_vec())
}

/// `webhook-signature` for message `id` at unix second `timestamp`.
pub fn standard_signature(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    secrets
        .iter()
        .map(|s| {
            let sig = hmac(
                &standard_key(s),
                &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
            );
            format!("v1,{sig}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // The test vector of the Standard Webhooks reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(&[secret], id, 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn two_secrets_sign_side_by_side_and_trophy_uses_the_utf8_secret() {
        let both = standard_signature(&["whsec_AAAA", "whsec_BBBB"], "id", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            standard_signature(&["whsec_AAAA"], "id", 1, b"{}")
        );
        assert_ne!(
            trophy_signature("whsec_AAAA", b"{}"),
            hmac(&standard_key("whsec_AAAA"), &[b"{}"])
        );
    }
}
