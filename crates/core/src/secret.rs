//! Standard Webhooks signing keys: symmetric secrets (`whsec_<base64>`,
//! signatures `v1,` HMAC-SHA256) and Ed25519 private keys (`whsk_<base64 of
//! the 32-byte seed>`, signatures `v1a,`, verified with the public key
//! `whpk_<base64>`): parsing, generation and a `Debug` that never shows
//! the key.

use base64::{engine::general_purpose::STANDARD, Engine};
use rand::RngCore;
use zeroize::Zeroizing;

/// Prefix of Standard Webhooks symmetric secrets.
pub const PREFIX: &str = "whsec_";
/// Prefix of Standard Webhooks Ed25519 private keys.
pub const PRIVATE_PREFIX: &str = "whsk_";
/// Prefix of Standard Webhooks Ed25519 public keys.
pub const PUBLIC_PREFIX: &str = "whpk_";
/// An Ed25519 seed's size.
const SEED: usize = 32;
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
    /// An Ed25519 seed (`v1a`), not an HMAC key (`v1`).
    asymmetric: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secret must start with \"whsec_\"")]
    MissingPrefix,
    #[error("secret is not valid base64 after \"whsec_\"")]
    NotBase64,
    #[error("secret key must be between 24 and 64 bytes")]
    BadLength,
    #[error("an Ed25519 key (\"whsk_\") is the base64 of a 32-byte seed, or of the seed and its public key (64 bytes)")]
    BadPrivateKey,
}

impl WebhookSecret {
    /// Generates a new random secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new(vec![0u8; GENERATED_KEY]);
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self {
            key,
            asymmetric: false,
        }
    }

    /// Generates a new Ed25519 key (`v1a`) from the operating system's CSPRNG.
    pub fn generate_ed25519() -> Self {
        let mut key = Zeroizing::new(vec![0u8; SEED]);
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self {
            key,
            asymmetric: true,
        }
    }

    /// Parses a webhook's signing key: a `whsec_…` secret or a `whsk_…`
    /// Ed25519 key. Error messages never echo the input.
    pub fn parse_key(text: &str) -> Result<Self, SecretError> {
        match text.strip_prefix(PRIVATE_PREFIX) {
            Some(b64) => Self::parse_private(b64),
            None => Self::parse(text),
        }
    }

    /// A webhook's signing key from stored plaintext bytes.
    pub fn from_stored_key(bytes: &[u8]) -> Result<Self, SecretError> {
        let text = std::str::from_utf8(bytes).map_err(|_| SecretError::NotBase64)?;
        Self::parse_key(text)
    }

    /// Parses a `whsec_…` secret (symmetric only: what inbound schemes and
    /// the CLI take). Error messages never echo the input.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let b64 = text
            .strip_prefix(PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = Zeroizing::new(STANDARD.decode(b64).map_err(|_| SecretError::NotBase64)?);
        if !(MIN_KEY..=MAX_KEY).contains(&key.len()) {
            return Err(SecretError::BadLength);
        }
        Ok(Self {
            key,
            asymmetric: false,
        })
    }

    /// The seed alone, or the seed and the public key it must derive.
    fn parse_private(b64: &str) -> Result<Self, SecretError> {
        let bytes = Zeroizing::new(STANDARD.decode(b64).map_err(|_| SecretError::NotBase64)?);
        let seed = match bytes.len() {
            SEED => Zeroizing::new(bytes.to_vec()),
            64 => Zeroizing::new(bytes[..SEED].to_vec()),
            _ => return Err(SecretError::BadPrivateKey),
        };
        let key = Self {
            key: seed,
            asymmetric: true,
        };
        if bytes.len() == 64 && key.public_bytes().as_deref() != Some(&bytes[SEED..]) {
            return Err(SecretError::BadPrivateKey);
        }
        Ok(key)
    }

    /// Whether this key signs `v1a` (Ed25519) rather than `v1` (HMAC).
    pub fn is_asymmetric(&self) -> bool {
        self.asymmetric
    }

    /// The Ed25519 key pair of an asymmetric key.
    pub(crate) fn key_pair(&self) -> Option<ring::signature::Ed25519KeyPair> {
        if !self.asymmetric {
            return None;
        }
        ring::signature::Ed25519KeyPair::from_seed_unchecked(&self.key).ok()
    }

    fn public_bytes(&self) -> Option<Vec<u8>> {
        use ring::signature::KeyPair;
        self.key_pair().map(|k| k.public_key().as_ref().to_vec())
    }

    /// The `whpk_…` public key of an asymmetric key: what receivers verify
    /// `v1a` signatures with. `None` for a symmetric secret.
    pub fn public_key(&self) -> Option<String> {
        self.public_bytes()
            .map(|p| format!("{PUBLIC_PREFIX}{}", STANDARD.encode(p)))
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

    /// The `whsec_…` (or `whsk_…`) form: the stored plaintext (which is then
    /// encrypted), and for a symmetric secret what its customer is shown.
    pub fn expose(&self) -> Zeroizing<String> {
        let prefix = if self.asymmetric {
            PRIVATE_PREFIX
        } else {
            PREFIX
        };
        Zeroizing::new(format!("{prefix}{}", STANDARD.encode(&*self.key)))
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
    fn an_ed25519_key_round_trips_and_shows_its_public_key() {
        let k = WebhookSecret::generate_ed25519();
        assert!(k.is_asymmetric());
        let again = WebhookSecret::parse_key(&k.expose()).expect("parse");
        assert_eq!(k, again);
        assert_eq!(
            WebhookSecret::parse(&k.expose()),
            Err(SecretError::MissingPrefix),
            "never where a shared secret is expected"
        );
        assert!(k.public_key().expect("public").starts_with("whpk_"));
        assert_eq!(WebhookSecret::generate().public_key(), None);
        assert_eq!(
            WebhookSecret::parse_key("whsk_c2hvcnQ="),
            Err(SecretError::BadPrivateKey)
        );
        // Seed and public key together must belong together.
        let seed = STANDARD.decode(&k.expose()[5..]).expect("b64");
        let other = WebhookSecret::generate_ed25519();
        let other_public = STANDARD
            .decode(&other.public_key().expect("ok")[5..])
            .expect("ok");
        let mixed = [seed.as_slice(), other_public.as_slice()].concat();
        assert_eq!(
            WebhookSecret::parse_key(&format!("whsk_{}", STANDARD.encode(mixed))),
            Err(SecretError::BadPrivateKey)
        );
    }

    #[test]
    fn debug_is_redacted() {
        let s = WebhookSecret::generate();
        let shown = format!("{s:?}");
        assert!(!shown.contains(&s.expose()[6..]));
    }
}
