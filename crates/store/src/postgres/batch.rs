//! PostgreSQL's group-committed writes (`group_commit.rs`): each batch in a
//! fixed number of statements whatever its size, the batch's columns passed
//! as arrays to `unnest`, since one statement per item cost the database
//! more than anything else on the publishing, delivering and receiving paths.

use super::floor::Floor;
use super::pinned::Pinned;
use crate::answers;
use crate::births::{BirthSlot, Born};
use crate::error::{Result, StoreError};
use crate::group_commit::BatchWriter;
use crate::ingress::{NewInbound, RecordOutcome};
use crate::model::{AttemptResult, NewEvent, PublishOutcome};
use async_trait::async_trait;
use sqlx::postgres::PgPool;
use std::collections::HashSet;
use std::sync::Arc;

/// Inbound events and their first jobs in one statement, its own
/// transaction (one round trip, not BEGIN and COMMIT around it). Those whose
/// (provider, dedup key) is taken, earlier in the batch or by another
/// replica (ON CONFLICT waits for a concurrent insert to commit), are
/// answered with the stored event's id, read once the insert committed.
pub(super) struct Inbound(pub(super) Pinned, pub(super) Arc<Floor>);

#[async_trait]
impl BatchWriter for Inbound {
    type Item = NewInbound;
    /// Each its own result: the answers of those not inserted are read
    /// after the commit, and one failing read must not fail the others.
    type Outcome = Result<RecordOutcome>;
    const NAME: &'static str = "inbound";

    async fn commit(&self, items: &[&NewInbound]) -> Result<Vec<Result<RecordOutcome>>> {
        let texts = |f: fn(&NewInbound) -> Option<String>| -> Vec<Option<String>> {
            items.iter().map(|e| f(e)).collect()
        };
        let mut conn = self.0.get().await?;
        let inserted: Vec<String> = sqlx::query_scalar(
            "WITH e AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
               $6::bytea[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[], \
               $12::text[]) \
               AS e(id, provider, dedup_key, delivery_id, body_sha256, raw_body, headers, source_ip, \
                 correlation_id, received_at, job_id, trace_parent)), \
             ins AS (INSERT INTO hook.inbound_events (id, provider, dedup_key, delivery_id, body_sha256, \
               raw_body, headers, source_ip, correlation_id, received_at, trace_parent) \
               SELECT id, provider, dedup_key, delivery_id, body_sha256, raw_body, headers::jsonb, source_ip, \
                 correlation_id, received_at, trace_parent FROM e \
               WHERE NOT EXISTS (SELECT 1 FROM hook.inbound_pruned p \
                                 WHERE p.provider = e.provider AND p.dedup_key = e.dedup_key) \
               ON CONFLICT (provider, dedup_key) DO NOTHING RETURNING id), \
             jobs AS (INSERT INTO hook.processing_jobs (id, event_id, provider, attempt, status, trigger, \
               due_at, created_at) \
               SELECT e.job_id, e.id, e.provider, 1, 'pending', 'received', e.received_at, e.received_at \
               FROM e JOIN ins ON ins.id = e.id) \
             SELECT id FROM ins",
        )
        .bind(texts(|e| Some(e.id.clone())))
        .bind(texts(|e| Some(e.provider.clone())))
        .bind(texts(|e| Some(e.dedup_key.clone())))
        .bind(texts(|e| e.delivery_id.clone()))
        .bind(texts(|e| Some(e.body_sha256.clone())))
        .bind(items.iter().map(|e| e.raw_body.clone()).collect::<Vec<_>>())
        .bind(texts(|e| Some(e.headers.to_string())))
        .bind(texts(|e| e.source_ip.clone()))
        .bind(texts(|e| Some(e.correlation_id.clone())))
        .bind(items.iter().map(|e| e.received_at).collect::<Vec<_>>())
        .bind(texts(|e| Some(e.job_id.clone())))
        .bind(texts(|e| e.trace_parent.clone()))
        .fetch_all(&mut *conn)
        .await?;
        conn.finished();
        let inserted: HashSet<String> = inserted.into_iter().collect();
        self.1.wrote(
            items
                .iter()
                .filter(|e| inserted.contains(&e.id))
                .map(|e| e.received_at),
        );
        // Committed: from here no error may fail the batch (its retry, item
        // by item, would meet its own rows and call them duplicates). The
        // events already stored for the keys of those not inserted.
        let (providers, keys): (Vec<&str>, Vec<&str>) = items
            .iter()
            .filter(|e| !inserted.contains(&e.id))
            .map(|e| (e.provider.as_str(), e.dedup_key.as_str()))
            .unzip();
        let mut stored = Ok(Vec::new());
        if !providers.is_empty() {
            stored = sqlx::query_as(
                "SELECT provider, dedup_key, id FROM hook.inbound_events WHERE (provider, dedup_key) IN \
                 (SELECT * FROM unnest($1::text[], $2::text[])) \
                 UNION ALL \
                 SELECT provider, dedup_key, event_id FROM hook.inbound_pruned WHERE (provider, dedup_key) IN \
                 (SELECT * FROM unnest($1::text[], $2::text[]))",
            )
            .bind(&providers)
            .bind(&keys)
            .fetch_all(self.0.pool())
            .await;
        }
        if let Ok(outcomes) = stored
            .map_err(StoreError::from)
            .and_then(|stored| answers::inbound(items, &inserted, stored))
        {
            return Ok(outcomes.into_iter().map(Ok).collect());
        }
        // The lookup failed: each not inserted is answered on its own, with
        // its own error if it fails again; those inserted are created.
        let mut outcomes = Vec::with_capacity(items.len());
        for e in items {
            outcomes.push(if inserted.contains(&e.id) {
                Ok(RecordOutcome::Created)
            } else {
                stored_inbound(self.0.pool(), e).await
            });
        }
        Ok(outcomes)
    }
}

