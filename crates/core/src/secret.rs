//! Standard Webhooks symmetric secrets (`whsec_<base64>`): parsing, generation
//! and a `Debug` that never shows the key.

use base64::{engine::general_purpose::STANDARD, Engine};
use rand::RngCore;
use zeroize::Zeroizing;

/// Prefix of Standard Webhooks symmetric secrets.
pub const PREFIX: &str = "whsec_";
/// Key sizes accepted from users, as the Standard Webhooks specification asks
/// (24 to 64 bytes of key material).
const MIN_KEY: usize = 24;
const MAX_KEY: usize = 64;
/// Size of the keys we generate.
const GENERATED_KEY: usize = 32;

/// A signing secret. The key bytes are zeroed on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Zeroizing<Vec<u8>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secret must start with \"whsec_\"")]
    MissingPrefix,
    #[error("secret is not valid base64 after \"whsec_\"")]
    NotBase64,
    #[error("secret key must be between 24 and 64 bytes")]
    BadLength,
}

impl WebhookSecret {
    /// Generates a new random secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new(vec![0u8; GENERATED_KEY]);
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self { key }
    }

    /// Parses a `whsec_…` string. Error messages never echo the input.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let b64 = text
            .strip_prefix(PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = Zeroizing::new(STANDARD.decode(b64).map_err(|_| SecretError::NotBase64)?);
        if !(MIN_KEY..=MAX_KEY).contains(&key.len()) {
            return Err(SecretError::BadLength);
        }
        Ok(Self { key })
    }

    /// Parses a secret from stored plaintext bytes (as decrypted from the store).
    pub fn from_stored(bytes: &[u8]) -> Result<Self, SecretError> {
        let text = std::str::from_utf8(bytes).map_err(|_| SecretError::NotBase64)?;
        Self::parse(text)
    }

    /// The HMAC key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The `whsec_…` form: shown to the customer once, and the stored plaintext
    /// (which is then encrypted).
    pub fn expose(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{PREFIX}{}", STANDARD.encode(&*self.key)))
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_round_trips() {
        let s = WebhookSecret::generate();
        let again = WebhookSecret::parse(&s.expose()).expect("parse");
        assert_eq!(s, again);
        assert_eq!(s.key().len(), 32);
    }

    #[test]
    fn rejects_bad_secrets_without_echoing_them() {
        assert_eq!(WebhookSecret::parse("abc"), Err(SecretError::MissingPrefix));
        assert_eq!(
            WebhookSecret::parse("whsec_!!!"),
            Err(SecretError::NotBase64)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_c2hvcnQ="),
            Err(SecretError::BadLength)
        );
        let err = WebhookSecret::parse("whsec_SUPERSECRETVALUE").expect_err("bad");
        assert!(!err.to_string().contains("SUPERSECRET"));
    }

    #[test]
    fn debug_is_redacted() {
        let s = WebhookSecret::generate();
        let shown = format!("{s:?}");
        assert!(!shown.contains(&s.expose()[6..]));
    }
}
