//! `/api/v1/integrations`: providers' verification settings, secrets sealed,
//! every change audited.

use crate::auth::operator::Operator;
use crate::error::{ApiError, ApiResult};
use crate::http::json::StrictJson;
use crate::http::request_id::RequestId;
use crate::ingress::integrations::{build, view, IntegrationInput};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("integrations", e)
}

pub async fn create(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictJson(input): StrictJson<IntegrationInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
        body["forwardingSecret"] = Value::String(secret.expose().to_string());
    }
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn list(State(state): State<AppState>, _op: Operator) -> ApiResult<Json<Value>> {
    let all = state.store.list_integrations().await.map_err(internal)?;
    Ok(Json(
        json!({"items": all.iter().map(view).collect::<Vec<_>>(), "nextCursor": null}),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    _op: Operator,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let i = state
        .store
        .get_integration(&name)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(view(&i)))
}

pub async fn update(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    Path(name): Path<String>,
    StrictJson(input): StrictJson<IntegrationInput>,
) -> ApiResult<Json<Value>> {
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

pub async fn delete(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    Path(name): Path<String>,
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
