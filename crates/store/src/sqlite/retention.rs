//! Retention on SQLite: old events and inbound events deleted with their
//! history, in small batches, through the one path the append-only
//! triggers let through (migration 0021): on the one writer, a transaction
//! sets `prune_gate.before`, deletes, and clears it before it commits.

use super::{ms, time, SqliteStore};
use crate::error::Result;
use crate::model::Pruned;
use crate::search::id_floor;
use chrono::{DateTime, Utc};

pub(super) async fn prune_events(
    s: &SqliteStore,
    before: DateTime<Utc>,
    after: Option<&str>,
    limit: u32,
) -> Result<Pruned> {
    let mut held = s.writer.get().await?;
    let mut tx = sqlx::Connection::begin(&mut *held).await?;
    // The next `limit` events after the cursor, and whether each may go:
    // the cursor moves past kept ones, so a run walks them once.
    let seen: Vec<(String, bool)> = sqlx::query_as(
        "SELECT e.id, e.created_at < ?1 \
           AND NOT EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.event_id = e.id \
                           AND (a.status = 'pending' OR a.created_at >= ?1)) \
         FROM events e WHERE e.id < ?2 AND e.id > ?4 ORDER BY e.id LIMIT ?3",
    )
    .bind(ms(before))
    .bind(id_floor("evt", before))
    .bind(i64::from(limit))
    .bind(after.unwrap_or(""))
    .fetch_all(&mut *tx)
    .await?;
    let last = seen.last().map(|(id, _)| id.clone());
    let ids: Vec<&String> = seen
        .iter()
        .filter(|(_, go)| *go)
        .map(|(id, _)| id)
        .collect();
    if ids.is_empty() {
        return Ok(Pruned {
            last,
            ..Pruned::default()
        });
    }
    let list = serde_json::to_string(&ids).unwrap_or_default();
    gate(&mut tx, Some(before)).await?;
    let tries = sqlx::query(
        "DELETE FROM delivery_attempts WHERE event_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(&list)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let events = sqlx::query("DELETE FROM events WHERE id IN (SELECT value FROM json_each(?1))")
        .bind(&list)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    gate(&mut tx, None).await?;
    tx.commit().await?;
    Ok(Pruned {
        events,
        tries,
        last,
    })
}

pub(super) async fn prune_inbound(
    s: &SqliteStore,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<(u64, u64)> {
    let mut held = s.writer.get().await?;
    let mut tx = sqlx::Connection::begin(&mut *held).await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT i.id FROM inbound_events i \
         WHERE i.received_at < ?1 \
           AND NOT EXISTS (SELECT 1 FROM processing_jobs j WHERE j.event_id = i.id \
                           AND (j.status = 'pending' OR j.created_at >= ?1)) \
           AND NOT EXISTS (SELECT 1 FROM replay_requests r WHERE r.event_id = i.id \
                           AND r.created_at >= ?1) \
         ORDER BY i.received_at, i.id LIMIT ?2",
    )
    .bind(ms(before))
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        return Ok((0, 0));
    }
    let list = serde_json::to_string(&ids).unwrap_or_default();
    gate(&mut tx, Some(before)).await?;
    // The key of an event whose scheme signs no timestamp (or whose
    // integration is gone) stays in `inbound_pruned` (migration 0023).
    sqlx::query(&format!(
        "INSERT INTO inbound_pruned (provider, dedup_key, event_id, received_at) \
         SELECT i.provider, i.dedup_key, i.id, i.received_at FROM inbound_events i \
         WHERE i.id IN (SELECT value FROM json_each(?1)) \
           AND NOT EXISTS (SELECT 1 FROM integrations g WHERE g.name = i.provider \
                           AND g.scheme IN ({})) \
         ON CONFLICT DO NOTHING",
        crate::TIMESTAMPED_SCHEMES
    ))
    .bind(&list)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM replay_requests WHERE event_id IN (SELECT value FROM json_each(?1))")
        .bind(&list)
        .execute(&mut *tx)
        .await?;
    let jobs = sqlx::query(
        "DELETE FROM processing_jobs WHERE event_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(&list)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let events =
        sqlx::query("DELETE FROM inbound_events WHERE id IN (SELECT value FROM json_each(?1))")
            .bind(&list)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    gate(&mut tx, None).await?;
    tx.commit().await?;
    Ok((events, jobs))
}

/// Opens the gate to rows created before `before`, or closes it.
async fn gate(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    before: Option<DateTime<Utc>>,
) -> Result<()> {
    sqlx::query("UPDATE prune_gate SET before = ?1 WHERE id = 1")
        .bind(before.map(ms))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn oldest_kept(
    s: &SqliteStore,
) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
    let (events, inbound): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT created_at FROM events ORDER BY id LIMIT 1), \
                (SELECT received_at FROM inbound_events ORDER BY received_at, id LIMIT 1)",
    )
    .fetch_one(&s.readers)
    .await?;
    Ok((
        events.map(time).transpose()?,
        inbound.map(time).transpose()?,
    ))
}
