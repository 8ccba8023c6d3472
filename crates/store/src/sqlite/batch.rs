//! SQLite's group-committed writes (`group_commit.rs`): one transaction per
//! batch on the single writer. Every statement is a round trip to the
//! connection's own thread, so inbound and published events go in as
//! multi-row inserts; finished tries, a few statements each, one after
//! another inside the batch's transaction.

use super::ms;
use crate::answers;
use crate::births::{BirthSlot, Born};
use crate::error::Result;
use crate::group_commit::BatchWriter;
use crate::ingress::{NewInbound, RecordOutcome};
use crate::model::{AttemptResult, NewEvent, PublishOutcome};
use async_trait::async_trait;
use sqlx::sqlite::SqlitePool;
use sqlx::types::Json;
use sqlx::Row;
use std::collections::HashSet;
use std::sync::Arc;

/// Inbound events in a fixed number of statements whatever the batch's size
/// (the events, then the first jobs of those inserted): those hand-offs to
/// the connection's thread, not SQLite, were most of the receiving path's
/// CPU when each event took two statements. Those whose (provider, dedup
/// key) is taken, earlier in the batch too, are answered with the stored
/// event's id.
pub(super) struct Inbound(pub(super) SqlitePool);

#[async_trait]
impl BatchWriter for Inbound {
    type Item = NewInbound;
    type Outcome = RecordOutcome;
    const NAME: &'static str = "inbound";