/// Finished tries in one call per batch (migration 0005): each try's outcome
/// where the worker still holds the lease, and the next try of those that
/// failed with retries left (copying the snapshot inside the database). One
/// round trip instead of two per try is what lets one commit carry a
/// hundred of them.
pub(super) struct Completions(pub(super) Pinned, pub(super) Arc<Floor>);

#[async_trait]
impl BatchWriter for Completions {
    type Item = AttemptResult;
    type Outcome = bool;
    const NAME: &'static str = "delivery results";

    async fn commit(&self, items: &[&AttemptResult]) -> Result<Vec<bool>> {
        let column = |f: fn(&AttemptResult) -> Option<String>| -> Vec<Option<String>> {
            items.iter().map(|r| f(r)).collect()
        };
        let mut conn = self.0.get().await?;
        let recorded: Vec<(String, String)> = sqlx::query_as(
            "SELECT * FROM hook.record_attempts($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(column(|r| Some(r.attempt_id.clone())))
        .bind(column(|r| Some(r.worker_id.clone())))
        .bind(column(|r| Some(r.status.as_str().to_owned())))
        .bind(items.iter().map(|r| r.http_status).collect::<Vec<_>>())
        .bind(items.iter().map(|r| r.duration_ms).collect::<Vec<_>>())
        .bind(column(|r| r.response_preview.clone()))
        .bind(column(|r| r.error.clone()))
        .bind(items.iter().map(|r| r.completed_at).collect::<Vec<_>>())
        .bind(column(|r| r.next.as_ref().map(|(id, _)| id.clone())))
        .bind(
            items
                .iter()
                .map(|r| r.next.as_ref().map(|(_, due)| *due))
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *conn)
        .await?;
        conn.finished();
        self.1.wrote(
            items
                .iter()
                .filter_map(|r| r.next.as_ref().map(|(_, due)| *due)),
        );
        Ok(answers::recorded(items, recorded))
    }
}

/// Published events in two round trips per batch, whatever its size: the
/// subscribed webhooks of the batch's accounts, then one statement that
/// inserts the events and the first tries of those inserted (a statement is
/// its own transaction, so an event is never stored without its tries).
/// BEGIN, three statements and COMMIT were five round trips, each waking
/// PostgreSQL's backend and a tokio thread: the largest share of both
/// processes' kernel time in a burst.
/// Tries whose endpoint has room in this process's worker are inserted
/// leased to it and handed over once committed (`births.rs`).
pub(super) struct Publishes(
    pub(super) Pinned,
    pub(super) Arc<Floor>,
    pub(super) Arc<BirthSlot>,
);

#[async_trait]
impl BatchWriter for Publishes {
    type Item = NewEvent;
    /// Each its own result, as for inbound events.
    type Outcome = Result<PublishOutcome>;
    const NAME: &'static str = "publish";

