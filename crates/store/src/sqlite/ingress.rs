//! `IngressStore` on SQLite: integrations, inbound events, forwarding jobs,
//! replays and the audit trail.

use super::{ms, SqliteStore};
use crate::error::Result;
use crate::ingress::*;
use crate::model::{AttemptResult, AttemptStatus, Claim, Page};
use crate::rows::{self, Columns, AUDIT_COLUMNS, INTEGRATION_COLUMNS, JOB_COLUMNS};
use crate::search::{self, Dialect};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookwarden_core::crypto::Sealed;
use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments};
use sqlx::types::Json;
use sqlx::Row;

/// An inbound event's columns (aliased `e`) and the status of its latest job.
const INBOUND_COLUMNS: &str = "e.id, e.provider, e.dedup_key, e.delivery_id, e.body_sha256, e.raw_body, e.headers, e.source_ip, \
     e.correlation_id, e.received_at, e.trace_parent, \
     (SELECT j.status FROM processing_jobs j WHERE j.event_id = e.id ORDER BY j.attempt DESC LIMIT 1) AS status";

/// Binds what an integration's insert and update share, `?1` to `?14`.
fn bind_integration<'q>(
    q: Query<'q, Sqlite, SqliteArguments<'q>>,
    i: &'q Integration,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    q.bind(&i.name)
        .bind(&i.scheme)
        .bind(&i.signature_header)
        .bind(&i.encoding)
        .bind(&i.prefix)
        .bind(i.tolerance_seconds)
        .bind(&i.target_url)
        .bind(Json(&i.allowed_cidrs))
        .bind(i.rate_limit_per_minute)
        .bind(&i.idempotency_header)
        .bind(&i.secrets.ciphertext)
        .bind(&i.secrets.key_id)
        .bind(&i.forwarding_secret.ciphertext)
        .bind(&i.forwarding_secret.key_id)
}

#[async_trait]
impl IngressStore for SqliteStore {
    // Integrations.

