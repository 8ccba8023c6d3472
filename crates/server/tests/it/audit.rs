//! The audit chain's head as the service shows it outside the database: the
//! periodic log, and an ERROR when entries were removed behind its back.

use crate::helpers::*;
use hookwarden_store::on_both;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

on_both!(
    the_trail_is_filtered_sorted_and_paged_over_http,
    the_logged_head_moves_back_loudly_when_newest_entries_are_removed,
    an_upgraded_trail_is_keyed_at_first_start_and_its_old_entries_covered
);

/// Every page of `query` over HTTP, two entries a page: the entries' seqs.
async fn audit_seqs(app: &TestApp, query: &str) -> Vec<i64> {
    let mut seqs = Vec::new();
    let mut path = format!("/api/v1/audit-entries?limit=2&{query}");
    loop {
        let (status, page, _) = app.operator(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{path}: {page}");
        let items = page["items"].as_array().expect("items");
        seqs.extend(items.iter().map(|a| a["seq"].as_i64().expect("seq")));
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/audit-entries?limit=2&{query}&cursor={c}"),
            None => return seqs,
        }
    }
}

async fn the_trail_is_filtered_sorted_and_paged_over_http(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let writes = [
        (
            "operator:ab12cd34/console",
            "integration.created",
            "integration:acme",
        ),
        ("tenant:acct_1:portal", "webhook.created", "webhook:wh_1"),
        (
            "operator:ab12cd34/console",
            "integration.secret_rotated",
            "integration:acme",
        ),
        (
            "operator:ab12cd34/console",
            "integrations.other",
            "integration:acme",
        ),
        ("system", "integration.updated", "integration:beta"),
        (
            "operator:ab12cd34/console",
            "integration.deleted",
            "integration:beta",
        ),
    ];
    for (i, (actor, action, target)) in writes.iter().enumerate() {
        hookwarden_server::shared::audit::record(
            app.state.store.as_ref(),
            actor,
            action,
            target,
            &format!("r{i}"),
            json!({}),
        )
        .await;
        // Apart in time, so that a time bound falls between entries.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let (_, all, _) = app
        .operator(
            reqwest::Method::GET,
            "/api/v1/audit-entries?limit=100",
            None,
        )
        .await;
    let all = all["items"].as_array().expect("items").clone();
    let pick = |keep: &dyn Fn(&serde_json::Value) -> bool| -> Vec<i64> {
        all.iter()
            .filter(|a| keep(a))
            .map(|a| a["seq"].as_i64().expect("seq"))
            .collect()
    };
    let third = all
        .iter()
        .find(|a| a["action"] == "integration.secret_rotated")
        .expect("written")["createdAt"]
        .as_str()
        .expect("time")
        .to_owned();
    let last = all.last().expect("entries")["createdAt"]
        .as_str()
        .expect("time")
        .to_owned();
    let by_operator = |a: &serde_json::Value| a["actor"] == "operator:ab12cd34/console";
    let integration_actions = |a: &serde_json::Value| {
        a["action"]
            .as_str()
            .expect("action")
            .starts_with("integration.")
    };
    let created = |a: &serde_json::Value| a["createdAt"].as_str().expect("time").to_owned();
    let cases: Vec<(String, Vec<i64>)> = vec![
        ("".into(), pick(&|_| true)),
        ("actor=operator%3Aab12cd34%2Fconsole".into(), pick(&by_operator)),
        ("actor=tenant:acct_1:portal".into(), pick(&|a| a["actor"] == "tenant:acct_1:portal")),
        ("action=integration.*".into(), pick(&integration_actions)),
        ("action=webhook.created".into(), pick(&|a| a["action"] == "webhook.created")),
        ("target=integration:beta".into(), pick(&|a| a["target"] == "integration:beta")),
        (format!("from={third}"), pick(&|a| created(a) >= third)),
        (format!("to={third}"), pick(&|a| created(a) < third)),
        (
            format!("actor=operator%3Aab12cd34%2Fconsole&action=integration.*&target=integration:acme&from={third}&to={last}"),
            pick(&|a| {
                by_operator(a)
                    && integration_actions(a)
                    && a["target"] == "integration:acme"
                    && created(a) >= third
                    && created(a) < last
            }),
        ),
        ("actor=nobody".into(), vec![]),
    ];
    for (query, oldest_first) in cases {
        assert!(
            !oldest_first.is_empty() || query == "actor=nobody",
            "{query}"
        );
        assert_eq!(audit_seqs(&app, &query).await, oldest_first, "{query}");
        assert_eq!(
            audit_seqs(&app, &format!("{query}&sort=createdAt")).await,
            oldest_first,
            "{query}"
        );
        let mut newest_first = oldest_first.clone();
        newest_first.reverse();
        assert_eq!(
            audit_seqs(&app, &format!("{query}&sort=-createdAt")).await,
            newest_first,
            "{query}"
        );
    }
    // Bad values are refused, naming the parameter.
    let long = "a".repeat(201);
    for (bad, name) in [
        ("actor=".to_owned(), "actor"),
        (format!("target={long}"), "target"),
        ("action=".to_owned(), "action"),
        ("action=integration*".to_owned(), "action"),
        ("action=*".to_owned(), "action"),
        ("action=.*".to_owned(), "action"),
        ("from=yesterday".to_owned(), "from"),
        ("to=2026-13-01T00:00:00Z".to_owned(), "to"),
        ("sort=desc".to_owned(), "sort"),
        ("cursor=-1".to_owned(), "cursor"),
        ("limit=0".to_owned(), "limit"),
    ] {
        let (status, err, _) = app
            .operator(
                reqwest::Method::GET,
                &format!("/api/v1/audit-entries?{bad}"),
                None,
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{bad}: {err}");
        assert_eq!(err["error"]["code"], "VALIDATION_ERROR", "{bad}");
        let message = err["error"]["message"].as_str().expect("message");
        assert!(message.contains(name), "{bad}: {message}");
    }
    let (status, _, _) = app
        .operator(
            reqwest::Method::GET,
            "/api/v1/audit-entries?colour=red",
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
}

/// Log lines collected for the test's own thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn the_logged_head_moves_back_loudly_when_newest_entries_are_removed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for n in 0..3 {
        hookwarden_server::shared::audit::record(
            app.state.store.as_ref(),
            "test",
            "t",
            &format!("n:{n}"),
            "r",
            json!({}),
        )
        .await;
    }
    // tracing caches each log line's interest across all subscribers, but
    // while only one subscriber is registered it asks the registering
    // thread's own: another test's server logging the head first, on its own
    // thread, would cache "nobody listens" past this test's subscriber. The
    // binary's global capture makes two, so every thread's answer counts ours.
    crate::logs::capture();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The watcher's looks run in this test's own task, so this thread's
    // subscriber sees them: one look, the removal, one more look.
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut watch = hookwarden_server::shared::audit::HeadWatch::default();
    watch
        .look(app.state.store.as_ref(), &app.state.operational)
        .await;
    let sql = match backend {
        Backend::Sqlite => {
            "DROP TRIGGER audit_entries_no_delete; DELETE FROM audit_entries WHERE seq = 3"
        }
        Backend::Postgres => {
            "ALTER TABLE audit_entries DISABLE TRIGGER USER; DELETE FROM audit_entries WHERE seq = 3"
        }
    };
    hookwarden_store::testing::execute_raw(backend, &app.database_url, sql)
        .await
        .expect("the owner deletes the newest entry");
    watch
        .look(app.state.store.as_ref(), &app.state.operational)
        .await;
    let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let head3 = logs
        .lines()
        .find(|l| l.contains("INFO") && l.contains("audit.head=3:"))
        .unwrap_or_else(|| panic!("the head is logged: {logs}"));
    let moved_back = logs
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("moved back"))
        .unwrap_or_else(|| panic!("the removal is logged: {logs}"));
    assert!(moved_back.contains("audit.head=2:") && moved_back.contains("audit.seen_seq=3"));
    assert!(!head3.is_empty());
    app.stop().await;
}

