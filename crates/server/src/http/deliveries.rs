//! Tenant routes for delivery history: one item per try, and retry-now.

use crate::auth::{Scope, Tenant};
use crate::http::cursor;
use crate::http::json::{page_limit, StrictPath, StrictQuery};
use crate::http::openapi::Page;
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hookwarden_core::ids;
use hookwarden_store::model::{Attempt, AttemptStatus};
use hookwarden_store::search::AttemptFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// pending, succeeded, failed or dead.
    status: Option<String>,
    /// Only the tries of this event.
    event_id: Option<String>,
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

use crate::http::rfc3339;

/// One try as the API shows it. The payload snapshot (which may hold personal
/// data such as phone numbers) is not part of the listing.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    id: String,
    event_id: String,
    webhook_id: String,
    account_id: String,
    /// 1 for the first try.
    attempt: i32,
    /// pending, succeeded, failed or dead.
    status: String,
    http_status: Option<i32>,
    duration_ms: Option<i64>,
    /// At most 512 characters of the receiver's answer.
    response_preview: Option<String>,
    error: Option<String>,
    #[schema(format = DateTime)]
    due_at: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    completed_at: Option<String>,
}

pub fn view(a: &Attempt) -> AttemptView {
    AttemptView {
        id: a.id.clone(),
        event_id: a.event_id.clone(),
        webhook_id: a.webhook_id.clone(),
        account_id: a.account_id.clone(),
        attempt: a.attempt,
        status: a.status.as_str().to_owned(),
        http_status: a.http_status,
        duration_ms: a.duration_ms,
        response_preview: a.response_preview.clone(),
        error: a.error.clone(),
        due_at: rfc3339(a.due_at),
        created_at: rfc3339(a.created_at),
        completed_at: a.completed_at.map(rfc3339),
    }
}

/// List a webhook's delivery tries
///
/// One item per try, newest first (scope `webhooks:read`): `pending` (due), `succeeded`,
/// `failed` (a retry follows) or `dead` (the last try failed). Filter with `status`; page with
/// `limit` and `cursor`. The payload sent is not part of the listing.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path, description = "Webhook id"), ListQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "Delivery tries, newest first", body = Page<AttemptView>)))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    StrictPath(webhook_id): StrictPath<String>,
    StrictQuery(q): StrictQuery<ListQuery>,
) -> ApiResult<Json<Page<AttemptView>>> {
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
    let before = cursor::id("att", q.cursor.as_deref())?;
    state
        .store
        .get_webhook(&tenant.account_id, &webhook_id)
        .await
        .map_err(|e| ApiError::internal("get webhook", e))?
        .ok_or(ApiError::NotFound)?;
    let page = state
        .store
        .search_attempts(
            &AttemptFilter {
                account_id: Some(&tenant.account_id),
                webhook_id: Some(&webhook_id),
                event_id: q.event_id.as_deref(),
                status,
                ..Default::default()
            },
            before,
            limit,
        )
        .await
        .map_err(|e| ApiError::internal("list attempts", e))?;
    Ok(Json(Page::new(
        page.items.iter().map(view).collect(),
        page.next_cursor,
    )))
}

/// Retry a delivery now
///
/// Schedules a new try of that try's event to its webhook, due now (scope `webhooks:write`),
/// for instance for a dead letter. Answers the new, pending try (202).
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "webhooks",
    params(("id" = String, Path, description = "Delivery attempt id")),
    security(("bearer" = [])),
    responses((status = 202, description = "A new try is due now", body = AttemptView)))]
pub async fn retry(
    State(state): State<AppState>,
    tenant: Tenant,
    StrictPath(attempt_id): StrictPath<String>,
) -> ApiResult<(StatusCode, Json<AttemptView>)> {
    tenant.require(Scope::WebhooksWrite)?;
    let now = state.clock.now();
    let attempt = state
        .store
        .retry_now(
            &tenant.account_id,
            &attempt_id,
            &ids::attempt_id(),
            now,
            now,
            false,
        )
        .await
        .map_err(|e| ApiError::internal("retry delivery", e))?
        .ok_or(ApiError::NotFound)?;
    state.wake.lanes([attempt.webhook_id.clone()]);
    tracing::info!(account.id = %tenant.account_id, attempt.id = %attempt.id, event.id = %attempt.event_id, "delivery retry requested");
    Ok((StatusCode::ACCEPTED, Json(view(&attempt))))
}
