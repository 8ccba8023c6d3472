//! The web sessions' storage contract (the console's and the portal's
//! sign-ins, the portal's single-use links), on SQLite and PostgreSQL alike.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use hookwarden_store::model::*;
use hookwarden_store::testing::{execute_raw, Backend, TestDb};
use hookwarden_store::{on_both, Store, PRUNE_BATCH};
use sha2::{Digest, Sha256};
use std::sync::Arc;

on_both!(
    sessions_are_stored_and_read_back,
    an_expired_session_is_hidden,
    a_revoked_session_is_hidden_and_revoked_once,
    revoking_an_account_s_sessions_touches_only_that_account,
    live_sessions_are_listed_newest_first,
    a_portal_link_is_redeemed_once,
    concurrent_redeems_of_one_link_yield_one_session,
    an_expired_link_is_not_redeemable,
    pruning_removes_only_rows_a_day_past_their_end,
    pruning_works_through_a_backlog_in_batches,
    opening_a_link_spends_it_and_starts_its_session_at_once,
);

async fn store(backend: Backend) -> (TestDb, Arc<dyn Store>) {
    hookwarden_store::testing::migrated_store(backend).await
}

/// Now, to the millisecond: what both backends keep of a time.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// The hex SHA-256 of a fresh random token, as the web layer stores it.
fn token_hash() -> String {
    hex::encode(Sha256::digest(uuid::Uuid::new_v4().as_bytes()))
}

fn operator_session(created_at: DateTime<Utc>, ttl: Duration) -> WebSession {
    WebSession {
        id_hash: token_hash(),
        kind: SessionKind::Operator,
        account_id: None,
        actor: "operator:ab12cd34".into(),
        csrf: token_hash(),
        created_at,
        expires_at: created_at + ttl,
        revoked_at: None,
    }
}

fn portal_session(account: &str, created_at: DateTime<Utc>, ttl: Duration) -> WebSession {
    WebSession {
        kind: SessionKind::Portal,
        account_id: Some(account.into()),
        actor: format!("portal:{account}"),
        ..operator_session(created_at, ttl)
    }
}

fn link(account: &str, created_at: DateTime<Utc>, ttl: Duration) -> PortalLink {
    PortalLink {
        token_hash: token_hash(),
        account_id: account.into(),
        created_at,
        expires_at: created_at + ttl,
        session_ttl_seconds: 8 * 3600,
        used_at: None,
    }
}

async fn sessions_are_stored_and_read_back(backend: Backend) {
    let (_db, s) = store(backend).await;
    let t = now();
    let op = operator_session(t, Duration::hours(1));
    let portal = portal_session("acct_1", t, Duration::hours(8));
    s.create_web_session(&op).await.expect("create_web_session");
    s.create_web_session(&portal)
        .await
        .expect("create_web_session");
    assert_eq!(
        s.get_web_session(&op.id_hash, t)
            .await
            .expect("get_web_session"),
        Some(op.clone())
    );
    assert_eq!(
        s.get_web_session(&portal.id_hash, t)
            .await
            .expect("get_web_session"),
        Some(portal)
    );
    assert_eq!(
        s.get_web_session(&token_hash(), t)
            .await
            .expect("get_web_session"),
        None
    );
    // The same hash twice is refused, not overwritten.
    assert!(s.create_web_session(&op).await.is_err());
    // A portal session that sees no account cannot exist.
    let orphan = WebSession {
        account_id: None,
        ..portal_session("acct_1", t, Duration::hours(1))
    };
    assert!(s.create_web_session(&orphan).await.is_err());
    assert_eq!(
        s.get_web_session(&orphan.id_hash, t)
            .await
            .expect("get_web_session"),
        None
    );
}