    async fn create_integration(&self, i: &Integration) -> Result<bool> {
        let sql = format!(
            "INSERT INTO integrations ({INTEGRATION_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17) \
             ON CONFLICT (name) DO NOTHING"
        );
        let done = bind_integration(sqlx::query(&sql), i)
            .bind(ms(i.created_at))
            .bind(ms(i.updated_at))
            .bind(i.forward_raw_body)
            .execute(&mut *self.writer.get().await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_integration(&self, name: &str) -> Result<Option<Integration>> {
        let row = sqlx::query(&format!(
            "SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE name = ?1"
        ))
        .bind(name)
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(rows::integration).transpose()
    }

    async fn list_integrations(&self) -> Result<Vec<Integration>> {
        let rows = sqlx::query(&format!(
            "SELECT {INTEGRATION_COLUMNS} FROM integrations ORDER BY name"
        ))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(rows::integration).collect()
    }

    async fn update_integration(&self, i: &Integration) -> Result<bool> {
        let sql = "UPDATE integrations SET scheme = ?2, signature_header = ?3, encoding = ?4, prefix = ?5, \
             tolerance_seconds = ?6, target_url = ?7, allowed_cidrs = ?8, rate_limit_per_minute = ?9, \
             idempotency_header = ?10, secrets_enc = ?11, secrets_key_id = ?12, forwarding_secret_enc = ?13, \
             forwarding_key_id = ?14, updated_at = ?15, forward_raw_body = ?16 WHERE name = ?1";
        let done = bind_integration(sqlx::query(sql), i)
            .bind(ms(i.updated_at))
            .bind(i.forward_raw_body)
            .execute(&mut *self.writer.get().await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_integration(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM integrations WHERE name = ?1")
            .bind(name)
            .execute(&mut *self.writer.get().await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn integration_generation(&self) -> Result<i64> {
        let (g,): (i64,) =
            sqlx::query_as("SELECT generation FROM integration_generation WHERE id = 1")
                .fetch_one(&self.readers)
                .await?;
        Ok(g)
    }

    // Inbound events.

    async fn record_inbound(&self, e: &NewInbound) -> Result<RecordOutcome> {
        self.inbound.submit(e.clone()).await
    }

    async fn get_inbound(&self, id: &str) -> Result<Option<InboundEvent>> {
        let row = sqlx::query(&format!(
            "SELECT {INBOUND_COLUMNS} FROM inbound_events e WHERE e.id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(rows::inbound).transpose()
    }

    async fn list_inbound(&self, q: &EventQuery) -> Result<Page<InboundEvent>> {
        let (sql, w) = search::inbound_page(Dialect::Sqlite, INBOUND_COLUMNS, "inbound_events", q);
        let rows = w
            .bind_to(sqlx::query(&sql))
            .fetch_all(&self.readers)
            .await?;
        let items = rows.iter().map(rows::inbound).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, q.limit, |e| {
            format!("{}:{}", e.received_at.timestamp_micros(), e.id)
        }))
    }

    // Forwarding jobs.

    async fn claim_jobs(&self, c: &Claim<'_>) -> Result<Vec<Job>> {
        let sql = format!(
            "UPDATE processing_jobs SET lease_until = ?1, claimed_by = ?2 WHERE id IN ( \
               SELECT id FROM processing_jobs WHERE status = 'pending' AND due_at <= ?3 \
                 AND (lease_until IS NULL OR lease_until < ?3) \
                 AND provider NOT IN (SELECT value FROM json_each(?4)) \
               ORDER BY due_at LIMIT ?5) RETURNING {JOB_COLUMNS}"
        );
        // A lease lost in a power cut only repeats a forwarding (`relaxed.rs`).
        let rows = super::relaxed::claim(&self.writer, sql, c).await?;
        rows.iter().map(rows::job).collect()
    }

    async fn release_job(&self, job_id: &str, worker_id: &str) -> Result<()> {
        let sql = "UPDATE processing_jobs SET lease_until = NULL, claimed_by = NULL \
                   WHERE id = ?1 AND claimed_by = ?2 AND status = 'pending'";
        let (_held, direct) = self.writer.direct().await?;
        direct
            .relaxed(sql.to_owned(), (job_id.to_owned(), worker_id.to_owned()))
            .await?;
        Ok(())
    }

    async fn complete_job(&self, r: &AttemptResult) -> Result<bool> {
        // The outcome where the worker still holds the lease, and the next
        // job of a failed one, in one job on the writer's thread.
        let outcome = (
            r.attempt_id.clone(),
            r.worker_id.clone(),
            r.status.as_str(),
            r.http_status,
            r.duration_ms,
            r.response_preview.clone(),
            r.error.clone(),
            ms(r.completed_at),
        );
        let next = r
            .next
            .as_ref()
            .map(|(id, due)| (id.clone(), ms(*due), ms(r.completed_at)));
        let (_held, direct) = self.writer.direct().await?;
        direct
            .run(move |conn| {
                conn.prepare_cached("BEGIN")?.execute([])?;
                let job = conn
                    .prepare_cached(
                        "UPDATE processing_jobs SET status = ?3, http_status = ?4, duration_ms = ?5, \
                         response_preview = ?6, error = ?7, completed_at = ?8, lease_until = NULL \
                         WHERE id = ?1 AND claimed_by = ?2 AND status = 'pending' \
                         RETURNING event_id, provider, attempt",
                    )?
                    .query_row(outcome, |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    });
                let (event_id, provider, attempt) = match job {
                    Ok(job) => job,
                    Err(rusqlite::Error::QueryReturnedNoRows) => {
                        conn.prepare_cached("ROLLBACK")?.execute([])?;
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                };
                if let Some((next_id, due, at)) = next {
                    conn.prepare_cached(
                        "INSERT INTO processing_jobs (id, event_id, provider, attempt, status, trigger, \
                         due_at, created_at) VALUES (?1,?2,?3,?4,'pending','retry',?5,?6) \
                         ON CONFLICT (event_id, attempt) DO NOTHING",
                    )?
                    .execute((next_id, event_id, provider, attempt + 1, due, at))?;
                }
                conn.prepare_cached("COMMIT")?.execute([])?;
                Ok(true)
            })
            .await
    }

    async fn list_jobs(
        &self,
        event_id: Option<&str>,
        status: Option<AttemptStatus>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<Job>> {
        let w = search::jobs(Dialect::Sqlite, event_id, status, before);
        let sql = w.page_sql(
            &format!("SELECT {JOB_COLUMNS} FROM processing_jobs a"),
            limit,
        );
        let rows = w
            .bind_to(sqlx::query(&sql))
            .fetch_all(&self.readers)
            .await?;
        let items = rows.iter().map(rows::job).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |j| j.id.clone()))
    }

    // Replays.

    async fn replay(&self, r: &NewReplay) -> Result<Option<Job>> {
        let mut held = self.writer.get().await?;
        let mut tx = sqlx::Connection::begin(&mut *held).await?;
        let provider: Option<String> =
            sqlx::query_scalar("SELECT provider FROM inbound_events WHERE id = ?1")
                .bind(&r.event_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(provider) = provider else {
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO replay_requests (id, event_id, requested_by, reason, request_id, job_id, created_at) \
             VALUES (?1,?2,?3,?4,?5,?6,?7)",
        )
        .bind(&r.id)
        .bind(&r.event_id)
        .bind(&r.requested_by)
        .bind(&r.reason)
        .bind(&r.request_id)
        .bind(&r.job_id)
        .bind(ms(r.created_at))
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "INSERT INTO processing_jobs (id, event_id, provider, attempt, status, trigger, due_at, created_at) \
             SELECT ?1, ?2, ?3, COALESCE(MAX(attempt), 0) + 1, 'pending', 'replay', ?4, ?4 \
             FROM processing_jobs WHERE event_id = ?2 RETURNING {JOB_COLUMNS}"
        ))
        .bind(&r.job_id)
        .bind(&r.event_id)
        .bind(&provider)
        .bind(ms(r.created_at))
        .fetch_one(&mut *tx)
        .await?;
        let created = rows::job(&row)?;
        tx.commit().await?;
        Ok(Some(created))
    }

    // The audit trail.

    async fn append_audit(&self, entry: &NewAudit, now: DateTime<Utc>) -> Result<AuditRecord> {
        // The single writer connection serializes appends: the chain has no forks.
        let mut held = self.writer.get().await?;
        let mut tx = sqlx::Connection::begin(&mut *held).await?;
        let prev: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let key = self.audit_key.get()?;
        let r = chain_audit(prev, entry, now, &key);
        sqlx::query(&format!(
            "INSERT INTO audit_entries ({AUDIT_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"
        ))
        .bind(r.seq)
        .bind(&r.id)
        .bind(&r.actor)
        .bind(&r.action)
        .bind(&r.target)
        .bind(&r.request_id)
        .bind(&r.details)
        .bind(&r.created_at)
        .bind(&r.prev_hash)
        .bind(&r.hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn list_audit(&self, q: &AuditQuery) -> Result<Page<AuditRecord>> {
        let w = search::audit(Dialect::Sqlite, q);
        let order = if q.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_entries a WHERE {} ORDER BY a.seq {order} LIMIT {}",
            w.sql(),
            i64::from(q.limit) + 1
        );
        let rows = w
            .bind_to(sqlx::query(&sql))
            .fetch_all(&self.readers)
            .await?;
        let items = rows.iter().map(rows::audit).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, q.limit, |a| a.seq.to_string()))
    }

    async fn audit_chain(&self) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_entries ORDER BY seq"
        ))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(rows::audit).collect()
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    async fn audit_key(&self) -> Result<Option<Sealed>> {
        let row: Option<(Vec<u8>, String)> =
            sqlx::query_as("SELECT key_enc, key_id FROM audit_chain_key WHERE id = ?1")
                .bind(AUDIT_KEY_ROW)
                .fetch_optional(&self.readers)
                .await?;
        Ok(row.map(|(ciphertext, key_id)| Sealed { key_id, ciphertext }))
    }

    async fn init_audit_key(
        &self,
        seal: SealNewAuditKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<Sealed> {
        let mut held = self.writer.get().await?;
        let mut tx = sqlx::Connection::begin(&mut *held).await?;
        // The single writer: no entry goes in between the last unkeyed one and the key.
        let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_entries")
            .fetch_one(&mut *tx)
            .await?;
        let stored: Option<(Vec<u8>, String)> =
            sqlx::query_as("SELECT key_enc, key_id FROM audit_chain_key WHERE id = ?1")
                .bind(AUDIT_KEY_ROW)
                .fetch_optional(&mut *tx)
                .await?;
        let sealed = match stored {
            Some((ciphertext, key_id)) => Sealed { key_id, ciphertext },
            None => {
                let sealed = seal(next);
                sqlx::query(
                    "INSERT INTO audit_chain_key (id, key_enc, key_id, created_at) VALUES (?1, ?2, ?3, ?4)",
                )
                .bind(AUDIT_KEY_ROW)
                .bind(&sealed.ciphertext)
                .bind(&sealed.key_id)
                .bind(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .execute(&mut *tx)
                .await?;
                sealed
            }
        };
        tx.commit().await?;
        Ok(sealed)
    }

    fn set_audit_key(&self, key: hookwarden_core::audit::ChainKey) {
        self.audit_key.set(key);
    }

    // Status.

    async fn processing_status(&self, now: DateTime<Utc>) -> Result<ProcessingStatus> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM processing_jobs GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.readers)
        .await?;
        let oldest = sqlx::query(
            "SELECT min(due_at) AS oldest FROM processing_jobs WHERE status = 'pending' AND due_at <= ?1",
        )
        .bind(ms(now))
        .fetch_one(&self.readers)
        .await?
        .opt_time("oldest")?;
        Ok(ProcessingStatus {
            by_status: rows.into_iter().map(|(s, n)| (s, n as u64)).collect(),
            oldest_pending_age_seconds: rows::age_seconds(now, oldest),
        })
    }

    async fn forwarding_backlog(&self, now: DateTime<Utc>) -> Result<ForwardingBacklog> {
        // Each an index range: the pending jobs' partial index, the status index.
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM processing_jobs WHERE status = 'pending') AS pending, \
               (SELECT count(*) FROM processing_jobs WHERE status = 'dead') AS dead, \
               (SELECT min(due_at) FROM processing_jobs WHERE status = 'pending' AND due_at <= ?1) AS oldest",
        )
        .bind(ms(now))
        .fetch_one(&self.readers)
        .await?;
        Ok(ForwardingBacklog {
            pending: row.try_get::<i64, _>("pending")? as u64,
            dead: row.try_get::<i64, _>("dead")? as u64,
            oldest_pending_age_seconds: rows::age_seconds(now, row.opt_time("oldest")?),
        })
    }
}
