//! SQLite's group-committed writes (`group_commit.rs`): one transaction per
//! batch on the single writer. Every command is a round trip to the
//! connection's own thread, so inbound and published events go in as
//! multi-row inserts, finished tries as one JSON argument, and a batch's
//! BEGIN and COMMIT go with its first and last statements (`compound.rs`).

use super::writer::Writer;
use super::{compound, ms};
use crate::answers;
use crate::births::{BirthSlot, Born};
use crate::error::Result;
use crate::group_commit::BatchWriter;
use crate::ingress::{NewInbound, RecordOutcome};
use crate::model::{AttemptResult, NewEvent, PublishOutcome};
use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::Row;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Inbound events in a fixed number of statements whatever the batch's size
/// (the events, then the first jobs of those inserted): those hand-offs to
/// the connection's thread, not SQLite, were most of the receiving path's
/// CPU when each event took two statements. Those whose (provider, dedup
/// key) is taken, earlier in the batch too, are answered with the stored
/// event's id.
pub(super) struct Inbound(pub(super) Arc<Writer>);

#[async_trait]
impl BatchWriter for Inbound {
    type Item = NewInbound;
    type Outcome = RecordOutcome;
    const NAME: &'static str = "inbound";

    async fn commit(&self, items: &[&NewInbound]) -> Result<Vec<RecordOutcome>> {
        let mut w = compound::Compound::acquire(&self.0).await?;
        let mut events = sqlx::QueryBuilder::<sqlx::Sqlite>::new(compound::BEGIN);
        events.push(
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
            .fetch_all(w.conn())
            .await?
            .into_iter()
            .collect();
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
            .fetch_all(w.conn())
            .await?;
        }
        let outcomes = answers::inbound(items, &inserted, stored)?;
        // The first jobs of those inserted, and the commit, in one command.
        let created: Vec<&&NewInbound> =
            items.iter().filter(|e| inserted.contains(&e.id)).collect();
        let mut jobs = sqlx::QueryBuilder::<sqlx::Sqlite>::new("");
        if !created.is_empty() {
            jobs.push(
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
        }
        jobs.push(compound::COMMIT);
        jobs.build().execute(w.conn()).await?;
        w.committed();
        Ok(outcomes)
    }
}

/// Finished tries recorded together: one transaction per batch, committed
/// without a sync of its own (`relaxed.rs` says why that is safe), sent as
/// one command (`compound.rs`) whatever the batch's size: the switch to
/// `synchronous = NORMAL`, each try's outcome where the worker still holds
/// the lease, the next try of those that failed with retries left (copying
/// the snapshot inside the database), the commit, and the switch back. The
/// batch goes in as one JSON argument, so the text is always the same and
/// its statements are prepared once.
pub(super) struct Completions(pub(super) Arc<Writer>);

/// The next tries of a batch's failed tries, copied from the tries they
/// follow while those are still pending and this worker's (the very
/// condition of the update after).
macro_rules! next_tries {
    () => {
        "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, \
           payload_snapshot, created_at, trace_parent) \
         SELECT json_extract(n.value, '$.next'), a.event_id, a.webhook_id, a.account_id, a.attempt + 1, \
           'pending', json_extract(n.value, '$.due'), a.payload_snapshot, json_extract(n.value, '$.at'), \
           a.trace_parent \
         FROM json_each(?1) AS n JOIN delivery_attempts a ON a.id = json_extract(n.value, '$.id') \
         WHERE json_extract(n.value, '$.next') IS NOT NULL \
           AND a.claimed_by = json_extract(n.value, '$.worker') AND a.status = 'pending' \
         ON CONFLICT (event_id, webhook_id, attempt) DO NOTHING"
    };
}

/// The outcomes, where the worker still holds the lease; returns the ids
/// recorded. Ids are unique within a batch (`commit` sees to it).
macro_rules! outcomes {
    () => {
        "UPDATE delivery_attempts SET status = r.status, http_status = r.http_status, \
           duration_ms = r.duration_ms, response_preview = r.preview, error = r.error, \
           completed_at = r.at, lease_until = NULL \
         FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.worker') AS worker, \
                 json_extract(value, '$.status') AS status, json_extract(value, '$.http_status') AS http_status, \
                 json_extract(value, '$.duration_ms') AS duration_ms, json_extract(value, '$.preview') AS preview, \
                 json_extract(value, '$.error') AS error, json_extract(value, '$.at') AS at \
               FROM json_each(?1)) AS r \
         WHERE delivery_attempts.id = r.id AND delivery_attempts.claimed_by = r.worker \
           AND delivery_attempts.status = 'pending' \
         RETURNING delivery_attempts.id"
    };
}

/// A batch with next tries: those first, then the outcomes, in one
/// transaction between the switches of `relaxed.rs` (spelled out so that
/// the text is a constant).
const COMPLETE: &str = concat!(
    "PRAGMA synchronous = NORMAL; BEGIN; ",
    next_tries!(),
    "; ",
    outcomes!(),
    "; COMMIT; PRAGMA synchronous = FULL"
);

/// A batch without (every try succeeded, say): the update alone, atomic by
/// itself. Each statement's result is one more wake-up of a runtime thread
/// (`compound.rs`): three fewer than `COMPLETE`.
const RECORD: &str = concat!(
    "PRAGMA synchronous = NORMAL; ",
    outcomes!(),
    "; PRAGMA synchronous = FULL"
);

#[async_trait]
impl BatchWriter for Completions {
    type Item = AttemptResult;
    type Outcome = bool;
    const NAME: &'static str = "delivery results";

