//! `IngressStore` on PostgreSQL: integrations, inbound events, forwarding
//! jobs, replays and the audit trail.

use super::PgStore;
use crate::error::Result;
use crate::ingress::*;
use crate::model::{AttemptResult, AttemptStatus, Claim, Page};
use crate::rows::{self, AUDIT_COLUMNS, INTEGRATION_COLUMNS, JOB_COLUMNS};
use crate::search::{self, Dialect};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookwarden_core::crypto::Sealed;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::Row;

/// An inbound event's columns (aliased `e`) and the status of its latest job.
const INBOUND_COLUMNS: &str = "e.id, e.provider, e.dedup_key, e.delivery_id, e.body_sha256, e.raw_body, e.headers, e.source_ip, \
     e.correlation_id, e.received_at, e.trace_parent, \
     (SELECT j.status FROM hook.processing_jobs j WHERE j.event_id = e.id ORDER BY j.attempt DESC LIMIT 1) AS status";

/// Binds what an integration's insert and update share, `$1` to `$14`.
fn bind_integration<'q>(
    q: Query<'q, Postgres, PgArguments>,
    i: &'q Integration,
) -> Query<'q, Postgres, PgArguments> {
    q.bind(&i.name)
        .bind(&i.scheme)
        .bind(&i.signature_header)
        .bind(&i.encoding)
        .bind(&i.prefix)
        .bind(i.tolerance_seconds as i32)
        .bind(&i.target_url)
        .bind(Json(&i.allowed_cidrs))
        .bind(i.rate_limit_per_minute.map(|n| n as i32))
        .bind(&i.idempotency_header)
        .bind(&i.secrets.ciphertext)
        .bind(&i.secrets.key_id)
        .bind(&i.forwarding_secret.ciphertext)
        .bind(&i.forwarding_secret.key_id)
}

#[async_trait]
impl IngressStore for PgStore {
    // Integrations.

