//! Identity propagation to internal services: a short-lived EdDSA JWT on every
//! forwarded request (caller subject, tenant, correlation id; audience = the
//! target integration), so downstream services never trust a bare header.
//! The Ed25519 key is derived from the master key, so every replica signs
//! with the same key; its public half is served as a JWKS on the ops listener.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hookwarden_core::crypto::{Keyring, MasterKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Issuer of every identity token.
pub const ISSUER: &str = "hookwarden";
/// Tokens live this long: enough for one forwarding try, not for a replay.
pub const TTL_SECS: i64 = 60;
const PURPOSE: &str = "identity-token-ed25519";
/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410), before the 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The claims downstream services receive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdentityClaims {
    pub iss: String,
    /// Who called: e.g. `provider:acme` for a verified inbound webhook.
    pub sub: String,
    /// The service this token is for: the integration's name.
    pub aud: String,
    pub tenant: String,
    /// The request correlation id, as in `x-correlation-id`.
    pub cid: String,
    /// Unique per token (the forwarding job id).
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public: [u8; 32],
}

/// Signs identity tokens with the current master key's derived key, and
/// publishes the public keys of every loaded master key (rotation).
pub struct IdentitySigner {
    keys: Vec<SigningKey>,
}

impl IdentitySigner {
    pub fn new(keyring: &Keyring) -> anyhow::Result<Self> {
        let keys = keyring
            .keys()
            .map(signing_key)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { keys })
    }

    pub fn sign(&self, claims: &IdentityClaims) -> anyhow::Result<String> {
        let key = self
            .keys
            .first()
            .ok_or_else(|| anyhow::anyhow!("no identity signing key"))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    /// The JWKS that internal services fetch to verify tokens.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": k.kid, "x": URL_SAFE_NO_PAD.encode(k.public)}))
            .collect();
        json!({ "keys": keys })
    }
}

fn signing_key(master: &MasterKey) -> anyhow::Result<SigningKey> {
    let seed = master.derive_seed(PURPOSE);
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&*seed)
        .map_err(|_| anyhow::anyhow!("deriving the identity key"))?;
    let public: [u8; 32] = ring::signature::KeyPair::public_key(&pair)
        .as_ref()
        .try_into()?;
    let mut der = zeroize::Zeroizing::new(PKCS8_ED25519_PREFIX.to_vec());
    der.extend_from_slice(&*seed);
    let kid = format!("hw-{}", hex::encode(&Sha256::digest(public)[..8]));
    Ok(SigningKey {
        kid,
        encoding: EncodingKey::from_ed_der(&der),
        public,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, jwk::JwkSet, DecodingKey, Validation};

    fn claims(aud: &str) -> IdentityClaims {
        let now = chrono::Utc::now().timestamp();
        IdentityClaims {
            iss: ISSUER.into(),
            sub: "provider:acme".into(),
            aud: aud.into(),
            tenant: "acme".into(),
            cid: "corr-1".into(),
            jti: "job_1".into(),
            iat: now,
            exp: now + TTL_SECS,
        }
    }

    fn verify(
        jwks: &Value,
        token: &str,
        aud: &str,
    ) -> Result<IdentityClaims, jsonwebtoken::errors::Error> {
        let set: JwkSet = serde_json::from_value(jwks.clone()).expect("jwks");
        let kid = jsonwebtoken::decode_header(token)?.kid.unwrap_or_default();
        let jwk = set.find(&kid).expect("kid in the set");
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[aud]);
        v.set_issuer(&[ISSUER]);
        Ok(decode::<IdentityClaims>(token, &DecodingKey::from_jwk(jwk)?, &v)?.claims)
    }

    #[test]
    fn tokens_verify_with_the_published_jwks_only_for_their_audience() {
        let master = MasterKey::generate();
        let signer = IdentitySigner::new(&Keyring::new(master.clone(), vec![])).expect("signer");
        let token = signer.sign(&claims("acme")).expect("sign");
        assert_eq!(
            verify(&signer.jwks(), &token, "acme").expect("valid").sub,
            "provider:acme"
        );
        assert!(
            verify(&signer.jwks(), &token, "billing").is_err(),
            "another service must refuse it"
        );
        // Every replica with the same master key signs with the same key.
        let again = IdentitySigner::new(&Keyring::new(master, vec![])).expect("signer");
        assert_eq!(again.jwks(), signer.jwks());
        // After a master key rotation the old public key is still published.
        let rotated = IdentitySigner::new(&Keyring::new(
            MasterKey::generate(),
            vec![MasterKey::generate()],
        ))
        .expect("signer");
        assert_eq!(rotated.jwks()["keys"].as_array().expect("keys").len(), 2);
    }
}
