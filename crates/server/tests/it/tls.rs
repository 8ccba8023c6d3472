//! TLS and mTLS with real handshakes: every wrong client refused, the gateway's
//! identity the only one allowed to name an account, certificates renewed
//! without a restart; deliveries and forwarding to HTTPS receivers over
//! HTTP/1.1 and HTTP/2, and each wrong certificate a failed try with its reason.

use crate::helpers::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, Version};
use hookwarden_server::boot::devcerts::{DevCa, Issued};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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
    let app = mtls_app(&dir, &ca, "required", |raw| {
        raw.set("gateway_identity", "gateway.internal");
        raw.set("operator_client_identity", "ops.internal");
    })
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
                raw.set("tls_cert_file", c);
                raw.set("tls_key_file", k);
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
                raw.set("ops_tls_cert_file", cert);
                raw.set("ops_tls_key_file", key);
                raw.set("ops_tls_client_ca_file", ca_file);
                raw.set("ops_tls_client_auth", "required");
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

/// A real HTTPS receiver (tokio-rustls and hyper) serving `cert` and offering
/// only the ALPN protocols given; it records each request with its version.
struct HttpsReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<(Version, Received)>>>,
}

impl HttpsReceiver {
    async fn start(cert: &Issued, alpn: &[&str]) -> Self {
        let certs = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received: Arc<Mutex<Vec<(Version, Received)>>> = Arc::default();
        let log = received.clone();
        let router = axum::Router::new().fallback(
            move |version: Version, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let log = log.clone();
                async move {
                    let path = uri.path().to_owned();
                    log.lock().expect("lock").push((
                        version,
                        Received {
                            headers,
                            body,
                            path,
                            at: std::time::Instant::now(),
                        },
                    ));
                    "ok"
                }
            },
        );
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    // A client that refuses our certificate ends here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router))
                        .await;
                });
            }
        });
        Self { addr, received }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn received(&self) -> Vec<(Version, Received)> {
        self.received.lock().expect("lock").clone()
    }
}