    async fn create_integration(&self, i: &Integration) -> Result<bool> {
        let sql = format!(
            "INSERT INTO hook.integrations ({INTEGRATION_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) \
             ON CONFLICT (name) DO NOTHING"
        );
        let done = bind_integration(sqlx::query(&sql), i)
            .bind(i.created_at)
            .bind(i.updated_at)
            .bind(i.forward_raw_body)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_integration(&self, name: &str) -> Result<Option<Integration>> {
        let row = sqlx::query(&format!(
            "SELECT {INTEGRATION_COLUMNS} FROM hook.integrations WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::integration).transpose()
    }

    async fn list_integrations(&self) -> Result<Vec<Integration>> {
        let rows = sqlx::query(&format!(
            "SELECT {INTEGRATION_COLUMNS} FROM hook.integrations ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::integration).collect()
    }

    async fn update_integration(&self, i: &Integration) -> Result<bool> {
        let sql = "UPDATE hook.integrations SET scheme = $2, signature_header = $3, encoding = $4, prefix = $5, \
             tolerance_seconds = $6, target_url = $7, allowed_cidrs = $8, rate_limit_per_minute = $9, \
             idempotency_header = $10, secrets_enc = $11, secrets_key_id = $12, forwarding_secret_enc = $13, \
             forwarding_key_id = $14, updated_at = $15, forward_raw_body = $16 WHERE name = $1";
        let done = bind_integration(sqlx::query(sql), i)
            .bind(i.updated_at)
            .bind(i.forward_raw_body)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_integration(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM hook.integrations WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn integration_generation(&self) -> Result<i64> {
        let (g,): (i64,) =
            sqlx::query_as("SELECT generation FROM hook.integration_generation WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(g)
    }

    // Inbound events.

    async fn record_inbound(&self, e: &NewInbound) -> Result<RecordOutcome> {
        self.inbound.submit(e.clone()).await?
    }

    async fn get_inbound(&self, id: &str) -> Result<Option<InboundEvent>> {
        let row = sqlx::query(&format!(
            "SELECT {INBOUND_COLUMNS} FROM hook.inbound_events e WHERE e.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::inbound).transpose()
    }

    async fn list_inbound(&self, q: &EventQuery) -> Result<Page<InboundEvent>> {
        let (sql, w) =
            search::inbound_page(Dialect::Postgres, INBOUND_COLUMNS, "hook.inbound_events", q);
        let rows = w.bind_to(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        let items = rows.iter().map(rows::inbound).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, q.limit, |e| {
            format!("{}:{}", e.received_at.timestamp_micros(), e.id)
        }))
    }

    // Forwarding jobs.

    async fn claim_jobs(&self, c: &Claim<'_>) -> Result<Vec<Job>> {
        // An ordered index scan whatever the statistics (migration 0005).
        let sql = format!("SELECT {JOB_COLUMNS} FROM hook.claim_jobs($1, $2, $3, $4, $5, $6)");
        let rows = self.claim_rows(&sql, c, &self.job_floor).await?;
        rows.iter().map(rows::job).collect()
    }

    async fn release_job(&self, job_id: &str, worker_id: &str) -> Result<()> {
        // By primary key only: the status test as an expression cannot
        // select the partial due index (migration 0006 says why).
        let mut conn = self.claims.get().await?;
        sqlx::query(
            "UPDATE hook.processing_jobs SET lease_until = NULL, claimed_by = NULL \
             WHERE id = $1 AND claimed_by = $2 AND (status || '') = 'pending'",
        )
        .bind(job_id)
        .bind(worker_id)
        .execute(&mut *conn)
        .await?;
        conn.finished();
        Ok(())
    }

    async fn complete_job(&self, r: &AttemptResult) -> Result<bool> {
        let mut conn = self.hot.get().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // By primary key only, as `release_job`.
        let row = sqlx::query(
            "UPDATE hook.processing_jobs SET status = $3, http_status = $4, duration_ms = $5, response_preview = $6, \
             error = $7, completed_at = $8, lease_until = NULL \
             WHERE id = $1 AND claimed_by = $2 AND (status || '') = 'pending' RETURNING event_id, provider, attempt",
        )
        .bind(&r.attempt_id)
        .bind(&r.worker_id)
        .bind(r.status.as_str())
        .bind(r.http_status)
        .bind(r.duration_ms)
        .bind(&r.response_preview)
        .bind(&r.error)
        .bind(r.completed_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            conn.finished();
            return Ok(false);
        };
        if let Some((next_id, due)) = &r.next {
            sqlx::query(
                "INSERT INTO hook.processing_jobs (id, event_id, provider, attempt, status, trigger, due_at, created_at) \
                 VALUES ($1,$2,$3,$4,'pending','retry',$5,$6) ON CONFLICT (event_id, attempt) DO NOTHING",
            )
            .bind(next_id)
            .bind(row.try_get::<String, _>("event_id")?)
            .bind(row.try_get::<String, _>("provider")?)
            .bind(row.try_get::<i32, _>("attempt")? + 1)
            .bind(due)
            .bind(r.completed_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        conn.finished();
        self.job_floor.wrote(r.next.as_ref().map(|(_, due)| *due));
        Ok(true)
    }

    async fn list_jobs(
        &self,
        event_id: Option<&str>,
        status: Option<AttemptStatus>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<Job>> {
        let w = search::jobs(Dialect::Postgres, event_id, status, before);
        let sql = w.page_sql(
            &format!("SELECT {JOB_COLUMNS} FROM hook.processing_jobs a"),
            limit,
        );
        let rows = w.bind_to(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        let items = rows.iter().map(rows::job).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |j| j.id.clone()))
    }

    // Replays.

    async fn replay(&self, r: &NewReplay) -> Result<Option<Job>> {
        let mut tx = self.pool.begin().await?;
        let provider: Option<String> =
            sqlx::query_scalar("SELECT provider FROM hook.inbound_events WHERE id = $1 FOR UPDATE")
                .bind(&r.event_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(provider) = provider else {
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO hook.replay_requests (id, event_id, requested_by, reason, request_id, job_id, created_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7)",
        )
        .bind(&r.id)
        .bind(&r.event_id)
        .bind(&r.requested_by)
        .bind(&r.reason)
        .bind(&r.request_id)
        .bind(&r.job_id)
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "INSERT INTO hook.processing_jobs (id, event_id, provider, attempt, status, trigger, due_at, created_at) \
             SELECT $1, $2, $3, COALESCE(MAX(attempt), 0) + 1, 'pending', 'replay', $4, $4 \
             FROM hook.processing_jobs WHERE event_id = $2 RETURNING {JOB_COLUMNS}"
        ))
        .bind(&r.job_id)
        .bind(&r.event_id)
        .bind(&provider)
        .bind(r.created_at)
        .fetch_one(&mut *tx)
        .await?;
        let created = rows::job(&row)?;
        tx.commit().await?;
        self.job_floor.wrote([created.due_at]);
        Ok(Some(created))
    }

    // The audit trail.

    async fn append_audit(&self, entry: &NewAudit, now: DateTime<Utc>) -> Result<AuditRecord> {
        let mut tx = self.pool.begin().await?;
        // One appender at a time, across every replica: the chain has no forks.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('hook.audit_entries'))")
            .execute(&mut *tx)
            .await?;
        let prev: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM hook.audit_entries ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let key = self.audit_key.get()?;
        let r = chain_audit(prev, entry, now, &key);
        sqlx::query(&format!("INSERT INTO hook.audit_entries ({AUDIT_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"))
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
        let w = search::audit(Dialect::Postgres, q);
        let order = if q.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM hook.audit_entries a WHERE {} ORDER BY a.seq {order} LIMIT {}",
            w.sql(),
            i64::from(q.limit) + 1
        );
        // Planned for its values each time (an unnamed statement): a cached
        // generic plan cannot tell a day's window (the time index) from a
        // year's (the seq order), and measured 150 ms where this takes 1 ms.
        let rows = w
            .bind_to(sqlx::query(&sql).persistent(false))
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(rows::audit).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, q.limit, |a| a.seq.to_string()))
    }

    async fn audit_chain(&self) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM hook.audit_entries ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::audit).collect()
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM hook.audit_entries ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn audit_key(&self) -> Result<Option<Sealed>> {
        let row: Option<(Vec<u8>, String)> =
            sqlx::query_as("SELECT key_enc, key_id FROM hook.audit_chain_key WHERE id = $1")
                .bind(AUDIT_KEY_ROW)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(ciphertext, key_id)| Sealed { key_id, ciphertext }))
    }

    async fn init_audit_key(
        &self,
        seal: SealNewAuditKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<Sealed> {
        let mut tx = self.pool.begin().await?;
        // Under the append lock: no entry goes in between the last unkeyed
        // one and the key.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('hook.audit_entries'))")
            .execute(&mut *tx)
            .await?;
        let next: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM hook.audit_entries")
                .fetch_one(&mut *tx)
                .await?;
        let stored: Option<(Vec<u8>, String)> =
            sqlx::query_as("SELECT key_enc, key_id FROM hook.audit_chain_key WHERE id = $1")
                .bind(AUDIT_KEY_ROW)
                .fetch_optional(&mut *tx)
                .await?;
        let sealed = match stored {
            Some((ciphertext, key_id)) => Sealed { key_id, ciphertext },
            None => {
                let sealed = seal(next);
                sqlx::query(
                    "INSERT INTO hook.audit_chain_key (id, key_enc, key_id, created_at) VALUES ($1, $2, $3, $4)",
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
            "SELECT status, count(*) FROM hook.processing_jobs GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?;
        let oldest: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT min(due_at) FROM hook.processing_jobs WHERE status = 'pending' AND due_at <= $1")
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
        Ok(ProcessingStatus {
            by_status: rows.into_iter().map(|(s, n)| (s, n as u64)).collect(),
            oldest_pending_age_seconds: rows::age_seconds(now, oldest),
        })
    }

    async fn forwarding_backlog(&self, now: DateTime<Utc>) -> Result<ForwardingBacklog> {
        // Each an index range: the pending jobs' partial index, the status index.
        let (pending, dead, oldest): (i64, i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM hook.processing_jobs WHERE status = 'pending'), \
               (SELECT count(*) FROM hook.processing_jobs WHERE status = 'dead'), \
               (SELECT min(due_at) FROM hook.processing_jobs WHERE status = 'pending' AND due_at <= $1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(ForwardingBacklog {
            pending: pending as u64,
            dead: dead as u64,
            oldest_pending_age_seconds: rows::age_seconds(now, oldest),
        })
    }
}