    async fn commit(&self, items: &[&NewInbound]) -> Result<Vec<RecordOutcome>> {
        let mut tx = self.0.begin().await?;
        let mut events = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO inbound_events (id, provider, dedup_key, delivery_id, body_sha256, raw_body, headers, \
             source_ip, correlation_id, received_at, trace_parent) ",
        );
        events.push_values(items, |mut row, e| {
            row.push_bind(&e.id)
                .push_bind(&e.provider)
                .push_bind(&e.dedup_key)
                .push_bind(&e.delivery_id)
                .push_bind(&e.body_sha256)
                .push_bind(&e.raw_body)
                .push_bind(Json(&e.headers))
                .push_bind(&e.source_ip)
                .push_bind(&e.correlation_id)
                .push_bind(ms(e.received_at))
                .push_bind(&e.trace_parent);
        });
        events.push(" ON CONFLICT (provider, dedup_key) DO NOTHING RETURNING id");
        let inserted: HashSet<String> = events
            .build_query_scalar::<String>()
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let created: Vec<&&NewInbound> =
            items.iter().filter(|e| inserted.contains(&e.id)).collect();
        if !created.is_empty() {
            let mut jobs = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO processing_jobs (id, event_id, provider, attempt, status, trigger, due_at, created_at) ",
            );
            jobs.push_values(created, |mut row, e| {
                row.push_bind(&e.job_id)
                    .push_bind(&e.id)
                    .push_bind(&e.provider)
                    .push("1, 'pending', 'received'")
                    .push_bind(ms(e.received_at))
                    .push_bind(ms(e.received_at));
            });
            jobs.build().execute(&mut *tx).await?;
        }
        // The events already stored for the keys of those not inserted.
        let taken: Vec<(&str, &str)> = items
            .iter()
            .filter(|e| !inserted.contains(&e.id))
            .map(|e| (e.provider.as_str(), e.dedup_key.as_str()))
            .collect();
        let mut stored = Vec::new();
        if !taken.is_empty() {
            // A key pruned by retention is answered from what it left.
            stored = sqlx::query_as(
                "SELECT provider, dedup_key, id FROM inbound_events WHERE (provider, dedup_key) IN \
                 (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1)) \
                 UNION ALL \
                 SELECT provider, dedup_key, event_id FROM inbound_pruned WHERE (provider, dedup_key) IN \
                 (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))",
            )
            .bind(Json(&taken))
            .fetch_all(&mut *tx)
            .await?;
        }
        let outcomes = answers::inbound(items, &inserted, stored)?;
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// Records one finished try (and schedules the next) inside `tx`.
async fn complete_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    r: &AttemptResult,
) -> Result<bool> {
    let row = sqlx::query(
        "UPDATE delivery_attempts SET status = ?3, http_status = ?4, duration_ms = ?5, \
         response_preview = ?6, error = ?7, completed_at = ?8, lease_until = NULL \
         WHERE id = ?1 AND claimed_by = ?2 AND status = 'pending' \
         RETURNING event_id, webhook_id, account_id, attempt, payload_snapshot, trace_parent",
    )
    .bind(&r.attempt_id)
    .bind(&r.worker_id)
    .bind(r.status.as_str())
    .bind(r.http_status)
    .bind(r.duration_ms)
    .bind(&r.response_preview)
    .bind(&r.error)
    .bind(ms(r.completed_at))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    if let Some((next_id, due)) = &r.next {
        sqlx::query(
            "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, \
             payload_snapshot, created_at, trace_parent) VALUES (?1,?2,?3,?4,?5,'pending',?6,?7,?8,?9) \
             ON CONFLICT (event_id, webhook_id, attempt) DO NOTHING",
        )
        .bind(next_id)
        .bind(row.try_get::<String, _>("event_id")?)
        .bind(row.try_get::<String, _>("webhook_id")?)
        .bind(row.try_get::<String, _>("account_id")?)
        .bind(row.try_get::<i32, _>("attempt")? + 1)
        .bind(ms(*due))
        .bind(row.try_get::<String, _>("payload_snapshot")?)
        .bind(ms(r.completed_at))
        .bind(row.try_get::<Option<String>, _>("trace_parent")?)
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

/// Finished tries recorded together: one transaction per batch, committed
/// without a sync of its own (`relaxed.rs`): an outcome lost in a power cut
/// repeats its try, and the next publish's sync carries it anyway.
pub(super) struct Completions(pub(super) SqlitePool);

#[async_trait]
impl BatchWriter for Completions {
    type Item = AttemptResult;
    type Outcome = bool;
    const NAME: &'static str = "delivery results";

    async fn commit(&self, items: &[&AttemptResult]) -> Result<Vec<bool>> {
        let mut w = super::relaxed::Relaxed::acquire(&self.0).await?;
        let mut tx = sqlx::Connection::begin(w.conn()).await?;
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(complete_one(&mut tx, item).await?);
        }
        tx.commit().await?;
        w.finish().await?;
        Ok(outcomes)
    }
}

/// First tries per multi-row insert: 10 values each (30,000), under
/// SQLite's limit of 32,766.
const TRIES_PER_INSERT: usize = 3_000;

/// A client id this producer published before for this account (or, for an
/// event without one, its internal id): the same event again, or a conflict.
async fn existing(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    e: &NewEvent,
) -> Result<PublishOutcome> {
    // By the producer's client id for the account, or (an event without
    // one) by its internal id. Two statements, not one with a CASE: each
    // must use its index.
    let key = if e.client_id.is_some() {
        "ev.producer = ?3 AND ev.account_id = ?4 AND ev.client_id = ?2"
    } else {
        "ev.id = ?1"
    };
    let row = sqlx::query(&format!(
        "SELECT id, client_id, account_id, event_type, payload, producer, created_at, trace_parent, \
         (SELECT count(DISTINCT a.webhook_id) FROM delivery_attempts a WHERE a.event_id = ev.id) \
           AS deliveries \
         FROM events ev WHERE {key}"
    ))
    .bind(&e.id)
    .bind(&e.client_id)
    .bind(&e.producer)
    .bind(&e.account_id)
    .fetch_one(&mut **tx)
    .await?;
    answers::existing(&row, e)
}

/// Published events in one transaction per batch, in three statements
/// whatever its size (the events, the subscribed webhooks of their
/// accounts, the first tries), as on PostgreSQL: each statement is a
/// hand-off to the connection's thread and back, and three per event were
/// most of the publishing path's cost in SQLite's thread.
/// Tries whose endpoint has room in this process's worker are inserted
/// leased to it and handed over once committed (`births.rs`).
pub(super) struct Publishes(pub(super) SqlitePool, pub(super) Arc<BirthSlot>);

#[async_trait]
impl BatchWriter for Publishes {
    type Item = NewEvent;
    type Outcome = PublishOutcome;
    const NAME: &'static str = "publish";

    async fn commit(&self, items: &[&NewEvent]) -> Result<Vec<PublishOutcome>> {
        let mut tx = self.0.begin().await?;
        // Any conflict (the internal id, or the producer's client id for the
        // account) leaves the row out of RETURNING: answered below.
        let mut events = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO events (id, client_id, account_id, event_type, payload, producer, created_at, \
             trace_parent) ",
        );
        events.push_values(items, |mut row, e| {
            row.push_bind(&e.id)
                .push_bind(&e.client_id)
                .push_bind(&e.account_id)
                .push_bind(&e.event_type)
                .push_bind(Json(&e.payload))
                .push_bind(&e.producer)
                .push_bind(ms(e.created_at))
                .push_bind(&e.trace_parent);
        });
        events.push(" ON CONFLICT DO NOTHING RETURNING id");
        let mut new: HashSet<String> = events
            .build_query_scalar::<String>()
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        // Rows go in in order, so of one key twice in a batch the first is
        // new and the second meets it, as if they came one by one.
        let fresh: Vec<bool> = items.iter().map(|e| new.remove(&e.id)).collect();
        let accounts = answers::fresh_accounts(items, &fresh);
        let births = self.1.get();
        let mut webhooks = Vec::new();
        if !accounts.is_empty() {
            let rows = sqlx::query(&format!(
                "SELECT {} FROM webhook_configs \
                 WHERE account_id IN (SELECT value FROM json_each(?1)) AND disabled = 0",
                answers::SUBSCRIBER_COLUMNS
            ))
            .bind(Json(&accounts))
            .fetch_all(&mut *tx)
            .await?;
            webhooks = rows
                .iter()
                .map(answers::Subscriber::from_row)
                .collect::<Result<_>>()?;
        }
        let (mut outcomes, tries) = answers::fan_out(items, &fresh, &webhooks);
        let mut born = Born::reserve(births, &tries, &webhooks);
        // The webhooks of the tries handed over, read whole (the worker
        // needs them) only when there are some: in a burst, whose tries
        // wait for claims, the batch reads no more than before.
        let granted = born.granted(&tries);
        let mut rows = Vec::new();
        if !granted.is_empty() {
            rows = sqlx::query(&format!(
                "SELECT {} FROM webhook_configs WHERE id IN (SELECT value FROM json_each(?1))",
                crate::rows::WEBHOOK_COLUMNS
            ))
            .bind(Json(&granted))
            .fetch_all(&mut *tx)
            .await?;
        }
        let whole = born.whole(&tries, &rows);
        // In chunks: SQLite binds at most 32,766 values per statement, and
        // an event may fan out to many endpoints.
        let all: Vec<usize> = (0..tries.ids.len()).collect();
        for chunk in all.chunks(TRIES_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, \
                 due_at, payload_snapshot, created_at, trace_parent, claimed_by, lease_until) ",
            );
            insert.push_values(chunk.iter().copied(), |mut row, i| {
                row.push_bind(&tries.ids[i])
                    .push_bind(&tries.event_ids[i])
                    .push_bind(&tries.webhook_ids[i])
                    .push_bind(&tries.account_ids[i])
                    .push("1, 'pending'")
                    .push_bind(ms(tries.due[i]))
                    .push_bind(&tries.bodies[tries.body_of[i]])
                    .push_bind(ms(tries.at[i]))
                    .push_bind(&tries.traces[i])
                    .push_bind(born.owner(i))
                    .push_bind(born.lease_until(i).map(ms));
            });
            insert.build().execute(&mut *tx).await?;
        }
        for ((e, fresh), outcome) in items.iter().zip(fresh).zip(&mut outcomes) {
            if !fresh {
                *outcome = existing(&mut tx, e).await?;
            }
        }
        tx.commit().await?;
        // Every try was stored with its event, leased as offered: the
        // webhooks were read inside this transaction.
        born.start(&tries, |_| true, |_| true, &whole, items, &mut outcomes);
        Ok(outcomes)
    }
}
