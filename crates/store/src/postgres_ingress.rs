//! `IngressStore` on PostgreSQL.

use crate::error::{Result, StoreError};
use crate::ingress::*;
use crate::model::{AttemptResult, AttemptStatus, Claim, Page};
use crate::PgStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookwarden_core::crypto::Sealed;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;

const INTEGRATION_COLUMNS: &str = "name, scheme, signature_header, encoding, prefix, tolerance_seconds, target_url, \
     allowed_cidrs, rate_limit_per_minute, idempotency_header, secrets_enc, secrets_key_id, forwarding_secret_enc, \
     forwarding_key_id, created_at, updated_at, forward_raw_body";
const EVENT_COLUMNS: &str = "e.id, e.provider, e.dedup_key, e.delivery_id, e.body_sha256, e.raw_body, e.headers, e.source_ip, \
     e.correlation_id, e.received_at, \
     (SELECT j.status FROM hook.processing_jobs j WHERE j.event_id = e.id ORDER BY j.attempt DESC LIMIT 1) AS status";
const JOB_COLUMNS: &str =
    "id, event_id, provider, attempt, status, trigger, due_at, http_status, duration_ms, \
     response_preview, error, created_at, completed_at";
const AUDIT_COLUMNS: &str =
    "seq, id, actor, action, target, request_id, details, created_at, prev_hash, hash";

fn integration(row: &PgRow) -> Result<Integration> {
    Ok(Integration {
        name: row.try_get("name")?,
        scheme: row.try_get("scheme")?,
        signature_header: row.try_get("signature_header")?,
        encoding: row.try_get("encoding")?,
        prefix: row.try_get("prefix")?,
        tolerance_seconds: i64::from(row.try_get::<i32, _>("tolerance_seconds")?),
        target_url: row.try_get("target_url")?,
        allowed_cidrs: row.try_get::<Json<Vec<String>>, _>("allowed_cidrs")?.0,
        rate_limit_per_minute: row
            .try_get::<Option<i32>, _>("rate_limit_per_minute")?
            .map(i64::from),
        idempotency_header: row.try_get("idempotency_header")?,
        secrets: Sealed {
            key_id: row.try_get("secrets_key_id")?,
            ciphertext: row.try_get("secrets_enc")?,
        },
        forwarding_secret: Sealed {
            key_id: row.try_get("forwarding_key_id")?,
            ciphertext: row.try_get("forwarding_secret_enc")?,
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        forward_raw_body: row.try_get("forward_raw_body")?,
    })
}

fn status(text: Option<String>) -> Result<Option<AttemptStatus>> {
    text.map(|s| AttemptStatus::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("status {s}"))))
        .transpose()
}

fn event(row: &PgRow) -> Result<InboundEvent> {
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
        received_at: row.try_get("received_at")?,
        status: status(row.try_get("status")?)?,
    })
}

fn job(row: &PgRow) -> Result<Job> {
    Ok(Job {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        provider: row.try_get("provider")?,
        attempt: row.try_get("attempt")?,
        status: status(Some(row.try_get("status")?))?.unwrap_or(AttemptStatus::Pending),
        trigger: row.try_get("trigger")?,
        due_at: row.try_get("due_at")?,
        http_status: row.try_get("http_status")?,
        duration_ms: row.try_get("duration_ms")?,
        response_preview: row.try_get("response_preview")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}

fn audit(row: &PgRow) -> Result<AuditRecord> {
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
impl IngressStore for PgStore {
    async fn create_integration(&self, i: &Integration) -> Result<bool> {
        let done = sqlx::query(&format!(
            "INSERT INTO hook.integrations ({INTEGRATION_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) \
             ON CONFLICT (name) DO NOTHING"
        ))
        .bind(&i.name)
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
        row.as_ref().map(integration).transpose()
    }

    async fn list_integrations(&self) -> Result<Vec<Integration>> {
        let rows = sqlx::query(&format!(
            "SELECT {INTEGRATION_COLUMNS} FROM hook.integrations ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(integration).collect()
    }

    async fn update_integration(&self, i: &Integration) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE hook.integrations SET scheme = $2, signature_header = $3, encoding = $4, prefix = $5, \
             tolerance_seconds = $6, target_url = $7, allowed_cidrs = $8, rate_limit_per_minute = $9, \
             idempotency_header = $10, secrets_enc = $11, secrets_key_id = $12, forwarding_secret_enc = $13, \
             forwarding_key_id = $14, updated_at = $15, forward_raw_body = $16 WHERE name = $1",
        )
        .bind(&i.name)
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

    async fn record_inbound(&self, e: &NewInbound) -> Result<RecordOutcome> {
        self.inbound.submit(e.clone()).await
    }

    async fn get_inbound(&self, id: &str) -> Result<Option<InboundEvent>> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM hook.inbound_events e WHERE e.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
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
            "SELECT * FROM (SELECT {EVENT_COLUMNS} FROM hook.inbound_events e \
               WHERE ($1::text IS NULL OR e.provider = $1) \
                 AND ($2::timestamptz IS NULL OR e.received_at >= $2) AND ($3::timestamptz IS NULL OR e.received_at < $3) \
                 AND ($4::timestamptz IS NULL OR (e.received_at, e.id) {cmp} ($4, $5::text))) x \
             WHERE ($6::text IS NULL OR x.status = $6) \
             ORDER BY x.received_at {order}, x.id {order} LIMIT $7"
        );
        let rows = sqlx::query(&sql)
            .bind(&q.provider)
            .bind(q.from)
            .bind(q.to)
            .bind(q.after.as_ref().map(|(t, _)| *t))
            .bind(q.after.as_ref().map(|(_, id)| id.clone()))
            .bind(q.status.map(AttemptStatus::as_str))
            .bind(i64::from(q.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(event).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, q.limit, |e| {
            format!("{}:{}", e.received_at.timestamp_micros(), e.id)
        }))
    }

    async fn claim_jobs(&self, c: &Claim<'_>) -> Result<Vec<Job>> {
        // An ordered index scan whatever the statistics (migration 0005).
        let sql = format!("SELECT {JOB_COLUMNS} FROM hook.claim_jobs($1, $2, $3, $4, $5)");
        let rows = crate::postgres::claim_call(&sql, c)
            .fetch_all(&self.unsynced)
            .await?;
        rows.iter().map(job).collect()
    }

    async fn release_job(&self, job_id: &str, worker_id: &str) -> Result<()> {
        // By primary key only: the status test as an expression cannot
        // select the partial due index (migration 0006 says why).
        sqlx::query(
            "UPDATE hook.processing_jobs SET lease_until = NULL, claimed_by = NULL \
             WHERE id = $1 AND claimed_by = $2 AND (status || '') = 'pending'",
        )
        .bind(job_id)
        .bind(worker_id)
        .execute(&self.unsynced)
        .await?;
        Ok(())
    }

    async fn complete_job(&self, r: &AttemptResult) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
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
        let Some(row) = row else { return Ok(false) };
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
            "SELECT {JOB_COLUMNS} FROM hook.processing_jobs WHERE ($1::text IS NULL OR event_id = $1) \
             AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(event_id)
            .bind(status.map(AttemptStatus::as_str))
            .bind(before)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(job).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |j| j.id.clone()))
    }

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
        let created = job(&row)?;
        tx.commit().await?;
        Ok(Some(created))
    }

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

    async fn list_audit(&self, after_seq: Option<i64>, limit: u32) -> Result<Page<AuditRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM hook.audit_entries WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after_seq.unwrap_or(0))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(audit).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |a| a.seq.to_string()))
    }

    async fn audit_chain(&self) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM hook.audit_entries ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit).collect()
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
            oldest_pending_age_seconds: oldest
                .map(|o| (now - o).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0),
        })
    }
}

