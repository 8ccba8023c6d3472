//! Web sessions on PostgreSQL: the console's and the portal's sign-ins and
//! the portal's single-use links. Every write is durable (the main pool): a
//! sign-out lost in a crash would bring a revoked session back.

use super::PgStore;
use crate::error::Result;
use crate::model::{PortalLink, SessionKind, WebSession};
use crate::rows::{self, PORTAL_LINK_COLUMNS, WEB_SESSION_COLUMNS};
use crate::{PRUNE_BATCH, PRUNE_GRACE};
use chrono::{DateTime, Utc};

pub(super) async fn create_session(s: &PgStore, w: &WebSession) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO hook.web_sessions ({WEB_SESSION_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
    ))
    .bind(&w.id_hash)
    .bind(w.kind.as_str())
    .bind(&w.account_id)
    .bind(&w.actor)
    .bind(&w.csrf)
    .bind(w.created_at)
    .bind(w.expires_at)
    .bind(w.revoked_at)
    .execute(&s.pool)
    .await?;
    Ok(())
}

pub(super) async fn get_session(
    s: &PgStore,
    id_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<WebSession>> {
    let sql = format!(
        "SELECT {WEB_SESSION_COLUMNS} FROM hook.web_sessions \
         WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > $2"
    );
    let row = sqlx::query(&sql)
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&s.pool)
        .await?;
    row.as_ref().map(rows::web_session).transpose()
}

pub(super) async fn revoke_session(s: &PgStore, id_hash: &str, now: DateTime<Utc>) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE hook.web_sessions SET revoked_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL",
    )
    .bind(id_hash)
    .bind(now)
    .execute(&s.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn revoke_sessions(
    s: &PgStore,
    kind: SessionKind,
    account_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<u64> {
    // One transaction, the links first: a link being opened meanwhile
    // either is spent here (and opens nothing) or has its session
    // committed before the sessions are revoked (`open_link` spends a link
    // and starts its session in one transaction too).
    let mut tx = s.pool.begin().await?;
    if kind == SessionKind::Portal {
        // The account's links not opened yet go too: a leaked one must not
        // outlive the revocation.
        let scope = if account_id.is_some() {
            "account_id = $1"
        } else {
            "$1::text IS NULL"
        };
        let sql = format!(
            "UPDATE hook.portal_links SET used_at = $2 WHERE {scope} AND used_at IS NULL AND expires_at > $2"
        );
        sqlx::query(&sql)
            .bind(account_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    // Two statements rather than `$2 IS NULL OR …`: each keeps its index.
    let scope = if account_id.is_some() {
        "account_id = $2"
    } else {
        "$2::text IS NULL"
    };
    let sql = format!(
        "UPDATE hook.web_sessions SET revoked_at = $3 \
         WHERE kind = $1 AND {scope} AND revoked_at IS NULL AND expires_at > $3"
    );
    let done = sqlx::query(&sql)
        .bind(kind.as_str())
        .bind(account_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

pub(super) async fn list_sessions(
    s: &PgStore,
    kind: Option<SessionKind>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<WebSession>> {
    let scope = if kind.is_some() {
        "kind = $1"
    } else {
        "$1::text IS NULL"
    };
    let sql = format!(
        "SELECT {WEB_SESSION_COLUMNS} FROM hook.web_sessions \
         WHERE {scope} AND revoked_at IS NULL AND expires_at > $2 \
         ORDER BY created_at DESC, id_hash DESC LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(kind.map(SessionKind::as_str))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&s.pool)
        .await?;
    rows.iter().map(rows::web_session).collect()
}

pub(super) async fn create_link(s: &PgStore, l: &PortalLink) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO hook.portal_links ({PORTAL_LINK_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6)"
    ))
    .bind(&l.token_hash)
    .bind(&l.account_id)
    .bind(l.created_at)
    .bind(l.expires_at)
    .bind(l.session_ttl_seconds)
    .bind(l.used_at)
    .execute(&s.pool)
    .await?;
    Ok(())
}

pub(super) async fn redeem_link(
    s: &PgStore,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<PortalLink>> {
    // An unknown, used or expired token (what anyone can send) takes a read,
    // never a row lock or a write.
    let usable: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM hook.portal_links WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(&s.pool)
    .await?;
    if usable.is_none() {
        return Ok(None);
    }
    // One statement: a concurrent redeem waits for the row lock, then sees
    // `used_at` set (READ COMMITTED re-checks the WHERE on the new row).
    let sql = format!(
        "UPDATE hook.portal_links SET used_at = $2 \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
         RETURNING {PORTAL_LINK_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&s.pool)
        .await?;
    row.as_ref().map(rows::portal_link).transpose()
}

pub(super) async fn open_link(
    s: &PgStore,
    token_hash: &str,
    id_hash: &str,
    csrf: &str,
    now: DateTime<Utc>,
) -> Result<Option<WebSession>> {
    // An unknown, used or expired token (what anyone can send) takes a read.
    let usable: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM hook.portal_links WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(&s.pool)
    .await?;
    if usable.is_none() {
        return Ok(None);
    }
    // The link is spent and its session stored in one transaction, so a
    // revocation of the account sees both or neither.
    let mut tx = s.pool.begin().await?;
    let sql = format!(
        "UPDATE hook.portal_links SET used_at = $2 \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
         RETURNING {PORTAL_LINK_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(link) = row.as_ref().map(rows::portal_link).transpose()? else {
        return Ok(None);
    };
    let session = WebSession {
        id_hash: id_hash.to_owned(),
        kind: SessionKind::Portal,
        actor: format!("portal:{}", link.account_id),
        account_id: Some(link.account_id),
        csrf: csrf.to_owned(),
        created_at: now,
        expires_at: link.created_at + chrono::Duration::seconds(link.session_ttl_seconds),
        revoked_at: None,
    };
    sqlx::query(&format!(
        "INSERT INTO hook.web_sessions ({WEB_SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&session.id_hash)
    .bind(session.kind.as_str())
    .bind(&session.account_id)
    .bind(&session.actor)
    .bind(&session.csrf)
    .bind(session.created_at)
    .bind(session.expires_at)
    .bind(None::<DateTime<Utc>>)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(session))
}

pub(super) async fn prune(s: &PgStore, now: DateTime<Utc>) -> Result<u64> {
    let before = now - PRUNE_GRACE;
    let statements = [
        "DELETE FROM hook.web_sessions WHERE id_hash IN (SELECT id_hash FROM hook.web_sessions \
         WHERE expires_at < $1 OR revoked_at < $1 LIMIT $2)",
        "DELETE FROM hook.portal_links WHERE token_hash IN (SELECT token_hash FROM hook.portal_links \
         WHERE expires_at < $1 LIMIT $2)",
    ];
    let mut total = 0;
    for sql in statements {
        // Each batch commits on its own: row locks are held briefly.
        loop {
            let done = sqlx::query(sql)
                .bind(before)
                .bind(i64::from(PRUNE_BATCH))
                .execute(&s.pool)
                .await?;
            total += done.rows_affected();
            if done.rows_affected() < u64::from(PRUNE_BATCH) {
                break;
            }
        }
    }
    Ok(total)
}
