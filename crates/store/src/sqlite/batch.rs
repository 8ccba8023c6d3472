//! SQLite's group-committed writes (`group_commit.rs`): one transaction per
//! batch on the single writer. Every statement is a round trip to the
//! connection's own thread, so inbound events go in as multi-row inserts;
//! finished tries and published events, a few statements each, one after
//! another inside the batch's transaction.

use super::ms;
use crate::answers;
use crate::error::Result;
use crate::group_commit::BatchWriter;
use crate::ingress::{NewInbound, RecordOutcome};
use crate::model::{AttemptResult, NewEvent, PublishOutcome};
use crate::rows::Columns;
use crate::snapshot;
use async_trait::async_trait;
use hookwarden_core::{ids, validate::subscribed};
use sqlx::sqlite::SqlitePool;
use sqlx::types::Json;
use sqlx::Row;
use std::collections::HashSet;

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
             source_ip, correlation_id, received_at) ",
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
                .push_bind(ms(e.received_at));
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
            stored = sqlx::query_as(
                "SELECT provider, dedup_key, id FROM inbound_events WHERE (provider, dedup_key) IN \
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
         RETURNING event_id, webhook_id, account_id, attempt, payload_snapshot",
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
             payload_snapshot, created_at) VALUES (?1,?2,?3,?4,?5,'pending',?6,?7,?8) \
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

/// Stores one published event and its first tries inside `tx`.
async fn publish_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    e: &NewEvent,
) -> Result<PublishOutcome> {
    // Any conflict (the internal id, or the producer's client id for the
    // account) inserts nothing: the stored event answers.
    let inserted = sqlx::query(
        "INSERT INTO events (id, client_id, account_id, event_type, payload, producer, created_at) \
         VALUES (?1,?2,?3,?4,?5,?6,?7) ON CONFLICT DO NOTHING",
    )
    .bind(&e.id)
    .bind(&e.client_id)
    .bind(&e.account_id)
    .bind(&e.event_type)
    .bind(Json(&e.payload))
    .bind(&e.producer)
    .bind(ms(e.created_at))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        // By the producer's client id for the account, or (an event without
        // one) by its internal id.
        // Two statements, not one with a CASE: each must use its index.
        let key = if e.client_id.is_some() {
            "ev.producer = ?3 AND ev.account_id = ?4 AND ev.client_id = ?2"
        } else {
            "ev.id = ?1"
        };
        let row = sqlx::query(&format!(
            "SELECT id, client_id, account_id, event_type, payload, producer, created_at, \
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
        return answers::existing(&row, e);
    }
    let rows = sqlx::query(
        "SELECT id, event_types, throttled_until FROM webhook_configs WHERE account_id = ?1 AND disabled = 0",
    )
    .bind(&e.account_id)
    .fetch_all(&mut **tx)
    .await?;
    let body = snapshot(e);
    let mut webhooks = Vec::new();
    for row in rows {
        let types = row.try_get::<Json<Vec<String>>, _>("event_types")?.0;
        if !subscribed(&types, &e.event_type) {
            continue;
        }
        let webhook_id: String = row.try_get("id")?;
        let paused_until = row.opt_time("throttled_until")?;
        sqlx::query(
            "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, \
             payload_snapshot, created_at) VALUES (?1,?2,?3,?4,1,'pending',?7,?6,?5)",
        )
        .bind(ids::attempt_id())
        .bind(&e.id)
        .bind(&webhook_id)
        .bind(&e.account_id)
        .bind(ms(e.created_at))
        .bind(Json(&body))
        .bind(ms(answers::first_due(e.created_at, paused_until)))
        .execute(&mut **tx)
        .await?;
        webhooks.push(webhook_id);
    }
    Ok(PublishOutcome::Created { webhooks })
}

// Published events stored together: one transaction per batch.
crate::group_commit::transactional_writer!(
    Publishes,
    SqlitePool,
    NewEvent,
    PublishOutcome,
    "publish",
    publish_one
);
