//! `/api/v1/integrations/{name}/rotate-secret` and `…/secrets/retire`: one
//! provider secret at a time, the others untouched, so a rotation never
//! needs the integration's settings resent.

use super::integrations::{existing, internal, save};
use crate::auth::operator::Operator;
use crate::http::json::{StrictJson, StrictPath};
use crate::http::request_id::RequestId;
use crate::inbound::integrations::{open_secrets, view, IntegrationChange, IntegrationView};
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

/// The body of `POST /api/v1/integrations/{name}/rotate-secret`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RotateSecret {
    /// The provider's new secret: it becomes index 0.
    secret: String,
    /// Keep the previous secrets verifying (default true) until retired.
    #[serde(default)]
    keep_previous: Option<bool>,
}

/// Rotate a provider secret
///
/// Puts a new provider secret first. The previous ones keep verifying (at most 5 in all: retire
/// one first) unless `keepPrevious` is false. `lastVerifiedSecret` in the view then shows when
/// the provider signs with the new one. Audited, without the secret.
#[utoipa::path(post, path = "/api/v1/integrations/{name}/rotate-secret", tag = "operator", request_body = RotateSecret,
    params(("name" = String, Path, description = "Integration name")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Rotated", body = IntegrationView),
        (status = 404, description = "No such integration", body = crate::http::openapi::ErrorResponse)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(name): StrictPath<String>,
    StrictJson(body): StrictJson<RotateSecret>,
) -> ApiResult<Json<IntegrationView>> {
    let old = existing(&state, &name).await?;
    let keep = body.keep_previous.unwrap_or(true);
    let previous = open_secrets(&state.keyring, &old).map_err(internal)?;
    let mut list = vec![body.secret.clone()];
    if keep {
        list.extend(
            previous
                .iter()
                .filter(|s| s.as_str() != body.secret)
                .map(|s| s.to_string()),
        );
        if list.len() > hookwarden_core::inbound::MAX_ACTIVE_SECRETS {
            return Err(ApiError::Validation(format!(
                "{} secrets are active already: retire one first (secrets/retire)",
                previous.len()
            )));
        }
    }
    let active = list.len();
    // Re-sent: it moves first, so the index noted no longer shifts by one.
    let reused = previous.iter().any(|s| s.as_str() == body.secret);
    let input = IntegrationChange {
        secrets: Some(Some(list)),
        ..Default::default()
    }
    .merged(&old)?;
    let (new, _) = save(&state, &old, &input).await?;
    if keep && !reused {
        state.integrations.verified.shift_for_new_secret(&name);
    } else {
        state.integrations.verified.forget(&name);
    }
    crate::shared::audit::record(
        state.store.as_ref(),
        &op.actor(),
        "integration.secret_rotated",
        &format!("integration:{name}"),
        &rid.0,
        json!({"keptPrevious": keep, "activeSecrets": [previous.len(), active]}),
    )
    .await;
    Ok(Json(view(&state, &new)?))
}

/// The body of `POST /api/v1/integrations/{name}/secrets/retire`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetireSecret {
    /// The secret's index as the view counts them: 0 is the newest.
    #[schema(minimum = 0, maximum = 4)]
    index: usize,
}

/// Retire a provider secret
///
/// Stops one provider secret verifying: `index` 0 is the newest. The last active secret cannot
/// be retired. Audited.
#[utoipa::path(post, path = "/api/v1/integrations/{name}/secrets/retire", tag = "operator", request_body = RetireSecret,
    params(("name" = String, Path, description = "Integration name")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Retired", body = IntegrationView),
        (status = 404, description = "No such integration", body = crate::http::openapi::ErrorResponse)))]
pub async fn retire_secret(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(name): StrictPath<String>,
    StrictJson(body): StrictJson<RetireSecret>,
) -> ApiResult<Json<IntegrationView>> {
    let old = existing(&state, &name).await?;
    let previous = open_secrets(&state.keyring, &old).map_err(internal)?;
    if body.index >= previous.len() {
        return Err(ApiError::Validation(format!(
            "index: {} secrets are active (0 to {})",
            previous.len(),
            previous.len().saturating_sub(1)
        )));
    }
    if previous.len() == 1 {
        return Err(ApiError::Validation(
            "the last active secret cannot be retired: rotate first".into(),
        ));
    }
    let list: Vec<String> = previous
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != body.index)
        .map(|(_, s)| s.to_string())
        .collect();
    let input = IntegrationChange {
        secrets: Some(Some(list)),
        ..Default::default()
    }
    .merged(&old)?;
    let (new, _) = save(&state, &old, &input).await?;
    state.integrations.verified.retired(&name, body.index);
    crate::shared::audit::record(
        state.store.as_ref(),
        &op.actor(),
        "integration.secret_retired",
        &format!("integration:{name}"),
        &rid.0,
        json!({"index": body.index, "activeSecrets": [previous.len(), previous.len() - 1]}),
    )
    .await;
    Ok(Json(view(&state, &new)?))
}
