//! `/api/v1/integrations`: providers' verification settings, secrets sealed,
//! every change audited with the settings it changed (old → new, never a
//! secret). `PUT` replaces and refuses a body that leaves a setting out,
//! `PATCH` merges (secrets rotate and retire in `integration_secrets`).

use crate::auth::operator::Operator;
use crate::config::integrations::IntegrationInput;
use crate::http::json::{StrictJson, StrictPath};
use crate::http::openapi::Page;
use crate::http::request_id::RequestId;
use crate::inbound::integrations::{
    build, changed_settings, open_secrets, view, IntegrationChange, IntegrationView,
};
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use hookwarden_store::ingress::Integration;
use serde_json::json;

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("integrations", e)
}

/// Create an integration
///
/// Configures a provider to receive webhooks from: its `scheme` (`hmac-sha256`, `token`,
/// `standard-webhooks`, `stripe`, `github`, `slack`, `shopify`), the provider's `secret` and
/// how the signature is read, and the internal `targetUrl` verified events are forwarded to
/// (private addresses allowed, redirects never followed). The answer carries, once, the
/// `forwardingSecret` (`whsec_…`) with which your services verify what hookwarden forwards.
/// Audited, without secrets.
#[utoipa::path(post, path = "/api/v1/integrations", tag = "operator", request_body = IntegrationInput,
    security(("operatorKey" = [])),
    responses((status = 201, description = "Created; shows the forwarding secret once", body = IntegrationView),
        (status = 409, description = "An integration has that name", body = crate::http::openapi::ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictJson(input): StrictJson<IntegrationInput>,
) -> ApiResult<(StatusCode, Json<IntegrationView>)> {
    let name = input
        .name
        .clone()
        .ok_or_else(|| ApiError::Validation("name is required".into()))?;
    let (integration, forwarding) = build(&state.keyring, &name, &input, None)?;
    if !state
        .store
        .create_integration(&integration)
        .await
        .map_err(internal)?
    {
        return Err(ApiError::Conflict(format!("integration {name} exists")));
    }
    state.integrations.invalidate(&name);
    crate::shared::audit::record(
        state.store.as_ref(),
        &op.actor(),
        "integration.created",
        &format!("integration:{name}"),
        &rid.0,
        json!({"scheme": integration.scheme}),
    )
    .await;
    let mut body = view(&state, &integration)?;
    if let Some(secret) = forwarding {
        // Shown once: internal services verify forwarded events with it.
        body.forwarding_secret = Some(secret.expose().to_string());
    }
    Ok((StatusCode::CREATED, Json(body)))
}

/// List integrations
///
/// Every integration's configuration. Secrets are never shown: `activeSecrets` counts the
/// provider secrets that verify, and `lastVerifiedSecret`/`lastVerifiedAt` tell which one the
/// provider last signed with.
#[utoipa::path(get, path = "/api/v1/integrations", tag = "operator",
    security(("operatorKey" = [])),
    responses((status = 200, description = "Every integration", body = Page<IntegrationView>)))]
pub async fn list(
    State(state): State<AppState>,
    _op: Operator,
) -> ApiResult<Json<Page<IntegrationView>>> {
    let all = state.store.list_integrations().await.map_err(internal)?;
    let views = all
        .iter()
        .map(|i| view(&state, i))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(Page::new(views, None)))
}

/// Get an integration
///
/// One integration's configuration, without its secrets.
#[utoipa::path(get, path = "/api/v1/integrations/{name}", tag = "operator",
    params(("name" = String, Path, description = "Integration name")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "The integration", body = IntegrationView)))]
pub async fn get(
    State(state): State<AppState>,
    _op: Operator,
    StrictPath(name): StrictPath<String>,
) -> ApiResult<Json<IntegrationView>> {
    let i = state
        .store
        .get_integration(&name)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(view(&state, &i)?))
}

pub(super) async fn existing(state: &AppState, name: &str) -> ApiResult<Integration> {
    state
        .store
        .get_integration(name)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound)
}

/// Validates and stores `input` over `old`; says whether the provider
/// secrets changed (compared opened, so re-sending the same ones is no rotation).
pub(super) async fn save(
    state: &AppState,
    old: &Integration,
    input: &IntegrationInput,
) -> ApiResult<(Integration, bool)> {
    let (integration, _) = build(&state.keyring, &old.name, input, Some(old))?;
    let rotated = if input.secret.is_some() || input.secrets.is_some() {
        let before = open_secrets(&state.keyring, old).map_err(internal)?;
        let after = open_secrets(&state.keyring, &integration).map_err(internal)?;
        before != after
    } else {
        false
    };
    if !state
        .store
        .update_integration(&integration)
        .await
        .map_err(internal)?
    {
        return Err(ApiError::NotFound);
    }
    state.integrations.invalidate(&old.name);
    Ok((integration, rotated))
}