    async fn commit(&self, items: &[&NewEvent]) -> Result<Vec<Result<PublishOutcome>>> {
        let texts =
            |f: fn(&NewEvent) -> String| -> Vec<String> { items.iter().map(|e| f(e)).collect() };
        // Read before the insert, in its own snapshot: under READ COMMITTED
        // each statement of a transaction had its own snapshot anyway, so a
        // webhook created or deleted meanwhile races exactly as it did. A
        // try handed to the worker is the exception: it is leased only if
        // its webhook is, at the insert, still enabled, not paused and as
        // read (`updated_at`); otherwise it is stored for a claim, which
        // reads the webhook again.
        let all = vec![true; items.len()];
        let accounts = answers::fresh_accounts(items, &all);
        // With a worker to hand tries to, whole rows: the worker needs them.
        let births = self.2.get();
        let columns = match births {
            Some(_) => crate::rows::WEBHOOK_COLUMNS,
            None => answers::SUBSCRIBER_COLUMNS,
        };
        // Both statements on one connection, kept between batches.
        let mut conn = self.0.get().await?;
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM hook.webhook_configs WHERE account_id = ANY($1) AND NOT disabled"
        ))
        .bind(&accounts)
        .fetch_all(&mut *conn)
        .await?;
        let webhooks = rows
            .iter()
            .map(answers::Subscriber::from_row)
            .collect::<Result<Vec<_>>>()?;
        // Every event's tries, as if each were new; the statement keeps only
        // those of the events it inserted. Each try's snapshot is bound
        // (built once per event): joining the tries to one body per event in
        // the statement measured slower in bursts.
        let (mut outcomes, tries) = answers::fan_out(items, &all, &webhooks);
        let mut born = Born::reserve(births, &tries, &webhooks);
        let whole = born.whole(&tries, &rows);
        // Any conflict (the internal id, or the producer's client id for the
        // account) leaves the event out of RETURNING, and its tries out of
        // the join: answered below.
        let inserted: std::result::Result<Vec<(bool, String)>, sqlx::Error> = sqlx::query_as(
            "WITH ins AS (INSERT INTO hook.events (id, client_id, account_id, event_type, payload, \
                 producer, created_at, trace_parent) \
               SELECT id, client_id, account_id, event_type, payload::jsonb, producer, created_at, trace_parent \
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                           $7::timestamptz[], $15::text[]) \
                 AS e(id, client_id, account_id, event_type, payload, producer, created_at, trace_parent) \
               ON CONFLICT DO NOTHING RETURNING id, trace_parent), \
             tries AS (INSERT INTO hook.delivery_attempts (id, event_id, webhook_id, account_id, attempt, \
                 status, due_at, payload_snapshot, trace_parent, created_at, claimed_by, lease_until) \
               SELECT t.id, t.event_id, t.webhook_id, t.account_id, 1, 'pending', t.due, t.snapshot::jsonb, \
                 ins.trace_parent, t.at, CASE WHEN w.id IS NOT NULL THEN t.owner END, \
                 CASE WHEN w.id IS NOT NULL THEN t.lease END \
               FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], \
                           $13::text[], $14::timestamptz[], $16::text[], $17::timestamptz[], \
                           $18::timestamptz[]) \
                 AS t(id, event_id, webhook_id, account_id, at, snapshot, due, owner, lease, seen) \
               JOIN ins ON ins.id = t.event_id \
               LEFT JOIN hook.webhook_configs w ON t.owner IS NOT NULL AND w.id = t.webhook_id \
                 AND NOT w.disabled AND w.updated_at = t.seen \
                 AND (w.throttled_until IS NULL OR w.throttled_until <= t.due) \
               RETURNING id, claimed_by) \
             SELECT FALSE, id FROM ins \
             UNION ALL SELECT TRUE, id FROM tries WHERE claimed_by IS NOT NULL",
        )
        .bind(texts(|e| e.id.clone()))
        .bind(items.iter().map(|e| e.client_id.clone()).collect::<Vec<_>>())
        .bind(texts(|e| e.account_id.clone()))
        .bind(texts(|e| e.event_type.clone()))
        .bind(texts(|e| e.payload.to_string()))
        .bind(texts(|e| e.producer.clone()))
        .bind(items.iter().map(|e| e.created_at).collect::<Vec<_>>())
        .bind(&tries.ids)
        .bind(&tries.event_ids)
        .bind(&tries.webhook_ids)
        .bind(&tries.account_ids)
        .bind(&tries.at)
        .bind(
            tries
                .body_of
                .iter()
                .map(|&b| tries.bodies[b].as_str())
                .collect::<Vec<_>>(),
        )
        .bind(&tries.due)
        .bind(
            items
                .iter()
                .map(|e| e.trace_parent.clone())
                .collect::<Vec<_>>(),
        )
        .bind(born.owners(&tries))
        .bind(born.leases(&tries))
        .bind(born.seen(&tries, &whole))
        .fetch_all(&mut *conn)
        .await;
        let inserted = match inserted {
            Ok(inserted) => {
                conn.finished();
                inserted
            }
            Err(e) => {
                // Closed first: the connection may be half way through it.
                drop(conn);
                // The statement may have committed all the same (the answer
                // lost on the way): leases that no worker will start are
                // undone, so a claim finds those tries at once.
                let (ids, owners) = born.leased(&tries);
                if !ids.is_empty() {
                    let undone = sqlx::query(
                        "UPDATE hook.delivery_attempts SET lease_until = NULL, claimed_by = NULL \
                         WHERE id = ANY($1) AND claimed_by = ANY($2) AND status = 'pending'",
                    )
                    .bind(&ids)
                    .bind(&owners)
                    .execute(self.0.pool())
                    .await;
                    if let Err(undo) = undone {
                        tracing::warn!(error.message = %undo, "undoing the leases of a failed publish failed; those tries wait for their lease");
                    }
                }
                born.abandon(&tries);
                return Err(e.into());
            }
        };
        // Lowering the floor for a try not inserted is harmless (a claim
        // starts a little earlier than it must).
        self.1.wrote(tries.due.iter().copied());
        // Committed: from here no error may fail the batch (its retry, item
        // by item, would meet its own rows). The rows are inserted in order,
        // so of one key twice in a batch the first is new and the second
        // meets it, as if they came one by one.
        let (leased, inserted): (Vec<_>, Vec<_>) = inserted.into_iter().partition(|(t, _)| *t);
        let leased: HashSet<String> = leased.into_iter().map(|(_, id)| id).collect();
        let mut new: HashSet<String> = inserted.into_iter().map(|(_, id)| id).collect();
        born.start(
            &tries,
            |i| new.contains(&tries.event_ids[i]),
            |i| leased.contains(&tries.ids[i]),
            &whole,
            items,
            &mut outcomes,
        );
        let mut answers = Vec::with_capacity(items.len());
        for (e, outcome) in items.iter().zip(outcomes) {
            answers.push(if new.remove(&e.id) {
                Ok(outcome)
            } else {
                existing(self.0.pool(), e).await
            });
        }
        Ok(answers)
    }
}

