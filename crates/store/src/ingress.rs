//! The ingress half of the storage interface: integrations, verified inbound
//! events, forwarding jobs, replay requests and the audit trail.

use crate::error::Result;
use crate::model::{AttemptResult, AttemptStatus, Claim, Page};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookwarden_core::audit::ChainKey;
use hookwarden_core::crypto::Sealed;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Integration {
    pub name: String,
    pub scheme: String,
    pub signature_header: Option<String>,
    pub encoding: Option<String>,
    pub prefix: Option<String>,
    pub tolerance_seconds: i64,
    pub target_url: String,
    pub allowed_cidrs: Vec<String>,
    pub rate_limit_per_minute: Option<i64>,
    pub idempotency_header: Option<String>,
    /// All active provider secrets, sealed together (a JSON list inside).
    pub secrets: Sealed,
    /// The secret with which hookwarden signs what it forwards.
    pub forwarding_secret: Sealed,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Forward the exact verified bytes instead of the normalized envelope.
    pub forward_raw_body: bool,
}

/// A verified request about to be stored, with its first forwarding job.
#[derive(Debug, Clone)]
pub struct NewInbound {
    pub id: String,
    pub provider: String,
    pub dedup_key: String,
    pub delivery_id: Option<String>,
    pub body_sha256: String,
    pub raw_body: Vec<u8>,
    pub headers: Value,
    pub source_ip: Option<String>,
    pub correlation_id: String,
    pub received_at: DateTime<Utc>,
    pub job_id: String,
    /// The W3C `traceparent` its forwarding continues (the span that
    /// received it).
    pub trace_parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Created,
    /// Same provider delivery already stored: the existing event's id.
    Duplicate {
        event_id: String,
    },
}

#[derive(Debug, Clone)]
pub struct InboundEvent {
    pub id: String,
    pub provider: String,
    pub dedup_key: String,
    pub delivery_id: Option<String>,
    pub body_sha256: String,
    pub raw_body: Vec<u8>,
    pub headers: Value,
    pub source_ip: Option<String>,
    pub correlation_id: String,
    pub received_at: DateTime<Utc>,
    /// The W3C `traceparent` its forwarding continues.
    pub trace_parent: Option<String>,
    /// The status of its latest forwarding job.
    pub status: Option<AttemptStatus>,
}

/// One forwarding try of an inbound event (or the next one, pending).
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub event_id: String,
    pub provider: String,
    pub attempt: i32,
    pub status: AttemptStatus,
    pub trigger: String,
    pub due_at: DateTime<Utc>,
    pub http_status: Option<i32>,
    pub duration_ms: Option<i64>,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Filters and ordering for the operator's event listing.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub provider: Option<String>,
    /// Exactly this provider delivery id (`InboundEvent::delivery_id`), of
    /// any provider unless `provider` is given too.
    pub delivery_id: Option<String>,
    pub status: Option<AttemptStatus>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Newest first when true.
    pub descending: bool,
    /// Continue after this (received_at, id).
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: u32,
}

/// Which audit entries to list, combined with AND, in trail order (seq);
/// `None` filters nothing.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// This action exactly.
    pub action: Option<String>,
    /// Actions that start with this text (`integration.` for `integration.*`).
    pub action_prefix: Option<String>,
    pub target: Option<String>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
    /// Continue past this seq, in the page's order.
    pub after_seq: Option<i64>,
    /// Newest (highest seq) first when true.
    pub descending: bool,
    pub limit: u32,
}

/// A replay request as the operator made it.
#[derive(Debug, Clone)]
pub struct NewReplay {
    pub id: String,
    pub event_id: String,
    pub requested_by: String,
    pub reason: String,
    pub request_id: String,
    pub job_id: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub request_id: String,
    pub details: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub id: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub request_id: String,
    pub details: String,
    pub created_at: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    pub fn entry(&self) -> hookwarden_core::audit::Entry<'_> {
        hookwarden_core::audit::Entry {
            seq: self.seq,
            id: &self.id,
            actor: &self.actor,
            action: &self.action,
            target: &self.target,
            request_id: &self.request_id,
            details: &self.details,
            created_at: &self.created_at,
        }
    }
}

/// Jobs by status and the age of the oldest due pending one.
#[derive(Debug, Clone, Default)]
pub struct ProcessingStatus {
    pub by_status: Vec<(String, u64)>,
    pub oldest_pending_age_seconds: f64,
}

/// The forwarding queue's backlog: the pending and the dead jobs, and the
/// age of the oldest due pending one. Unlike `ProcessingStatus`, which
/// counts every job ever made (10⁶ jobs: 100–200 ms), each figure is an
/// index range as large as what it counts.
#[derive(Debug, Clone, Default)]
pub struct ForwardingBacklog {
    pub pending: u64,
    pub dead: u64,
    pub oldest_pending_age_seconds: f64,
}

/// The chain key new audit entries are linked with, given to the store at
/// start-up (`IngressStore::set_audit_key`). The store only links with it:
/// the key's bytes never leave `ChainKey`.
#[derive(Default)]
pub(crate) struct AuditKeySlot(std::sync::RwLock<Option<std::sync::Arc<ChainKey>>>);

impl AuditKeySlot {
    pub(crate) fn set(&self, key: ChainKey) {
        // A poisoned lock still holds a whole value: a set either happened or not.
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(std::sync::Arc::new(key));
    }

