//! Group commit for SQLite's inbound writes: requests that arrive while a
//! commit is on disk wait together and share the next one, so one fsync
//! covers many events. Nothing is answered before its transaction commits,
//! and a failing batch is retried record by record, so one bad record never
//! fails the others.

use crate::error::{Result, StoreError};
use crate::ingress::{NewInbound, RecordOutcome};
use crate::sqlite::ms;
use sqlx::sqlite::SqlitePool;
use sqlx::types::Json;
use sqlx::{Sqlite, Transaction};
use tokio::sync::{mpsc, oneshot};

/// Most records one commit carries.
const MAX_BATCH: usize = 128;

type Request = (NewInbound, oneshot::Sender<Result<RecordOutcome>>);

#[derive(Clone)]
pub(crate) struct InboundBatcher {
    tx: mpsc::Sender<Request>,
}

impl InboundBatcher {
    /// Starts the batcher on the writer connection (ends when the store drops).
    pub(crate) fn start(writer: SqlitePool) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        tokio::spawn(run(writer, rx));
        Self { tx }
    }

    pub(crate) async fn record(&self, event: NewInbound) -> Result<RecordOutcome> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, reply))
            .await
            .map_err(|_| StoreError::Corrupt("the inbound writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Corrupt("the inbound writer stopped".into()))?
    }
}

async fn run(writer: SqlitePool, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let events: Vec<&NewInbound> = batch.iter().map(|(e, _)| e).collect();
        match commit_batch(&writer, &events).await {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            // Retry one by one: each answer then reflects its own record.
            Err(_) => {
                for (event, reply) in batch {
                    let _ = reply.send(
                        commit_batch(&writer, &[&event])
                            .await
                            .map(|mut o| o.remove(0)),
                    );
                }
            }
        }
    }
}

async fn commit_batch(writer: &SqlitePool, events: &[&NewInbound]) -> Result<Vec<RecordOutcome>> {
    let mut tx = writer.begin().await?;
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        outcomes.push(record_one(&mut tx, event).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// One event and its first job, or the id of the event already stored for the
/// same (provider, dedup key) — also one earlier in the same batch.
async fn record_one(tx: &mut Transaction<'_, Sqlite>, e: &NewInbound) -> Result<RecordOutcome> {
    let inserted = sqlx::query(
        "INSERT INTO inbound_events (id, provider, dedup_key, delivery_id, body_sha256, raw_body, headers, \
         source_ip, correlation_id, received_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10) \
         ON CONFLICT (provider, dedup_key) DO NOTHING",
    )
    .bind(&e.id)
    .bind(&e.provider)
    .bind(&e.dedup_key)
    .bind(&e.delivery_id)
    .bind(&e.body_sha256)
    .bind(&e.raw_body)
    .bind(Json(&e.headers))
    .bind(&e.source_ip)
    .bind(&e.correlation_id)
    .bind(ms(e.received_at))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        let existing: String = sqlx::query_scalar(
            "SELECT id FROM inbound_events WHERE provider = ?1 AND dedup_key = ?2",
        )
        .bind(&e.provider)
        .bind(&e.dedup_key)
        .fetch_one(&mut **tx)
        .await?;
        return Ok(RecordOutcome::Duplicate { event_id: existing });
    }
    sqlx::query(
        "INSERT INTO processing_jobs (id, event_id, provider, attempt, status, trigger, due_at, created_at) \
         VALUES (?1,?2,?3,1,'pending','received',?4,?4)",
    )
    .bind(&e.job_id)
    .bind(&e.id)
    .bind(&e.provider)
    .bind(ms(e.received_at))
    .execute(&mut **tx)
    .await?;
    Ok(RecordOutcome::Created)
}
