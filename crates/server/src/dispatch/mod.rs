//! Outbound delivery: the SSRF-safe client, the worker that claims due
//! attempts and delivers them, the breaker that pauses failing endpoints,
//! and where dead letters are announced.

pub mod breaker;
pub mod client;
pub mod worker;

use async_trait::async_trait;
use serde_json::Value;

/// Where dead-letter notices go besides the database (NATS when configured).
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    async fn publish(&self, notice: &Value) -> anyhow::Result<()>;
}

use chrono::{DateTime, Utc};
use hookwarden_store::model::AttemptStatus;
use rand::Rng;
use std::time::Duration;

/// After a failed try (number `attempt`): the next try's id and due time per
/// the schedule with jitter (at least `at_least`, a bounded `Retry-After`),
/// or a dead letter when the schedule is exhausted.
pub fn after_failure(
    schedule: &[Duration],
    attempt: i32,
    at_least: Option<Duration>,
    completed_at: DateTime<Utc>,
) -> (AttemptStatus, Option<(String, DateTime<Utc>)>) {
    let jitter: f64 = rand::thread_rng().gen();
    match hookwarden_core::backoff::retry_delay(schedule, attempt.max(1) as usize, jitter) {
        Some(delay) => {
            let delay = at_least.map_or(delay, |min| delay.max(min));
            let due = completed_at
                + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(5));
            (
                AttemptStatus::Failed,
                Some((hookwarden_core::ids::attempt_id(), due)),
            )
        }
        None => (AttemptStatus::Dead, None),
    }
}

/// The try's record, filled with what the client observed (status still to decide).
pub fn observed(
    base: hookwarden_store::model::AttemptResult,
    o: &client::Outcome,
) -> hookwarden_store::model::AttemptResult {
    hookwarden_store::model::AttemptResult {
        http_status: o.http_status.map(i32::from),
        duration_ms: o.duration.as_millis() as i64,
        response_preview: o.preview.clone(),
        error: o.error.clone(),
        completed_at: Utc::now(),
        ..base
    }
}
