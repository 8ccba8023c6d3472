//! Reading records out of result rows, written once for both dialects: each
//! dialect says how it decodes a column (`Columns`), and one function per
//! record turns a row into the model. The column lists the readers expect
//! live here too, beside the readers.
//!
//! What the dialects store differently is only this: a time (PostgreSQL
//! `timestamptz`, SQLite unix milliseconds) and the width of an `INTEGER`
//! (32 bits on PostgreSQL, 64 on SQLite). Everything else (text, bytes,
//! booleans, JSON) decodes alike.

use crate::error::{Result, StoreError};
use crate::ingress::{AuditRecord, InboundEvent, Integration, Job};
use crate::model::{
    Attempt, AttemptStatus, Controls, EventType, Health, NewEvent, PortalLink, SessionKind,
    WebSession, Webhook,
};
use crate::sealed::{SealedColumn, SealedRow};
use chrono::{DateTime, Utc};
use hookwarden_core::crypto::Sealed;
use hookwarden_core::plain_json::Plain;
use sqlx::types::Json;
use sqlx::{Decode, Postgres, Sqlite, Type};

pub(crate) const WEBHOOK_COLUMNS: &str = "id, account_id, url, description, event_types, secret_enc, secret_key_id, \
     old_secret_enc, old_secret_key_id, old_secret_expires_at, disabled, disabled_reason, operator_hold, throttled_until, \
     failures_in_a_row, breaker_pauses, failing_since, headers, headers_enc, headers_key_id, \
     payload_filter, rate_limit_per_second, public_key, created_at, updated_at";
pub(crate) const ATTEMPT_COLUMNS: &str =
    "id, event_id, webhook_id, account_id, attempt, status, due_at, payload_snapshot, trace_parent, \
     http_status, duration_ms, response_preview, error, created_at, completed_at";
/// An event's columns, over a table aliased `a` (the searches').
pub(crate) const EVENT_COLUMNS: &str =
    "a.id, a.client_id, a.account_id, a.event_type, a.payload, a.producer, a.created_at, a.trace_parent";
pub(crate) const EVENT_TYPE_COLUMNS: &str = "name, schema, description, created_at, updated_at";
pub(crate) const INTEGRATION_COLUMNS: &str = "name, scheme, signature_header, encoding, prefix, tolerance_seconds, target_url, \
     allowed_cidrs, rate_limit_per_minute, idempotency_header, secrets_enc, secrets_key_id, forwarding_secret_enc, \
     forwarding_key_id, created_at, updated_at, forward_raw_body";
pub(crate) const JOB_COLUMNS: &str =
    "id, event_id, provider, attempt, status, trigger, due_at, http_status, duration_ms, \
     response_preview, error, created_at, completed_at";
pub(crate) const AUDIT_COLUMNS: &str =
    "seq, id, actor, action, target, request_id, details, created_at, prev_hash, hash";
pub(crate) const WEB_SESSION_COLUMNS: &str =
    "id_hash, kind, account_id, actor, csrf, created_at, expires_at, revoked_at";
pub(crate) const PORTAL_LINK_COLUMNS: &str =
    "token_hash, account_id, created_at, expires_at, session_ttl_seconds, used_at";

/// A value both dialects decode the same way (SQLite's through sqlx, or
/// on the writer's own thread, `sqlite/direct.rs`).
pub(crate) trait Value:
    for<'r> Decode<'r, Postgres>
    + Type<Postgres>
    + for<'r> Decode<'r, Sqlite>
    + Type<Sqlite>
    + crate::sqlite::FromCell
{
}

impl<T> Value for T where
    T: for<'r> Decode<'r, Postgres>
        + Type<Postgres>
        + for<'r> Decode<'r, Sqlite>
        + Type<Sqlite>
        + crate::sqlite::FromCell
{
}

/// A result row, as its dialect decodes it.
pub(crate) trait Columns {
    fn get<T: Value>(&self, column: &str) -> Result<T>;
    fn time(&self, column: &str) -> Result<DateTime<Utc>>;
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>>;
    /// An `INTEGER` column, whatever its width in the dialect.
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;

    fn int(&self, column: &str) -> Result<i64> {
        self.opt_int(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is null")))
    }
}

/// The columns of `row` named with `prefix` (a joined row's `w_…` columns).
pub(crate) struct Prefixed<'a, R>(pub &'a str, pub &'a R);

impl<R: Columns> Columns for Prefixed<'_, R> {
    fn get<T: Value>(&self, column: &str) -> Result<T> {
        self.1.get(&format!("{}{column}", self.0))
    }
    fn time(&self, column: &str) -> Result<DateTime<Utc>> {
        self.1.time(&format!("{}{column}", self.0))
    }
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>> {
        self.1.opt_time(&format!("{}{column}", self.0))
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.1.opt_int(&format!("{}{column}", self.0))
    }
}

/// A stored status; anything else is corrupt data, not a default.
fn status(text: &str) -> Result<AttemptStatus> {
    AttemptStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("status {text}")))
}