    /// The key, or an error: an unkeyed entry after the switch-over would
    /// read as an edit, so nothing is appended without it.
    pub(crate) fn get(&self) -> Result<std::sync::Arc<ChainKey>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(crate::error::StoreError::AuditKeyMissing)
    }
}

/// The audit chain key's row (one, id `chain`).
pub const AUDIT_KEY_ROW: &str = "chain";

/// Builds the chained record for a new audit entry after `prev` (seq, hash),
/// linked under `key` (HMAC-SHA256 from its `keyed_from` on).
pub(crate) fn chain_audit(
    prev: Option<(i64, String)>,
    entry: &NewAudit,
    now: DateTime<Utc>,
    key: &ChainKey,
) -> AuditRecord {
    let (seq, prev_hash) = match prev {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, hookwarden_core::audit::GENESIS.to_owned()),
    };
    let mut record = AuditRecord {
        seq,
        id: hookwarden_core::ids::new_id("aud"),
        actor: entry.actor.clone(),
        action: entry.action.clone(),
        target: entry.target.clone(),
        request_id: entry.request_id.clone(),
        details: entry.details.to_string(),
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        prev_hash,
        hash: String::new(),
    };
    record.hash = key.link(&record.prev_hash, &record.entry());
    record
}

/// Seals a new chain key made for entries from the given seq on (the store
/// names the seq under its append lock; the caller holds the master key).
pub type SealNewAuditKey<'a> = &'a (dyn Fn(i64) -> Sealed + Send + Sync);

#[async_trait]
pub trait IngressStore: Send + Sync {
    // Integrations: the providers hookwarden receives from, and where it
    // forwards to.

    /// False if an integration of that name exists.
    async fn create_integration(&self, integration: &Integration) -> Result<bool>;
    async fn get_integration(&self, name: &str) -> Result<Option<Integration>>;
    async fn list_integrations(&self) -> Result<Vec<Integration>>;
    /// Replaces every field but the name and creation time. False if missing.
    async fn update_integration(&self, integration: &Integration) -> Result<bool>;
    async fn delete_integration(&self, name: &str) -> Result<bool>;
    /// A number that changes with every change to any integration (a
    /// database trigger bumps it), polled by each replica's cache.
    async fn integration_generation(&self) -> Result<i64>;

    // Inbound events: verified requests, stored once per provider delivery.

    /// Stores a verified event and its first job, or names the existing event
    /// with the same (provider, dedup key) — also under concurrent inserts.
    async fn record_inbound(&self, event: &NewInbound) -> Result<RecordOutcome>;
    async fn get_inbound(&self, id: &str) -> Result<Option<InboundEvent>>;
    async fn list_inbound(&self, query: &EventQuery) -> Result<Page<InboundEvent>>;

    // Forwarding jobs: claimed under a lease, recorded, retried.

    /// Claims due jobs under a lease; `exclude_webhooks` names providers here.
    async fn claim_jobs(&self, claim: &Claim<'_>) -> Result<Vec<Job>>;
    async fn release_job(&self, job_id: &str, worker_id: &str) -> Result<()>;
    /// Records a forwarding try and the next one when it failed with retries left.
    async fn complete_job(&self, result: &AttemptResult) -> Result<bool>;
    async fn list_jobs(
        &self,
        event_id: Option<&str>,
        status: Option<AttemptStatus>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<Job>>;

    // Replays.

    /// Records a replay request and schedules a new job for the event, now.
    /// `None` if the event does not exist.
    async fn replay(&self, replay: &NewReplay) -> Result<Option<Job>>;

    // The audit trail: hash-chained, append-only.

    /// Appends to the hash-chained audit trail, linked under the key given
    /// by `set_audit_key` (`AuditKeyMissing` without one).
    async fn append_audit(&self, entry: &NewAudit, now: DateTime<Utc>) -> Result<AuditRecord>;
    /// Entries `query` selects, one page in trail order (ascending seq
    /// unless `descending`); the cursor is the last entry's seq.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Page<AuditRecord>>;
    /// Every audit entry in order, for `hookwarden audit verify`.
    async fn audit_chain(&self) -> Result<Vec<AuditRecord>>;
    /// The newest entry's (seq, hash), for the head metric and log.
    async fn audit_head(&self) -> Result<Option<(i64, String)>>;
    /// The sealed chain key, if one was made.
    async fn audit_key(&self) -> Result<Option<Sealed>>;
    /// The sealed chain key, made first if there is none: `seal` is called
    /// with the seq of the next entry, under the append lock, so no entry is
    /// appended between the last unkeyed one and the key.
    async fn init_audit_key(&self, seal: SealNewAuditKey<'_>, now: DateTime<Utc>)
        -> Result<Sealed>;
    /// The key `append_audit` links with (opened by the caller).
    fn set_audit_key(&self, key: ChainKey);

    // Status.

    /// Jobs by status and the oldest due one's age, for `/metrics` and
    /// readiness.
    async fn processing_status(&self, now: DateTime<Utc>) -> Result<ProcessingStatus>;
    /// The pending and dead jobs and the oldest due one's age, for the
    /// console's overview and `/metrics`, which read it often.
    async fn forwarding_backlog(&self, now: DateTime<Utc>) -> Result<ForwardingBacklog>;
}
