//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body)>`; the delivery
//! id is `X-GitHub-Delivery`. GitHub signs no timestamp: replays are stopped
//! by deduplication on the delivery id.

use super::{macs_once, matching_secret, required, Headers, InboundError, Verified};

pub(super) fn verify(
    secrets: &[&[u8]],
    headers: &(impl Headers + ?Sized),
    body: &[u8],
) -> Result<Verified, InboundError> {
    let value = required(headers, "x-hub-signature-256")?;
    let hex_sig = value
        .strip_prefix("sha256=")
        .ok_or(InboundError::Malformed)?;
    let given = hex::decode(hex_sig).map_err(|_| InboundError::Malformed)?;
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
    use super::super::{verify as verify_any, Scheme};
    use super::*;

    #[test]
    fn github_documented_example() {
        // GitHub's documentation: secret "It's a Secret to Everybody", payload
        // "Hello, World!" gives this signature.
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = [("X-Hub-Signature-256", sig)];
        let s: [&[u8]; 1] = [b"It's a Secret to Everybody"];
        assert!(verify_any(&Scheme::Github, &s, &h[..], b"Hello, World!", 0, 300).is_ok());
        assert_eq!(
            verify_any(&Scheme::Github, &s, &h[..], b"Hello, World?", 0, 300),
            Err(InboundError::Mismatch)
        );
        let sha1 = [("x-hub-signature-256", "sha1=abc")];
        assert_eq!(
            verify_any(&Scheme::Github, &s, &sha1[..], b"x", 0, 300),
            Err(InboundError::Malformed)
        );
    }
}
