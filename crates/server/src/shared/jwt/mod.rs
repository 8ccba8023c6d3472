//! Verification of tenant and producer tokens inside the service: HS256 with a
//! shared secret (development), RS256 / ES256 / EdDSA keys from a JWKS file
//! and/or a JWKS URL (production; see `jwks.rs`); `exp` required, `nbf`, `iss`
//! and `aud` checked. The algorithm is fixed by the key, never chosen by the
//! token (no `alg` confusion, no `none`).

pub(crate) mod jwks;

use self::jwks::{FileKeys, KeySet, RemoteKeys, VerifyingKey};
use crate::shared::clock::Clock;
use anyhow::Context;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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

/// Where verification keys come from. The JWKS file and URL may both be
/// set: their keys are used together (the file can hold keys an IdP does
/// not publish, e.g. during a migration).
pub struct JwtVerifier {
    hs256: Option<VerifyingKey>,
    file: Option<Arc<FileKeys>>,
    remote: Option<Arc<RemoteKeys>>,
    remote_refresh: Duration,
    issuer: Option<String>,
    audience: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token is signed with an algorithm or key (`alg`, `kid`) that is not accepted")]
    UnknownKey,
    /// Names the claim at fault (`exp`, `nbf`, `iss`, `aud`, `sub`, …),
    /// never any of the token's content.
    #[error("{0}")]
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
        Ok(Self {
            hs256: hs256.map(|secret| VerifyingKey {
                kid: None,
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            }),
            file: jwks_file.map(FileKeys::load).transpose()?.map(Arc::new),
            remote: None,
            remote_refresh: Duration::MAX,
            issuer,
            audience,
        })
    }

    /// Adds the keys of a JWKS URL, fetched now and then every `refresh`
    /// (see `watch`); `ca_file` adds trusted roots for its server. A URL
    /// that does not parse or a CA file that does not load is an error; a
    /// fetch that fails is not (it is logged, retried by `watch`, and
    /// reported by `url_status`): tokens are refused until keys load.
    pub async fn with_jwks_url(
        mut self,
        url: &str,
        ca_file: Option<&Path>,
        refresh: Duration,
    ) -> anyhow::Result<Self> {
        let remote = RemoteKeys::new(url, ca_file).context("HOOKWARDEN_JWT_JWKS_URL")?;
        remote.load_at_start_up().await;
        self.remote = Some(Arc::new(remote));
        self.remote_refresh = refresh;
        Ok(self)
    }

    /// With a JWKS URL: `Err` naming it and why while no key set has loaded
    /// from it (`/ready` reports it as degraded).
    pub fn url_status(&self) -> Option<Result<(), String>> {
        self.remote.as_ref().map(|r| r.status())
    }

    /// Is any source of keys configured (an empty JWKS may get keys later)?
    pub fn is_configured(&self) -> bool {
        self.hs256.is_some() || self.file.is_some() || self.remote.is_some()
    }

    /// Does any source hold a key now?
    pub fn has_keys(&self) -> bool {
        self.hs256.is_some() || self.key_sets().iter().flatten().any(|set| !set.is_empty())
    }

    /// Polls the JWKS file every `file_every` and fetches the URL's keys
    /// (again with backoff until a key set loads, then at their interval),
    /// until `stop`. The waits are on `clock`.
    pub fn watch(&self, file_every: Duration, clock: Clock, stop: CancellationToken) {
        if let Some(file) = self.file.clone() {
            let (stop, clock) = (stop.clone(), clock.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = clock.sleep(file_every) => file.refresh(),
                    }
                }
            });
        }
        if let Some(remote) = self.remote.clone() {
            let every = self.remote_refresh;
            // Retries with backoff until a key set loads, then refreshes.
            tokio::spawn(async move { remote.run(every, &clock, stop).await });
        }
    }

    /// The key sets as they are now (each an `Arc`: no load waits on a request).
    fn key_sets(&self) -> [Option<KeySet>; 2] {
        [
            self.file.as_ref().map(|f| f.keys()),
            self.remote.as_ref().map(|r| r.keys()),
        ]
    }

    /// Verifies a token. A `kid` no key carries makes the JWKS URL be
    /// fetched again (at a bounded rate), so a key the IdP has just rotated
    /// in works on its first use.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if !self.is_configured() {
            return Err(TokenError::NotConfigured);
        }
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        let result = self.verify_now(token, &header);
        match (&result, &self.remote, &header.kid) {
            // Not only `UnknownKey`: a key without a `kid` may have been
            // tried (and failed) in place of the one the token names.
            (Err(_), Some(remote), Some(kid)) if !self.knows(kid) => {
                remote.refresh_for_unknown_kid().await;
                self.verify_now(token, &header)
            }
            _ => result,
        }
    }

    fn knows(&self, kid: &str) -> bool {
        self.key_sets()
            .iter()
            .flatten()
            .any(|set| set.iter().any(|k| k.kid.as_deref() == Some(kid)))
    }

    fn verify_now(&self, token: &str, header: &Header) -> Result<Claims, TokenError> {
        let sets = self.key_sets();
        let candidates = self
            .hs256
            .iter()
            .chain(sets.iter().flatten().flat_map(|set| set.iter()))
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
            // A map first, so that a claim of the wrong type is named
            // rather than reported as a malformed token.
            match decode::<serde_json::Map<String, serde_json::Value>>(token, &k.key, &v) {
                Ok(data) => return claims_from(data.claims, self.audience.as_deref()),
                // What a key whose signature verified says about the claims
                // beats another key's "signature does not verify".
                Err(e) => {
                    let signature =
                        matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature);
                    if !signature || last == TokenError::UnknownKey {
                        last = TokenError::Invalid(self.describe(&e));
                    }
                }
            }
        }
        Err(last)
    }

    /// What is wrong with a token, naming the claim, without echoing any of
    /// it (the expected issuer and audience are configuration, not secrets).
    fn describe(&self, e: &jsonwebtoken::errors::Error) -> String {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::ExpiredSignature => "token has expired (`exp`)".into(),
            K::ImmatureSignature => "token is not valid yet (`nbf`)".into(),
            K::InvalidSignature => "token signature does not verify".into(),
            K::InvalidIssuer => match &self.issuer {
                Some(iss) => format!("token issuer (`iss`) is not {iss:?}"),
                None => "token issuer (`iss`) is not accepted".into(),
            },
            K::InvalidAudience => match &self.audience {
                Some(aud) => format!("token audience (`aud`) is not {aud:?}"),
                None => "token has an audience (`aud`) and this service expects none".into(),
            },
            // Also a claim of the wrong type (an `exp` that is not a number).
            K::MissingRequiredClaim(c) => format!("token has no `{c}` claim"),
            K::InvalidAlgorithm => "token algorithm (`alg`) is not accepted".into(),
            _ => "token is malformed".into(),
        }
    }
}