async fn an_expired_session_is_hidden(backend: Backend) {
    let (_db, s) = store(backend).await;
    let t = now();
    let session = operator_session(t, Duration::hours(1));
    s.create_web_session(&session)
        .await
        .expect("create_web_session");
    let almost = t + Duration::hours(1) - Duration::milliseconds(1);
    assert!(s
        .get_web_session(&session.id_hash, almost)
        .await
        .expect("get_web_session")
        .is_some());
    // Expired at its expiry time, not a moment later.
    assert_eq!(
        s.get_web_session(&session.id_hash, session.expires_at)
            .await
            .expect("get_web_session"),
        None
    );
    assert_eq!(
        s.get_web_session(&session.id_hash, t + Duration::days(1))
            .await
            .expect("get_web_session"),
        None
    );
}

async fn a_revoked_session_is_hidden_and_revoked_once(backend: Backend) {
    let (_db, s) = store(backend).await;
    let t = now();
    let session = portal_session("acct_1", t, Duration::hours(8));
    let other = portal_session("acct_1", t, Duration::hours(8));
    s.create_web_session(&session)
        .await
        .expect("create_web_session");
    s.create_web_session(&other)
        .await
        .expect("create_web_session");
    let later = t + Duration::minutes(5);
    assert!(s
        .revoke_web_session(&session.id_hash, later)
        .await
        .expect("revoke_web_session"));
    assert_eq!(
        s.get_web_session(&session.id_hash, later)
            .await
            .expect("get_web_session"),
        None
    );
    // The second sign-out finds nothing left to revoke.
    assert!(!s
        .revoke_web_session(&session.id_hash, later)
        .await
        .expect("revoke_web_session"));
    assert!(!s
        .revoke_web_session(&token_hash(), later)
        .await
        .expect("revoke_web_session"));
    // Another session of the same account is untouched.
    assert_eq!(
        s.get_web_session(&other.id_hash, later)
            .await
            .expect("get_web_session"),
        Some(other)
    );
}

async fn revoking_an_account_s_sessions_touches_only_that_account(backend: Backend) {
    let (_db, s) = store(backend).await;
    let t = now();
    let a1 = portal_session("acct_a", t, Duration::hours(8));
    let a2 = portal_session("acct_a", t, Duration::hours(8));
    let a_expired = portal_session("acct_a", t - Duration::hours(9), Duration::hours(8));
    let b = portal_session("acct_b", t, Duration::hours(8));
    let op = operator_session(t, Duration::hours(8));
    for session in [&a1, &a2, &a_expired, &b, &op] {
        s.create_web_session(session)
            .await
            .expect("create_web_session");
    }
    let (a_link, b_link) = (
        link("acct_a", t, Duration::hours(1)),
        link("acct_b", t, Duration::hours(1)),
    );
    for l in [&a_link, &b_link] {
        s.create_portal_link(l).await.expect("create_portal_link");
    }
    // The expired one is not live, so it is not counted.
    assert_eq!(
        s.revoke_web_sessions(SessionKind::Portal, Some("acct_a"), t)
            .await
            .expect("revoke_web_sessions"),
        2
    );
    assert_eq!(
        s.get_web_session(&a1.id_hash, t)
            .await
            .expect("get_web_session"),
        None
    );
    assert_eq!(
        s.get_web_session(&a2.id_hash, t)
            .await
            .expect("get_web_session"),
        None
    );
    assert!(s
        .get_web_session(&b.id_hash, t)
        .await
        .expect("get_web_session")
        .is_some());
    // The account's unopened link is spent with its sessions; another's is not.
    assert_eq!(
        s.redeem_portal_link(&a_link.token_hash, t)
            .await
            .expect("redeem"),
        None
    );
    assert!(s
        .redeem_portal_link(&b_link.token_hash, t)
        .await
        .expect("redeem")
        .is_some());
    assert!(s
        .get_web_session(&op.id_hash, t)
        .await
        .expect("get_web_session")
        .is_some());
    // Already revoked: nothing more to do.
    assert_eq!(
        s.revoke_web_sessions(SessionKind::Portal, Some("acct_a"), t)
            .await
            .expect("revoke_web_sessions"),
        0
    );
    // Every operator, and only operators.
    assert_eq!(
        s.revoke_web_sessions(SessionKind::Operator, None, t)
            .await
            .expect("revoke_web_sessions"),
        1
    );
    assert_eq!(
        s.get_web_session(&op.id_hash, t)
            .await
            .expect("get_web_session"),
        None
    );
    assert!(s
        .get_web_session(&b.id_hash, t)
        .await
        .expect("get_web_session")
        .is_some());
    // Every portal session of any account.
    assert_eq!(
        s.revoke_web_sessions(SessionKind::Portal, None, t)
            .await
            .expect("revoke_web_sessions"),
        1
    );
    assert_eq!(
        s.get_web_session(&b.id_hash, t)
            .await
            .expect("get_web_session"),
        None
    );
}