/// The stored event holding an inbound event's (provider, dedup key).
async fn stored_inbound(pool: &PgPool, e: &NewInbound) -> Result<RecordOutcome> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT id FROM hook.inbound_events WHERE provider = $1 AND dedup_key = $2 \
         UNION ALL \
         SELECT event_id FROM hook.inbound_pruned WHERE provider = $1 AND dedup_key = $2 \
         LIMIT 1",
    )
    .bind(&e.provider)
    .bind(&e.dedup_key)
    .fetch_optional(pool)
    .await?;
    id.map(|event_id| RecordOutcome::Duplicate { event_id })
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "inbound {}: neither inserted nor stored before",
                e.id
            ))
        })
}

/// A client id this producer published before for this account (or, for an
/// event without one, its internal id): the same event again, or a conflict.
async fn existing(pool: &PgPool, e: &NewEvent) -> Result<PublishOutcome> {
    // Two statements, not one with a CASE: each must use its index.
    let key = if e.client_id.is_some() {
        "ev.producer = $3 AND ev.account_id = $4 AND ev.client_id = $2"
    } else {
        "ev.id = $1"
    };
    let row = sqlx::query(&format!(
        "SELECT id, client_id, account_id, event_type, payload, producer, created_at, trace_parent, \
         (SELECT count(DISTINCT a.webhook_id) FROM hook.delivery_attempts a WHERE a.event_id = ev.id) \
           AS deliveries \
         FROM hook.events ev WHERE {key}"
    ))
    .bind(&e.id)
    .bind(&e.client_id)
    .bind(&e.producer)
    .bind(&e.account_id)
    .fetch_one(pool)
    .await?;
    answers::existing(&row, e)
}
