//! The audit chain's head as the service shows it outside the database: the
//! periodic log, and an ERROR when entries were removed behind its back.

use crate::helpers::*;
use hookwarden_store::on_both;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

on_both!(
    the_logged_head_moves_back_loudly_when_newest_entries_are_removed,
    an_upgraded_trail_is_keyed_at_first_start_and_its_old_entries_covered
);

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
    watch.look(app.state.store.as_ref()).await;
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
    watch.look(app.state.store.as_ref()).await;
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
