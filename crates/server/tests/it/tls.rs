//! TLS and mTLS with real handshakes: every wrong client refused, the gateway's
//! identity the only one allowed to name an account, certificates renewed
//! without a restart.

use crate::helpers::*;
use hookwarden_server::devcerts::{DevCa, Issued};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::write(&path, text).expect("write pem");
    path
}

fn client(ca_pem: &str, identity: Option<&Issued>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"));
    if let Some(id) = identity {
        let pem = format!("{}{}", id.cert_pem, id.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_every_wrong_client_and_only_the_gateway_names_an_account() {
    let dir = TempDir::new();
    let ca = DevCa::new("test CA").expect("ca");
    let other_ca = DevCa::new("another CA").expect("ca");
    let server = ca
        .issue("localhost", &["localhost", "127.0.0.1"], true, None)
        .expect("server");
    let gateway = ca
        .issue("gateway.internal", &["gateway.internal"], false, None)
        .expect("gateway");
    let operator = ca
        .issue("ops.internal", &["ops.internal"], false, None)
        .expect("operator");
    let intruder = ca
        .issue("intruder", &["intruder"], false, None)
        .expect("intruder");
    let foreign = other_ca
        .issue("gateway.internal", &["gateway.internal"], false, None)
        .expect("foreign");
    let expired = ca
        .issue(
            "gateway.internal",
            &["gateway.internal"],
            false,
            Some(((2020, 1, 1), (2021, 1, 1))),
        )
        .expect("expired");
    let (cert, key, ca_file) = (
        write(&dir, "server.pem", &server.cert_pem),
        write(&dir, "server-key.pem", &server.key_pem),
        write(&dir, "ca.pem", &ca.pem()),
    );
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            customize: Some(Box::new(move |raw| {
                raw.tls_cert_file = Some(cert);
                raw.tls_key_file = Some(key);
                raw.tls_client_ca_file = Some(ca_file);
                raw.tls_client_auth = Some("required".into());
                raw.gateway_identity = Some("gateway.internal".into());
                raw.operator_client_identity = Some("ops.internal".into());
            })),
            ..Default::default()
        },
    )
    .await;
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", app.addr.port());
    let ca_pem = ca.pem();

    // Refused at the handshake: no certificate, another CA's, an expired one.
    for (name, id) in [
        ("no certificate", None),
        ("another CA", Some(&foreign)),
        ("expired", Some(&expired)),
    ] {
        let result = client(&ca_pem, id).get(url("/api/v1/health")).send().await;
        assert!(
            result.is_err(),
            "{name} must be refused, got {:?}",
            result.map(|r| r.status())
        );
    }
    // Plain HTTP on the TLS port gets nothing.
    let plain = app
        .http
        .get(format!(
            "http://127.0.0.1:{}/api/v1/health",
            app.addr.port()
        ))
        .send()
        .await;
    assert!(!plain.map(|r| r.status().is_success()).unwrap_or(false));

    // A valid certificate with the wrong identity: connected, but X-Account-Id is ignored.
    let resp = client(&ca_pem, Some(&intruder))
        .get(url("/v1/webhooks"))
        .header("x-account-id", "acct_a")
        .send()
        .await
        .expect("intruder connects");
    assert_eq!(
        resp.status(),
        401,
        "only the gateway's identity may name an account"
    );
    // The gateway may.
    let gw = client(&ca_pem, Some(&gateway));
    let resp = gw
        .post(url("/v1/webhooks"))
        .header("x-account-id", "acct_a")
        .json(&json!({"url": "https://example.com/h", "eventTypes": ["*"]}))
        .send()
        .await
        .expect("gateway");
    assert_eq!(resp.status(), 201);
    let resp = gw
        .get(url("/v1/webhooks"))
        .header("x-account-id", "acct_a")
        .send()
        .await
        .expect("gateway");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["items"].as_array().expect("items").len(), 1);
    // A bearer token always wins over the header, even through the gateway.
    let resp = gw
        .get(url("/v1/webhooks"))
        .header("x-account-id", "acct_a")
        .bearer_auth(app.tenant("acct_b"))
        .send()
        .await
        .expect("gateway");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["items"], json!([]), "acct_b's view, not acct_a's");

    // The operator API needs its own certificate in addition to the key.
    let key_only = gw
        .get(url("/api/v1/integrations"))
        .header("x-internal-api-key", OPERATOR_KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(key_only.status(), 401);
    let ops = client(&ca_pem, Some(&operator));
    let both = ops
        .get(url("/api/v1/integrations"))
        .header("x-internal-api-key", OPERATOR_KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(both.status(), 200);
    let cert_only = ops
        .get(url("/api/v1/integrations"))
        .send()
        .await
        .expect("send");
    assert_eq!(cert_only.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_are_served_without_a_restart() {
    let dir = TempDir::new();
    let first_ca = DevCa::new("first CA").expect("ca");
    let next_ca = DevCa::new("next CA").expect("ca");
    let first = first_ca
        .issue("localhost", &["127.0.0.1"], true, None)
        .expect("cert");
    let cert = write(&dir, "server.pem", &first.cert_pem);
    let key = write(&dir, "server-key.pem", &first.key_pem);
    let (c, k) = (cert.clone(), key.clone());
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            customize: Some(Box::new(move |raw| {
                raw.tls_cert_file = Some(c);
                raw.tls_key_file = Some(k);
            })),
            ..Default::default()
        },
    )
    .await;
    let url = format!("https://127.0.0.1:{}/api/v1/health", app.addr.port());
    assert!(client(&first_ca.pem(), None).get(&url).send().await.is_ok());
    assert!(client(&next_ca.pem(), None).get(&url).send().await.is_err());
    // Renewal: new files in place (key first, then certificate).
    let renewed = next_ca
        .issue("localhost", &["127.0.0.1"], true, None)
        .expect("cert");
    std::fs::write(&key, &renewed.key_pem).expect("write key");
    std::fs::write(&cert, &renewed.cert_pem).expect("write cert");
    let deadline = Instant::now() + Duration::from_secs(15);
    while client(&next_ca.pem(), None).get(&url).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        client(&first_ca.pem(), None)
            .get(&url)
            .send()
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_listener_can_require_client_certificates_too() {
    let dir = TempDir::new();
    let ca = DevCa::new("ops CA").expect("ca");
    let server = ca
        .issue("localhost", &["127.0.0.1"], true, None)
        .expect("server");
    let monitor = ca
        .issue("prometheus", &["prometheus"], false, None)
        .expect("client");
    let (cert, key, ca_file) = (
        write(&dir, "ops.pem", &server.cert_pem),
        write(&dir, "ops-key.pem", &server.key_pem),
        write(&dir, "ca.pem", &ca.pem()),
    );
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            customize: Some(Box::new(move |raw| {
                raw.ops_tls_cert_file = Some(cert);
                raw.ops_tls_key_file = Some(key);
                raw.ops_tls_client_ca_file = Some(ca_file);
                raw.ops_tls_client_auth = Some("required".into());
            })),
            ..Default::default()
        },
    )
    .await;
    let url = format!("https://127.0.0.1:{}/metrics", app.ops.port());
    assert!(
        client(&ca.pem(), None).get(&url).send().await.is_err(),
        "no client certificate, no metrics"
    );
    let resp = client(&ca.pem(), Some(&monitor))
        .get(&url)
        .send()
        .await
        .expect("with a certificate");
    assert_eq!(resp.status(), 200);
    // The public listener is unaffected (plain HTTP here).
    assert_eq!(
        app.http
            .get(app.url("/api/v1/health"))
            .send()
            .await
            .expect("public")
            .status(),
        200
    );
}
