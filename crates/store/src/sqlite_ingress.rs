//! `IngressStore` on SQLite (times are unix milliseconds, JSON is text).

use crate::error::{Result, StoreError};
use crate::ingress::*;
use crate::model::{AttemptResult, AttemptStatus, Claim, Page};
use crate::sqlite::{ms, opt_time, time};
use crate::SqliteStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookwarden_core::crypto::Sealed;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::Row;

const INTEGRATION_COLUMNS: &str = "name, scheme, signature_header, encoding, prefix, tolerance_seconds, target_url, \
     allowed_cidrs, rate_limit_per_minute, idempotency_header, secrets_enc, secrets_key_id, forwarding_secret_enc, \
     forwarding_key_id, created_at, updated_at, forward_raw_body";
const EVENT_COLUMNS: &str = "e.id, e.provider, e.dedup_key, e.delivery_id, e.body_sha256, e.raw_body, e.headers, e.source_ip, \
     e.correlation_id, e.received_at, \
     (SELECT j.status FROM processing_jobs j WHERE j.event_id = e.id ORDER BY j.attempt DESC LIMIT 1) AS status";
const JOB_COLUMNS: &str =
    "id, event_id, provider, attempt, status, trigger, due_at, http_status, duration_ms, \
     response_preview, error, created_at, completed_at";
const AUDIT_COLUMNS: &str =
    "seq, id, actor, action, target, request_id, details, created_at, prev_hash, hash";

fn integration(row: &SqliteRow) -> Result<Integration> {
    Ok(Integration {
        name: row.try_get("name")?,
        scheme: row.try_get("scheme")?,
        signature_header: row.try_get("signature_header")?,
        encoding: row.try_get("encoding")?,
        prefix: row.try_get("prefix")?,
        tolerance_seconds: row.try_get("tolerance_seconds")?,
        target_url: row.try_get("target_url")?,
        allowed_cidrs: row.try_get::<Json<Vec<String>>, _>("allowed_cidrs")?.0,
        rate_limit_per_minute: row.try_get("rate_limit_per_minute")?,
        idempotency_header: row.try_get("idempotency_header")?,
        secrets: Sealed {
            key_id: row.try_get("secrets_key_id")?,
            ciphertext: row.try_get("secrets_enc")?,
        },
        forwarding_secret: Sealed {
            key_id: row.try_get("forwarding_key_id")?,
            ciphertext: row.try_get("forwarding_secret_enc")?,
        },
        created_at: time(row.try_get("created_at")?)?,
        updated_at: time(row.try_get("updated_at")?)?,
        forward_raw_body: row.try_get("forward_raw_body")?,
    })
}

fn status(text: Option<String>) -> Result<Option<AttemptStatus>> {
    text.map(|s| AttemptStatus::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("status {s}"))))
        .transpose()
}

fn event(row: &SqliteRow) -> Result<InboundEvent> {
    Ok(InboundEvent {
        id: row.try_get("id")?,
        provider: row.try_get("provider")?,
        dedup_key: row.try_get("dedup_key")?,
        delivery_id: row.try_get("delivery_id")?,
        body_sha256: row.try_get("body_sha256")?,
        raw_body: row.try_get("raw_body")?,
        headers: row.try_get::<Json<serde_json::Value>, _>("headers")?.0,
        source_ip: row.try_get("source_ip")?,
        correlation_id: row.try_get("correlation_id")?,
        received_at: time(row.try_get("received_at")?)?,
        status: status(row.try_get("status")?)?,
    })
}

fn job(row: &SqliteRow) -> Result<Job> {
    Ok(Job {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        provider: row.try_get("provider")?,
        attempt: row.try_get("attempt")?,
        status: status(Some(row.try_get("status")?))?.unwrap_or(AttemptStatus::Pending),
        trigger: row.try_get("trigger")?,
        due_at: time(row.try_get("due_at")?)?,
        http_status: row.try_get("http_status")?,
        duration_ms: row.try_get("duration_ms")?,
        response_preview: row.try_get("response_preview")?,
        error: row.try_get("error")?,
        created_at: time(row.try_get("created_at")?)?,
        completed_at: opt_time(row.try_get("completed_at")?)?,
    })
}

