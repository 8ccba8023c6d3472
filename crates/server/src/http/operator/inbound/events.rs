//! Operator views of inbound events: listings (filters, sort, cursor), one
//! event with its raw body and forwarding tries, and replays. Every
//! unexpected query parameter is a 400.

use crate::auth::operator::Operator;
use crate::http::cursor;
use crate::http::json::{page_limit, StrictJson, StrictPath, StrictQuery};
use crate::http::openapi::Page;
use crate::http::operator::filters::{checked, parse_status, parse_time};
use crate::http::request_id::RequestId;
use crate::http::rfc3339;
use crate::inbound::dedup::MAX_ID as MAX_DELIVERY_ID;
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::Engine;
use hookwarden_core::ids;
use hookwarden_store::ingress::{EventQuery, InboundEvent, NewReplay};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("operator events", e)
}

use super::forwarding::{job_view, JobView};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Integration name.
    provider: Option<String>,
    /// The provider's own delivery id (the events' `deliveryId`, 1–200
    /// characters), matched exactly, case included; of any provider unless
    /// `provider` is given too.
    #[param(min_length = 1, max_length = 200)]
    delivery_id: Option<String>,
    /// Status of the latest forwarding job: pending, succeeded, failed or dead.
    status: Option<String>,
    /// Received at or after (RFC 3339).
    from: Option<String>,
    /// Received before (RFC 3339).
    to: Option<String>,
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
    /// `createdAt` (default) or `-createdAt`.
    sort: Option<String>,
}

/// An inbound event in listings.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    id: String,
    provider: String,
    /// The provider's own delivery id, when it sends one.
    delivery_id: Option<String>,
    /// Status of the latest forwarding job.
    status: Option<String>,
    body_sha256: String,
    source_ip: Option<String>,
    correlation_id: String,
    #[schema(format = DateTime)]
    created_at: String,
}

fn event_summary(e: &InboundEvent) -> EventSummary {
    EventSummary {
        id: e.id.clone(),
        provider: e.provider.clone(),
        delivery_id: e.delivery_id.clone(),
        status: e.status.map(|s| s.as_str().to_owned()),
        body_sha256: e.body_sha256.clone(),
        source_ip: e.source_ip.clone(),
        correlation_id: e.correlation_id.clone(),
        created_at: rfc3339(e.received_at),
    }
}

/// One inbound event in full: the raw body as received (it verified as
/// such), the headers kept with it, and its forwarding jobs.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventDetail {
    #[serde(flatten)]
    summary: EventSummary,
    /// The body, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_body: Option<String>,
    /// The body in base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_body_base64: Option<String>,
    /// Headers kept (never one carrying a signature or credential).
    headers: Value,
    jobs: Vec<JobView>,
}

/// List inbound events
///
/// Inbound events, filtered by `provider`, `deliveryId` (the provider's own delivery id, exact;
/// two providers may use the same one), `status` (of the latest forwarding job) and the time
/// received (`from` included, `to` excluded, RFC 3339), all combined; `sort=createdAt` (the
/// default) or `-createdAt`; paged with `limit` and `cursor`. Any other query parameter is
/// refused (400).
#[utoipa::path(get, path = "/api/v1/events", tag = "operator", params(EventsQuery),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Inbound events", body = Page<EventSummary>)))]
pub async fn list(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<EventsQuery>,
) -> ApiResult<Json<Page<EventSummary>>> {
    let descending = match q.sort.as_deref() {
        None | Some("createdAt") => false,
        Some("-createdAt") => true,
        Some(_) => {
            return Err(ApiError::Validation(
                "sort must be createdAt or -createdAt".into(),
            ))
        }
    };
    if let Some(p) = &q.provider {
        if !crate::inbound::integrations::valid_name(p) {
            return Err(ApiError::Validation(
                "provider is not a valid integration name".into(),
            ));
        }
    }
    if let Some(id) = &q.delivery_id {
        // Nothing longer is ever stored (`inbound::dedup`).
        if id.is_empty() || id.chars().count() > MAX_DELIVERY_ID {
            return Err(ApiError::Validation(format!(
                "deliveryId must be 1 to {MAX_DELIVERY_ID} characters"
            )));
        }
    }
    let after = cursor::time_id(q.cursor.as_deref())?;
    let query = EventQuery {
        provider: q.provider,
        delivery_id: q.delivery_id,
        status: parse_status(q.status.as_deref())?,
        from: parse_time("from", q.from.as_deref())?,
        to: parse_time("to", q.to.as_deref())?,
        descending,
        after,
        limit: page_limit(q.limit)?,
    };
    let page = state.store.list_inbound(&query).await.map_err(internal)?;
    Ok(Json(Page::new(
        page.items.iter().map(event_summary).collect(),
        page.next_cursor,
    )))
}

/// Get an inbound event
///
/// One inbound event with the raw body as received (`rawBody`, or `rawBodyBase64` when it is
/// not UTF-8), the headers kept with it (never one carrying a signature or a credential) and
/// its forwarding jobs.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "operator",
    params(("id" = String, Path, description = "Inbound event id")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "The event with its raw body and jobs", body = EventDetail)))]
pub async fn get(
    State(state): State<AppState>,
    _op: Operator,
    StrictPath(id): StrictPath<String>,
) -> ApiResult<Json<EventDetail>> {
    let e = state
        .store
        .get_inbound(&id)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound)?;
    let jobs = state
        .store
        .list_jobs(Some(&id), None, None, 100)
        .await
        .map_err(internal)?;
    let (raw_body, raw_body_base64) = match String::from_utf8(e.raw_body.clone()) {
        Ok(text) => (Some(text), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&e.raw_body)),
        ),
    };
    Ok(Json(EventDetail {
        summary: event_summary(&e),
        raw_body,
        raw_body_base64,
        headers: e.headers.clone(),
        jobs: jobs.items.iter().map(job_view).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplayBody {
    /// Who asked (1–100 characters), for the audit trail.
    requested_by: String,
    /// Why (1–500 characters).
    reason: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayAccepted {
    replay_id: String,
    event_id: String,
    job: JobView,
}

/// Replay an inbound event
///
/// Forwards the event to its integration's target again: a new forwarding job, due now (202).
/// `requestedBy` (1–100 characters) and `reason` (1–500) are recorded with the replay and in
/// the audit trail.
#[utoipa::path(post, path = "/api/v1/events/{id}/replay", tag = "operator", request_body = ReplayBody,
    params(("id" = String, Path, description = "Inbound event id")),
    security(("operatorKey" = [])),
    responses((status = 202, description = "A new forwarding job is due now", body = ReplayAccepted)))]
pub async fn replay(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(id): StrictPath<String>,
    StrictJson(body): StrictJson<ReplayBody>,
) -> ApiResult<(StatusCode, Json<ReplayAccepted>)> {
    let (requested_by, reason) = checked(&body.requested_by, &body.reason)?;
    let replay = NewReplay {
        id: ids::new_id("rpl"),
        event_id: id.clone(),
        requested_by,
        reason,
        request_id: rid.0.clone(),
        job_id: ids::new_id("job"),
        created_at: state.clock.now(),
    };
    let job = state
        .store
        .replay(&replay)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound)?;
    state.forward_wake.any();
    crate::shared::audit::record(
        state.store.as_ref(),
        &op.actor(),
        "event.replay_requested",
        &format!("event:{id}"),
        &rid.0,
        json!({"requestedBy": replay.requested_by, "reason": replay.reason, "jobId": job.id}),
    )
    .await;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayAccepted {
            replay_id: replay.id,
            event_id: id,
            job: job_view(&job),
        }),
    ))
}