async fn an_upgraded_trail_is_keyed_at_first_start_and_its_old_entries_covered(backend: Backend) {
    // A trail written before chain keys: plain v1 links, no key row.
    let (db, old) = hookwarden_store::testing::migrated_store(backend).await;
    old.set_audit_key(hookwarden_core::audit::ChainKey::generate(i64::MAX));
    for n in 0..3 {
        let entry = hookwarden_store::ingress::NewAudit {
            actor: "operator".into(),
            action: "integration.created".into(),
            target: format!("integration:{n}"),
            request_id: "r".into(),
            details: json!({}),
        };
        old.append_audit(&entry, chrono::Utc::now())
            .await
            .expect("append");
    }
    drop(old);
    let master = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        rand::random::<[u8; 32]>(),
    );
    let app = TestApp::with(
        backend,
        Options {
            shared: Some((db.url.clone(), master.clone())),
            ..Default::default()
        },
    )
    .await;
    let store = app.state.store.as_ref();
    let v = hookwarden_server::shared::audit::verify(store, &app.state.keyring, None)
        .await
        .expect("verify")
        .expect("intact");
    assert_eq!((v.entries, v.keyed), (4, 1), "{v:?}");
    let chain = store.audit_chain().await.expect("chain");
    assert_eq!(chain[3].action, "audit.chain_keyed");
    app.stop().await;
    // A second start keys nothing again.
    let again = TestApp::with(
        backend,
        Options {
            shared: Some((db.url.clone(), master)),
            ..Default::default()
        },
    )
    .await;
    let v = hookwarden_server::shared::audit::verify(
        again.state.store.as_ref(),
        &again.state.keyring,
        None,
    )
    .await
    .expect("verify")
    .expect("intact");
    assert_eq!((v.entries, v.keyed), (4, 1));
    again.stop().await;
}