/// The only failed try of a webhook's first delivery: its stored error.
async fn failed_error(app: &TestApp, account: &str, id: &str) -> String {
    let items = app.deliveries(account, id).await;
    let failed = items
        .iter()
        .find(|i| i["status"] == "failed")
        .unwrap_or_else(|| panic!("no failed try: {items:?}"));
    assert_eq!(failed["httpStatus"], Value::Null, "{failed}");
    failed["error"].as_str().expect("error").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receivers_behind_a_private_ca_get_signed_deliveries() {
    let dir = TempDir::new();
    let ca = DevCa::new("receivers' private CA").expect("ca");
    let stranger = DevCa::new("a CA nobody trusts").expect("ca");
    // The webhook URLs name 127.0.0.1: the good certificates carry that IP.
    let good = ca
        .issue("receiver", &["127.0.0.1"], true, None)
        .expect("good");
    let wrong_name = ca
        .issue("other.example", &["other.example"], true, None)
        .expect("wrong name");
    let untrusted = stranger
        .issue("receiver", &["127.0.0.1"], true, None)
        .expect("untrusted");
    let ca_file = write(&dir, "receivers-ca.pem", &ca.pem());
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            retry_schedule: "1h",
            customize: Some(Box::new(move |raw| {
                raw.set("delivery_ca_file", ca_file);
            })),
            ..Default::default()
        },
    )
    .await;
    let h1 = HttpsReceiver::start(&good, &["http/1.1"]).await;
    let h2 = HttpsReceiver::start(&good, &["h2"]).await;
    let misnamed = HttpsReceiver::start(&wrong_name, &["h2", "http/1.1"]).await;
    let foreign = HttpsReceiver::start(&untrusted, &["h2", "http/1.1"]).await;
    let mut hooks = Vec::new();
    for (account, rx) in [
        ("acct_h1", &h1),
        ("acct_h2", &h2),
        ("acct_misnamed", &misnamed),
        ("acct_foreign", &foreign),
    ] {
        let (id, secret) = app.create_webhook(account, &rx.url("/hook"), &["*"]).await;
        app.publish(account, "invoice.paid", json!({"amount": 42}))
            .await;
        hooks.push((account, id, secret));
    }
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 4);

    // Success over each protocol, with a signature the reference library accepts.
    for ((account, id, secret), (rx, version)) in hooks
        .iter()
        .zip([(&h1, Version::HTTP_11), (&h2, Version::HTTP_2)])
    {
        let got = rx.received();
        assert_eq!(got.len(), 1, "{account}");
        assert_eq!(got[0].0, version, "{account}: negotiated by ALPN");
        let deliveries: Vec<Received> = got.into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            reference_verify(secret, &deliveries),
            vec!["ok"],
            "{account}"
        );
        let items = app.deliveries(account, id).await;
        assert_eq!(items[0]["status"], "succeeded", "{account}: {items:?}");
        assert_eq!(items[0]["httpStatus"], 200);
    }
    // A certificate for another name, and one from an untrusted CA: failed
    // tries naming the reason, and nothing reached either receiver.
    let (account, id, _) = &hooks[2];
    let error = failed_error(&app, account, id).await;
    assert!(
        error.starts_with("TLS handshake failed")
            && error.contains("certificate not valid for name \"127.0.0.1\""),
        "{error}"
    );
    let (account, id, _) = &hooks[3];
    let error = failed_error(&app, account, id).await;
    assert!(
        error == "TLS handshake failed: invalid peer certificate: unknown issuer",
        "{error}"
    );
    assert!(misnamed.received().is_empty() && foreign.received().is_empty());

    // Forwarding to an internal service shares the client, and so the roots.
    let forwarding_secret = app
        .integration(json!({"name": "acme", "scheme": "token", "secret": "t",
            "signatureHeader": "x-t", "targetUrl": h2.url("/fwd")}))
        .await;
    let (status, _) = app
        .inbound("acme", &[("x-t", "t".into())], b"{\"n\":1}")
        .await;
    assert_eq!(status, 202);
    app.forward_until(Duration::from_secs(10), || h2.received().len() == 2)
        .await;
    let (version, forwarded) = h2.received().pop().expect("forwarded");
    assert_eq!(
        (version, forwarded.path.as_str()),
        (Version::HTTP_2, "/fwd")
    );
    assert_eq!(
        reference_verify(&forwarding_secret, &[forwarded]),
        vec!["ok"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_ca_file_without_certificates_stops_start_up() {
    let dir = TempDir::new();
    let empty = write(&dir, "empty.pem", "not a certificate\n");
    let mut raw = hookwarden_server::config::RawConfig::default();
    raw.set(
        "database_url",
        format!("sqlite://{}", dir.0.join("db.sqlite").display()),
    )
    .set("data_dir", &dir.0)
    .set("listen", "127.0.0.1:0")
    .set("ops_listen", "127.0.0.1:0")
    .set("delivery_ca_file", empty);
    let settings = hookwarden_server::config::Settings::from_raw(raw).expect("settings");
    let err = match hookwarden_server::boot::Application::build(settings).await {
        Ok(_) => panic!("started with a CA file holding no certificate"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("HOOKWARDEN_DELIVERY_CA_FILE"), "{err}");
}

/// The console under mTLS: the operator's client certificate alone signs in
/// (the session cookie is `Secure`), and with another certificate not even
/// the right key does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_with_the_operators_certificate_only() {
    let dir = TempDir::new();
    let ca = DevCa::new("test CA").expect("ca");
    let operator = ca
        .issue("ops.internal", &["ops.internal"], false, None)
        .expect("operator");
    let intruder = ca
        .issue("intruder", &["intruder"], false, None)
        .expect("intruder");
    let app = mtls_app(&dir, &ca, "optional", |raw| {
        raw.set("operator_client_identity", "ops.internal");
    })
    .await;
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", app.addr.port());
    let ca_pem = ca.pem();
    let no_redirects = |id: Option<&Issued>| {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"));
        if let Some(id) = id {
            let pem = format!("{}{}", id.cert_pem, id.key_pem);
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
        }
        b.build().expect("client")
    };
    // The operator's certificate: the page offers it, and it signs in.
    let ops = no_redirects(Some(&operator));
    let form = ops.get(url("/console/sign-in")).send().await.expect("form");
    assert!(form
        .text()
        .await
        .expect("html")
        .contains("Sign in with your certificate"));
    let signed = ops
        .post(url("/console/sign-in"))
        .form(&[("method", "certificate")])
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed.status(), reqwest::StatusCode::SEE_OTHER);
    let cookie = signed.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // The session lasts only with the certificate: a stolen cookie alone opens nothing.
    let pair = cookie.split(';').next().unwrap_or_default().to_owned();
    let with = ops
        .get(url("/console"))
        .header("cookie", &pair)
        .send()
        .await
        .expect("with");
    assert_eq!(with.status(), reqwest::StatusCode::OK);
    for client in [no_redirects(None), no_redirects(Some(&intruder))] {
        let stolen = client
            .get(url("/console"))
            .header("cookie", &pair)
            .send()
            .await
            .expect("stolen");
        assert_eq!(stolen.status(), reqwest::StatusCode::SEE_OTHER);
    }
    // Another certificate, or none: the key alone is not enough, nor the button.
    for client in [no_redirects(Some(&intruder)), no_redirects(None)] {
        for form in [vec![("key", OPERATOR_KEY)], vec![("method", "certificate")]] {
            let resp = client
                .post(url("/console/sign-in"))
                .form(&form)
                .send()
                .await
                .expect("sign in");
            assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
            assert!(resp.headers().get("set-cookie").is_none());
        }
    }
    app.stop().await;
}

/// The application on TLS with a certificate for localhost from `ca`,
/// client certificates from `ca` as `client_auth` says, and `more` settings.
async fn mtls_app(
    dir: &TempDir,
    ca: &DevCa,
    client_auth: &'static str,
    more: impl FnOnce(&mut hookwarden_server::config::RawConfig) + Send + 'static,
) -> TestApp {
    let server = ca
        .issue("localhost", &["localhost", "127.0.0.1"], true, None)
        .expect("server");
    let (cert, key, ca_file) = (
        write(dir, "server.pem", &server.cert_pem),
        write(dir, "server-key.pem", &server.key_pem),
        write(dir, "ca.pem", &ca.pem()),
    );
    TestApp::with(
        Backend::Sqlite,
        Options {
            customize: Some(Box::new(move |raw| {
                raw.set("tls_cert_file", cert);
                raw.set("tls_key_file", key);
                raw.set("tls_client_ca_file", ca_file);
                raw.set("tls_client_auth", client_auth);
                more(raw);
            })),
            ..Default::default()
        },
    )
    .await
}
