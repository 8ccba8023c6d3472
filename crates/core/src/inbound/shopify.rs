//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(body)>`; the delivery
//! id is `X-Shopify-Webhook-Id`.

use super::{macs_once, matching_secret, required, Headers, InboundError, Verified};
use base64::{engine::general_purpose::STANDARD, Engine};

pub(super) fn verify(
    secrets: &[&[u8]],
    headers: &(impl Headers + ?Sized),
    body: &[u8],
) -> Result<Verified, InboundError> {
    let value = required(headers, "x-shopify-hmac-sha256")?;
    let given = STANDARD
        .decode(value)
        .map_err(|_| InboundError::Malformed)?;
    match matching_secret(&macs_once(secrets, &[body]), &[given]) {
        Some(i) => Ok(Verified {
            secret_index: Some(i),
            ..Verified::default()
        }),
        None => Err(InboundError::Mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{hmac_sha256, verify as verify_any, Scheme};
    use super::*;
    use hmac::Mac;

    #[test]
    fn shopify_base64_of_body_hmac() {
        let body = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
        let sig = STANDARD.encode(
            hmac_sha256(b"shpss_secret", &[body])
                .finalize()
                .into_bytes(),
        );
        let h = [("X-Shopify-Hmac-Sha256", sig.as_str())];
        assert!(verify_any(&Scheme::Shopify, &[b"shpss_secret"], &h[..], body, 0, 300).is_ok());
        assert_eq!(
            verify_any(&Scheme::Shopify, &[b"other"], &h[..], body, 0, 300),
            Err(InboundError::Mismatch)
        );
        // A GitHub-style signature for the same body is not a Shopify signature.
        let hexsig = hex::encode(
            hmac_sha256(b"shpss_secret", &[body])
                .finalize()
                .into_bytes(),
        );
        assert!(verify_any(
            &Scheme::Shopify,
            &[b"shpss_secret"],
            &[("x-shopify-hmac-sha256", hexsig.as_str())][..],
            body,
            0,
            300
        )
        .is_err());
    }
}
