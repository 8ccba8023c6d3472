//! Event intake shared by `POST /v1/events` and the NATS consumer: validate at
//! the edge, commit (event plus its pending attempts), then wake the worker.
//! Nothing is acknowledged before the commit.

use crate::inbound::body;
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
    if let Some(why) = unstorable(&req.payload) {
        return Err(IntakeError::Invalid(format!("payload: {why}")));
    }
    if let Some(id) = &req.id {
        validate::identifier("id", id).map_err(invalid)?;
    }
    Ok(())
}

/// Why a JSON value (a payload, a schema) could not be stored and read
/// back as it is, if it could not: U+0000 in a key or a string
/// (PostgreSQL's jsonb cannot hold it; SQLite could, but both backends
/// answer alike, README: "Payloads"), or serde_json's reserved raw-value
/// key at any place (stored, an object led by it would be read back as the
/// JSON text its string holds, or not at all). Every way in refuses a raw
/// body holding the key (`inbound/body.rs`); this holds whichever way a
/// value came.
pub fn unstorable(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => s.contains('\0').then(nul),
        Value::Array(items) => items.iter().find_map(unstorable),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(nul())
            } else if k == body::RESERVED_KEY {
                Some(body::reserved_key_rule())
            } else {
                unstorable(v)
            }
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

fn nul() -> String {
    "must not contain the character U+0000 (\\u0000) in a key or a string".into()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Whatever way a value came, one that could not be read back as it is
    /// stored is refused: U+0000, or the raw-value key at any place.
    #[test]
    fn values_that_would_not_read_back_are_unstorable() {
        let reserved = body::RESERVED_KEY;
        for value in [
            json!({"to": "a\u{0}b"}),
            json!({"a\u{0}": 1}),
            json!({"zzzz": 1, reserved: "0"}),
            json!({"a": [{"b": {reserved: "{}"}}]}),
        ] {
            assert!(unstorable(&value).is_some(), "{value}");
        }
        assert_eq!(unstorable(&json!({"a": [reserved, {"b": null}]})), None);
    }
}
