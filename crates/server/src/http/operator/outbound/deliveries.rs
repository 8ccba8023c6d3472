//! Operator views of outbound deliveries across accounts: search the tries,
//! read one, retry one, and re-queue the dead letters a filter selects,
//! paced so that a recovered endpoint is not flooded.

use crate::auth::operator::Operator;
use crate::http::cursor;
use crate::http::deliveries::{view, AttemptView};
use crate::http::json::{page_limit, StrictJson, StrictPath, StrictQuery};
use crate::http::openapi::Page;
use crate::http::operator::filters::{checked, finish, parse_status, parse_time, Justification};
use crate::http::request_id::RequestId;
use crate::http::rfc3339;
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::Duration;
use hookwarden_core::ids;
use hookwarden_store::model::AttemptStatus;
use hookwarden_store::search::AttemptFilter;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("operator outbound", e)
}

/// Most dead letters one bulk retry re-queues; the answer says when more remain.
const BULK_MAX: u32 = 1000;
/// Default pace of a bulk retry's new tries.
const BULK_PER_SECOND: u32 = 20;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only this account's tries.
    account_id: Option<String>,
    /// Only tries to this webhook (endpoint).
    webhook_id: Option<String>,
    /// Only tries of this event.
    event_id: Option<String>,
    /// pending, succeeded, failed or dead.
    status: Option<String>,
    /// Created at or after (RFC 3339).
    from: Option<String>,
    /// Created before (RFC 3339).
    to: Option<String>,
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// Search outbound delivery tries across accounts.
///
/// One item per try, newest first, filtered by account, webhook, event,
/// status and creation time (every filter optional, all combined). The
/// payload sent is not part of the listing; the event's own page shows it.
#[utoipa::path(get, path = "/api/v1/outbound/deliveries", tag = "operator", params(DeliveriesQuery),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Delivery tries, newest first", body = Page<AttemptView>)))]
pub async fn list(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<DeliveriesQuery>,
) -> ApiResult<Json<Page<AttemptView>>> {
    let filter = AttemptFilter {
        id: None,
        account_id: q.account_id.as_deref(),
        webhook_id: q.webhook_id.as_deref(),
        event_id: q.event_id.as_deref(),
        status: parse_status(q.status.as_deref())?,
        from: parse_time("from", q.from.as_deref())?,
        to: parse_time("to", q.to.as_deref())?,
        latest_only: false,
    };
    let limit = page_limit(q.limit)?;
    let before = cursor::id("att", q.cursor.as_deref())?;
    let page = state
        .store
        .search_attempts(&filter, before, limit)
        .await
        .map_err(internal)?;
    Ok(Json(Page::new(
        page.items.iter().map(view).collect(),
        page.next_cursor,
    )))
}

/// Read one outbound delivery try.
///
/// Any account's try, by its id: status, HTTP status, duration, the start of
/// the receiver's answer and the error, if any.
#[utoipa::path(get, path = "/api/v1/outbound/deliveries/{id}", tag = "operator",
    params(("id" = String, Path, description = "Delivery try id")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "The try", body = AttemptView)))]
pub async fn get(
    State(state): State<AppState>,
    _op: Operator,
    StrictPath(id): StrictPath<String>,
) -> ApiResult<Json<AttemptView>> {
    let attempt = state
        .store
        .get_attempt(None, &id)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(view(&attempt)))
}

/// Retry one outbound delivery now.
///
/// Delivers that try's event to that webhook again, due now: the pending
/// try if one is waiting, else a new one. The request is audited
/// (`delivery.retry_requested`) with who asked and why. 404 if the try or its
/// webhook no longer exists.
#[utoipa::path(post, path = "/api/v1/outbound/deliveries/{id}/retry", tag = "operator",
    request_body = Justification,
    params(("id" = String, Path, description = "Delivery try id")),
    security(("operatorKey" = [])),
    responses((status = 202, description = "A try is due now", body = AttemptView)))]
pub async fn retry(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(id): StrictPath<String>,
    StrictJson(body): StrictJson<Justification>,
) -> ApiResult<(StatusCode, Json<AttemptView>)> {
    // Runs to the end (and is audited) even if the caller goes away.
    finish(async move {
        let (requested_by, reason) = body.checked()?;
        let original = state
            .store
            .get_attempt(None, &id)
            .await
            .map_err(internal)?
            .ok_or(ApiError::NotFound)?;
        let now = state.clock.now();
        let attempt = state
            .store
            .retry_now(
                &original.account_id,
                &id,
                &ids::attempt_id(),
                now,
                now,
                false,
            )
            .await
            .map_err(internal)?
            .ok_or(ApiError::NotFound)?;
        state.wake.lanes([attempt.webhook_id.clone()]);
        crate::shared::audit::record(
            state.store.as_ref(),
            &op.actor(),
            "delivery.retry_requested",
            &format!("delivery:{id}"),
            &rid.0,
            json!({"requestedBy": requested_by, "reason": reason, "accountId": attempt.account_id,
                   "webhookId": attempt.webhook_id, "eventId": attempt.event_id, "tryId": attempt.id}),
        )
        .await;
        Ok((StatusCode::ACCEPTED, Json(view(&attempt))))
    })
    .await
}

