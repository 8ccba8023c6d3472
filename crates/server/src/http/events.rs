//! `POST /v1/events`: producers publish events for an account; `GET
//! /v1/events/{id}`: a tenant reads one of its events and its deliveries.

use crate::auth::{Producer, Scope, Tenant};
use crate::http::json::{StrictJson, StrictPath};
use crate::http::operator::outbound::events::{detail, OutboundEventDetail, Viewer};
use crate::outbound::intake::{self, IntakeError, PublishRequest};
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use crate::shared::traces::{Kind, Span};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use serde::Serialize;
use utoipa::ToSchema;

/// A request's `traceparent`, read without copying its other headers (the
/// `HeaderMap` extractor clones them all, on every publish).
pub struct TraceParentHeader(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TraceParentHeader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            crate::shared::traces::header(&parts.headers).map(str::to_owned),
        ))
    }
}

/// What `POST /v1/events` answers.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    event_id: String,
    /// Deliveries scheduled (one per subscribed webhook).
    deliveries: u64,
    /// True when this id was published before with the same content.
    duplicate: bool,
}

/// Publish an event
///
/// A producer (scope `events:publish`) publishes an event for one account. It is answered only
/// once stored (202), with hookwarden's own `eventId` (the receivers' `webhook-id`) and the
/// number of deliveries scheduled: one per webhook of the account subscribed to `eventType`.
/// When producer grants are configured, the producer must be granted the type for that account,
/// and a token bound to an account may publish for that account only (403). The payload is a
/// JSON object, checked against the type's schema when one is registered (400, naming the place
/// and the keyword, never the value); U+0000 is refused. `id` is an idempotency key per
/// producer and account: the same id with the same content answers the same event (`duplicate:
/// true`), with other content 409 `CONFLICT`.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = PublishRequest,
    security(("bearer" = [])),
    responses((status = 202, description = "Stored; deliveries scheduled", body = Accepted),
        (status = 409, description = "The id was used for other content", body = crate::http::openapi::ErrorResponse)))]
pub async fn publish(
    State(state): State<AppState>,
    producer: Producer,
    TraceParentHeader(traceparent): TraceParentHeader,
    StrictJson(body): StrictJson<PublishRequest>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    // The producer's trace continues into the event and every try of it.
    let mut span =
        state
            .traces
            .start_under("POST /v1/events", Kind::Server, traceparent.as_deref());
    span.set("http.request.method", "POST");
    span.set("http.route", "/v1/events");
    let answer = publish_traced(&state, &producer, body, &mut span).await;
    let status = match &answer {
        Ok((status, _)) => *status,
        Err(e) => e.status(),
    };
    span.set("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.fail("the event was not stored");
    }
    answer
}

async fn publish_traced(
    state: &AppState,
    producer: &Producer,
    body: PublishRequest,
    span: &mut Span,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    // A token bound to an account may publish for that account only.
    if let Some(account) = &producer.principal.account_id {
        if account != &body.account_id {
            return Err(ApiError::Forbidden(
                "token may not publish for this account".into(),
            ));
        }
    }
    let accepted = intake::publish(state, body, &producer.principal.subject, "http", span)
        .await
        .map_err(|e| match e {
            IntakeError::Invalid(m) => ApiError::Validation(m),
            IntakeError::Conflict => ApiError::Conflict(e.to_string()),
            IntakeError::Forbidden(m) => ApiError::Forbidden(m),
            IntakeError::Store(s) => ApiError::internal("publish event", s),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            event_id: accepted.event_id,
            deliveries: accepted.deliveries,
            duplicate: accepted.duplicate,
        }),
    ))
}

/// Read one of the account's events and its deliveries.
///
/// The event's type, payload and creation time, and for each of the
/// account's webhooks it was queued for, every try made (newest first, at
/// most 100 in all). Another account's event answers 404, as a missing one.
/// Scope `webhooks:read`.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Event id (the receivers' webhook-id)")),
    security(("bearer" = [])),
    responses((status = 200, description = "The event and its deliveries", body = OutboundEventDetail)))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    StrictPath(id): StrictPath<String>,
) -> ApiResult<Json<OutboundEventDetail>> {
    tenant.require(Scope::WebhooksRead)?;
    let event = state
        .store
        .get_event(Some(&tenant.account_id), &id)
        .await
        .map_err(|e| ApiError::internal("get event", e))?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(detail(&state, event, Viewer::Tenant).await?))
}
