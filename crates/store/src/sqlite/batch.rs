//! SQLite's group-committed writes (`group_commit.rs`): one transaction per
//! batch on the single writer, run whole on the writer's own thread
//! (`direct.rs`), which answers once per batch. Inbound and published
//! events go in as multi-row inserts, finished tries as one JSON argument.

use super::direct::Cells;
use super::ms;
use super::writer::Writer;
use crate::answers;
use crate::births::{BirthSlot, Born};
use crate::error::Result;
use crate::group_commit::BatchWriter;
use crate::ingress::{NewInbound, RecordOutcome};
use crate::model::{AttemptResult, NewEvent, PublishOutcome, Webhook};
use async_trait::async_trait;
use rusqlite::types::Value as Cell;
use rusqlite::{params_from_iter, ToSql};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// `INSERT … VALUES (?, …), …` for `rows` rows of `columns` values, each
/// row's constant tail (`tail`, say `1, 'pending'`) after its first `at`
/// values.
fn values(insert: &str, rows: usize, columns: usize, at: usize, tail: &str) -> String {
    let mut row = String::from("(");
    for c in 0..columns {
        if c > 0 {
            row.push_str(", ");
        }
        if c == at && !tail.is_empty() {
            row.push_str(tail);
            row.push_str(", ");
        }
        row.push('?');
    }
    row.push(')');
    let mut sql = String::with_capacity(insert.len() + 8 + rows * (row.len() + 2));
    sql.push_str(insert);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_owned())
}

fn opt_text(s: Option<&str>) -> Cell {
    s.map_or(Cell::Null, text)
}

fn json(v: &serde_json::Value) -> Cell {
    // A `Value` always serialises.
    Cell::Text(v.to_string())
}

/// The most rows one multi-row insert takes (1,408 values at most).
const MAX_RUN: usize = 128;

/// A batch of `n` rows as runs of 128, then 64, 32 … 1 rows: each run's
/// statement is one of eight texts per insert, all kept prepared whatever
/// the batches' sizes (a statement per size, prepared afresh, had been a
/// third of the receiving path's CPU).
fn runs(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let left = n - start;
        if left == 0 {
            return None;
        }
        let len = if left >= MAX_RUN {
            MAX_RUN
        } else {
            1 << (usize::BITS - 1 - left.leading_zeros())
        };
        let run = start..start + len;
        start += len;
        Some(run)
    })
}

/// Inserts `rows` rows of `columns` values each (`cells`, row after row) in
/// runs (`runs`), collecting what `returning` (if any) gives back.
fn insert_rows(
    conn: &rusqlite::Connection,
    sql: impl Fn(usize) -> String,
    cells: &[&dyn rusqlite::ToSql],
    columns: usize,
    returning: bool,
) -> rusqlite::Result<Vec<String>> {
    let mut out = Vec::new();
    for run in runs(cells.len() / columns) {
        let mut stmt = conn.prepare_cached(&sql(run.len()))?;
        let params = params_from_iter(&cells[run.start * columns..run.end * columns]);
        if returning {
            for id in stmt.query_map(params, |r| r.get(0))? {
                out.push(id?);
            }
        } else {
            stmt.execute(params)?;
        }
    }
    Ok(out)
}

/// Body bytes one multi-row insert of inbound events carries at most. The
/// writer keeps a statement's journal and its `RETURNING` rows in memory
/// (`direct.rs`), so a batch of large bodies (128 of 1 MiB) goes in as
/// several statements of a few MiB each, not one of 128 MiB held twice.
const MAX_STATEMENT_BYTES: usize = 4 << 20;

/// Consecutive rows whose sizes sum to at most `max` each (a larger row
/// alone).
fn byte_groups(sizes: &[usize], max: usize) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && bytes + size > max {
            groups.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        groups.push(start..sizes.len());
    }
    groups
}

/// Inbound events as multi-row inserts (the events, then the first jobs of
/// those inserted), in one job on the writer's thread. Those whose
/// (provider, dedup key) is taken, earlier in the batch too, are answered
/// with the stored event's id.
pub(super) struct Inbound(pub(super) Arc<Writer>);

const INSERT_INBOUND: &str =
    "INSERT INTO inbound_events (id, provider, dedup_key, delivery_id, body_sha256, \
     raw_body, headers, source_ip, correlation_id, received_at, trace_parent)";
const INSERT_JOBS: &str =
    "INSERT INTO processing_jobs (id, event_id, provider, attempt, status, trigger, due_at, created_at)";