async fn live_sessions_are_listed_newest_first(backend: Backend) {
    let (_db, s) = store(backend).await;
    let t = now();
    let op_old = operator_session(t - Duration::minutes(30), Duration::hours(8));
    let portal = portal_session("acct_1", t - Duration::minutes(20), Duration::hours(8));
    let op_new = operator_session(t - Duration::minutes(10), Duration::hours(8));
    let revoked = operator_session(t - Duration::minutes(5), Duration::hours(8));
    let expired = operator_session(t - Duration::hours(2), Duration::hours(1));
    for session in [&op_old, &portal, &op_new, &revoked, &expired] {
        s.create_web_session(session)
            .await
            .expect("create_web_session");
    }
    s.revoke_web_session(&revoked.id_hash, t)
        .await
        .expect("revoke_web_session");

    let all = s
        .list_web_sessions(None, t, 10)
        .await
        .expect("list_web_sessions");
    assert_eq!(all, vec![op_new.clone(), portal.clone(), op_old.clone()]);
    let ops = s
        .list_web_sessions(Some(SessionKind::Operator), t, 10)
        .await
        .expect("list_web_sessions");
    assert_eq!(ops, vec![op_new.clone(), op_old]);
    let portals = s
        .list_web_sessions(Some(SessionKind::Portal), t, 10)
        .await
        .expect("list_web_sessions");
    assert_eq!(portals, vec![portal]);
    assert_eq!(
        s.list_web_sessions(None, t, 1)
            .await
            .expect("list_web_sessions"),
        vec![op_new]
    );
    assert!(s
        .list_web_sessions(None, t + Duration::days(1), 10)
        .await
        .expect("list_web_sessions")
        .is_empty());
}

async fn a_portal_link_is_redeemed_once(backend: Backend) {
    let (_db, s) = store(backend).await;
    let t = now();
    let l = link("acct_1", t, Duration::minutes(15));
    s.create_portal_link(&l).await.expect("create_portal_link");
    assert!(s.create_portal_link(&l).await.is_err());
    let at = t + Duration::minutes(1);
    let redeemed = s
        .redeem_portal_link(&l.token_hash, at)
        .await
        .expect("redeem_portal_link");
    assert_eq!(
        redeemed,
        Some(PortalLink {
            used_at: Some(at),
            ..l.clone()
        })
    );
    assert_eq!(
        s.redeem_portal_link(&l.token_hash, at)
            .await
            .expect("redeem_portal_link"),
        None
    );
    assert_eq!(
        s.redeem_portal_link(&l.token_hash, at + Duration::seconds(1))
            .await
            .expect("redeem_portal_link"),
        None
    );
    assert_eq!(
        s.redeem_portal_link(&token_hash(), at)
            .await
            .expect("redeem_portal_link"),
        None
    );
}

async fn concurrent_redeems_of_one_link_yield_one_session(backend: Backend) {
    let (_db, s) = store(backend).await;
    let t = now();
    const RACERS: usize = 8;
    for _ in 0..10 {
        let l = link("acct_1", t, Duration::minutes(15));
        s.create_portal_link(&l).await.expect("create_portal_link");
        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|_| {
                let (s, start, hash) = (s.clone(), start.clone(), l.token_hash.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    s.redeem_portal_link(&hash, t)
                        .await
                        .expect("redeem_portal_link")
                })
            })
            .collect();
        let mut won = 0;
        for racer in racers {
            if let Some(redeemed) = racer.await.expect("racer") {
                assert_eq!(redeemed.account_id, "acct_1");
                won += 1;
            }
        }
        assert_eq!(
            won, 1,
            "exactly one of {RACERS} concurrent redeems gets the link"
        );
    }
}

