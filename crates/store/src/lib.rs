//! hookwarden's storage: one `Store` trait and its two implementations,
//! SQLite (the embedded default) and PostgreSQL (production, schema `hook`).
//! Both are run by the same test suite.
//!
//! Architecture invariant: the store never sees a plaintext secret (only
//! `Sealed` ciphertext; the audit chain key is an opaque `ChainKey` that can
//! only link entries), and it knows nothing of HTTP, NATS or Redis.

mod answers;
pub mod births;
mod error;
mod group_commit;
pub mod ingress;
pub mod model;
mod postgres;
mod rows;
pub mod sealed;
pub mod search;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
pub use error::{Result, StoreError};
use model::*;
use std::sync::Arc;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The inbound schemes that sign a timestamp, as SQL: a request older than
/// its tolerance is refused whatever is stored, so retention keeps no key
/// of theirs.
pub(crate) const TIMESTAMPED_SCHEMES: &str = "'stripe', 'slack', 'standard-webhooks'";

/// Everything hookwarden stores, one trait for both backends, its methods
/// grouped by aggregate (the ingress half is the supertrait `IngressStore`).
/// Callers hold it as `dyn Store`.
#[async_trait]
pub trait Store: ingress::IngressStore + Send + Sync + 'static {
    // The store itself.

    /// `sqlite` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<()>;

    // Webhooks: an account's endpoints, their secrets, and the states that
    // stop deliveries to them.

    /// Sets the per-account webhook cap the database enforces (the server
    /// writes its setting at start-up; 10 until then).
    async fn set_max_webhooks_per_account(&self, max: u32) -> Result<()>;
    /// Refused with `WebhookLimit` past the cap, `WebhookDuplicate` when the
    /// account has a webhook with the same URL and event types.
    async fn create_webhook(&self, webhook: &Webhook) -> Result<()>;
    async fn get_webhook(&self, account_id: &str, id: &str) -> Result<Option<Webhook>>;
    /// Webhooks by id, whatever the account (the delivery worker's view).
    async fn webhooks_by_ids(&self, ids: &[String]) -> Result<Vec<Webhook>>;
    /// One account's webhooks, or (operator) every account's, by id.
    async fn list_webhooks(
        &self,
        account_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<Webhook>>;
    /// Refused with `WebhookDuplicate` when the new URL and event types are
    /// another webhook's of the account.
    async fn update_webhook(
        &self,
        account_id: &str,
        id: &str,
        update: &WebhookUpdate,
    ) -> Result<Option<Webhook>>;
    /// Deletes a webhook; its pending attempts become dead letters.
    async fn delete_webhook(&self, account_id: &str, id: &str, now: DateTime<Utc>) -> Result<bool>;
    /// The endpoint answered 410 Gone, or its tenant disabled it: stop
    /// delivering until it is updated. Does nothing to an endpoint the
    /// operator holds. False if nothing changed (no such webhook, or held).
    async fn disable_webhook(&self, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool>;
    /// The operator disables the endpoint: only `enable_webhook` lifts it
    /// (tenants' updates, 410s and tenants' disables leave it as it is).
    /// False if there is no such webhook.
    async fn hold_webhook(&self, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool>;
    /// The operator lets the endpoint's tries be claimed again (and lifts its
    /// hold). False if there is no such webhook.
    async fn enable_webhook(&self, id: &str, now: DateTime<Utc>) -> Result<bool>;
    /// How many endpoints are paused at `now` (and not disabled), and how
    /// many are disabled: the console's overview (one pass over the
    /// webhooks, which number in the thousands, not millions).
    async fn webhook_states(&self, now: DateTime<Utc>) -> Result<(u64, u64)>;
    /// Pauses an endpoint (it asked us to slow down, or the breaker opened):
    /// claim nothing for it until `until`, and move its pending tries due
    /// earlier to `until`, so claims for other endpoints do not walk past
    /// them. Tries published while paused are born due at `until`.
    async fn throttle_webhook(&self, id: &str, until: DateTime<Utc>) -> Result<()>;
    /// One more failed try of the endpoint, counted in the database so that
    /// every replica counts the same failures: at `threshold` in a row the
    /// breaker opens (the count starts over, the pauses go up by one). The
    /// first failure since the last success keeps its time. `None` if there
    /// is no such webhook.
    async fn webhook_failed(
        &self,
        id: &str,
        now: DateTime<Utc>,
        threshold: u32,
    ) -> Result<Option<Failure>>;
    /// A try of the endpoint succeeded: its health starts over. Answers the
    /// pauses it had had since its last success (0: it was not paused, or
    /// there is no such webhook).
    async fn webhook_succeeded(&self, id: &str) -> Result<u32>;
    /// The endpoint has failed every try for too long: disabled with
    /// `reason`, its pending tries dead letters with the same reason, in one
    /// transaction. Nothing changes for an endpoint already disabled or held
    /// by the operator (false).
    async fn disable_failing_webhook(
        &self,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Holds an endpoint back until `until` (claims skip it) without moving
    /// its tries: a rate-limited endpoint waiting for its next send slot,
    /// which would otherwise rewrite its whole backlog every slot.
    async fn hold_back_webhook(&self, id: &str, until: DateTime<Utc>) -> Result<()>;
    /// Reserves a send slot of a rate-limited endpoint, for every replica
    /// alike: the later of `now` and its next free slot, if no later than
    /// `latest` (the next free slot then moves `interval` on); `Busy` with
    /// that time, reserving nothing, otherwise. A webhook gone answers `now`.
    async fn reserve_send_slot(
        &self,
        id: &str,
        now: DateTime<Utc>,
        interval: chrono::Duration,
        latest: DateTime<Utc>,
    ) -> Result<Slot>;
    /// Recovery of an endpoint that is back: its pause and failure count
    /// are cleared (not when it started failing: only a success or an
    /// enable clears that, so recoveries cannot keep a dead endpoint from
    /// being disabled), and its tries waiting for a retry (a pending try after a
    /// failed one) created since `since` are due at `now`. Answers how many
    /// tries were brought forward.
    async fn hurry_retries(
        &self,
        id: &str,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64>;

    // Events: published, then fanned out to their subscribed webhooks.

    /// Stores an event and, in the same transaction, one pending attempt per
    /// enabled webhook of its account subscribed to its type. A client id
    /// already used by the same producer for the same account answers that
    /// event (`Existing`) or `Conflict`; other producers and accounts never
    /// see it.
    async fn publish_event(&self, event: &NewEvent) -> Result<PublishOutcome>;
    /// From now on, first tries published through `publish_event` whose
    /// endpoint has room in this process's delivery worker are stored leased
    /// to it and handed over (`births.rs`); `None` stops that (shutdown).
    fn hand_births_to(&self, births: Option<Arc<dyn births::Births>>);
    /// Stores an event and, in the same transaction, one pending try for
    /// the one webhook `webhook_id` of the event's account, whatever its
    /// subscriptions (the tenant's test event): no other webhook gets it.
    /// The try is due at once, or when the endpoint's pause ends, and
    /// retried on the schedule like any other. Nothing is stored for a
    /// webhook that is not the account's (`NoWebhook`) or is disabled.
    async fn publish_to_webhook(&self, event: &NewEvent, webhook_id: &str)
        -> Result<DirectOutcome>;
    /// One event as published; `account_id` `None` is the operator's view.
    async fn get_event(&self, account_id: Option<&str>, id: &str) -> Result<Option<NewEvent>> {
        let filter = search::EventFilter {
            id: Some(id),
            account_id,
            ..Default::default()
        };
        Ok(self.search_events(&filter, None, 1).await?.items.pop())
    }
    /// Events `filter` selects, newest first, before the cursor `before`.
    async fn search_events(
        &self,
        filter: &search::EventFilter<'_>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<NewEvent>>;

    // Delivery tries (attempts): claimed under a lease, recorded, retried.

    /// Claims due attempts under a lease (SKIP LOCKED on PostgreSQL, one
    /// atomic statement on SQLite): no two workers hold the same attempt.
    async fn claim_due(&self, claim: &Claim<'_>) -> Result<Vec<Attempt>>;
    /// Claims like `claim_due`, each attempt with its webhook as the claim
    /// found it (`None` if deleted since): what the delivery worker needs.
    async fn claim_due_with_webhooks(
        &self,
        claim: &Claim<'_>,
    ) -> Result<Vec<(Attempt, Option<Webhook>)>> {
        let attempts = self.claim_due(claim).await?;
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<String> = attempts.iter().map(|a| a.webhook_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let webhooks: std::collections::HashMap<String, Webhook> = self
            .webhooks_by_ids(&ids)
            .await?
            .into_iter()
            .map(|w| (w.id.clone(), w))
            .collect();
        Ok(attempts
            .into_iter()
            .map(|a| {
                let w = webhooks.get(&a.webhook_id).cloned();
                (a, w)
            })
            .collect())
    }
    /// Gives back claimed attempts without trying them (one statement).
    async fn release(&self, attempt_ids: &[String], worker_id: &str) -> Result<()>;
    /// Records a try's outcome and, for a failure with retries left, the next
    /// pending attempt, atomically. Returns false if the lease was lost.
    async fn complete_attempt(&self, result: &AttemptResult) -> Result<bool>;
    /// Tries `filter` selects, newest first, before the cursor `before`.
    async fn search_attempts(
        &self,
        filter: &search::AttemptFilter<'_>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<Attempt>>;
    /// One try; `account_id` `None` is the operator's view (any account).
    async fn get_attempt(
        &self,
        account_id: Option<&str>,
        attempt_id: &str,
    ) -> Result<Option<Attempt>> {
        let filter = search::AttemptFilter {
            id: Some(attempt_id),
            account_id,
            ..Default::default()
        };
        Ok(self.search_attempts(&filter, None, 1).await?.items.pop())
    }
    /// Schedules the attempt's event for its webhook again, due at `due_at`:
    /// the pending attempt if one exists, else a new one. `None` if the
    /// webhook is gone, or (`only_if_latest`) a later try of the pair exists:
    /// a bulk retry racing another re-queues each dead letter once.
    async fn retry_now(
        &self,
        account_id: &str,
        attempt_id: &str,
        new_id: &str,
        now: DateTime<Utc>,
        due_at: DateTime<Utc>,
        only_if_latest: bool,
    ) -> Result<Option<Attempt>>;
    /// Pending and due tries, and how long the oldest due one has waited.
    async fn queue_stats(&self, now: DateTime<Utc>) -> Result<QueueStats>;

    // Event types: the schemas published payloads are checked against.

    /// Creates or replaces an event type's schema (keeping its creation time).
    async fn put_event_type(&self, event_type: &EventType) -> Result<EventType>;
    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>>;
    async fn list_event_types(&self) -> Result<Vec<EventType>>;
    async fn delete_event_type(&self, name: &str) -> Result<bool>;

    // Sealed values: what a master key rotation finds and re-seals.

    /// Up to `limit` sealed values of `column` not under master key `key_id`.
    async fn sealed_not_under(
        &self,
        column: sealed::SealedColumn,
        key_id: &str,
        limit: u32,
    ) -> Result<Vec<sealed::SealedRow>>;
    /// Replaces a sealed value if it is still `old` (compare-and-swap, so a
    /// concurrent secret rotation is never overwritten). False if it changed.
    async fn reseal(
        &self,
        column: sealed::SealedColumn,
        id: &str,
        old: &hookwarden_core::crypto::Sealed,
        new: &hookwarden_core::crypto::Sealed,
    ) -> Result<bool>;
    /// How many sealed values are not under `key_id`, over every column.
    async fn count_not_under(&self, key_id: &str) -> Result<u64>;

    // Web sessions: the console's and the portal's sign-ins, and the
    // single-use links that open a portal session. Tokens are stored only
    // as their hex SHA-256; "live" means not revoked and expiring after `now`.

    /// Stores a new session. A portal session without an account is refused
    /// by the database.
    async fn create_web_session(&self, session: &WebSession) -> Result<()>;
    /// The session with this token hash, if it is live at `now`.
    async fn get_web_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<WebSession>>;
    /// Revokes a session (signing out). False if there is no such session
    /// or it was revoked already.
    async fn revoke_web_session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<bool>;
    /// Revokes every live session of `kind`, only those of `account_id`
    /// when given; answers how many. For portal sessions, the portal links
    /// not yet opened (of that account) are spent too.
    async fn revoke_web_sessions(
        &self,
        kind: SessionKind,
        account_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64>;
    /// Up to `limit` live sessions (of `kind`, when given), newest first:
    /// who is signed in.
    async fn list_web_sessions(
        &self,
        kind: Option<SessionKind>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<WebSession>>;
    /// Stores a new portal link.
    async fn create_portal_link(&self, link: &PortalLink) -> Result<()>;
    /// Marks the link used and answers it (with `used_at` set), in one
    /// statement: of concurrent redeems of one token exactly one gets it.
    /// `None` if it is unknown, used already, or expired at `now`.
    async fn redeem_portal_link(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PortalLink>>;
    /// Spends the link and starts its portal session (digest `id_hash`,
    /// its CSRF token, the link's account, ending at the link's creation
    /// plus its `session_ttl_seconds`) in one transaction, so that
    /// `revoke_web_sessions` for the account sees both or neither. `None`
    /// if the link is unknown, used already, or expired at `now`.
    async fn open_portal_link(
        &self,
        token_hash: &str,
        id_hash: &str,
        csrf: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<WebSession>>;
    /// Deletes sessions that expired or were revoked, and portal links that
    /// expired, more than `PRUNE_GRACE` (a day) before `now`, in batches of at most
    /// `PRUNE_BATCH` rows per statement; answers how many rows went.
    async fn prune_web_sessions(&self, now: DateTime<Utc>) -> Result<u64>;

    // Activity: per-minute counts for the console's charts, summed across
    // replicas (each adds its own deltas).

    /// Adds each delta to its (minute, series) row (`value = value + delta`,
    /// the row created at the delta), all in one transaction. Deltas for the
    /// same row are summed first. Answers each row touched with its value
    /// after the add: the sum over every replica so far (the refusal
    /// flusher tells from it when the replicas together crossed a
    /// threshold).
    async fn add_activity(&self, deltas: &[ActivityDelta]) -> Result<Vec<ActivityDelta>>;
    /// Every row with `minute >= since`, ordered by minute, then series.
    async fn activity_since(&self, since: DateTime<Utc>) -> Result<Vec<ActivityDelta>>;
    /// Deletes the rows with `minute < before`; answers how many.
    async fn prune_activity(&self, before: DateTime<Utc>) -> Result<u64>;

    // Retention: the one path that deletes history (migration 0021).

    /// Looks at the next `limit` events after the id `after` created before
    /// `before`, and deletes those whose every try is finished and was made
    /// before it too, with their tries, in one short transaction. Only
    /// events with time-ordered ids (those made since migration 0008) are
    /// found.
    async fn prune_events(
        &self,
        before: DateTime<Utc>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Pruned>;
    /// The same for inbound events received before `before`, with their
    /// forwarding jobs and replay requests. Of an integration whose scheme
    /// signs no timestamp (or one deleted), the event's deduplication key
    /// is all that stops a replay of an old signed request: it stays, with
    /// the event's id, and `record_inbound` answers a request bearing it as
    /// that duplicate. (A timestamped scheme, `TIMESTAMPED_SCHEMES`,
    /// refuses a request older than its tolerance anyway.) Answers
    /// (events, jobs) deleted.
    async fn prune_inbound(&self, before: DateTime<Utc>, limit: u32) -> Result<(u64, u64)>;
    /// When the oldest event and the oldest inbound event kept were made.
    async fn oldest_kept(&self) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)>;
}

/// The most rows one pruning statement deletes: each batch is a short
/// transaction, so pruning a large backlog never holds writers up for long.
pub const PRUNE_BATCH: u32 = 1000;

/// How long expired and revoked sessions and expired links are kept before
/// pruning deletes them.
pub const PRUNE_GRACE: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// Opens the store named by a database URL (`sqlite://…` or `postgres://…`).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}

/// A database URL fit for logs: the password replaced.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable database url>".to_owned(),
    }
}

/// The body snapshot delivered for an event: `{type, timestamp, data}`.
pub fn snapshot(event: &NewEvent) -> serde_json::Value {
    serde_json::json!({
        "type": event.event_type,
        "timestamp": event.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": event.payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        let r = redact_url("postgres://hook:s3cr3t@db:5432/app?sslmode=require");
        assert!(!r.contains("s3cr3t"));
        assert!(r.contains("REDACTED"));
    }
}
