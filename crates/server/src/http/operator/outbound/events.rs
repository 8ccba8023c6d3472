//! Operator views of published (outbound) events across accounts: the list,
//! and one event with its payload and its fan-out (each webhook it was for,
//! and every try made for it).

use crate::auth::operator::Operator;
use crate::http::cursor;
use crate::http::deliveries::{view, AttemptView};
use crate::http::json::{page_limit, StrictPath, StrictQuery};
use crate::http::openapi::Page;
use crate::http::operator::filters::parse_time;
use crate::http::rfc3339;
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::Json;
use hookwarden_store::model::NewEvent;
use hookwarden_store::search::{AttemptFilter, EventFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("operator outbound events", e)
}

/// Most tries an event's page shows (each webhook's retries included).
const FAN_OUT_TRIES: u32 = 100;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct OutboundEventsQuery {
    account_id: Option<String>,
    /// Exact event type.
    event_type: Option<String>,
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

/// An event as published, without its payload.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboundEventSummary {
    /// hookwarden's id: the receivers' `webhook-id`.
    id: String,
    account_id: String,
    event_type: String,
    /// The producer that published it (a token's subject or a NATS
    /// identity); in the operator's views only.
    #[serde(skip_serializing_if = "Option::is_none")]
    producer: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

fn summary(e: &NewEvent) -> OutboundEventSummary {
    OutboundEventSummary {
        id: e.id.clone(),
        account_id: e.account_id.clone(),
        event_type: e.event_type.clone(),
        producer: Some(e.producer.clone()),
        created_at: rfc3339(e.created_at),
    }
}

/// List published events across accounts.
///
/// Newest first, filtered by account, exact event type and creation time.
/// Payloads are shown only on an event's own page.
#[utoipa::path(get, path = "/api/v1/outbound/events", tag = "operator", params(OutboundEventsQuery),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Events, newest first", body = Page<OutboundEventSummary>)))]
pub async fn list(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<OutboundEventsQuery>,
) -> ApiResult<Json<Page<OutboundEventSummary>>> {
    let filter = EventFilter {
        id: None,
        account_id: q.account_id.as_deref(),
        event_type: q.event_type.as_deref(),
        from: parse_time("from", q.from.as_deref())?,
        to: parse_time("to", q.to.as_deref())?,
    };
    let limit = page_limit(q.limit)?;
    let before = cursor::id("evt", q.cursor.as_deref())?;
    let page = state
        .store
        .search_events(&filter, before, limit)
        .await
        .map_err(internal)?;
    Ok(Json(Page::new(
        page.items.iter().map(summary).collect(),
        page.next_cursor,
    )))
}

/// One webhook an event was for, and the tries made for it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboundFanOut {
    webhook_id: String,
    /// Null when the webhook has been deleted since. The operator sees it
    /// without its query (which may carry the customer's tokens).
    url: Option<String>,
    disabled: bool,
    /// Newest first.
    attempts: Vec<AttemptView>,
}

/// An event, its payload and its fan-out.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboundEventDetail {
    #[serde(flatten)]
    event: OutboundEventSummary,
    payload: Value,
    /// Each webhook the event was for (subscribed when it was published).
    fan_out: Vec<OutboundFanOut>,
}

/// Read one published event with its fan-out.
///
/// The event's payload, and for each webhook it was queued for: the
/// webhook's URL (null when deleted since), whether it is disabled, and every
/// try made (newest first, at most 100 in all).
#[utoipa::path(get, path = "/api/v1/outbound/events/{id}", tag = "operator",
    params(("id" = String, Path, description = "Event id (the receivers' webhook-id)")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "The event and its fan-out", body = OutboundEventDetail)))]
pub async fn get(
    State(state): State<AppState>,
    _op: Operator,
    StrictPath(id): StrictPath<String>,
) -> ApiResult<Json<OutboundEventDetail>> {
    let event = state
        .store
        .get_event(None, &id)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(detail(&state, event, Viewer::Operator).await?))
}

/// Who reads an event's page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Operator,
    /// The account's own tenant: its endpoints' URLs in full, but not which
    /// internal producer published the event.
    Tenant,
}

/// The event's page: shared by the operator's view and the tenant's own
/// (`GET /v1/events/{id}`), which finds only its account's events.
pub async fn detail(
    state: &AppState,
    event: NewEvent,
    viewer: Viewer,
) -> ApiResult<OutboundEventDetail> {
    let fan_out = fan_out(state, &event, viewer).await?;
    let mut summary = summary(&event);
    if viewer == Viewer::Tenant {
        summary.producer = None;
    }
    Ok(OutboundEventDetail {
        event: summary,
        payload: event.payload,
        fan_out,
    })
}

async fn fan_out(
    state: &AppState,
    event: &NewEvent,
    viewer: Viewer,
) -> ApiResult<Vec<OutboundFanOut>> {
    let filter = AttemptFilter {
        account_id: Some(&event.account_id),
        event_id: Some(&event.id),
        ..Default::default()
    };
    let tries = state
        .store
        .search_attempts(&filter, None, FAN_OUT_TRIES)
        .await
        .map_err(internal)?;
    let mut by_webhook: BTreeMap<String, Vec<AttemptView>> = BTreeMap::new();
    for a in &tries.items {
        by_webhook
            .entry(a.webhook_id.clone())
            .or_default()
            .push(view(a));
    }
    let ids: Vec<String> = by_webhook.keys().cloned().collect();
    let webhooks = state.store.webhooks_by_ids(&ids).await.map_err(internal)?;
    Ok(by_webhook
        .into_iter()
        .map(|(webhook_id, attempts)| {
            let webhook = webhooks.iter().find(|w| w.id == webhook_id);
            OutboundFanOut {
                url: webhook.map(|w| match viewer {
                    Viewer::Operator => crate::http::operator::filters::shown_url(&w.url),
                    Viewer::Tenant => w.url.clone(),
                }),
                disabled: webhook.is_some_and(|w| w.disabled),
                webhook_id,
                attempts,
            }
        })
        .collect())
}