fn audit(row: &SqliteRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        request_id: row.try_get("request_id")?,
        details: row.try_get("details")?,
        created_at: row.try_get("created_at")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

#[async_trait]
impl IngressStore for SqliteStore {
    async fn create_integration(&self, i: &Integration) -> Result<bool> {
        let done = sqlx::query(&format!(
            "INSERT INTO integrations ({INTEGRATION_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17) \
             ON CONFLICT (name) DO NOTHING"
        ))
        .bind(&i.name)
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
        .bind(ms(i.created_at))
        .bind(ms(i.updated_at))
        .bind(i.forward_raw_body)
        .execute(&self.writer)
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
        row.as_ref().map(integration).transpose()
    }

    async fn list_integrations(&self) -> Result<Vec<Integration>> {
        let rows = sqlx::query(&format!(
            "SELECT {INTEGRATION_COLUMNS} FROM integrations ORDER BY name"
        ))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(integration).collect()
    }

    async fn update_integration(&self, i: &Integration) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE integrations SET scheme = ?2, signature_header = ?3, encoding = ?4, prefix = ?5, \
             tolerance_seconds = ?6, target_url = ?7, allowed_cidrs = ?8, rate_limit_per_minute = ?9, \
             idempotency_header = ?10, secrets_enc = ?11, secrets_key_id = ?12, forwarding_secret_enc = ?13, \
             forwarding_key_id = ?14, updated_at = ?15, forward_raw_body = ?16 WHERE name = ?1",
        )
        .bind(&i.name)
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
        .bind(ms(i.updated_at))
        .bind(i.forward_raw_body)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_integration(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM integrations WHERE name = ?1")
            .bind(name)
            .execute(&self.writer)
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

    async fn record_inbound(&self, e: &NewInbound) -> Result<RecordOutcome> {
        self.inbound.submit(e.clone()).await
    }

    async fn get_inbound(&self, id: &str) -> Result<Option<InboundEvent>> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM inbound_events e WHERE e.id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(event).transpose()
    }

    async fn list_inbound(&self, q: &EventQuery) -> Result<Page<InboundEvent>> {
        let (cmp, order) = if q.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let sql = format!(
            "SELECT * FROM (SELECT {EVENT_COLUMNS} FROM inbound_events e \
               WHERE (?1 IS NULL OR e.provider = ?1) \
                 AND (?2 IS NULL OR e.received_at >= ?2) AND (?3 IS NULL OR e.received_at < ?3) \
                 AND (?4 IS NULL OR (e.received_at, e.id) {cmp} (?4, ?5))) x \
             WHERE (?6 IS NULL OR x.status = ?6) \
             ORDER BY x.received_at {order}, x.id {order} LIMIT ?7"
        );
        let rows = sqlx::query(&sql)
            .bind(&q.provider)
            .bind(q.from.map(ms))
            .bind(q.to.map(ms))
            .bind(q.after.as_ref().map(|(t, _)| ms(*t)))
            .bind(q.after.as_ref().map(|(_, id)| id.clone()))
            .bind(q.status.map(AttemptStatus::as_str))
            .bind(i64::from(q.limit) + 1)
            .fetch_all(&self.readers)
            .await?;
        let items = rows.iter().map(event).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, q.limit, |e| {
            format!("{}:{}", e.received_at.timestamp_micros(), e.id)
        }))
    }

    async fn claim_jobs(&self, c: &Claim<'_>) -> Result<Vec<Job>> {
        let sql = format!(
            "UPDATE processing_jobs SET lease_until = ?1, claimed_by = ?2 WHERE id IN ( \
               SELECT id FROM processing_jobs WHERE status = 'pending' AND due_at <= ?3 \
                 AND (lease_until IS NULL OR lease_until < ?3) \
                 AND provider NOT IN (SELECT value FROM json_each(?4)) \
               ORDER BY due_at LIMIT ?5) RETURNING {JOB_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(ms(c.lease_until))
            .bind(c.worker_id)
            .bind(ms(c.now))
            .bind(Json(c.exclude_webhooks))
            .bind(i64::from(c.limit))
            .fetch_all(&self.writer)
            .await?;
        rows.iter().map(job).collect()
    }

    async fn release_job(&self, job_id: &str, worker_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE processing_jobs SET lease_until = NULL, claimed_by = NULL \
             WHERE id = ?1 AND claimed_by = ?2 AND status = 'pending'",
        )
        .bind(job_id)
        .bind(worker_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn complete_job(&self, r: &AttemptResult) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "UPDATE processing_jobs SET status = ?3, http_status = ?4, duration_ms = ?5, response_preview = ?6, \
             error = ?7, completed_at = ?8, lease_until = NULL \
             WHERE id = ?1 AND claimed_by = ?2 AND status = 'pending' RETURNING event_id, provider, attempt",
        )
        .bind(&r.attempt_id)
        .bind(&r.worker_id)
        .bind(r.status.as_str())
        .bind(r.http_status)
        .bind(r.duration_ms)
        .bind(&r.response_preview)
        .bind(&r.error)
        .bind(ms(r.completed_at))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        if let Some((next_id, due)) = &r.next {
            sqlx::query(
                "INSERT INTO processing_jobs (id, event_id, provider, attempt, status, trigger, due_at, created_at) \
                 VALUES (?1,?2,?3,?4,'pending','retry',?5,?6) ON CONFLICT (event_id, attempt) DO NOTHING",
            )
            .bind(next_id)
            .bind(row.try_get::<String, _>("event_id")?)
            .bind(row.try_get::<String, _>("provider")?)
            .bind(row.try_get::<i32, _>("attempt")? + 1)
            .bind(ms(*due))
            .bind(ms(r.completed_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn list_jobs(
        &self,
        event_id: Option<&str>,
        status: Option<AttemptStatus>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM processing_jobs WHERE (?1 IS NULL OR event_id = ?1) \
             AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4"
        );
        let rows = sqlx::query(&sql)
            .bind(event_id)
            .bind(status.map(AttemptStatus::as_str))
            .bind(before)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.readers)
            .await?;
        let items = rows.iter().map(job).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |j| j.id.clone()))
    }

    async fn replay(&self, r: &NewReplay) -> Result<Option<Job>> {
        let mut tx = self.writer.begin().await?;
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
        let created = job(&row)?;
        tx.commit().await?;
        Ok(Some(created))
    }

    async fn append_audit(&self, entry: &NewAudit, now: DateTime<Utc>) -> Result<AuditRecord> {
        // The single writer connection serializes appends: the chain has no forks.
        let mut tx = self.writer.begin().await?;
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

    async fn list_audit(&self, after_seq: Option<i64>, limit: u32) -> Result<Page<AuditRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_entries WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))
        .bind(after_seq.unwrap_or(0))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.readers)
        .await?;
        let items = rows.iter().map(audit).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |a| a.seq.to_string()))
    }

    async fn audit_chain(&self) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_entries ORDER BY seq"
        ))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(audit).collect()
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
        let mut tx = self.writer.begin().await?;
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

    async fn processing_status(&self, now: DateTime<Utc>) -> Result<ProcessingStatus> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM processing_jobs GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.readers)
        .await?;
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT min(due_at) FROM processing_jobs WHERE status = 'pending' AND due_at <= ?1",
        )
        .bind(ms(now))
        .fetch_one(&self.readers)
        .await?;
        Ok(ProcessingStatus {
            by_status: rows.into_iter().map(|(s, n)| (s, n as u64)).collect(),
            oldest_pending_age_seconds: oldest
                .map(|o| (ms(now) - o).max(0) as f64 / 1000.0)
                .unwrap_or(0.0),
        })
    }
}

/// SQLite's side of group commit: the batch in one transaction on the
/// writer, in a fixed number of statements whatever its size (the events,
/// then the first jobs of those inserted). Every statement is a round trip to
/// the connection's own thread, and those hand-offs, not SQLite, were most
/// of the receiving path's CPU when each event took two statements. Those
/// whose (provider, dedup key) is taken, earlier in the batch too, are
/// answered with the stored event's id.
pub(crate) struct SqliteBatch(pub(crate) sqlx::SqlitePool);

#[async_trait]
impl crate::group_commit::BatchWriter for SqliteBatch {
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
        let inserted: std::collections::HashSet<String> = events
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
        let outcomes = batch_outcomes(items, &inserted, stored)?;
        tx.commit().await?;
        Ok(outcomes)
    }
}
