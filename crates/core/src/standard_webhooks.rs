//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256("{id}.{ts}.{body}")>`,
//! several space-separated signatures during a secret rotation.

use crate::secret::WebhookSecret;
use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header names of the Standard Webhooks specification.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Default tolerance for verification, in seconds (the specification's five minutes).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Signs one message with one secret: the `v1,<base64>` token.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = mac(secret.key(), msg_id, timestamp, body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Signs with every active secret (the new one first), space-separated, as the
/// specification allows so receivers holding either secret accept the message.
pub fn sign_all(secrets: &[&WebhookSecret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| sign(s, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing or malformed webhook headers")]
    Malformed,
    #[error("timestamp outside the tolerance window")]
    Timestamp,
    #[error("no matching signature")]
    NoMatch,
}

/// Verifies a Standard Webhooks message against any of `secrets`.
/// `now` is passed in so the function stays pure and testable.
pub fn verify(
    secrets: &[&WebhookSecret],
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    if msg_id.is_empty() || msg_id.len() > 256 {
        return Err(VerifyError::Malformed);
    }
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed)?;
    if (now - ts).abs() > tolerance_secs {
        return Err(VerifyError::Timestamp);
    }
    let mut any = false;
    for token in signature_header.split(' ').filter(|t| !t.is_empty()) {
        let Some(b64) = token.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = STANDARD.decode(b64) else {
            continue;
        };
        any = true;
        for secret in secrets {
            // verify_slice compares in constant time.
            if mac(secret.key(), msg_id, ts, body)
                .verify_slice(&given)
                .is_ok()
            {
                return Ok(());
            }
        }
    }
    if any {
        Err(VerifyError::NoMatch)
    } else {
        Err(VerifyError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> WebhookSecret {
        WebhookSecret::parse(s).expect("secret")
    }

    #[test]
    fn signs_published_vector() {
        let s = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = sign(
            &s,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verify_accepts_either_rotation_secret_and_rejects_tampering() {
        let old = WebhookSecret::generate();
        let new = WebhookSecret::generate();
        let body = br#"{"a":1}"#;
        let header = sign_all(&[&new, &old], "msg_1", 1000, body);
        assert_eq!(header.split(' ').count(), 2);
        assert_eq!(
            verify(&[&old], "msg_1", "1000", &header, body, 1000, 300),
            Ok(())
        );
        assert_eq!(
            verify(&[&new], "msg_1", "1000", &header, body, 1000, 300),
            Ok(())
        );
        let other = WebhookSecret::generate();
        assert_eq!(
            verify(&[&other], "msg_1", "1000", &header, body, 1000, 300),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&[&new], "msg_1", "1000", &header, b"{\"a\":2}", 1000, 300),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&[&new], "msg_2", "1000", &header, body, 1000, 300),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&[&new], "msg_1", "1000", &header, body, 1400, 300),
            Err(VerifyError::Timestamp)
        );
        assert_eq!(
            verify(&[&new], "msg_1", "x", &header, body, 1000, 300),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify(&[&new], "msg_1", "1000", "v2,abc", body, 1000, 300),
            Err(VerifyError::Malformed)
        );
    }
}
