//! Generic HMAC-SHA256 over the raw body (the seed's `acme`): hex or base64 in
//! a configured header, after an optional prefix such as `sha256=`.

use super::{
    bounded_header, macs_once, matching_secret, Encoding, Headers, InboundError, Verified,
};
use base64::{engine::general_purpose::STANDARD, Engine};

pub(super) fn verify(
    header: &str,
    encoding: Encoding,
    prefix: &str,
    secrets: &[&[u8]],
    headers: &(impl Headers + ?Sized),
    body: &[u8],
) -> Result<Verified, InboundError> {
    let value = bounded_header(headers, header, "signature")?;
    let encoded = value.strip_prefix(prefix).ok_or(InboundError::Malformed)?;
    let given = match encoding {
        Encoding::Hex => {
            hex::decode(encoded.to_ascii_lowercase()).map_err(|_| InboundError::Malformed)?
        }
        Encoding::Base64 => STANDARD
            .decode(encoded)
            .map_err(|_| InboundError::Malformed)?,
    };
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

    fn acme() -> Scheme {
        Scheme::HmacSha256 {
            header: "x-acme-signature".into(),
            encoding: Encoding::Hex,
            prefix: String::new(),
        }
    }

    fn sign_hex(secret: &[u8], body: &[u8]) -> String {
        hex::encode(hmac_sha256(secret, &[body]).finalize().into_bytes())
    }

    #[test]
    fn acme_signature_over_raw_body() {
        let body = br#"{"event":"order.created","id":"A-1"}"#;
        let sig = sign_hex(b"acme-secret", body);
        let h = [("X-Acme-Signature", sig.as_str())];
        assert!(verify_any(&acme(), &[b"acme-secret"], &h[..], body, 0, 300).is_ok());
        assert_eq!(
            verify_any(&acme(), &[b"wrong"], &h[..], body, 0, 300),
            Err(InboundError::Mismatch)
        );
        let reserialized = br#"{"event": "order.created", "id": "A-1"}"#;
        assert_eq!(
            verify_any(&acme(), &[b"acme-secret"], &h[..], reserialized, 0, 300),
            Err(InboundError::Mismatch)
        );
        let mut flipped = body.to_vec();
        flipped[5] ^= 1;
        assert_eq!(
            verify_any(&acme(), &[b"acme-secret"], &h[..], &flipped, 0, 300),
            Err(InboundError::Mismatch)
        );
        assert_eq!(
            verify_any(&acme(), &[b"acme-secret"], &[][..], body, 0, 300),
            Err(InboundError::MissingHeader("signature"))
        );
        let bad = [("x-acme-signature", "zz-not-hex")];
        assert_eq!(
            verify_any(&acme(), &[b"acme-secret"], &bad[..], body, 0, 300),
            Err(InboundError::Malformed)
        );
        // Either active secret verifies (rotation).
        assert!(verify_any(&acme(), &[b"new", b"acme-secret"], &h[..], body, 0, 300).is_ok());
    }

    #[test]
    fn prefix_and_base64() {
        let scheme = Scheme::HmacSha256 {
            header: "x-sig".into(),
            encoding: Encoding::Base64,
            prefix: "sha256=".into(),
        };
        let body = b"{}";
        let sig = format!(
            "sha256={}",
            STANDARD.encode(hmac_sha256(b"k", &[body]).finalize().into_bytes())
        );
        assert!(verify_any(
            &scheme,
            &[b"k"],
            &[("x-sig", sig.as_str())][..],
            body,
            0,
            300
        )
        .is_ok());
        let no_prefix = sig.trim_start_matches("sha256=").to_owned();
        assert_eq!(
            verify_any(
                &scheme,
                &[b"k"],
                &[("x-sig", no_prefix.as_str())][..],
                body,
                0,
                300
            ),
            Err(InboundError::Malformed)
        );
    }
}
