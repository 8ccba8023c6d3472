//! Retry arithmetic and dead letters, for both directions: when a failed
//! try (a delivery or a forwarding) is tried again, how what a receiver
//! answered is made storable, and where dead-letter notices go.

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

/// The try's record, filled with what the client observed and completed
/// `now` (status still to decide). Delivery and forwarding both build their
/// records here, so what a receiver answered is always made storable in
/// this one place.
pub fn observed(
    base: hookwarden_store::model::AttemptResult,
    o: &crate::shared::client::Outcome,
    now: DateTime<Utc>,
) -> hookwarden_store::model::AttemptResult {
    hookwarden_store::model::AttemptResult {
        http_status: o.http_status.map(i32::from),
        duration_ms: o.duration.as_millis() as i64,
        response_preview: o.preview.as_deref().map(storable_text),
        error: o.error.as_deref().map(storable_text),
        completed_at: now,
        ..base
    }
}

/// Text from outside (a receiver's answer, an error's description) made fit
/// for any database column: U+0000, which PostgreSQL's `text` cannot hold,
/// becomes U+FFFD (as invalid UTF-8 already did when the bytes were read),
/// and at most `crate::shared::client::PREVIEW_CHARS` characters are kept. A body of NUL
/// bytes (gzip, UTF-16, binary) then records like any other, instead of
/// failing its write and being sent again after every lease.
pub fn storable_text(text: &str) -> String {
    text.chars()
        .take(crate::shared::client::PREVIEW_CHARS)
        .map(|c| {
            if c == '\0' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storable_text_replaces_nul_and_keeps_the_bound() {
        assert_eq!(storable_text("a\0b"), "a\u{fffd}b");
        let gzip = String::from_utf8_lossy(&[0x1f, 0x8b, 0x08, 0x00, 0x00, 0xff]);
        assert!(!storable_text(&gzip).contains('\0'));
        let long = "é".repeat(crate::shared::client::PREVIEW_CHARS + 10);
        assert_eq!(
            storable_text(&long).chars().count(),
            crate::shared::client::PREVIEW_CHARS
        );
        assert_eq!(storable_text("plain text\n"), "plain text\n");
    }
}
