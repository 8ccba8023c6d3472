//! Web sessions on SQLite: the console's and the portal's sign-ins and the
//! portal's single-use links. Writes go through the one writer connection,
//! so each statement is atomic against every other write.

use super::{ms, SqliteStore};
use crate::error::Result;
use crate::model::{PortalLink, SessionKind, WebSession};
use crate::rows::{self, PORTAL_LINK_COLUMNS, WEB_SESSION_COLUMNS};
use crate::{PRUNE_BATCH, PRUNE_GRACE};
use chrono::{DateTime, Utc};

pub(super) async fn create_session(s: &SqliteStore, w: &WebSession) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO web_sessions ({WEB_SESSION_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)"
    ))
    .bind(&w.id_hash)
    .bind(w.kind.as_str())
    .bind(&w.account_id)
    .bind(&w.actor)
    .bind(&w.csrf)
    .bind(ms(w.created_at))
    .bind(ms(w.expires_at))
    .bind(w.revoked_at.map(ms))
    .execute(&mut *s.writer.get().await?)
    .await?;
    Ok(())
}

pub(super) async fn get_session(
    s: &SqliteStore,
    id_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<WebSession>> {
    let sql = format!(
        "SELECT {WEB_SESSION_COLUMNS} FROM web_sessions \
         WHERE id_hash = ?1 AND revoked_at IS NULL AND expires_at > ?2"
    );
    let row = sqlx::query(&sql)
        .bind(id_hash)
        .bind(ms(now))
        .fetch_optional(&s.readers)
        .await?;
    row.as_ref().map(rows::web_session).transpose()
}

pub(super) async fn revoke_session(
    s: &SqliteStore,
    id_hash: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE web_sessions SET revoked_at = ?2 WHERE id_hash = ?1 AND revoked_at IS NULL",
    )
    .bind(id_hash)
    .bind(ms(now))
    .execute(&mut *s.writer.get().await?)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn revoke_sessions(
    s: &SqliteStore,
    kind: SessionKind,
    account_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<u64> {
    // One transaction, the links first: a link being opened meanwhile
    // either is spent here (and opens nothing) or has its session
    // committed before the sessions are revoked (`open_link` spends a link
    // and starts its session in one transaction too).
    let mut held = s.writer.get().await?;
    let mut tx = sqlx::Connection::begin(&mut *held).await?;
    if kind == SessionKind::Portal {
        // The account's links not opened yet go too: a leaked one must not
        // outlive the revocation.
        let scope = if account_id.is_some() {
            "account_id = ?1"
        } else {
            "?1 IS NULL"
        };
        let sql = format!(
            "UPDATE portal_links SET used_at = ?2 WHERE {scope} AND used_at IS NULL AND expires_at > ?2"
        );
        sqlx::query(&sql)
            .bind(account_id)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
    }
    // Two statements rather than `?2 IS NULL OR …`: each keeps its index.
    let scope = if account_id.is_some() {
        "account_id = ?2"
    } else {
        "?2 IS NULL"
    };
    let sql = format!(
        "UPDATE web_sessions SET revoked_at = ?3 \
         WHERE kind = ?1 AND {scope} AND revoked_at IS NULL AND expires_at > ?3"
    );
    let done = sqlx::query(&sql)
        .bind(kind.as_str())
        .bind(account_id)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

pub(super) async fn list_sessions(
    s: &SqliteStore,
    kind: Option<SessionKind>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<WebSession>> {
    let scope = if kind.is_some() {
        "kind = ?1"
    } else {
        "?1 IS NULL"
    };
    let sql = format!(
        "SELECT {WEB_SESSION_COLUMNS} FROM web_sessions \
         WHERE {scope} AND revoked_at IS NULL AND expires_at > ?2 \
         ORDER BY created_at DESC, id_hash DESC LIMIT ?3"
    );
    let rows = sqlx::query(&sql)
        .bind(kind.map(SessionKind::as_str))
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&s.readers)
        .await?;
    rows.iter().map(rows::web_session).collect()
}

pub(super) async fn create_link(s: &SqliteStore, l: &PortalLink) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO portal_links ({PORTAL_LINK_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6)"
    ))
    .bind(&l.token_hash)
    .bind(&l.account_id)
    .bind(ms(l.created_at))
    .bind(ms(l.expires_at))
    .bind(l.session_ttl_seconds)
    .bind(l.used_at.map(ms))
    .execute(&mut *s.writer.get().await?)
    .await?;
    Ok(())
}

pub(super) async fn redeem_link(
    s: &SqliteStore,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<PortalLink>> {
    // An unknown, used or expired token (what anyone can send) is answered
    // by a reader: it never waits for, nor holds, the one writer.
    let usable: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM portal_links WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
    )
    .bind(token_hash)
    .bind(ms(now))
    .fetch_optional(&s.readers)
    .await?;
    if usable.is_none() {
        return Ok(None);
    }
    // One statement on the one writer: a second redeem finds `used_at` set.
    let sql = format!(
        "UPDATE portal_links SET used_at = ?2 \
         WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 \
         RETURNING {PORTAL_LINK_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(token_hash)
        .bind(ms(now))
        .fetch_optional(&mut *s.writer.get().await?)
        .await?;
    row.as_ref().map(rows::portal_link).transpose()
}

pub(super) async fn open_link(
    s: &SqliteStore,
    token_hash: &str,
    id_hash: &str,
    csrf: &str,
    now: DateTime<Utc>,
) -> Result<Option<WebSession>> {
    // An unknown, used or expired token (what anyone can send) takes a read.
    let usable: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM portal_links WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
    )
    .bind(token_hash)
    .bind(ms(now))
    .fetch_optional(&s.readers)
    .await?;
    if usable.is_none() {
        return Ok(None);
    }
    // The link is spent and its session stored in one transaction, so a
    // revocation of the account sees both or neither.
    let mut held = s.writer.get().await?;
    let mut tx = sqlx::Connection::begin(&mut *held).await?;
    let sql = format!(
        "UPDATE portal_links SET used_at = ?2 \
         WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 \
         RETURNING {PORTAL_LINK_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(token_hash)
        .bind(ms(now))
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
        "INSERT INTO web_sessions ({WEB_SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))
    .bind(&session.id_hash)
    .bind(session.kind.as_str())
    .bind(&session.account_id)
    .bind(&session.actor)
    .bind(&session.csrf)
    .bind(ms(session.created_at))
    .bind(ms(session.expires_at))
    .bind(None::<i64>)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(session))
}

pub(super) async fn prune(s: &SqliteStore, now: DateTime<Utc>) -> Result<u64> {
    let before = ms(now - PRUNE_GRACE);
    let statements = [
        "DELETE FROM web_sessions WHERE id_hash IN (SELECT id_hash FROM web_sessions \
         WHERE expires_at < ?1 OR revoked_at < ?1 LIMIT ?2)",
        "DELETE FROM portal_links WHERE token_hash IN (SELECT token_hash FROM portal_links \
         WHERE expires_at < ?1 LIMIT ?2)",
    ];
    let mut total = 0;
    for sql in statements {
        // One batch per statement, so other writes run between batches.
        loop {
            let done = sqlx::query(sql)
                .bind(before)
                .bind(i64::from(PRUNE_BATCH))
                .execute(&mut *s.writer.get().await?)
                .await?;
            total += done.rows_affected();
            if done.rows_affected() < u64::from(PRUNE_BATCH) {
                break;
            }
        }
    }
    Ok(total)
}
