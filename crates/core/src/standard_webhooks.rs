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

/// Is `timestamp` within `tolerance_secs` of `now`? Any timestamp the sender
/// chooses, however far out (even `i64::MIN`, found by fuzzing), is simply
/// outside: the distance is computed without overflow.
pub(crate) fn within(timestamp: i64, now: i64, tolerance_secs: i64) -> bool {
    now.checked_sub(timestamp)
        .and_then(i64::checked_abs)
        .is_some_and(|distance| distance <= tolerance_secs)
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
    if !within(ts, now, tolerance_secs) {
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
    fn timestamps_at_the_ends_of_i64_are_stale_not_a_panic() {
        // Found by the `signatures` fuzz target: `now - i64::MIN` overflowed.
        let s = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX] {
            assert!(!within(ts, 1_700_000_000, 300), "{ts}");
            let header = sign(&s, "msg_1", ts, b"{}");
            assert_eq!(
                verify(
                    &[&s],
                    "msg_1",
                    &ts.to_string(),
                    &header,
                    b"{}",
                    1_700_000_000,
                    300
                ),
                Err(VerifyError::Timestamp)
            );
        }
        assert!(within(1_700_000_300, 1_700_000_000, 300));
        assert!(!within(1_700_000_301, 1_700_000_000, 300));
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
