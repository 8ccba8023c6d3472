//! The operator identity: `x-internal-api-key` compared in constant time with
//! every configured management key (several may be active, for rotation).

use crate::shared::error::ApiError;
use crate::shared::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const HEADER: &str = "x-internal-api-key";

/// An authenticated operator; `key_id` names which key (a digest prefix, for logs).
#[derive(Debug, Clone)]
pub struct Operator {
    pub key_id: String,
}

impl Operator {
    pub fn actor(&self) -> String {
        format!("operator:{}", self.key_id)
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The console's own call: its session was signed in with a key (and
        // the client certificate, when required) already.
        match parts.extensions.get::<super::on_behalf::OnBehalf>() {
            Some(super::on_behalf::OnBehalf::Operator { key_id }) => {
                return Ok(Operator {
                    key_id: format!("{key_id}/console"),
                })
            }
            Some(super::on_behalf::OnBehalf::Tenant { .. }) => {
                return Err(ApiError::Unauthorized("not an operator".into()))
            }
            None => {}
        }
        // mTLS in addition to the key, when configured.
        if !client_certificate_ok(&state.settings, parts) {
            return Err(ApiError::Unauthorized(
                "the operator API requires its client certificate".into(),
            ));
        }
        let given = parts
            .headers
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::Unauthorized(format!("missing {HEADER}")))?;
        matching_key(&state.settings, given)
            .map(|key_id| Operator { key_id })
            .ok_or_else(|| ApiError::Unauthorized(format!("invalid {HEADER}")))
    }
}

/// The id of the configured management key equal to `given`, if any (the
/// console's sign-in form checks a key the same way).
pub fn matching_key(settings: &crate::config::Settings, given: &str) -> Option<String> {
    // Digests first, so comparisons take the same time whatever the lengths;
    // every key is compared, so timing does not reveal which one matched.
    let given = Sha256::digest(given.as_bytes());
    let mut matched: Option<String> = None;
    for key in &settings.management_api_keys {
        let digest = Sha256::digest(key.expose_secret().as_bytes());
        if bool::from(digest.ct_eq(&given)) {
            matched = Some(hex::encode(&digest[..4]));
        }
    }
    matched
}

/// The ids of the configured keys (as `matching_key` names them): a console
/// session signed in with a key lasts only while the key is configured.
pub fn key_ids(settings: &crate::config::Settings) -> Vec<String> {
    settings
        .management_api_keys
        .iter()
        .map(|key| hex::encode(&Sha256::digest(key.expose_secret().as_bytes())[..4]))
        .collect()
}

/// Whether the request's client certificate is the operator's, where one is
/// required (always true where none is).
pub fn client_certificate_ok(settings: &crate::config::Settings, parts: &Parts) -> bool {
    settings
        .operator_client_identity
        .as_ref()
        .is_none_or(|required| {
            parts
                .extensions
                .get::<crate::shared::client_identity::ClientIdentity>()
                .is_some_and(|id| id.is(required))
        })
}