    async fn commit(&self, items: &[&AttemptResult]) -> Result<Vec<bool>> {
        // The same try twice in one batch (never in practice): the first
        // is recorded, as it would be alone, and the other answers false.
        // One update cannot take both (which row of a join it applies is
        // SQLite's choice).
        let mut seen = HashSet::new();
        let batch: Vec<serde_json::Value> = items
            .iter()
            .filter(|r| seen.insert(r.attempt_id.as_str()))
            .map(|r| {
                serde_json::json!({
                    "id": r.attempt_id, "worker": r.worker_id, "status": r.status.as_str(),
                    "http_status": r.http_status, "duration_ms": r.duration_ms,
                    "preview": r.response_preview, "error": r.error, "at": ms(r.completed_at),
                    "next": r.next.as_ref().map(|(id, _)| id),
                    "due": r.next.as_ref().map(|(_, due)| ms(*due)),
                })
            })
            .collect();
        let sql = if items.iter().any(|r| r.next.is_some()) {
            COMPLETE
        } else {
            RECORD
        };
        let mut w = compound::Compound::acquire(&self.0).await?;
        let recorded: Vec<String> = sqlx::query_scalar(sql)
            .bind(Json(&batch))
            .fetch_all(w.conn())
            .await?;
        w.committed();
        let mut recorded: HashSet<String> = recorded.into_iter().collect();
        Ok(items
            .iter()
            .map(|r| recorded.remove(&r.attempt_id))
            .collect())
    }
}

/// First tries per multi-row insert: 10 values each (30,000), under
/// SQLite's limit of 32,766.
const TRIES_PER_INSERT: usize = 3_000;

/// A client id this producer published before for this account (or, for an
/// event without one, its internal id): the same event again, or a conflict.
async fn existing(conn: &mut sqlx::SqliteConnection, e: &NewEvent) -> Result<PublishOutcome> {
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
    .fetch_one(conn)
    .await?;
    answers::existing(&row, e)
}

/// Published events in one transaction per batch, in three statements
/// whatever its size (the events, the subscribed webhooks of their
/// accounts, the first tries) and two commands (`compound.rs`), as on
/// PostgreSQL: each statement was a hand-off to the connection's thread
/// and back, and three per event were most of the publishing path's cost
/// in SQLite's thread. Tries whose endpoint has room in this process's
/// worker are inserted leased to it and handed over once committed
/// (`births.rs`).
pub(super) struct Publishes {
    pub(super) writer: Arc<Writer>,
    pub(super) births: Arc<BirthSlot>,
    /// Whether the last batch handed tries over: then the next reads its
    /// accounts' webhooks whole in its first command, rather than in a
    /// command of its own once places are granted (at a steady rate,
    /// nearly every batch). In a burst, whose tries wait for claims, the
    /// batches read no more than the subscribers' columns.
    pub(super) handed_over: AtomicBool,
}

#[async_trait]
impl BatchWriter for Publishes {
    type Item = NewEvent;
    type Outcome = PublishOutcome;
    const NAME: &'static str = "publish";

