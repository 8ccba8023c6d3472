//! Event intake shared by `POST /v1/events` and the NATS consumer: validate at
//! the edge, commit (event plus its pending attempts), then wake the worker.
//! Nothing is acknowledged before the commit.

use crate::state::AppState;
use chrono::Utc;
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
    /// Idempotency key: publishing the same id and content again is harmless.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{0}")]
    Invalid(String),
    #[error("event id is already used by an event with other content")]
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
    if let Some(id) = &req.id {
        validate::identifier("id", id).map_err(invalid)?;
    }
    Ok(())
}

pub async fn publish(
    state: &AppState,
    req: PublishRequest,
    producer: &str,
    source: &'static str,
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
            IntakeError::Store(hookwarden_store::StoreError::Corrupt(format!(
                "schema check: {e}"
            )))
        })?
        .map_err(IntakeError::Invalid)?;
    let event = NewEvent {
        id: req.id.unwrap_or_else(ids::event_id),
        account_id: req.account_id,
        event_type: req.event_type,
        payload: req.payload,
        producer: producer.to_owned(),
        created_at: Utc::now(),
    };
    let outcome = state.store.publish_event(&event).await?;
    let (deliveries, duplicate) = match outcome {
        PublishOutcome::Created { webhooks } => {
            let deliveries = webhooks.len() as u64;
            if deliveries > 0 {
                state.wake.lanes(webhooks);
            }
            (deliveries, false)
        }
        PublishOutcome::Existing { deliveries } => (deliveries, true),
        PublishOutcome::Conflict => return Err(IntakeError::Conflict),
    };
    metrics::counter!("hookwarden_events_published_total", "source" => source, "duplicate" => duplicate.to_string())
        .increment(1);
    tracing::info!(
        event.id = %event.id, account.id = %event.account_id, event.type = %event.event_type,
        producer = %producer, deliveries, duplicate, source, "event accepted"
    );
    Ok(Accepted {
        event_id: event.id,
        deliveries,
        duplicate,
    })
}
