//! Test events: a tenant asks for one event to be sent to one of its
//! endpoints now. It is stored with a single pending try for that endpoint
//! (whatever the endpoint subscribes to, and for no other endpoint), then
//! signed, sent and retried by the dispatcher like any other try.

use crate::shared::pump::Wake;
use chrono::{DateTime, Utc};
use hookwarden_core::ids;
use hookwarden_store::model::{Attempt, AttemptStatus, DirectOutcome, NewEvent};
use hookwarden_store::{Store, StoreError};
use serde_json::json;

/// The type of every test event; hookwarden's own, so no producer's
/// grant or schema is asked for it at this edge.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// The producer the stored event names: a tenant's request, not a producer's.
const PRODUCER: &str = "hookwarden:test";

/// The event type to send: only `webhook.test` for now (the default).
pub fn event_type(asked: Option<&str>) -> Result<&'static str, String> {
    match asked {
        None | Some(TEST_EVENT_TYPE) => Ok(TEST_EVENT_TYPE),
        Some(_) => Err(format!(
            "eventType: only {TEST_EVENT_TYPE} can be sent as a test event"
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// No such webhook in the account.
    #[error("no such webhook")]
    NotFound,
    #[error("the endpoint is disabled")]
    Disabled,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// What was queued: the event (the receiver's `webhook-id`) and its try.
#[derive(Debug)]
pub struct Queued {
    pub event_id: String,
    pub attempt_id: String,
}

/// Stores the test event with its one try for `webhook_id`, then wakes the
/// worker for that endpoint. The body delivered is
/// `{"type":"webhook.test","timestamp":…,"data":{"webhookId":…,"test":true}}`.
pub async fn send(
    store: &dyn Store,
    wake: &Wake,
    account_id: &str,
    webhook_id: &str,
    now: DateTime<Utc>,
) -> Result<Queued, TestError> {
    let event = NewEvent {
        id: ids::event_id(),
        client_id: None,
        account_id: account_id.to_owned(),
        event_type: TEST_EVENT_TYPE.to_owned(),
        payload: json!({"webhookId": webhook_id, "test": true}),
        producer: PRODUCER.to_owned(),
        created_at: now,
        // Its try starts a trace of its own.
        trace_parent: None,
    };
    match store.publish_to_webhook(&event, webhook_id).await? {
        DirectOutcome::Queued { attempt_id } => {
            wake.lanes([webhook_id.to_owned()]);
            Ok(Queued {
                event_id: event.id,
                attempt_id,
            })
        }
        DirectOutcome::NoWebhook => Err(TestError::NotFound),
        DirectOutcome::Disabled => Err(TestError::Disabled),
    }
}

/// Waits for the queued try to be made, at most `within`: the try as it
/// stands then (still pending if the endpoint is paused, or the worker
/// busy or not running here). Reads back off from 10 ms to 200 ms, so a
/// waiting caller costs a few dozen reads of one row by primary key.
pub async fn outcome(
    store: &dyn Store,
    account_id: &str,
    attempt_id: &str,
    within: std::time::Duration,
) -> Result<Option<Attempt>, StoreError> {
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        let attempt = store.get_attempt(Some(account_id), attempt_id).await?;
        let now = tokio::time::Instant::now();
        match &attempt {
            Some(a) if a.status == AttemptStatus::Pending && now < deadline => {}
            _ => return Ok(attempt),
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_test_type_is_sent() {
        assert_eq!(super::event_type(None), Ok("webhook.test"));
        assert_eq!(super::event_type(Some("webhook.test")), Ok("webhook.test"));
        assert!(super::event_type(Some("invoice.paid")).is_err());
    }
}