/// The claims hookwarden reads, each checked by name.
fn claims_from(
    mut map: serde_json::Map<String, serde_json::Value>,
    audience: Option<&str>,
) -> Result<Claims, TokenError> {
    use serde_json::Value;
    let sub = take_string(&mut map, "sub")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| TokenError::Invalid("token has no `sub` claim".into()))?;
    let account_id = take_string(&mut map, "account_id")?;
    let scope = match map.remove("scope") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(TokenError::Invalid(
                "token claim `scope` must be a string of space-separated scopes".into(),
            ))
        }
    };
    let iss = take_string(&mut map, "iss")?;
    // `aud` may be one string or a list (RFC 7519); a list has been checked
    // to hold the configured audience, which then stands for it.
    let aud = match map.remove("aud") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Array(list)) => audience
            .map(str::to_owned)
            .or_else(|| list.first().and_then(Value::as_str).map(str::to_owned)),
        Some(_) => {
            return Err(TokenError::Invalid(
                "token claim `aud` must be a string or a list of strings".into(),
            ))
        }
    };
    let exp = take_time(&mut map, "exp")?
        .ok_or_else(|| TokenError::Invalid("token has no `exp` claim".into()))?;
    Ok(Claims {
        sub,
        account_id,
        scope,
        exp,
        nbf: take_time(&mut map, "nbf")?,
        iat: take_time(&mut map, "iat")?,
        iss,
        aud,
    })
}

fn take_string(
    map: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<String>, TokenError> {
    use serde_json::Value;
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenError::Invalid(format!(
            "token claim `{name}` must be a string"
        ))),
    }
}

fn take_time(
    map: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<i64>, TokenError> {
    match map.remove(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| {
                TokenError::Invalid(format!(
                    "token claim `{name}` must be a number of seconds since the epoch"
                ))
            }),
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
