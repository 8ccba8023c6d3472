//! Tenant routes for delivery history: one item per try, and retry-now.

use crate::auth::{Scope, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::http::json::{page_limit, StrictQuery};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{SecondsFormat, Utc};
use hookwarden_core::ids;
use hookwarden_store::model::{Attempt, AttemptStatus};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// One try as the API shows it. The payload snapshot (which may hold personal
/// data such as phone numbers) is not part of the listing.
pub fn view(a: &Attempt) -> Value {
    json!({
        "id": a.id,
        "eventId": a.event_id,
        "webhookId": a.webhook_id,
        "attempt": a.attempt,
        "status": a.status.as_str(),
        "httpStatus": a.http_status,
        "durationMs": a.duration_ms,
        "responsePreview": a.response_preview,
        "error": a.error,
        "dueAt": a.due_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "createdAt": a.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "completedAt": a.completed_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
    })
}

pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(webhook_id): Path<String>,
    StrictQuery(q): StrictQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    tenant.require(Scope::WebhooksRead)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            AttemptStatus::parse(s).ok_or_else(|| {
                ApiError::Validation("status must be pending, succeeded, failed or dead".into())
            })
        })
        .transpose()?;
    let limit = page_limit(q.limit)?;
    state
        .store
        .get_webhook(&tenant.account_id, &webhook_id)
        .await
        .map_err(|e| ApiError::internal("get webhook", e))?
        .ok_or(ApiError::NotFound)?;
    let page = state
        .store
        .list_attempts(
            &tenant.account_id,
            &webhook_id,
            status,
            q.cursor.as_deref(),
            limit,
        )
        .await
        .map_err(|e| ApiError::internal("list attempts", e))?;
    Ok(Json(
        json!({"items": page.items.iter().map(view).collect::<Vec<_>>(), "nextCursor": page.next_cursor}),
    ))
}

pub async fn retry(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(attempt_id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    tenant.require(Scope::WebhooksWrite)?;
    let attempt = state
        .store
        .retry_now(
            &tenant.account_id,
            &attempt_id,
            &ids::attempt_id(),
            Utc::now(),
        )
        .await
        .map_err(|e| ApiError::internal("retry delivery", e))?
        .ok_or(ApiError::NotFound)?;
    state.wake.notify_one();
    tracing::info!(account.id = %tenant.account_id, attempt.id = %attempt.id, event.id = %attempt.event_id, "delivery retry requested");
    Ok((StatusCode::ACCEPTED, Json(view(&attempt))))
}
