//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256("{id}.{ts}.{body}")>`,
//! several space-separated signatures during a secret rotation.

use crate::inbound::{
    hmac_sha256, macs_once, matching_secret, MAX_SIGNATURE_CANDIDATES, MAX_SIGNATURE_HEADER_BYTES,
    MAX_WEBHOOK_ID_BYTES,
};
use crate::secret::WebhookSecret;
use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::Mac;

/// Header names of the Standard Webhooks specification.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Default tolerance for verification, in seconds (the specification's five minutes).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Signs one message with one key: the `v1,<base64>` token of a secret, the
/// `v1a,<base64>` Ed25519 signature of an asymmetric key.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    if let Some(pair) = secret.key_pair() {
        let signed = signed_parts(msg_id, &ts, body).concat();
        return format!("v1a,{}", STANDARD.encode(pair.sign(&signed).as_ref()));
    }
    let mac = hmac_sha256(secret.key(), &signed_parts(msg_id, &ts, body));
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

/// What is signed: `{id}.{timestamp}.{body}`.
fn signed_parts<'a>(msg_id: &'a str, timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body]
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
/// `now` is passed in so the function stays pure and testable. The sender
/// controls the headers, so their size is bounded before any work: an id of
/// at most [`MAX_WEBHOOK_ID_BYTES`], a signature header of at most
/// [`MAX_SIGNATURE_HEADER_BYTES`] with at most [`MAX_SIGNATURE_CANDIDATES`]
/// tokens; and the MAC is computed once per secret, not once per token.
pub fn verify(
    secrets: &[&WebhookSecret],
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    verify_which(
        secrets,
        msg_id,
        timestamp,
        signature_header,
        body,
        now,
        tolerance_secs,
    )
    .map(|_| ())
}

/// [`verify`], saying which of `secrets` (its index) matched.
pub fn verify_which(
    secrets: &[&WebhookSecret],
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<usize, VerifyError> {
    if msg_id.is_empty()
        || msg_id.len() > MAX_WEBHOOK_ID_BYTES
        || timestamp.len() > MAX_SIGNATURE_HEADER_BYTES
        || signature_header.len() > MAX_SIGNATURE_HEADER_BYTES
    {
        return Err(VerifyError::Malformed);
    }
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed)?;
    if !within(ts, now, tolerance_secs) {
        return Err(VerifyError::Timestamp);
    }
    let mut candidates = Vec::new();
    for (n, token) in signature_header
        .split(' ')
        .filter(|t| !t.is_empty())
        .enumerate()
    {
        // Every token counts, whatever its version: the cap bounds the parsing too.
        if n >= MAX_SIGNATURE_CANDIDATES {
            return Err(VerifyError::Malformed);
        }
        if let Some(given) = token
            .strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
        {
            candidates.push(given);
        }
    }
    if candidates.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let keys: Vec<&[u8]> = secrets.iter().map(|s| s.key()).collect();
    let ts_text = ts.to_string();
    let macs = macs_once(&keys, &signed_parts(msg_id, &ts_text, body));
    matching_secret(&macs, &candidates).ok_or(VerifyError::NoMatch)
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