/// The events already stored for the keys of those not inserted; a key
/// pruned by retention is answered from what it left.
const STORED_KEYS: &str =
    "SELECT provider, dedup_key, id FROM inbound_events WHERE (provider, dedup_key) IN \
     (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1)) \
     UNION ALL \
     SELECT provider, dedup_key, event_id FROM inbound_pruned WHERE (provider, dedup_key) IN \
     (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))";

#[async_trait]
impl BatchWriter for Inbound {
    type Item = NewInbound;
    type Outcome = RecordOutcome;
    const NAME: &'static str = "inbound";

    async fn commit(&self, items: &[&NewInbound]) -> Result<Vec<RecordOutcome>> {
        let mut events = Vec::with_capacity(items.len() * 11);
        for e in items {
            events.extend([
                text(&e.id),
                text(&e.provider),
                text(&e.dedup_key),
                opt_text(e.delivery_id.as_deref()),
                text(&e.body_sha256),
                Cell::Blob(e.raw_body.clone()),
                json(&e.headers),
                opt_text(e.source_ip.as_deref()),
                text(&e.correlation_id),
                Cell::Integer(ms(e.received_at)),
                opt_text(e.trace_parent.as_deref()),
            ]);
        }
        // Each event's key, and its first job's values, for the thread to
        // pick from once it knows which were inserted.
        let keys: Vec<(String, String, String)> = items
            .iter()
            .map(|e| (e.id.clone(), e.provider.clone(), e.dedup_key.clone()))
            .collect();
        let sizes: Vec<usize> = items.iter().map(|e| e.raw_body.len()).collect();
        let jobs: Vec<[Cell; 5]> = items
            .iter()
            .map(|e| {
                [
                    text(&e.job_id),
                    text(&e.id),
                    text(&e.provider),
                    Cell::Integer(ms(e.received_at)),
                    Cell::Integer(ms(e.received_at)),
                ]
            })
            .collect();
        let (_held, direct) = self.0.direct().await?;
        let (inserted, stored) = direct
            .run(move |conn| {
                conn.prepare_cached("BEGIN")?.execute([])?;
                let cells: Vec<&dyn ToSql> = events.iter().map(|c| c as &dyn ToSql).collect();
                let sql = |rows| {
                    values(INSERT_INBOUND, rows, 11, 11, "")
                        + " ON CONFLICT (provider, dedup_key) DO NOTHING RETURNING id"
                };
                let mut inserted = HashSet::new();
                for group in byte_groups(&sizes, MAX_STATEMENT_BYTES) {
                    let group = &cells[group.start * 11..group.end * 11];
                    inserted.extend(insert_rows(conn, sql, group, 11, true)?);
                }
                let taken: Vec<(&str, &str)> = keys
                    .iter()
                    .filter(|(id, ..)| !inserted.contains(id))
                    .map(|(_, p, k)| (p.as_str(), k.as_str()))
                    .collect();
                let mut stored = Vec::new();
                if !taken.is_empty() {
                    let taken = serde_json::to_string(&taken).unwrap_or_default();
                    let mut stmt = conn.prepare_cached(STORED_KEYS)?;
                    let rows =
                        stmt.query_map([taken], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                    stored = rows.collect::<rusqlite::Result<_>>()?;
                }
                let created: Vec<&dyn ToSql> = keys
                    .iter()
                    .zip(&jobs)
                    .filter(|((id, ..), _)| inserted.contains(id))
                    .flat_map(|(_, job)| job.iter().map(|c| c as &dyn ToSql))
                    .collect();
                insert_rows(
                    conn,
                    |rows| values(INSERT_JOBS, rows, 5, 3, "1, 'pending', 'received'"),
                    &created,
                    5,
                    false,
                )?;
                conn.prepare_cached("COMMIT")?.execute([])?;
                Ok((inserted, stored))
            })
            .await?;
        answers::inbound(items, &inserted, stored)
    }
}

/// Finished tries recorded together: one transaction per batch, committed
/// without a sync of its own (`relaxed.rs` says why that is safe), in one
/// job on the writer's thread whatever the batch's size: the switch to
/// `synchronous = NORMAL`, each try's outcome where the worker still holds
/// the lease, the next try of those that failed with retries left (copying
/// the snapshot inside the database), the commit, and the switch back (a
/// failed job is set back by `direct.rs`). The batch goes in as one JSON
/// argument, so the text is always the same and its statements are
/// prepared once.
pub(super) struct Completions(pub(super) Arc<Writer>);

/// The next tries of a batch's failed tries, copied from the tries they
/// follow while those are still pending and this worker's (the very
/// condition of the update after).
const NEXT_TRIES: &str = "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, \
           payload_snapshot, created_at, trace_parent) \
         SELECT json_extract(n.value, '$.next'), a.event_id, a.webhook_id, a.account_id, a.attempt + 1, \
           'pending', json_extract(n.value, '$.due'), a.payload_snapshot, json_extract(n.value, '$.at'), \
           a.trace_parent \
         FROM json_each(?1) AS n JOIN delivery_attempts a ON a.id = json_extract(n.value, '$.id') \
         WHERE json_extract(n.value, '$.next') IS NOT NULL \
           AND a.claimed_by = json_extract(n.value, '$.worker') AND a.status = 'pending' \
         ON CONFLICT (event_id, webhook_id, attempt) DO NOTHING";

/// The outcomes, where the worker still holds the lease; returns the ids
/// recorded and whose outcome each was. (id, worker) pairs are unique
/// within a batch (`commit` sees to it).
const OUTCOMES: &str = "UPDATE delivery_attempts SET status = r.status, http_status = r.http_status, \
           duration_ms = r.duration_ms, response_preview = r.preview, error = r.error, \
           completed_at = r.at, lease_until = NULL \
         FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.worker') AS worker, \
                 json_extract(value, '$.status') AS status, json_extract(value, '$.http_status') AS http_status, \
                 json_extract(value, '$.duration_ms') AS duration_ms, json_extract(value, '$.preview') AS preview, \
                 json_extract(value, '$.error') AS error, json_extract(value, '$.at') AS at \
               FROM json_each(?1)) AS r \
         WHERE delivery_attempts.id = r.id AND delivery_attempts.claimed_by = r.worker \
           AND delivery_attempts.status = 'pending' \
         RETURNING delivery_attempts.id, delivery_attempts.claimed_by";

#[async_trait]
impl BatchWriter for Completions {
    type Item = AttemptResult;
    type Outcome = bool;
    const NAME: &'static str = "delivery results";

