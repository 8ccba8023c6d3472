//! A shared token in a header (the seed's `globex`), compared in constant time.

use super::{Headers, InboundError, Verified, MAX_ACTIVE_SECRETS, MAX_SIGNATURE_HEADER_BYTES};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

pub(super) fn verify(
    header: &str,
    secrets: &[&[u8]],
    headers: &(impl Headers + ?Sized),
) -> Result<Verified, InboundError> {
    let given = headers
        .header(header)
        .filter(|v| !v.is_empty())
        .ok_or(InboundError::MissingHeader("token"))?;
    if given.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(InboundError::Malformed);
    }
    // Comparing digests keeps the comparison constant-time even across lengths;
    // every secret is compared, with no early exit.
    let given = Sha256::digest(given.as_bytes());
    let mut found = subtle::Choice::from(0);
    let mut index = 0u64;
    for (i, s) in secrets.iter().take(MAX_ACTIVE_SECRETS).enumerate() {
        let this = Sha256::digest(s).ct_eq(&given);
        index = u64::conditional_select(&index, &(i as u64), this & !found);
        found |= this;
    }
    if bool::from(found) {
        Ok(Verified {
            secret_index: Some(index as usize),
            ..Verified::default()
        })
    } else {
        Err(InboundError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{verify as verify_any, Scheme};
    use super::*;

    #[test]
    fn globex_token() {
        let scheme = Scheme::Token {
            header: "x-globex-token".into(),
        };
        let ok = [("X-Globex-Token", "tok_123")];
        assert!(verify_any(&scheme, &[b"tok_123"], &ok[..], b"{}", 0, 300).is_ok());
        let wrong = [("x-globex-token", "tok_124")];
        assert_eq!(
            verify_any(&scheme, &[b"tok_123"], &wrong[..], b"{}", 0, 300),
            Err(InboundError::Mismatch)
        );
        let prefix = [("x-globex-token", "tok_12")];
        assert_eq!(
            verify_any(&scheme, &[b"tok_123"], &prefix[..], b"{}", 0, 300),
            Err(InboundError::Mismatch)
        );
        assert_eq!(
            verify_any(&scheme, &[b"tok_123"], &[][..], b"{}", 0, 300),
            Err(InboundError::MissingHeader("token"))
        );
    }
}