async fn an_expired_link_is_not_redeemable(backend: Backend) {
    let (_db, s) = store(backend).await;
    let t = now();
    let l = link("acct_1", t, Duration::minutes(15));
    s.create_portal_link(&l).await.expect("create_portal_link");
    assert_eq!(
        s.redeem_portal_link(&l.token_hash, l.expires_at)
            .await
            .expect("redeem_portal_link"),
        None
    );
    assert_eq!(
        s.redeem_portal_link(&l.token_hash, t + Duration::days(2))
            .await
            .expect("redeem_portal_link"),
        None
    );
    // Refused for its age, it was not spent: just before expiry it still works.
    let before = l.expires_at - Duration::milliseconds(1);
    assert!(s
        .redeem_portal_link(&l.token_hash, before)
        .await
        .expect("redeem_portal_link")
        .is_some());
}

async fn pruning_removes_only_rows_a_day_past_their_end(backend: Backend) {
    let (_db, s) = store(backend).await;
    let t = now();
    let day = Duration::days(1);
    let hour = Duration::hours(1);
    // Gone: expired more than a day ago, and revoked more than a day ago
    // (though not yet expired).
    let expired_old = operator_session(t - day - hour * 2, hour);
    let revoked_old = portal_session("acct_1", t - day * 2, day * 7);
    // Kept: expired or revoked within the day, and live.
    let expired_recent = operator_session(t - hour * 3, hour);
    let revoked_recent = portal_session("acct_1", t - hour * 2, day * 7);
    let live = portal_session("acct_2", t, hour * 8);
    for session in [
        &expired_old,
        &revoked_old,
        &expired_recent,
        &revoked_recent,
        &live,
    ] {
        s.create_web_session(session)
            .await
            .expect("create_web_session");
    }
    s.revoke_web_session(&revoked_old.id_hash, t - day - hour)
        .await
        .expect("revoke_web_session");
    s.revoke_web_session(&revoked_recent.id_hash, t - hour)
        .await
        .expect("revoke_web_session");
    // Links: one expired long ago, one within the day, one used but not expired.
    let link_old = link("acct_1", t - day * 2, hour);
    let link_recent = link("acct_1", t - hour * 2, hour);
    let link_used = link("acct_1", t, Duration::minutes(15));
    for l in [&link_old, &link_recent, &link_used] {
        s.create_portal_link(l).await.expect("create_portal_link");
    }
    s.redeem_portal_link(&link_used.token_hash, t)
        .await
        .expect("redeem_portal_link")
        .expect("redeemed");

    assert_eq!(
        s.prune_web_sessions(t).await.expect("prune_web_sessions"),
        3
    );
    assert_eq!(
        s.prune_web_sessions(t).await.expect("prune_web_sessions"),
        0
    );
    // What was kept is still there: the live session answers, and revoking
    // a kept expired session still finds its row.
    assert_eq!(
        s.get_web_session(&live.id_hash, t)
            .await
            .expect("get_web_session"),
        Some(live)
    );
    assert!(s
        .revoke_web_session(&expired_recent.id_hash, t)
        .await
        .expect("revoke_web_session"));
    assert!(!s
        .revoke_web_session(&expired_old.id_hash, t)
        .await
        .expect("revoke_web_session"));
    // The rest goes once its day has passed too.
    assert_eq!(
        s.prune_web_sessions(t + day * 8)
            .await
            .expect("prune_web_sessions"),
        5
    );
}

