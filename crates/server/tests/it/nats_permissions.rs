//! hookwarden against a real NATS server started with the example
//! configuration (deploy/nats/nats-server.conf): mTLS identities, per-user
//! subject permissions, and producer grants checked on top.

use crate::helpers::*;
use futures_util::StreamExt;
use hookwarden_server::boot::devcerts::DevCa;
use hookwarden_server::outbound::producers::ProducerGrant;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct NatsServer(Child);

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

async fn connect_as(
    url: &str,
    dir: &Path,
    who: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(dir.join("ca.pem"))
        .add_client_certificate(
            dir.join(format!("{who}.pem")),
            dir.join(format!("{who}-key.pem")),
        )
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_nats_permissions_and_producer_grants() {
    let dir = TempDir::new();
    let ca = DevCa::new("nats test CA").expect("ca");
    write(&dir.0, "ca.pem", &ca.pem());
    let server = ca
        .issue("nats", &["127.0.0.1", "localhost"], true, None)
        .expect("server cert");
    write(&dir.0, "server.pem", &server.cert_pem);
    write(&dir.0, "server-key.pem", &server.key_pem);
    for who in ["hookwarden", "billing", "dlq-reviewer", "stranger"] {
        // Subject only (no SAN): verify_and_map maps "CN=<who>" to the user.
        let c = ca.issue(who, &[], false, None).expect("client cert");
        write(&dir.0, &format!("{who}.pem"), &c.cert_pem);
        write(&dir.0, &format!("{who}-key.pem"), &c.key_pem);
    }
    let port = free_port();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/nats/nats-server.conf"
    ))
    .expect("example config");
    let config = example
        .replace("0.0.0.0:4222", &format!("127.0.0.1:{port}"))
        .replace("/etc/nats/certs/", &format!("{}/", dir.0.display()))
        .replace("/var/lib/nats", &dir.0.join("js").display().to_string());
    let conf = write(&dir.0, "nats.conf", &config);
    let binary = std::env::var("HOOKWARDEN_TEST_NATS_SERVER")
        .unwrap_or_else(|_| "/usr/sbin/nats-server".into());
    let child = Command::new(&binary)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("nats-server is needed for this test ({binary}): {e}"));
    let _server = NatsServer(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not start with the example configuration"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("tls://127.0.0.1:{port}");

    // A certificate the configuration does not map to a user is refused.
    assert!(
        connect_as(&url, &dir.0, "stranger").await.is_err(),
        "an unmapped identity cannot connect"
    );

    let rx = Receiver::start().await;
    let (u, d) = (url.clone(), dir.0.clone());
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            worker: true,
            customize: Some(Box::new(move |raw| {
                raw.set("nats_url", u);
                raw.set("nats_subject_prefix", "webhook");
                raw.set("nats_stream", "HOOKWARDEN_DISPATCH");
                raw.set("nats_tls_ca_file", d.join("ca.pem"));
                raw.set("nats_tls_cert_file", d.join("hookwarden.pem"));
                raw.set("nats_tls_key_file", d.join("hookwarden-key.pem"));
                raw.set(
                    "producers",
                    vec![ProducerGrant {
                        name: "billing".into(),
                        event_types: vec!["invoice.*".into()],
                        accounts: vec![],
                    }],
                );
            })),
            ..Default::default()
        },
    )
    .await;
    // A later start with other retention limits may update its own stream.
    let mut later = app.state.settings.nats().expect("nats settings");
    later.max_age = std::time::Duration::from_secs(3 * 86_400);
    hookwarden_server::outbound::nats::Nats::connect(&later)
        .await
        .expect("hookwarden updates its own stream's retention");
    app.create_webhook("acct_1", &rx.url("/h"), &["*"]).await;
    let reviewer = connect_as(&url, &dir.0, "dlq-reviewer")
        .await
        .expect("reviewer connects");
    let mut dead = reviewer
        .subscribe("webhook.dispatch.deadletter")
        .await
        .expect("subscribe");
    reviewer.flush().await.expect("flush");

    let billing = connect_as(&url, &dir.0, "billing")
        .await
        .expect("billing connects");
    let js = async_nats::jetstream::new(billing.clone());
    let event = |ty: &str, id: &str| {
        json!({"accountId": "acct_1", "eventType": ty, "payload": {"ref": id}, "id": id})
            .to_string()
    };
    // Granted, on its own subject: delivered.
    js.publish(
        "webhook.dispatch.billing",
        event("invoice.paid", "evt_p_ok").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    // Another producer's subject: the NATS server itself refuses it.
    let stolen = js
        .publish(
            "webhook.dispatch.crm",
            event("invoice.paid", "evt_p_stolen").into(),
        )
        .await;
    let stolen_stored = match stolen {
        Ok(ack) => tokio::time::timeout(Duration::from_secs(3), ack)
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false),
        Err(_) => false,
    };
    assert!(
        !stolen_stored,
        "publishing on another producer's subject is refused by NATS"
    );
    // Its own subject but a type it is not granted: dead-lettered with the reason.
    js.publish(
        "webhook.dispatch.billing",
        event("user.created", "evt_p_denied").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    let msg = tokio::time::timeout(Duration::from_secs(15), dead.next())
        .await
        .expect("a dead letter")
        .expect("message");
    let notice: Value = serde_json::from_slice(&msg.payload).expect("json");
    assert!(
        notice["reason"]
            .as_str()
            .expect("reason")
            .contains("may not publish"),
        "{notice}"
    );
    assert_eq!(notice["subject"], "webhook.dispatch.billing");

    let deadline = Instant::now() + Duration::from_secs(15);
    while rx.count() < 1 {
        assert!(
            Instant::now() < deadline,
            "the granted event was not delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One delivery, of the granted event (under hookwarden's own event id).
    let refs: Vec<Value> = rx
        .received()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).expect("json")["data"]["ref"].clone())
        .collect();
    assert_eq!(refs, [json!("evt_p_ok")]);
    let id = rx.received()[0].headers["webhook-id"].clone();
    assert!(id.to_str().expect("id").starts_with("evt_"));
    app.stop().await;
}
