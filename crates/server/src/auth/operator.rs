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
        // mTLS in addition to the key, when configured.
        if let Some(required) = &state.settings.operator_client_identity {
            let ok = parts
                .extensions
                .get::<crate::shared::client_identity::ClientIdentity>()
                .is_some_and(|id| id.is(required));
            if !ok {
                return Err(ApiError::Unauthorized(
                    "the operator API requires its client certificate".into(),
                ));
            }
        }
        let given = parts
            .headers
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::Unauthorized(format!("missing {HEADER}")))?;
        // Digests first, so comparisons take the same time whatever the lengths;
        // every key is compared, so timing does not reveal which one matched.
        let given = Sha256::digest(given.as_bytes());
        let mut matched: Option<String> = None;
        for key in &state.settings.management_api_keys {
            let digest = Sha256::digest(key.expose_secret().as_bytes());
            if bool::from(digest.ct_eq(&given)) {
                matched = Some(hex::encode(&digest[..4]));
            }
        }
        matched
            .map(|key_id| Operator { key_id })
            .ok_or_else(|| ApiError::Unauthorized(format!("invalid {HEADER}")))
    }
}
