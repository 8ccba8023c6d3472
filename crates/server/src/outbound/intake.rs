//! Event intake shared by `POST /v1/events` and the NATS consumer: validate at
//! the edge, commit (event plus its pending attempts), then wake the worker.
//! Nothing is acknowledged before the commit.

use crate::shared::state::AppState;
use crate::shared::traces::Span;
use hookwarden_core::{ids, validate};
use hookwarden_store::model::{NewEvent, PublishOutcome};
use serde::Deserialize;
use serde_json::Value;

/// The published event, as JSON over HTTP and NATS alike.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PublishRequest {
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub account_id: String,
    #[schema(pattern = "^[a-z0-9._-]{1,100}$")]
    pub event_type: String,
    /// A JSON object; checked against the event type's schema when one is registered.
    pub payload: Value,
    /// Idempotency key of this producer for this account: publishing the same
    /// id and content again answers the same event. Other producers and
    /// accounts may use the same id for events of their own.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{0}")]
    Invalid(String),
    #[error("this producer already published this id for this account, with other content")]
    Conflict,
    #[error("{0}")]
    Forbidden(String),
    #[error("storage: {0}")]
    Store(#[from] hookwarden_store::StoreError),
}

#[derive(Debug)]
pub struct Accepted {
    pub event_id: String,
    pub deliveries: u64,
    pub duplicate: bool,
}

pub fn validate(req: &PublishRequest) -> Result<(), IntakeError> {
    let invalid = |e: validate::ValidationError| IntakeError::Invalid(e.to_string());
    validate::identifier("accountId", &req.account_id).map_err(invalid)?;
    validate::event_type(&req.event_type).map_err(invalid)?;
    validate::payload(&req.payload).map_err(invalid)?;
    if holds_nul(&req.payload) {
        // PostgreSQL's jsonb cannot hold U+0000; SQLite could, but both
        // backends answer alike (README: "Payloads").
        return Err(IntakeError::Invalid(
            "payload: must not contain the character U+0000 (\\u0000) in a key or a string".into(),
        ));
    }
    if let Some(id) = &req.id {
        validate::identifier("id", id).map_err(invalid)?;
    }
    Ok(())
}

/// Does U+0000 appear in any key or string of `value`?
pub fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Validates, stores and acknowledges one event. `span` is the step's span
/// (the request's or the message's): the event stores its context, which
/// every try of it continues, and it is told the event's ids.
pub async fn publish(
    state: &AppState,
    req: PublishRequest,
    producer: &str,
    source: &'static str,
    span: &mut Span,
) -> Result<Accepted, IntakeError> {
    validate(&req)?;
    state
        .settings
        .grants
        .check(producer, &req.account_id, &req.event_type)
        .map_err(IntakeError::Forbidden)?;
    // The payload's schema, when its type has one (checked at this edge and again before delivery).
    state
        .schemas
        .check(state.store.as_ref(), &req.event_type, &req.payload)
        .await
        .map_err(|e| {
            // The database's own error when it is one (unavailable, say).
            IntakeError::Store(
                e.downcast::<hookwarden_store::StoreError>()
                    .unwrap_or_else(|e| {
                        hookwarden_store::StoreError::Corrupt(format!("schema check: {e}"))
                    }),
            )
        })?
        .map_err(IntakeError::Invalid)?;
    // The internal id is always ours: the client's id only names the event
    // among this producer's events for this account.
    let event = NewEvent {
        id: ids::event_id(),
        client_id: req.id,
        account_id: req.account_id,
        event_type: req.event_type,
        payload: req.payload,
        producer: producer.to_owned(),
        created_at: state.clock.now(),
        trace_parent: span.stored(),
    };
    let outcome = state.store.publish_event(&event).await?;
    let (event_id, deliveries, duplicate) = match outcome {
        PublishOutcome::Created { webhooks, handed } => {
            let deliveries = webhooks.len() as u64;
            let waiting = hookwarden_store::model::waiting(&webhooks, &handed);
            if !waiting.is_empty() {
                state.wake.lanes(waiting);
            }
            (event.id, deliveries, false)
        }
        PublishOutcome::Existing {
            event_id,
            deliveries,
        } => (event_id, deliveries, true),
        PublishOutcome::Conflict => return Err(IntakeError::Conflict),
    };
    metrics::counter!("hookwarden_events_published_total", "source" => source, "duplicate" => duplicate.to_string())
        .increment(1);
    span.set("hookwarden.event.id", event_id.as_str());
    span.set("hookwarden.event.type", event.event_type.as_str());
    span.set("hookwarden.account.id", event.account_id.as_str());
    span.set("hookwarden.deliveries", deliveries);
    span.set("hookwarden.duplicate", duplicate);
    tracing::info!(
        event.id = %event_id, account.id = %event.account_id, event.type = %event.event_type,
        producer = %producer, deliveries, duplicate, source, "event accepted"
    );
    Ok(Accepted {
        event_id,
        deliveries,
        duplicate,
    })
}