/// PostgreSQL's side of group commit: a batch of inbound events and their
/// first jobs in one statement, whatever its size (two per event cost the
/// database more than anything else on the receiving path). Those whose
/// (provider, dedup key) is taken, earlier in the batch or by another
/// replica (ON CONFLICT waits for a concurrent insert to commit), are
/// answered with the stored event's id.
pub(crate) struct PgBatch(pub(crate) sqlx::postgres::PgPool);

#[async_trait]
impl crate::group_commit::BatchWriter for PgBatch {
    type Item = NewInbound;
    type Outcome = RecordOutcome;
    const NAME: &'static str = "inbound";

    async fn commit(&self, items: &[&NewInbound]) -> Result<Vec<RecordOutcome>> {
        let texts = |f: fn(&NewInbound) -> Option<String>| -> Vec<Option<String>> {
            items.iter().map(|e| f(e)).collect()
        };
        let mut tx = self.0.begin().await?;
        let inserted: Vec<String> = sqlx::query_scalar(
            "WITH e AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
               $6::bytea[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[]) \
               AS e(id, provider, dedup_key, delivery_id, body_sha256, raw_body, headers, source_ip, \
                 correlation_id, received_at, job_id)), \
             ins AS (INSERT INTO hook.inbound_events (id, provider, dedup_key, delivery_id, body_sha256, \
               raw_body, headers, source_ip, correlation_id, received_at) \
               SELECT id, provider, dedup_key, delivery_id, body_sha256, raw_body, headers::jsonb, source_ip, \
                 correlation_id, received_at FROM e \
               ON CONFLICT (provider, dedup_key) DO NOTHING RETURNING id), \
             jobs AS (INSERT INTO hook.processing_jobs (id, event_id, provider, attempt, status, trigger, \
               due_at, created_at) \
               SELECT e.job_id, e.id, e.provider, 1, 'pending', 'received', e.received_at, e.received_at \
               FROM e JOIN ins ON ins.id = e.id) \
             SELECT id FROM ins",
        )
        .bind(texts(|e| Some(e.id.clone())))
        .bind(texts(|e| Some(e.provider.clone())))
        .bind(texts(|e| Some(e.dedup_key.clone())))
        .bind(texts(|e| e.delivery_id.clone()))
        .bind(texts(|e| Some(e.body_sha256.clone())))
        .bind(items.iter().map(|e| e.raw_body.clone()).collect::<Vec<_>>())
        .bind(texts(|e| Some(e.headers.to_string())))
        .bind(texts(|e| e.source_ip.clone()))
        .bind(texts(|e| Some(e.correlation_id.clone())))
        .bind(items.iter().map(|e| e.received_at).collect::<Vec<_>>())
        .bind(texts(|e| Some(e.job_id.clone())))
        .fetch_all(&mut *tx)
        .await?;
        let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
        // The events already stored for the keys of those not inserted.
        let (providers, keys): (Vec<&str>, Vec<&str>) = items
            .iter()
            .filter(|e| !inserted.contains(&e.id))
            .map(|e| (e.provider.as_str(), e.dedup_key.as_str()))
            .unzip();
        let mut stored = Vec::new();
        if !providers.is_empty() {
            stored = sqlx::query_as(
                "SELECT provider, dedup_key, id FROM hook.inbound_events WHERE (provider, dedup_key) IN \
                 (SELECT * FROM unnest($1::text[], $2::text[]))",
            )
            .bind(&providers)
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?;
        }
        let outcomes = batch_outcomes(items, &inserted, stored)?;
        tx.commit().await?;
        Ok(outcomes)
    }
}
