//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256("{t}.{body}")>[,v1=…]`,
//! the key being the endpoint secret string (`whsec_…`) as bytes.

use super::{
    bounded_candidates, fresh, macs_once, matching_secret, required, Headers, InboundError,
    Verified,
};

pub(super) fn verify(
    secrets: &[&[u8]],
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<Verified, InboundError> {
    let header = required(headers, "stripe-signature")?;
    let mut timestamp = None;
    let mut signatures = 0;
    let mut candidates = Vec::new();
    for item in header.split(',') {
        let (k, v) = item.trim().split_once('=').ok_or(InboundError::Malformed)?;
        if k == "t" {
            timestamp = Some(v.parse::<i64>().map_err(|_| InboundError::Malformed)?);
            continue;
        }
        // Every other entry is a signature (v0 and future schemes are ignored, as
        // Stripe advises), and all of them count towards the cap.
        signatures += 1;
        bounded_candidates(signatures)?;
        if k == "v1" {
            candidates.push(hex::decode(v).map_err(|_| InboundError::Malformed)?);
        }
    }
    let t = timestamp.ok_or(InboundError::Malformed)?;
    if candidates.is_empty() {
        return Err(InboundError::Malformed);
    }
    let t_text = t.to_string();
    let parts: [&[u8]; 3] = [t_text.as_bytes(), b".", body];
    let Some(index) = matching_secret(&macs_once(secrets, &parts), &candidates) else {
        return Err(InboundError::Mismatch);
    };
    // Checked after the signature so that a forged timestamp cannot probe the window.
    fresh(t, now, tolerance)?;
    Ok(Verified {
        timestamp: Some(t),
        secret_index: Some(index),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{hmac_sha256, verify as verify_any, Scheme};
    use super::*;
    use hmac::Mac;

    fn stripe_header(secret: &str, t: i64, body: &[u8]) -> String {
        let mac = hmac_sha256(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body]);
        format!(
            "t={t},v1={},v0=ignored",
            hex::encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn stripe_documented_construction() {
        let secret = "whsec_test_secret";
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let h = stripe_header(secret, 1_700_000_000, body);
        let headers = [("Stripe-Signature", h.as_str())];
        let s = [secret.as_bytes()];
        assert!(verify_any(&Scheme::Stripe, &s, &headers[..], body, 1_700_000_100, 300).is_ok());
        assert_eq!(
            verify_any(&Scheme::Stripe, &s, &headers[..], body, 1_700_000_400, 300),
            Err(InboundError::Stale)
        );
        assert_eq!(
            verify_any(&Scheme::Stripe, &s, &headers[..], body, 1_699_999_600, 300),
            Err(InboundError::Stale)
        );
        assert_eq!(
            verify_any(
                &Scheme::Stripe,
                &[b"whsec_other"],
                &headers[..],
                body,
                1_700_000_000,
                300
            ),
            Err(InboundError::Mismatch)
        );
        // The timestamp is signed: moving it forward breaks the signature.
        let moved = h.replace("t=1700000000", "t=1700000300");
        assert_eq!(
            verify_any(
                &Scheme::Stripe,
                &s,
                &[("stripe-signature", moved.as_str())][..],
                body,
                1_700_000_300,
                300
            ),
            Err(InboundError::Mismatch)
        );
        assert_eq!(
            verify_any(
                &Scheme::Stripe,
                &s,
                &[("stripe-signature", "garbage")][..],
                body,
                0,
                300
            ),
            Err(InboundError::Malformed)
        );
        assert_eq!(
            verify_any(
                &Scheme::Stripe,
                &s,
                &[("stripe-signature", "t=1")][..],
                body,
                0,
                300
            ),
            Err(InboundError::Malformed)
        );
    }
}
