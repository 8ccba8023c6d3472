//! Verification of tenant and producer tokens inside the service: HS256 with a
//! shared secret (development), RS256 / ES256 / EdDSA keys from a JWKS file
//! (production); `exp` required, `nbf`, `iss` and `aud` checked. The algorithm
//! is fixed by the key, never chosen by the token (no `alg` confusion, no `none`).

use anyhow::Context;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default)]
    pub scope: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

struct VerifyingKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

pub struct JwtVerifier {
    keys: Vec<VerifyingKey>,
    issuer: Option<String>,
    audience: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token is signed with an algorithm or key that is not accepted")]
    UnknownKey,
    #[error("token is invalid: {0}")]
    Invalid(String),
    #[error("no token verification key is configured")]
    NotConfigured,
}

impl JwtVerifier {
    pub fn new(
        hs256: Option<&SecretString>,
        jwks_file: Option<&Path>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        if let Some(secret) = hs256 {
            keys.push(VerifyingKey {
                kid: None,
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            });
        }
        if let Some(path) = jwks_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading JWKS file {}", path.display()))?;
            let set: JwkSet = serde_json::from_str(&text)
                .with_context(|| format!("parsing JWKS file {}", path.display()))?;
            for jwk in &set.keys {
                let alg = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                    // Symmetric keys in a published key set would be a misconfiguration.
                    AlgorithmParameters::OctetKey(_) => {
                        anyhow::bail!("JWKS file {} holds a symmetric key", path.display())
                    }
                };
                let key = DecodingKey::from_jwk(jwk)
                    .with_context(|| format!("JWKS key in {}", path.display()))?;
                keys.push(VerifyingKey {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    key,
                });
            }
        }
        Ok(Self {
            keys,
            issuer,
            audience,
        })
    }

    pub fn is_configured(&self) -> bool {
        !self.keys.is_empty()
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if self.keys.is_empty() {
            return Err(TokenError::NotConfigured);
        }
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        let candidates = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            });
        let mut last = TokenError::UnknownKey;
        for k in candidates {
            let mut v = Validation::new(k.alg);
            v.leeway = LEEWAY_SECS;
            v.validate_nbf = true;
            // A configured issuer or audience must be present, not merely
            // match when present: jsonwebtoken skips absent claims otherwise.
            let mut required = vec!["exp", "sub"];
            if self.issuer.is_some() {
                required.push("iss");
            }
            if self.audience.is_some() {
                required.push("aud");
            }
            v.set_required_spec_claims(&required);
            match &self.issuer {
                Some(iss) => v.set_issuer(&[iss]),
                None => v.iss = None,
            }
            match &self.audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            match decode::<Claims>(token, &k.key, &v) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = TokenError::Invalid(describe(&e)),
            }
        }
        Err(last)
    }
}

/// Messages that say what is wrong with a token without echoing any of it.
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token has expired".into(),
        K::ImmatureSignature => "token is not valid yet".into(),
        K::InvalidSignature => "signature does not verify".into(),
        K::InvalidIssuer => "issuer is not accepted".into(),
        K::InvalidAudience => "audience is not accepted".into(),
        K::MissingRequiredClaim(c) => format!("claim {c} is required"),
        K::InvalidAlgorithm => "algorithm is not accepted".into(),
        _ => "token is malformed".into(),
    }
}

/// Mints an HS256 token (development: `hookwarden token`, and tests).
pub fn mint_hs256(secret: &SecretString, claims: &Claims) -> anyhow::Result<String> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
    .context("signing token")
}
