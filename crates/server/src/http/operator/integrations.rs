//! `/api/v1/integrations`: providers' verification settings, secrets sealed,
//! every change audited.

use crate::auth::operator::Operator;
use crate::error::{ApiError, ApiResult};
use crate::http::json::{StrictJson, StrictPath};
use crate::http::openapi::Page;
use crate::http::request_id::RequestId;
use crate::ingress::integrations::{build, view, IntegrationInput, IntegrationView};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::json;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("integrations", e)
}

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
    crate::audit::record(
        &state,
        &op.actor(),
        "integration.created",
        &format!("integration:{name}"),
        &rid.0,
        json!({"scheme": integration.scheme}),
    )
    .await;
    let mut body = view(&integration);
    if let Some(secret) = forwarding {
        // Shown once: internal services verify forwarded events with it.
        body.forwarding_secret = Some(secret.expose().to_string());
    }
    Ok((StatusCode::CREATED, Json(body)))
}

#[utoipa::path(get, path = "/api/v1/integrations", tag = "operator",
    security(("operatorKey" = [])),
    responses((status = 200, description = "Every integration", body = Page<IntegrationView>)))]
pub async fn list(
    State(state): State<AppState>,
    _op: Operator,
) -> ApiResult<Json<Page<IntegrationView>>> {
    let all = state.store.list_integrations().await.map_err(internal)?;
    Ok(Json(Page::new(all.iter().map(view).collect(), None)))
}

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
    Ok(Json(view(&i)))
}

#[utoipa::path(put, path = "/api/v1/integrations/{name}", tag = "operator", request_body = IntegrationInput,
    params(("name" = String, Path, description = "Integration name")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Updated", body = IntegrationView)))]
pub async fn update(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(name): StrictPath<String>,
    StrictJson(input): StrictJson<IntegrationInput>,
) -> ApiResult<Json<IntegrationView>> {
    if input.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::Validation("name cannot be changed".into()));
    }
    let existing = state
        .store
        .get_integration(&name)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound)?;
    let (integration, _) = build(&state.keyring, &name, &input, Some(&existing))?;
    if !state
        .store
        .update_integration(&integration)
        .await
        .map_err(internal)?
    {
        return Err(ApiError::NotFound);
    }
    state.integrations.invalidate(&name);
    let rotated = input.secret.is_some() || input.secrets.is_some();
    crate::audit::record(
        &state,
        &op.actor(),
        "integration.updated",
        &format!("integration:{name}"),
        &rid.0,
        json!({"secretsRotated": rotated}),
    )
    .await;
    if rotated {
        crate::audit::record(
            &state,
            &op.actor(),
            "integration.secret_rotated",
            &format!("integration:{name}"),
            &rid.0,
            json!({}),
        )
        .await;
    }
    Ok(Json(view(&integration)))
}

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
    crate::audit::record(
        &state,
        &op.actor(),
        "integration.deleted",
        &format!("integration:{name}"),
        &rid.0,
        json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