fn opt_status(text: Option<String>) -> Result<Option<AttemptStatus>> {
    text.as_deref().map(status).transpose()
}

/// A JSON column, read back exactly as it was stored (`Plain`: serde_json's
/// raw-value key an ordinary key, so a value holding it that was stored
/// before every way in refused it reads as stored, not as other JSON or
/// not at all).
pub(crate) fn json(row: &impl Columns, column: &str) -> Result<serde_json::Value> {
    Ok(row.get::<Json<Plain>>(column)?.0 .0)
}

pub(crate) fn opt_json(row: &impl Columns, column: &str) -> Result<Option<serde_json::Value>> {
    Ok(row.get::<Option<Json<Plain>>>(column)?.map(|j| j.0 .0))
}

/// A webhook (`WEBHOOK_COLUMNS`).
pub(crate) fn webhook(row: &impl Columns) -> Result<Webhook> {
    let old = match (
        row.get::<Option<Vec<u8>>>("old_secret_enc")?,
        row.get::<Option<String>>("old_secret_key_id")?,
        row.opt_time("old_secret_expires_at")?,
    ) {
        (Some(ciphertext), Some(key_id), Some(until)) => {
            Some((Sealed { key_id, ciphertext }, until))
        }
        _ => None,
    };
    Ok(Webhook {
        id: row.get("id")?,
        account_id: row.get("account_id")?,
        url: row.get("url")?,
        description: row.get("description")?,
        event_types: row.get::<Json<Vec<String>>>("event_types")?.0,
        secret: Sealed {
            key_id: row.get("secret_key_id")?,
            ciphertext: row.get("secret_enc")?,
        },
        old_secret: old,
        disabled: row.get("disabled")?,
        disabled_reason: row.get("disabled_reason")?,
        held_by_operator: row.get("operator_hold")?,
        throttled_until: row.opt_time("throttled_until")?,
        health: Health {
            failures_in_a_row: row.int("failures_in_a_row")?.clamp(0, i64::from(u32::MAX)) as u32,
            pauses: row.int("breaker_pauses")?.clamp(0, i64::from(u32::MAX)) as u32,
            failing_since: row.opt_time("failing_since")?,
        },
        controls: Controls {
            headers: opt_json(row, "headers")?,
            secret_headers: match (
                row.get::<Option<Vec<u8>>>("headers_enc")?,
                row.get::<Option<String>>("headers_key_id")?,
            ) {
                (Some(ciphertext), Some(key_id)) => Some(Sealed { key_id, ciphertext }),
                _ => None,
            },
            filter: opt_json(row, "payload_filter")?,
            rate_limit_per_second: row
                .opt_int("rate_limit_per_second")?
                .map(|n| n.clamp(0, i64::from(u32::MAX)) as u32),
            public_key: row.get("public_key")?,
        },
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// Claimed tries, each read on its own: a row that cannot be read (a
/// snapshot holding a number past what any reader holds, written by hand,
/// say) is left out with an error naming it, rather than
/// failing the claim of every try claimed with it (and, due first, every
/// claim after). It keeps its lease until that runs out, and is named
/// again at each claim of it, for the operator to mend.
pub(crate) fn claimed_attempts<R: Columns>(rows: &[R]) -> Vec<Attempt> {
    rows.iter()
        .filter_map(|row| match attempt(row) {
            Ok(a) => Some(a),
            Err(e) => {
                let id = row.get::<String>("id").unwrap_or_default();
                tracing::error!(attempt.id = %id, error.message = %e,
                    "a claimed try could not be read; left out of the claim");
                None
            }
        })
        .collect()
}

/// A delivery try (`ATTEMPT_COLUMNS`).
pub(crate) fn attempt(row: &impl Columns) -> Result<Attempt> {
    Ok(Attempt {
        id: row.get("id")?,
        event_id: row.get("event_id")?,
        webhook_id: row.get("webhook_id")?,
        account_id: row.get("account_id")?,
        attempt: row.get("attempt")?,
        status: status(&row.get::<String>("status")?)?,
        due_at: row.time("due_at")?,
        payload_snapshot: json(row, "payload_snapshot")?,
        trace_parent: row.get("trace_parent")?,
        http_status: row.get("http_status")?,
        duration_ms: row.get("duration_ms")?,
        response_preview: row.get("response_preview")?,
        error: row.get("error")?,
        created_at: row.time("created_at")?,
        completed_at: row.opt_time("completed_at")?,
    })
}

/// A published event (`EVENT_COLUMNS`).
pub(crate) fn event(row: &impl Columns) -> Result<NewEvent> {
    Ok(NewEvent {
        id: row.get("id")?,
        client_id: row.get("client_id")?,
        account_id: row.get("account_id")?,
        event_type: row.get("event_type")?,
        payload: json(row, "payload")?,
        producer: row.get("producer")?,
        created_at: row.time("created_at")?,
        trace_parent: row.get("trace_parent")?,
    })
}

/// An event type (`EVENT_TYPE_COLUMNS`).
pub(crate) fn event_type(row: &impl Columns) -> Result<EventType> {
    Ok(EventType {
        name: row.get("name")?,
        schema: json(row, "schema")?,
        description: row.get("description")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// A sealed value of `column`, selected `AS id, account_id, enc, kid`.
pub(crate) fn sealed(row: &impl Columns, column: SealedColumn) -> Result<SealedRow> {
    Ok(SealedRow {
        column,
        id: row.get("id")?,
        account_id: row.get("account_id")?,
        sealed: Sealed {
            key_id: row.get("kid")?,
            ciphertext: row.get("enc")?,
        },
    })
}

/// An integration (`INTEGRATION_COLUMNS`).
pub(crate) fn integration(row: &impl Columns) -> Result<Integration> {
    Ok(Integration {
        name: row.get("name")?,
        scheme: row.get("scheme")?,
        signature_header: row.get("signature_header")?,
        encoding: row.get("encoding")?,
        prefix: row.get("prefix")?,
        tolerance_seconds: row.int("tolerance_seconds")?,
        target_url: row.get("target_url")?,
        allowed_cidrs: row.get::<Json<Vec<String>>>("allowed_cidrs")?.0,
        rate_limit_per_minute: row.opt_int("rate_limit_per_minute")?,
        idempotency_header: row.get("idempotency_header")?,
        secrets: Sealed {
            key_id: row.get("secrets_key_id")?,
            ciphertext: row.get("secrets_enc")?,
        },
        forwarding_secret: Sealed {
            key_id: row.get("forwarding_key_id")?,
            ciphertext: row.get("forwarding_secret_enc")?,
        },
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        forward_raw_body: row.get("forward_raw_body")?,
    })
}

/// An inbound event with the status of its latest job (each dialect's
/// `INBOUND_COLUMNS`).
pub(crate) fn inbound(row: &impl Columns) -> Result<InboundEvent> {
    Ok(InboundEvent {
        id: row.get("id")?,
        provider: row.get("provider")?,
        dedup_key: row.get("dedup_key")?,
        delivery_id: row.get("delivery_id")?,
        body_sha256: row.get("body_sha256")?,
        raw_body: row.get("raw_body")?,
        headers: json(row, "headers")?,
        source_ip: row.get("source_ip")?,
        correlation_id: row.get("correlation_id")?,
        received_at: row.time("received_at")?,
        trace_parent: row.get("trace_parent")?,
        status: opt_status(row.get("status")?)?,
    })
}

/// A forwarding job (`JOB_COLUMNS`).
pub(crate) fn job(row: &impl Columns) -> Result<Job> {
    Ok(Job {
        id: row.get("id")?,
        event_id: row.get("event_id")?,
        provider: row.get("provider")?,
        attempt: row.get("attempt")?,
        status: status(&row.get::<String>("status")?)?,
        trigger: row.get("trigger")?,
        due_at: row.time("due_at")?,
        http_status: row.get("http_status")?,
        duration_ms: row.get("duration_ms")?,
        response_preview: row.get("response_preview")?,
        error: row.get("error")?,
        created_at: row.time("created_at")?,
        completed_at: row.opt_time("completed_at")?,
    })
}

/// An audit entry (`AUDIT_COLUMNS`; its time is the text it was hashed with).
pub(crate) fn audit(row: &impl Columns) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: row.get("seq")?,
        id: row.get("id")?,
        actor: row.get("actor")?,
        action: row.get("action")?,
        target: row.get("target")?,
        request_id: row.get("request_id")?,
        details: row.get("details")?,
        created_at: row.get("created_at")?,
        prev_hash: row.get("prev_hash")?,
        hash: row.get("hash")?,
    })
}

/// A browser session (`WEB_SESSION_COLUMNS`).
pub(crate) fn web_session(row: &impl Columns) -> Result<WebSession> {
    let kind: String = row.get("kind")?;
    Ok(WebSession {
        id_hash: row.get("id_hash")?,
        kind: SessionKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("session kind {kind}")))?,
        account_id: row.get("account_id")?,
        actor: row.get("actor")?,
        csrf: row.get("csrf")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        revoked_at: row.opt_time("revoked_at")?,
    })
}

/// A portal link (`PORTAL_LINK_COLUMNS`; its session length is a 64-bit
/// integer on both dialects).
pub(crate) fn portal_link(row: &impl Columns) -> Result<PortalLink> {
    Ok(PortalLink {
        token_hash: row.get("token_hash")?,
        account_id: row.get("account_id")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        session_ttl_seconds: row.get("session_ttl_seconds")?,
        used_at: row.opt_time("used_at")?,
    })
}

/// How long the oldest of a queue's due items has waited, in seconds (0
/// when none is due).
pub(crate) fn age_seconds(now: DateTime<Utc>, oldest: Option<DateTime<Utc>>) -> f64 {
    oldest
        .map(|o| (now - o).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0)
}
