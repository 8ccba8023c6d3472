//! The SSRF guard end to end: registration refuses blocked forms, delivery
//! re-checks every try, names are resolved once and every address checked.

use crate::helpers::*;
use async_trait::async_trait;
use axum::http::StatusCode;
use hookwarden_core::destination::NOT_ALLOWED;
use hookwarden_server::shared::client::{Lookup, SystemLookup};
use hookwarden_store::on_both;
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

on_both!(
    registration_refuses_blocked_destinations,
    names_resolving_to_blocked_addresses_are_refused_at_delivery,
    connections_go_to_the_checked_address,
    stored_ip_literals_are_rechecked_at_every_try,
    unresolvable_and_blocked_names_read_the_same,
);

/// A resolver with fixed answers, counting its calls.
struct FixedLookup {
    answers: HashMap<&'static str, Vec<IpAddr>>,
    calls: AtomicUsize,
}

#[async_trait]
impl Lookup for FixedLookup {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.answers
            .get(host)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
    }
}

/// Fixed answers for some names, the system's resolver for the rest.
struct PartlyFixed(HashMap<&'static str, Vec<IpAddr>>);

#[async_trait]
impl Lookup for PartlyFixed {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        match self.0.get(host) {
            Some(answer) => Ok(answer.clone()),
            None => SystemLookup.lookup(host).await,
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

async fn registration_refuses_blocked_destinations(backend: Backend) {
    let app = TestApp::with(
        backend,
        Options {
            allow_loopback: false,
            ..Default::default()
        },
    )
    .await;
    let t = app.tenant("acct_a");
    let refused = [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://0x7f.0.0.1/",
        "http://127.0.0.1./",
        "http://0/",
        "http://0.0.0.0:8080/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://172.16.0.1/",
        "http://192.168.0.1/",
        "http://198.18.0.1/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://[::]/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[0:0:0:0:0:ffff:7f00:1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2001::1]/",
        "http://[2002:7f00:1::]/",
        "http://[fc00::1]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[ff02::1]/",
        "http://localhost/",
        "http://LocalHost./",
        "http://metadata.google.internal/",
        "http://metadata.google.internal./computeMetadata/v1/",
        "http://x.localhost/",
        "https://user:pass@example.com/",
        "gopher://example.com/",
        "file:///etc/passwd",
    ];
    assert!(refused.len() >= 30);
    for url in refused {
        let (status, body, _) = app
            .post("/v1/webhooks", &t, json!({"url": url, "eventTypes": ["*"]}))
            .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{url} was accepted: {body}"
        );
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    }
    // The same forms are refused on update.
    let (id, _) = app
        .create_webhook("acct_a", "https://example.com/ok", &["*"])
        .await;
    let (status, _, _) = app
        .put(
            &format!("/v1/webhooks/{id}"),
            &t,
            json!({"url": "http://[::1]:9090/metrics"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn names_resolving_to_blocked_addresses_are_refused_at_delivery(backend: Backend) {
    let lookup = Arc::new(FixedLookup {
        answers: HashMap::from([
            ("loopback.test", vec![ip("127.0.0.1")]),
            ("metadata.test", vec![ip("169.254.169.254")]),
            ("mixed.test", vec![ip("93.184.216.34"), ip("10.0.0.5")]),
            ("mapped.test", vec![ip("::ffff:127.0.0.1")]),
        ]),
        calls: AtomicUsize::new(0),
    });
    let app = TestApp::with(
        backend,
        Options {
            allow_loopback: false,
            lookup: Some(lookup.clone()),
            retry_schedule: "1h",
            ..Default::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    let port = rx.addr.port();
    let mut hooks = Vec::new();
    for host in [
        "loopback.test",
        "metadata.test",
        "mixed.test",
        "mapped.test",
    ] {
        // Names are accepted at registration (they are resolved when delivering).
        let (id, _) = app
            .create_webhook(
                &format!("acct_{}", host.replace('.', "_")),
                &format!("http://{host}:{port}/hook"),
                &["*"],
            )
            .await;
        hooks.push((host, id));
    }
    for (host, _) in &hooks {
        app.publish(&format!("acct_{}", host.replace('.', "_")), "t", json!({}))
            .await;
    }
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 4);
    assert_eq!(rx.count(), 0, "nothing reached the loopback receiver");
    for (host, id) in &hooks {
        let items = app
            .deliveries(&format!("acct_{}", host.replace('.', "_")), id)
            .await;
        let failed = items
            .iter()
            .find(|i| i["status"] == "failed")
            .expect("failed try");
        assert!(
            failed["error"]
                .as_str()
                .expect("error")
                .contains("destination refused"),
            "{host}: {failed}"
        );
    }
    assert_eq!(
        lookup.calls.load(Ordering::SeqCst),
        4,
        "one resolution per try"
    );
}

async fn connections_go_to_the_checked_address(backend: Backend) {
    // `sink.test` exists only in our resolver: delivery succeeding proves the
    // connection used the address we checked, with no second resolution.
    let lookup = Arc::new(FixedLookup {
        answers: HashMap::from([("sink.test", vec![ip("127.0.0.1")])]),
        calls: AtomicUsize::new(0),
    });
    let app = TestApp::with(
        backend,
        Options {
            lookup: Some(lookup.clone()),
            ..Default::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    app.create_webhook(
        "acct_a",
        &format!("http://sink.test:{}/hook", rx.addr.port()),
        &["*"],
    )
    .await;
    app.publish("acct_a", "t", json!({})).await;
    app.deliver_until(Duration::from_secs(10), || rx.count() == 1)
        .await;
    assert_eq!(lookup.calls.load(Ordering::SeqCst), 1);
}

async fn stored_ip_literals_are_rechecked_at_every_try(backend: Backend) {
    // A row written before a policy change (or behind the API's back) still
    // cannot reach a blocked address: IP literals never reach a resolver, so
    // the client checks them itself on every try.
    let app = TestApp::with(
        backend,
        Options {
            allow_loopback: false,
            retry_schedule: "1h",
            ..Default::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    let (id, _) = app
        .create_webhook("acct_a", "https://example.com/hook", &["*"])
        .await;
    let now = chrono::Utc::now();
    let update = hookwarden_store::model::WebhookUpdate {
        url: Some(rx.url("/hook")),
        updated_at: now,
        ..Default::default()
    };
    app.state
        .store
        .update_webhook("acct_a", &id, &update)
        .await
        .expect("direct update")
        .expect("found");
    app.publish("acct_a", "t", json!({})).await;
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 1);
    assert_eq!(rx.count(), 0);
    let items = app.deliveries("acct_a", &id).await;
    assert!(
        items[1]["error"]
            .as_str()
            .expect("error")
            .contains("destination refused"),
        "{}",
        items[1]
    );
}

async fn unresolvable_and_blocked_names_read_the_same(backend: Backend) {
    // The attack: register names one guesses exist inside the network and
    // read the stored errors; "blocked range" for a name that resolves to a
    // private address, something else for one that does not resolve, would
    // map the internal DNS. Every such refusal now reads the same.
    let lookup = Arc::new(PartlyFixed(HashMap::from([
        ("db.corp.test", vec![ip("10.0.0.5")]),
        ("metadata.corp.test", vec![ip("169.254.169.254")]),
        ("empty.corp.test", vec![]),
    ])));
    let app = TestApp::with(
        backend,
        Options {
            allow_loopback: false,
            lookup: Some(lookup),
            retry_schedule: "1h",
            ..Default::default()
        },
    )
    .await;
    // At registration a refused literal or name says no more than that.
    let t = app.tenant("acct_probe");
    for url in ["http://10.0.0.5/", "http://localhost/", "http://[fd00::1]/"] {
        let (status, body, _) = app
            .post("/v1/webhooks", &t, json!({"url": url, "eventTypes": ["*"]}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}");
        assert_eq!(
            body["error"]["message"],
            format!("url: {NOT_ALLOWED}"),
            "{url}: {body}"
        );
    }
    // Names are not resolved at registration: each is accepted alike. At
    // delivery, one resolves to a private address, one to the metadata
    // service, one to nothing, and one (`.invalid`, RFC 6761) does not
    // exist for the system resolver.
    let hosts = [
        "db.corp.test",
        "metadata.corp.test",
        "empty.corp.test",
        "nonexistent.invalid",
    ];
    let mut hooks = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let account = format!("acct_{i}");
        let (id, _) = app
            .create_webhook(
                &account,
                &format!("https://{host}/hook?token=s3cr3t"),
                &["*"],
            )
            .await;
        app.publish(&account, "t", json!({})).await;
        hooks.push((account, id));
    }
    assert_eq!(app.dispatcher.run_once().await.expect("step"), hosts.len());
    let mut seen = Vec::new();
    for ((account, id), host) in hooks.iter().zip(hosts) {
        let items = app.deliveries(account, id).await;
        let failed = items
            .iter()
            .find(|i| i["status"] == "failed")
            .unwrap_or_else(|| panic!("{host}: no failed try in {items:?}"));
        assert_eq!(failed["httpStatus"], serde_json::Value::Null, "{host}");
        assert_eq!(failed["responsePreview"], serde_json::Value::Null, "{host}");
        seen.push((host, failed["error"].clone()));
    }
    let expected = json!(format!("destination refused: {NOT_ALLOWED}"));
    for (host, error) in &seen {
        assert_eq!(*error, expected, "{host}: {seen:?}");
    }
}