    async fn commit(&self, items: &[&NewEvent]) -> Result<Vec<PublishOutcome>> {
        // The events and the subscribed webhooks of every account in the
        // batch, in one command with its BEGIN (`compound.rs`): those of an
        // account whose events all conflict are read for nothing, rarely.
        let mut accounts: Vec<&str> = items.iter().map(|e| e.account_id.as_str()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let births = self.births.get();
        let whole_first = births.is_some() && self.handed_over.load(Ordering::Relaxed);
        let mut first = sqlx::QueryBuilder::<sqlx::Sqlite>::new(compound::BEGIN);
        // Any conflict (the internal id, or the producer's client id for the
        // account) leaves the row out of RETURNING: answered below.
        first.push(
            "INSERT INTO events (id, client_id, account_id, event_type, payload, producer, created_at, \
             trace_parent) ",
        );
        first.push_values(items, |mut row, e| {
            row.push_bind(&e.id)
                .push_bind(&e.client_id)
                .push_bind(&e.account_id)
                .push_bind(&e.event_type)
                .push_bind(Json(&e.payload))
                .push_bind(&e.producer)
                .push_bind(ms(e.created_at))
                .push_bind(&e.trace_parent);
        });
        first
            .push(" ON CONFLICT DO NOTHING RETURNING id AS inserted_event; ")
            .push(format!(
                "SELECT {} FROM webhook_configs \
                 WHERE account_id IN (SELECT value FROM json_each(",
                if whole_first {
                    crate::rows::WEBHOOK_COLUMNS
                } else {
                    answers::SUBSCRIBER_COLUMNS
                }
            ))
            .push_bind(Json(&accounts))
            .push(")) AND disabled = 0");
        let mut w = compound::Compound::acquire(&self.writer).await?;
        let rows = first.build().fetch_all(w.conn()).await?;
        let mut new: HashSet<String> = HashSet::new();
        let mut webhooks = Vec::new();
        for row in &rows {
            // The insert's rows carry only `inserted_event`.
            if let Ok(id) = row.try_get::<String, _>("inserted_event") {
                new.insert(id);
            } else {
                webhooks.push(answers::Subscriber::from_row(row)?);
            }
        }
        // Rows go in in order, so of one key twice in a batch the first is
        // new and the second meets it, as if they came one by one.
        let fresh: Vec<bool> = items.iter().map(|e| new.remove(&e.id)).collect();
        let (mut outcomes, tries) = answers::fan_out(items, &fresh, &webhooks);
        let mut born = Born::reserve(births, &tries, &webhooks);
        // The webhooks of the tries handed over, read whole (the worker
        // needs them) only when there are some, unless the first command
        // read them so already.
        let granted = born.granted(&tries);
        self.handed_over
            .store(!granted.is_empty(), Ordering::Relaxed);
        let whole = if whole_first || granted.is_empty() {
            // The insert's rows have no `id`: skipped.
            born.whole(&tries, &rows)
        } else {
            let rows = sqlx::query(&format!(
                "SELECT {} FROM webhook_configs WHERE id IN (SELECT value FROM json_each(?1))",
                crate::rows::WEBHOOK_COLUMNS
            ))
            .bind(Json(&granted))
            .fetch_all(w.conn())
            .await?;
            born.whole(&tries, &rows)
        };
        // The tries and the commit, in one command. In chunks: SQLite binds
        // at most 32,766 values per statement, and an event may fan out to
        // many endpoints.
        let all: Vec<usize> = (0..tries.ids.len()).collect();
        let mut last = sqlx::QueryBuilder::<sqlx::Sqlite>::new("");
        for chunk in all.chunks(TRIES_PER_INSERT) {
            last.push(
                "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, \
                 due_at, payload_snapshot, created_at, trace_parent, claimed_by, lease_until) ",
            );
            last.push_values(chunk.iter().copied(), |mut row, i| {
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
            last.push("; ");
        }
        // An event that met a stored one is answered with it, its tries
        // counted once this batch's are in (the same key twice in a batch):
        // then the commit is a command of its own, rarely.
        let conflicts = fresh.iter().any(|f| !f);
        if !conflicts {
            last.push(compound::COMMIT);
        }
        last.build().execute(w.conn()).await?;
        if conflicts {
            for ((e, fresh), outcome) in items.iter().zip(&fresh).zip(&mut outcomes) {
                if !fresh {
                    *outcome = existing(w.conn(), e).await?;
                }
            }
            sqlx::query("COMMIT").execute(w.conn()).await?;
        }
        w.committed();
        // Every try was stored with its event, leased as offered: the
        // webhooks were read inside this transaction.
        born.start(&tries, |_| true, |_| true, &whole, items, &mut outcomes);
        Ok(outcomes)
    }
}