    async fn commit(&self, items: &[&AttemptResult]) -> Result<Vec<bool>> {
        // The same try twice in one batch from one worker (never in
        // practice): the first is recorded, as it would be alone, and the
        // other answers false. One update cannot take both (which row of a
        // join it applies is SQLite's choice). From two workers (one lost
        // the lease meanwhile) both go in: only the holder's meets the
        // update's condition.
        let mut seen = HashSet::new();
        let batch: Vec<serde_json::Value> = items
            .iter()
            .filter(|r| seen.insert((r.attempt_id.as_str(), r.worker_id.as_str())))
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
        // Without next tries (every try succeeded, say) the update alone,
        // atomic by itself, needs no transaction.
        let next = items.iter().any(|r| r.next.is_some());
        let batch = serde_json::Value::Array(batch).to_string();
        let (_held, direct) = self.0.direct().await?;
        let recorded = direct
            .run(move |conn| {
                conn.prepare_cached("PRAGMA synchronous = NORMAL")?
                    .execute([])?;
                if next {
                    conn.prepare_cached("BEGIN")?.execute([])?;
                    conn.prepare_cached(NEXT_TRIES)?.execute([&batch])?;
                }
                let recorded = {
                    let mut stmt = conn.prepare_cached(OUTCOMES)?;
                    let rows = stmt.query_map([&batch], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect::<rusqlite::Result<Vec<(String, String)>>>()?
                };
                if next {
                    conn.prepare_cached("COMMIT")?.execute([])?;
                }
                conn.prepare_cached("PRAGMA synchronous = FULL")?
                    .execute([])?;
                Ok(recorded)
            })
            .await?;
        Ok(answers::recorded(items, recorded))
    }
}

const INSERT_EVENTS: &str =
    "INSERT INTO events (id, client_id, account_id, event_type, payload, producer, \
     created_at, trace_parent)";
const INSERT_TRIES: &str =
    "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, \
     status, due_at, payload_snapshot, created_at, trace_parent, claimed_by, lease_until)";

/// The stored event a published one met: by the producer's client id for
/// the account, or (an event without one) by its internal id. Two
/// statements, not one with a CASE: each must use its index.
fn existing(conn: &rusqlite::Connection, key: &[Cell; 4]) -> rusqlite::Result<Cells> {
    let by = if matches!(key[1], Cell::Null) {
        "ev.id = ?1"
    } else {
        "ev.producer = ?3 AND ev.account_id = ?4 AND ev.client_id = ?2"
    };
    let sql = format!(
        "SELECT id, client_id, account_id, event_type, payload, producer, created_at, trace_parent, \
         (SELECT count(DISTINCT a.webhook_id) FROM delivery_attempts a WHERE a.event_id = ev.id) \
           AS deliveries \
         FROM events ev WHERE {by}"
    );
    Cells::all(conn, &sql, params_from_iter(key))?
        .pop()
        .ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Published events in one transaction per batch, in three statements
/// whatever its size (the events, the subscribed webhooks of their
/// accounts, the first tries), as on PostgreSQL, and in one job on the
/// writer's thread (`direct.rs`): the fan-out and the worker's places for
/// tries leased at birth (`births.rs`) are decided there too, with the
/// transaction open, so a batch wakes that thread and ours once each. At a
/// steady rate each event is a batch of its own, and two jobs cost two
/// more wake-ups per event than one. Tries whose endpoint has room are
/// inserted leased and handed over once committed.
pub(super) struct Publishes {
    pub(super) writer: Arc<Writer>,
    pub(super) births: Arc<BirthSlot>,
}

/// What the publish job decided, for the answers and the hand-over.
struct Decided {
    outcomes: Vec<PublishOutcome>,
    tries: answers::FirstTries,
    born: Born,
    whole: HashMap<String, Webhook>,
    /// The stored events that events of the batch met, by batch position.
    met: Vec<(usize, Cells)>,
}

#[async_trait]
impl BatchWriter for Publishes {
    type Item = NewEvent;
    type Outcome = PublishOutcome;
    const NAME: &'static str = "publish";

    async fn commit(&self, items: &[&NewEvent]) -> Result<Vec<PublishOutcome>> {
        // The subscribed webhooks of every account in the batch: those of
        // an account whose events all conflict are read for nothing,
        // rarely. Whole rows when there is a worker to hand tries to (it
        // needs them).
        let mut accounts: Vec<&str> = items.iter().map(|e| e.account_id.as_str()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let accounts = serde_json::to_string(&accounts).unwrap_or_default();
        let births = self.births.get();
        let subscribers = format!(
            "SELECT {} FROM webhook_configs \
             WHERE account_id IN (SELECT value FROM json_each(?1)) AND disabled = 0",
            if births.is_some() {
                crate::rows::WEBHOOK_COLUMNS
            } else {
                answers::SUBSCRIBER_COLUMNS
            }
        );
        // The job outlives this borrow of the batch: it gets its own copy.
        let events: Vec<NewEvent> = items.iter().map(|e| (*e).clone()).collect();
        let (_held, direct) = self.writer.direct().await?;
        let decided = direct
            .run(move |conn| {
                conn.prepare_cached("BEGIN")?.execute([])?;
                // A statement's failure ends the job: it is rolled back.
                let decided = publish(conn, &events, &subscribers, accounts, births)?;
                if decided.is_err() {
                    conn.prepare_cached("ROLLBACK")?.execute([])?;
                } else {
                    conn.prepare_cached("COMMIT")?.execute([])?;
                }
                Ok(decided)
            })
            .await;
        // Committed, or rolled back by the job or its failure.
        let Decided {
            mut outcomes,
            tries,
            born,
            whole,
            met,
        } = decided??;
        for (i, row) in met {
            outcomes[i] = answers::existing(&row, items[i])?;
        }
        // Every try was stored with its event, leased as offered: the
        // webhooks were read inside this transaction.
        born.start(&tries, |_| true, |_| true, &whole, items, &mut outcomes);
        Ok(outcomes)
    }
}

/// The publish job's body, inside its transaction: the events, the
/// subscribers, the fan-out and places, the tries, and the stored events
/// that duplicates met. A row that does not decode is an error inside
/// `Ok`, for the job to roll back.
fn publish(
    conn: &rusqlite::Connection,
    events: &[NewEvent],
    subscribers: &str,
    accounts: String,
    births: Option<Arc<dyn crate::births::Births>>,
) -> rusqlite::Result<Result<Decided>> {
    let mut cells = Vec::with_capacity(events.len() * 8);
    for e in events {
        cells.extend([
            text(&e.id),
            opt_text(e.client_id.as_deref()),
            text(&e.account_id),
            text(&e.event_type),
            json(&e.payload),
            text(&e.producer),
            Cell::Integer(ms(e.created_at)),
            opt_text(e.trace_parent.as_deref()),
        ]);
    }
    // Any conflict (the internal id, or the producer's client id for the
    // account) leaves the row out of RETURNING: answered below.
    let cells: Vec<&dyn ToSql> = cells.iter().map(|c| c as &dyn ToSql).collect();
    let mut new: HashSet<String> = insert_rows(
        conn,
        |rows| values(INSERT_EVENTS, rows, 8, 8, "") + " ON CONFLICT DO NOTHING RETURNING id",
        &cells,
        8,
        true,
    )?
    .into_iter()
    .collect();
    let rows = Cells::all(conn, subscribers, [accounts])?;
    let webhooks = match rows
        .iter()
        .map(answers::Subscriber::from_row)
        .collect::<Result<Vec<_>>>()
    {
        Ok(w) => w,
        Err(e) => return Ok(Err(e)),
    };
    // Rows go in in order, so of one key twice in a batch the first is new
    // and the second meets it, as if they came one by one.
    let fresh: Vec<bool> = events.iter().map(|e| new.remove(&e.id)).collect();
    let refs: Vec<&NewEvent> = events.iter().collect();
    let (outcomes, tries) = answers::fan_out(&refs, &fresh, &webhooks);
    let mut born = Born::reserve(births, &tries, &webhooks);
    let whole = born.whole(&tries, &rows);
    // Each try's values, its snapshot bound from its event's one copy.
    let owners: Vec<Option<&str>> = (0..tries.ids.len()).map(|i| born.owner(i)).collect();
    let mut cells: Vec<&dyn ToSql> = Vec::with_capacity(tries.ids.len() * 10);
    let leases: Vec<[Cell; 3]> = (0..tries.ids.len())
        .map(|i| {
            [
                Cell::Integer(ms(tries.due[i])),
                Cell::Integer(ms(tries.at[i])),
                born.lease_until(i)
                    .map_or(Cell::Null, |t| Cell::Integer(ms(t))),
            ]
        })
        .collect();
    for (i, lease) in leases.iter().enumerate() {
        cells.extend([
            &tries.ids[i] as &dyn ToSql,
            &tries.event_ids[i],
            &tries.webhook_ids[i],
            &tries.account_ids[i],
            &lease[0],
            &tries.bodies[tries.body_of[i]],
            &lease[1],
            &tries.traces[i],
            &owners[i],
            &lease[2],
        ]);
    }
    insert_rows(
        conn,
        |rows| values(INSERT_TRIES, rows, 10, 4, "1, 'pending'"),
        &cells,
        10,
        false,
    )?;
    // An event that met a stored one is answered with it, its tries
    // counted once this batch's are in (the same key twice in a batch).
    let met = events
        .iter()
        .zip(&fresh)
        .enumerate()
        .filter(|(_, (_, fresh))| !**fresh)
        .map(|(i, (e, _))| {
            let key = [
                text(&e.id),
                opt_text(e.client_id.as_deref()),
                text(&e.producer),
                text(&e.account_id),
            ];
            Ok((i, existing(conn, &key)?))
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Ok(Decided {
        outcomes,
        tries,
        born,
        whole,
        met,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row in exactly one run, in order, each run one of eight sizes.
    #[test]
    fn a_batch_goes_in_runs_of_eight_sizes() {
        for n in 0..=700 {
            let runs: Vec<_> = runs(n).collect();
            let mut next = 0;
            for run in &runs {
                assert_eq!(run.start, next, "{n} rows: in order, none skipped");
                assert!(run.len().is_power_of_two() && run.len() <= MAX_RUN);
                next = run.end;
            }
            assert_eq!(next, n, "{n} rows: all of them");
        }
        assert_eq!(
            runs(200).map(|r| r.len()).collect::<Vec<_>>(),
            vec![128, 64, 8]
        );
    }

    /// Large bodies go in as several statements, each within the bound
    /// (unless one body alone is larger), every row once and in order.
    #[test]
    fn large_bodies_are_split_across_statements() {
        const MIB: usize = 1 << 20;
        assert_eq!(byte_groups(&[], MIB), vec![]);
        assert_eq!(byte_groups(&[10; 5], MIB), vec![0..5]);
        assert_eq!(byte_groups(&[MIB; 128], 4 * MIB).len(), 32);
        assert_eq!(
            byte_groups(&[5 * MIB, 1, 1, 4 * MIB, 1], 4 * MIB),
            vec![0..1, 1..3, 3..4, 4..5]
        );
        let sizes: Vec<usize> = (0..300).map(|i| (i * 7919) % (2 * MIB)).collect();
        let groups = byte_groups(&sizes, 4 * MIB);
        let mut next = 0;
        for g in &groups {
            assert_eq!(g.start, next);
            assert!(g.len() == 1 || sizes[g.clone()].iter().sum::<usize>() <= 4 * MIB);
            next = g.end;
        }
        assert_eq!(next, sizes.len());
    }
}
