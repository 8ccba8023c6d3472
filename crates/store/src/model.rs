//! The records the store reads and writes. Secrets appear here only as
//! ciphertext (`Sealed`); decrypting is the server's job.

use chrono::{DateTime, Utc};
use hookwarden_core::crypto::Sealed;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub account_id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub secret: Sealed,
    /// The previous secret and until when it keeps signing (rotation grace).
    pub old_secret: Option<(Sealed, DateTime<Utc>)>,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub throttled_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A change to a webhook; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookUpdate {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// A new secret; the current one becomes the old one until the given time.
    pub rotate: Option<(Sealed, DateTime<Utc>)>,
    /// Updating a webhook re-enables it (after a 410 disabled it).
    pub enable: bool,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: String,
    pub account_id: String,
    pub event_type: String,
    pub payload: Value,
    pub producer: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PublishOutcome {
    /// Stored now, with one pending attempt per subscribed webhook (their
    /// ids: the lanes a worker is woken for).
    Created { webhooks: Vec<String> },
    /// The same event id was published before with the same content.
    Existing { deliveries: u64 },
    /// The id is taken by an event with other content.
    Conflict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptStatus {
    Pending,
    Succeeded,
    Failed,
    Dead,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            _ => return None,
        })
    }
}

/// One try of delivering an event to a webhook (or the next one, pending).
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: String,
    pub event_id: String,
    pub webhook_id: String,
    pub account_id: String,
    pub attempt: i32,
    pub status: AttemptStatus,
    pub due_at: DateTime<Utc>,
    pub payload_snapshot: Value,
    pub http_status: Option<i32>,
    pub duration_ms: Option<i64>,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// What a finished try reports back.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub attempt_id: String,
    pub worker_id: String,
    pub status: AttemptStatus,
    pub http_status: Option<i32>,
    pub duration_ms: i64,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    pub completed_at: DateTime<Utc>,
    /// When `status` is `Failed`: the id and due time of the next try.
    pub next: Option<(String, DateTime<Utc>)>,
}

/// A claim request: up to `limit` due attempts, none for `exclude_webhooks`
/// (endpoints already holding their fair share of the in-flight budget).
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub worker_id: &'a str,
    pub now: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    pub limit: u32,
    pub exclude_webhooks: &'a [String],
}

/// A page of results: ask for `limit`, get at most that and a cursor.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows, so that the presence of
    /// one more row tells whether a next page exists.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

/// Counts for `/metrics` and readiness.
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    pub pending: u64,
    pub due: u64,
    pub oldest_due_age_seconds: f64,
}

/// An event type and the JSON Schema its payloads must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub struct EventType {
    pub name: String,
    pub schema: Value,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