/// `PUT` and `PATCH`: the change, merged over the stored integration, saved
/// and audited with what it changed.
async fn change(
    state: &AppState,
    op: &Operator,
    rid: &RequestId,
    name: &str,
    change: IntegrationChange,
) -> ApiResult<Json<IntegrationView>> {
    if change
        .name
        .as_ref()
        .is_some_and(|n| n.as_deref() != Some(name))
    {
        return Err(ApiError::Validation("name cannot be changed".into()));
    }
    let old = existing(state, name).await?;
    let input = change.merged(&old)?;
    let (new, rotated) = save(state, &old, &input).await?;
    if rotated {
        // The indices no longer name the same secrets.
        state.integrations.verified.forget(name);
    }
    let target = format!("integration:{name}");
    crate::shared::audit::record(
        state.store.as_ref(),
        &op.actor(),
        "integration.updated",
        &target,
        &rid.0,
        json!({"changed": changed_settings(&old, &new), "secretsRotated": rotated}),
    )
    .await;
    if rotated {
        // A PUT/PATCH with `secrets` replaces the whole list (the
        // rotate-secret call is the one that keeps the previous ones).
        let count = |i| {
            crate::inbound::integrations::open_secrets(&state.keyring, i)
                .map(|s| s.len())
                .ok()
        };
        crate::shared::audit::record(
            state.store.as_ref(),
            &op.actor(),
            "integration.secret_rotated",
            &target,
            &rid.0,
            json!({"keptPrevious": false, "activeSecrets": [count(&old), count(&new)]}),
        )
        .await;
    }
    Ok(Json(view(state, &new)?))
}

/// Replace an integration
///
/// Replaces the whole configuration. Every setting must be given (`null` for its default): a
/// body that leaves one out is refused with the missing names, so nothing falls back to a
/// default unasked. `secret`/`secrets` may be left out: the active secrets are kept. Audited,
/// with the settings changed.
#[utoipa::path(put, path = "/api/v1/integrations/{name}", tag = "operator", request_body = IntegrationChange,
    params(("name" = String, Path, description = "Integration name")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Replaced", body = IntegrationView),
        (status = 404, description = "No such integration", body = crate::http::openapi::ErrorResponse)))]
pub async fn update(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(name): StrictPath<String>,
    StrictJson(input): StrictJson<IntegrationChange>,
) -> ApiResult<Json<IntegrationView>> {
    let missing = input.missing_settings();
    if !missing.is_empty() {
        return Err(ApiError::Validation(format!(
            "PUT replaces the whole integration; missing: {} (give null for a default, \
             or use PATCH to change some settings)",
            missing.join(", ")
        )));
    }
    change(&state, &op, &rid, &name, input).await
}

/// Change some of an integration's settings
///
/// Changes the settings given and keeps the others (JSON merge, RFC 7396): `null` sets a
/// setting back to its default. Secrets given replace the active ones. Audited, with the
/// settings changed.
#[utoipa::path(patch, path = "/api/v1/integrations/{name}", tag = "operator", request_body = IntegrationChange,
    params(("name" = String, Path, description = "Integration name")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Updated", body = IntegrationView),
        (status = 404, description = "No such integration", body = crate::http::openapi::ErrorResponse)))]
pub async fn patch(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(name): StrictPath<String>,
    StrictJson(input): StrictJson<IntegrationChange>,
) -> ApiResult<Json<IntegrationView>> {
    change(&state, &op, &rid, &name, input).await
}

/// Delete an integration
///
/// Removes the integration: its provider's webhooks are refused from then on (404). Audited.
#[utoipa::path(delete, path = "/api/v1/integrations/{name}", tag = "operator",
    params(("name" = String, Path, description = "Integration name")),
    security(("operatorKey" = [])),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(name): StrictPath<String>,
) -> ApiResult<StatusCode> {
    if !state
        .store
        .delete_integration(&name)
        .await
        .map_err(internal)?
    {
        return Err(ApiError::NotFound);
    }
    state.integrations.invalidate(&name);
    state.integrations.verified.forget(&name);
    crate::shared::audit::record(
        state.store.as_ref(),
        &op.actor(),
        "integration.deleted",
        &format!("integration:{name}"),
        &rid.0,
        json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
