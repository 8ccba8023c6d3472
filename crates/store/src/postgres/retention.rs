//! Retention on PostgreSQL: old events and inbound events deleted with
//! their history, in small batches, through the one path the append-only
//! triggers let through (migration 0021): the transaction says, with
//! `hookwarden.prune_before`, how old a row must be to go.

use super::PgStore;
use crate::error::Result;
use crate::model::Pruned;
use crate::search::id_floor;
use chrono::{DateTime, Utc};

/// Opens the gate for this transaction only (`set_config(…, true)`).
const GATE: &str = "SELECT set_config('hookwarden.prune_before', $1, true)";

pub(super) async fn prune_events(
    s: &PgStore,
    before: DateTime<Utc>,
    after: Option<&str>,
    limit: u32,
) -> Result<Pruned> {
    let mut tx = s.pool.begin().await?;
    sqlx::query(GATE)
        .bind(before.to_rfc3339())
        .execute(&mut *tx)
        .await?;
    // Events are found by id (time-ordered, the primary key's index), an
    // event only when every try of it is finished and older than the
    // bound: a retry queued yesterday for an old event keeps it.
    // `seen`: the next `limit` events after the cursor; of those, the ones
    // that may go. The cursor moves past kept ones (a try still pending),
    // so a run does not walk them again batch after batch.
    let (events, tries, last): (i64, i64, Option<String>) = sqlx::query_as(
        "WITH seen AS (SELECT e.id, e.created_at FROM hook.events e \
                       WHERE e.id < $2 AND e.id > $4 ORDER BY e.id LIMIT $3), \
              old AS (SELECT seen.id FROM seen WHERE seen.created_at < $1 \
                        AND NOT EXISTS (SELECT 1 FROM hook.delivery_attempts a WHERE a.event_id = seen.id \
                                        AND (a.status = 'pending' OR a.created_at >= $1))), \
              tries AS (DELETE FROM hook.delivery_attempts a USING old WHERE a.event_id = old.id RETURNING 1), \
              gone AS (DELETE FROM hook.events e USING old WHERE e.id = old.id RETURNING 1) \
         SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM tries), (SELECT max(id) FROM seen)",
    )
    .bind(before)
    .bind(id_floor("evt", before))
    .bind(i64::from(limit))
    .bind(after.unwrap_or(""))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Pruned {
        events: events.max(0) as u64,
        tries: tries.max(0) as u64,
        last,
    })
}

pub(super) async fn prune_inbound(
    s: &PgStore,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<(u64, u64)> {
    let mut tx = s.pool.begin().await?;
    sqlx::query(GATE)
        .bind(before.to_rfc3339())
        .execute(&mut *tx)
        .await?;
    // The key of an event whose scheme signs no timestamp (or whose
    // integration is gone) stays in `inbound_pruned` (migration 0023), and
    // the inbound insert skips a key found there. Its check reads the
    // statement's snapshot: an insert that began before this transaction
    // commits would not see the key, then find the event's row gone, and
    // store the replay. So inbound inserts wait for this transaction (a
    // lock taken before their snapshot is, which conflicts with theirs and
    // nothing else: readers and the outbound tables go on), for the few
    // milliseconds of one batch, and at most `lock_timeout` for the
    // inserts in flight before it (a run that cannot have it tries again
    // at its next).
    sqlx::query("SET LOCAL lock_timeout = '2s'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("LOCK TABLE hook.inbound_events IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let (events, jobs): (i64, i64) = sqlx::query_as(&format!(
        "WITH old AS (SELECT i.id, i.provider, i.dedup_key, i.received_at, \
                        NOT EXISTS (SELECT 1 FROM hook.integrations g WHERE g.name = i.provider \
                                    AND g.scheme IN ({})) AS keep_key \
                      FROM hook.inbound_events i \
                      WHERE i.received_at < $1 \
                        AND NOT EXISTS (SELECT 1 FROM hook.processing_jobs j WHERE j.event_id = i.id \
                                        AND (j.status = 'pending' OR j.created_at >= $1)) \
                        AND NOT EXISTS (SELECT 1 FROM hook.replay_requests r WHERE r.event_id = i.id \
                                        AND r.created_at >= $1) \
                      ORDER BY i.received_at, i.id LIMIT $2), \
              _keys AS (INSERT INTO hook.inbound_pruned (provider, dedup_key, event_id, received_at) \
                        SELECT provider, dedup_key, id, received_at FROM old WHERE keep_key \
                        ON CONFLICT DO NOTHING RETURNING 1), \
              _replays AS (DELETE FROM hook.replay_requests r USING old WHERE r.event_id = old.id RETURNING 1), \
              jobs AS (DELETE FROM hook.processing_jobs j USING old WHERE j.event_id = old.id RETURNING 1), \
              gone AS (DELETE FROM hook.inbound_events i USING old WHERE i.id = old.id RETURNING 1) \
         SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM jobs)",
        crate::TIMESTAMPED_SCHEMES
    ))
    .bind(before)
    .bind(i64::from(limit))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((events.max(0) as u64, jobs.max(0) as u64))
}

pub(super) async fn oldest_kept(
    s: &PgStore,
) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
    Ok(sqlx::query_as(
        "SELECT (SELECT created_at FROM hook.events ORDER BY id LIMIT 1), \
                (SELECT received_at FROM hook.inbound_events ORDER BY received_at, id LIMIT 1)",
    )
    .fetch_one(&s.pool)
    .await?)
}
