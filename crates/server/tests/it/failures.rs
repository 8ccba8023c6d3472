//! What a failed try says: refused, timed out waiting for the answer, reset
//! by the receiver; and, for operator forwarding targets only, a name that
//! does not resolve (tenants read the uniform refusal, see ssrf.rs).

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// A port nothing listens on: connecting is refused.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// Accepts, reads the request and never answers.
async fn silent_receiver() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// Accepts, reads the start of the request, and resets the connection.
async fn resetting_receiver() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 16];
            let _ = sock.read(&mut buf).await;
            // A zero linger closes with RST rather than FIN.
            let _ = sock.set_zero_linger();
            drop(sock);
        }
    });
    port
}

/// The stored error of a webhook's first failed try.
async fn failed_error(app: &TestApp, account: &str, id: &str) -> String {
    let items = app.deliveries(account, id).await;
    let failed = items
        .iter()
        .find(|i| i["status"] == "failed")
        .unwrap_or_else(|| panic!("{account}: no failed try: {items:?}"));
    assert_eq!(failed["httpStatus"], Value::Null, "{failed}");
    failed["error"].as_str().expect("error").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_delivery_failure_says_what_happened() {
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            delivery_timeout: "1s",
            retry_schedule: "1h",
            ..Default::default()
        },
    )
    .await;
    let cases = [
        ("acct_refused", closed_port().await, "connection refused"),
        (
            "acct_silent",
            silent_receiver().await,
            "response timed out: no answer within 1000ms",
        ),
        (
            "acct_reset",
            resetting_receiver().await,
            "connection reset by the receiver",
        ),
    ];
    let mut hooks = Vec::new();
    for (account, port, _) in &cases {
        let (id, _) = app
            .create_webhook(account, &format!("http://127.0.0.1:{port}/hook"), &["*"])
            .await;
        app.publish(account, "t", json!({})).await;
        hooks.push(id);
    }
    assert_eq!(app.dispatcher.run_once().await.expect("step"), cases.len());
    for ((account, _, want), id) in cases.iter().zip(&hooks) {
        let error = failed_error(&app, account, id).await;
        assert_eq!(error, *want, "{account}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_target_that_does_not_resolve_says_so() {
    // Forwarding targets are internal services the operator configured: the
    // DNS failure is theirs to read (a tenant's reads as a refusal).
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            retry_schedule: "1h",
            ..Default::default()
        },
    )
    .await;
    app.integration(json!({"name": "lost", "scheme": "token", "secret": "tok",
        "signatureHeader": "x-token", "targetUrl": "http://nonexistent.invalid/in"}))
        .await;
    let (status, received) = app
        .inbound("lost", &[("x-token", "tok".into())], b"{\"a\":1}")
        .await;
    assert!(status.is_success(), "{received}");
    let event = received["eventId"].as_str().expect("eventId").to_owned();
    let mut error = None;
    for _ in 0..100 {
        let _ = app.forwarder.run_once().await;
        let (_, detail, _) = app
            .operator(Method::GET, &format!("/api/v1/events/{event}"), None)
            .await;
        if let Some(e) = detail["jobs"]
            .as_array()
            .and_then(|jobs| jobs.iter().find_map(|j| j["error"].as_str()))
        {
            error = Some(e.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error = error.expect("a failed forwarding try");
    assert!(
        error.starts_with("DNS name not found: nonexistent.invalid"),
        "{error}"
    );
    app.stop().await;
}