async fn pruning_works_through_a_backlog_in_batches(backend: Backend) {
    let (db, s) = store(backend).await;
    let t = now();
    // More than two batches of long-expired sessions and links, written
    // behind the store's back (one statement each, so the test stays quick).
    let n = 2 * PRUNE_BATCH + 345;
    let old = t - Duration::days(3);
    let sql = match backend {
        Backend::Sqlite => {
            let ms = old.timestamp_millis();
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
                 INSERT INTO web_sessions (id_hash, kind, account_id, actor, csrf, created_at, expires_at) \
                 SELECT 'old' || i, 'operator', NULL, 'operator:x', 'c', {ms}, {ms} FROM n; \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
                 INSERT INTO portal_links (token_hash, account_id, created_at, expires_at, session_ttl_seconds) \
                 SELECT 'old' || i, 'acct_1', {ms}, {ms}, 60 FROM n;"
            )
        }
        Backend::Postgres => {
            let ts = old.to_rfc3339();
            format!(
                "INSERT INTO web_sessions (id_hash, kind, account_id, actor, csrf, created_at, expires_at) \
                 SELECT 'old' || i, 'operator', NULL, 'operator:x', 'c', '{ts}', '{ts}' \
                 FROM generate_series(1, {n}) i; \
                 INSERT INTO portal_links (token_hash, account_id, created_at, expires_at, session_ttl_seconds) \
                 SELECT 'old' || i, 'acct_1', '{ts}', '{ts}', 60 FROM generate_series(1, {n}) i;"
            )
        }
    };
    execute_raw(backend, &db.url, &sql).await.expect("old rows");
    let live = operator_session(t, Duration::hours(1));
    s.create_web_session(&live)
        .await
        .expect("create_web_session");
    assert_eq!(
        s.prune_web_sessions(t).await.expect("prune_web_sessions"),
        2 * u64::from(n)
    );
    assert_eq!(
        s.list_web_sessions(None, t, 10)
            .await
            .expect("list_web_sessions"),
        vec![live]
    );
}

/// The portal's entry: the link spent and its session stored together (so
/// a revocation of the account sees both or neither), once, for the link's
/// account and until the link's creation plus its session length.
async fn opening_a_link_spends_it_and_starts_its_session_at_once(backend: Backend) {
    let (_db, s) = store(backend).await;
    let t = now();
    let l = link("acct_open", t, Duration::minutes(15));
    s.create_portal_link(&l).await.expect("create_portal_link");
    let opened = s
        .open_portal_link(&l.token_hash, "a".repeat(64).as_str(), "csrf-token", t)
        .await
        .expect("open_portal_link")
        .expect("a session");
    assert_eq!(opened.kind, SessionKind::Portal);
    assert_eq!(opened.account_id.as_deref(), Some("acct_open"));
    assert_eq!(opened.actor, "portal:acct_open");
    assert_eq!(
        opened.expires_at,
        l.created_at + Duration::seconds(l.session_ttl_seconds)
    );
    assert_eq!(
        s.get_web_session(&opened.id_hash, t).await.expect("get"),
        Some(opened.clone())
    );
    // Spent: neither a second opening nor a redeem gets anything.
    assert_eq!(
        s.open_portal_link(&l.token_hash, "b".repeat(64).as_str(), "x", t)
            .await
            .expect("again"),
        None
    );
    assert_eq!(
        s.redeem_portal_link(&l.token_hash, t)
            .await
            .expect("redeem"),
        None
    );
    assert_eq!(
        s.get_web_session(&"b".repeat(64), t).await.expect("get"),
        None
    );
    // Unknown and expired links open nothing.
    assert_eq!(
        s.open_portal_link(&"c".repeat(64), "d".repeat(64).as_str(), "x", t)
            .await
            .expect("unknown"),
        None
    );
    let late = link("acct_open", t - Duration::hours(1), Duration::minutes(15));
    s.create_portal_link(&late)
        .await
        .expect("create_portal_link");
    assert_eq!(
        s.open_portal_link(&late.token_hash, "e".repeat(64).as_str(), "x", t)
            .await
            .expect("expired"),
        None
    );
    // Revoking the account ends the session it started.
    assert_eq!(
        s.revoke_web_sessions(SessionKind::Portal, Some("acct_open"), t)
            .await
            .expect("revoke"),
        1
    );
    assert_eq!(
        s.get_web_session(&opened.id_hash, t).await.expect("get"),
        None
    );
}