/// Which dead letters to re-queue, and how fast.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BulkRetry {
    /// Who asked (1–100 characters).
    requested_by: String,
    /// Why (1–500 characters).
    reason: String,
    /// Only this account's dead letters.
    account_id: Option<String>,
    /// Only this webhook's (endpoint's) dead letters.
    webhook_id: Option<String>,
    /// Only this event's dead letters.
    event_id: Option<String>,
    /// Dead at or after: the try was created then or later (RFC 3339).
    from: Option<String>,
    /// Created before (RFC 3339).
    to: Option<String>,
    /// New tries per second, 1–1000 (default 20).
    #[schema(minimum = 1, maximum = 1000)]
    per_second: Option<u32>,
    /// Most dead letters re-queued by this call, 1–1000 (default 1000).
    #[schema(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// What a bulk retry did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkRetryReport {
    /// Dead letters the filter selected (up to `limit`).
    matched: u64,
    /// Re-queued: a new try each, due at its place in the pace.
    queued: u64,
    /// Not re-queued: the webhook was deleted, or another retry re-queued
    /// the pair meanwhile.
    skipped: u64,
    #[schema(format = DateTime)]
    first_due_at: Option<String>,
    #[schema(format = DateTime)]
    last_due_at: Option<String>,
    /// More dead letters match: call again (those just re-queued are not
    /// selected while their new try is pending or delivered).
    more: bool,
}

/// Re-queue the dead letters a filter selects, paced.
///
/// Selects tries whose status is `dead` and that are still the latest try of
/// their (event, webhook) pair: a pair is re-queued once, and is not selected
/// again while its new try is pending or once it is delivered (calls that
/// overlap re-queue it once between them). Should that new try fail too,
/// the pair is a dead letter again. At least one of `accountId`, `webhookId`,
/// `eventId`, `from`, `to` is required. The new tries are due one after
/// another at `perSecond`, so a recovered endpoint is not flooded (each call
/// paces its own batch). At most `limit` per call: `more` says whether to
/// call again. Audited as `delivery.bulk_retry_requested` with the filter and
/// counts, even if the caller disconnects midway.
#[utoipa::path(post, path = "/api/v1/outbound/deliveries/retry", tag = "operator",
    request_body = BulkRetry,
    security(("operatorKey" = [])),
    responses((status = 202, description = "Dead letters re-queued", body = BulkRetryReport)))]
pub async fn bulk_retry(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictJson(body): StrictJson<BulkRetry>,
) -> ApiResult<(StatusCode, Json<BulkRetryReport>)> {
    // Runs to the end (and is audited) even if the caller goes away.
    finish(async move {
        let (requested_by, reason) = checked(&body.requested_by, &body.reason)?;
        let from = parse_time("from", body.from.as_deref())?;
        let to = parse_time("to", body.to.as_deref())?;
        if body.account_id.is_none()
            && body.webhook_id.is_none()
            && body.event_id.is_none()
            && from.is_none()
            && to.is_none()
        {
            return Err(ApiError::Validation(
                "give at least one of accountId, webhookId, eventId, from, to".into(),
            ));
        }
        let per_second = body.per_second.unwrap_or(BULK_PER_SECOND);
        if !(1..=1000).contains(&per_second) {
            return Err(ApiError::Validation(
                "perSecond must be between 1 and 1000".into(),
            ));
        }
        let limit = body.limit.unwrap_or(BULK_MAX);
        if !(1..=BULK_MAX).contains(&limit) {
            return Err(ApiError::Validation(format!(
                "limit must be between 1 and {BULK_MAX}"
            )));
        }
        let filter = AttemptFilter {
            id: None,
            account_id: body.account_id.as_deref(),
            webhook_id: body.webhook_id.as_deref(),
            event_id: body.event_id.as_deref(),
            status: Some(AttemptStatus::Dead),
            from,
            to,
            latest_only: true,
        };
        let page = state
            .store
            .search_attempts(&filter, None, limit)
            .await
            .map_err(internal)?;
        let now = state.clock.now();
        let gap_ms = 1000.0 / f64::from(per_second);
        let (mut queued, mut skipped) = (0u64, 0u64);
        let (mut first_due, mut last_due) = (None, None);
        let mut lanes = Vec::new();
        // Oldest first, so the pace follows the order the events happened in.
        for dead in page.items.iter().rev() {
            let due = now + Duration::milliseconds((queued as f64 * gap_ms) as i64);
            match state
                .store
                .retry_now(
                    &dead.account_id,
                    &dead.id,
                    &ids::attempt_id(),
                    now,
                    due,
                    true,
                )
                .await
                .map_err(internal)?
            {
                Some(attempt) => {
                    queued += 1;
                    first_due.get_or_insert(attempt.due_at);
                    last_due = Some(attempt.due_at);
                    if attempt.due_at <= now {
                        lanes.push(attempt.webhook_id);
                    }
                }
                None => skipped += 1,
            }
        }
        state.wake.lanes(lanes);
        let report = BulkRetryReport {
            matched: page.items.len() as u64,
            queued,
            skipped,
            first_due_at: first_due.map(rfc3339),
            last_due_at: last_due.map(rfc3339),
            more: page.next_cursor.is_some(),
        };
        crate::shared::audit::record(
            state.store.as_ref(),
            &op.actor(),
            "delivery.bulk_retry_requested",
            "deliveries",
            &rid.0,
            json!({"requestedBy": requested_by, "reason": reason,
                   "filter": {"accountId": body.account_id, "webhookId": body.webhook_id,
                              "eventId": body.event_id, "from": body.from, "to": body.to},
                   "perSecond": per_second, "matched": report.matched, "queued": queued,
                   "skipped": skipped, "more": report.more}),
        )
        .await;
        tracing::info!(
            matched = report.matched,
            queued,
            skipped,
            "bulk retry of dead letters"
        );
        Ok((StatusCode::ACCEPTED, Json(report)))
    })
    .await
}
