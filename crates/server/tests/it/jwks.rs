//! Production token verification from a JWKS file or URL: RS256, ES256 and
//! EdDSA accepted; other keys, algorithm confusion, wrong issuer or audience
//! refused; the URL fetched at start-up (a failure starts the service
//! degraded and is retried with backoff), periodically and (bounded) on an
//! unknown `kid`; the file reloaded when it changes.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_server::shared::jwt::Claims;
use hookwarden_store::on_both;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::Value;

on_both!(
    jwks_tokens_of_each_algorithm,
    forged_and_confused_tokens_are_refused
);

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn token(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Claims) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, key).expect("sign")
}

async fn app(backend: Backend) -> TestApp {
    TestApp::with(
        backend,
        Options {
            jwks_file: Some(fixture("jwks.json")),
            hs256: false,
            issuer: Some("https://idp.example"),
            audience: Some("hookwarden"),
            ..Default::default()
        },
    )
    .await
}

fn claims(app: &TestApp) -> Claims {
    Claims {
        iss: Some("https://idp.example".into()),
        aud: Some("hookwarden".into()),
        ..app.claims(Some("acct_a"), "webhooks:read")
    }
}

async fn jwks_tokens_of_each_algorithm(backend: Backend) {
    let app = app(backend).await;
    let c = claims(&app);
    let rsa = EncodingKey::from_rsa_pem(&pem("jwt-rsa.pem")).expect("rsa");
    let ec = EncodingKey::from_ec_pem(&pem("jwt-ec.pem")).expect("ec");
    let ed = EncodingKey::from_ed_pem(&pem("jwt-ed25519.pem")).expect("ed");
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa-1", &rsa),
        (Algorithm::ES256, "ec-1", &ec),
        (Algorithm::EdDSA, "ed-1", &ed),
    ] {
        let (status, body, _) = app.get("/v1/webhooks", &token(alg, kid, key, &c)).await;
        assert_eq!(status, StatusCode::OK, "{alg:?}: {body}");
    }
}

async fn forged_and_confused_tokens_are_refused(backend: Backend) {
    let app = app(backend).await;
    let c = claims(&app);
    let attacker = EncodingKey::from_rsa_pem(&pem("jwt-rsa-attacker.pem")).expect("rsa");
    // The attacker claims our key id.
    let forged = token(Algorithm::RS256, "rsa-1", &attacker, &c);
    // Algorithm confusion: HS256 "signed" with the public key material from the JWKS.
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("jwks.json")).expect("jwks"))
            .expect("json");
    let public_n = jwks["keys"][0]["n"]
        .as_str()
        .expect("n")
        .as_bytes()
        .to_vec();
    let confused = token(
        Algorithm::HS256,
        "rsa-1",
        &EncodingKey::from_secret(&public_n),
        &c,
    );
    let rsa = EncodingKey::from_rsa_pem(&pem("jwt-rsa.pem")).expect("rsa");
    // An RSA key used under an EC key id.
    let wrong_kid = token(Algorithm::RS256, "ec-1", &rsa, &c);
    let wrong_iss = token(
        Algorithm::RS256,
        "rsa-1",
        &rsa,
        &Claims {
            iss: Some("https://evil.example".into()),
            ..c.clone()
        },
    );
    let wrong_aud = token(
        Algorithm::RS256,
        "rsa-1",
        &rsa,
        &Claims {
            aud: Some("another-service".into()),
            ..c.clone()
        },
    );
    let no_aud = token(
        Algorithm::RS256,
        "rsa-1",
        &rsa,
        &Claims {
            aud: None,
            ..c.clone()
        },
    );
    let no_iss = token(
        Algorithm::RS256,
        "rsa-1",
        &rsa,
        &Claims {
            iss: None,
            ..c.clone()
        },
    );
    // Development HS256 tokens are not accepted when no HS256 secret is configured.
    let dev = app.tenant("acct_a");
    for (name, t) in [
        ("forged", forged),
        ("alg confusion", confused),
        ("wrong kid", wrong_kid),
        ("wrong issuer", wrong_iss),
        ("wrong audience", wrong_aud),
        ("no audience", no_aud),
        ("no issuer", no_iss),
        ("hs256 dev token", dev),
    ] {
        let (status, body, _) = app.get("/v1/webhooks", &t).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
    }
}

// ---- A JWKS URL (the IdP's), and a JWKS file that changes ----

use axum::routing::get;
use hookwarden_server::boot::devcerts::{DevCa, Issued};
use hookwarden_server::config::{RawConfig, Settings};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The fixture's keys with these ids, as a JWKS document.
fn jwks_of(kids: &[&str]) -> String {
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("jwks.json")).expect("jwks"))
            .expect("json");
    let keys = doc["keys"].as_array_mut().expect("keys");
    keys.retain(|k| kids.contains(&k["kid"].as_str().unwrap_or("")));
    assert_eq!(keys.len(), kids.len(), "fixture kids");
    doc.to_string()
}

/// `doc` with keys hookwarden does not verify with beside its own, as an
/// IdP may publish: a PS256 key, an EC P-384 key and a key type unknown.
fn with_unsupported_keys(doc: String) -> String {
    let mut doc: Value = serde_json::from_str(&doc).expect("json");
    let keys = doc["keys"].as_array_mut().expect("keys");
    keys.push(
        serde_json::json!({"kty": "RSA", "kid": "ps-1", "alg": "PS256", "n": "AQAB", "e": "AQAB"}),
    );
    keys.push(
        serde_json::json!({"kty": "EC", "kid": "ec-384", "crv": "P-384", "x": "AA", "y": "AA"}),
    );
    keys.push(serde_json::json!({"kty": "ML-DSA", "kid": "pq-1", "pub": "AA"}));
    doc.to_string()
}

/// A real HTTP server publishing a JWKS (what the server fetches is
/// counted); its answer can be changed as an IdP's would.
struct JwksServer {
    url: String,
    answer: Arc<Mutex<(u16, String)>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: String) -> Self {
        Self::serve(body, None).await
    }

    /// Over HTTPS, presenting `cert` (issued by a test CA).
    async fn start_tls(body: String, cert: &Issued) -> Self {
        Self::serve(body, Some(cert)).await
    }

    async fn serve(body: String, cert: Option<&Issued>) -> Self {
        let answer = Arc::new(Mutex::new((200, body)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (a, f) = (answer.clone(), fetches.clone());
        let router = axum::Router::new().route(
            "/jwks.json",
            get(move || {
                let (a, f) = (a.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = a.lock().expect("answer").clone();
                    (StatusCode::from_u16(status).expect("status"), body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let scheme = match cert {
            None => {
                tokio::spawn(async move { axum::serve(listener, router).await });
                // Plain HTTP: accepted outside production only (refused there).
                "http"
            }
            Some(cert) => {
                let certs = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("certificate");
                let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
                let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server config");
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
                tokio::spawn(async move {
                    while let Ok((tcp, _)) = listener.accept().await {
                        let (acceptor, router) = (acceptor.clone(), router.clone());
                        tokio::spawn(async move {
                            // A client that refuses our certificate ends here.
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let _ =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(
                                        TokioIo::new(tls),
                                        TowerToHyperService::new(router),
                                    )
                                    .await;
                        });
                    }
                });
                "https"
            }
        };
        Self {
            url: format!("{scheme}://{addr}/jwks.json"),
            answer,
            fetches,
        }
    }

    fn answer(&self, status: u16, body: String) {
        *self.answer.lock().expect("answer") = (status, body);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// How many JWKS loads the metrics count from `source` on `trigger` with
/// `outcome`. Every application of the test binary adds to the same
/// counters: a test reads the counts its own change moves (only one test
/// refreshes periodically, only one changes a file into one that fails).
async fn loads(app: &TestApp, source: &str, trigger: &str, outcome: &str) -> u64 {
    let text = app
        .http
        .get(format!("http://{}/metrics", app.ops))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let labels = [
        format!("source=\"{source}\""),
        format!("trigger=\"{trigger}\""),
        format!("outcome=\"{outcome}\""),
    ];
    text.lines()
        .find(|l| {
            l.starts_with("hookwarden_jwks_loads_total{") && labels.iter().all(|x| l.contains(x))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

/// Checks every 20 ms, for at most 10 s, until `done` holds: what a
/// background loop does once the clock has moved lands a moment later.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn url_app(url: &str, refresh: Option<&'static str>) -> TestApp {
    let url = url.to_owned();
    TestApp::with(
        Backend::Sqlite,
        Options {
            hs256: false,
            issuer: Some("https://idp.example"),
            audience: Some("hookwarden"),
            customize: Some(Box::new(move |raw: &mut RawConfig| {
                raw.set("jwt_jwks_url", url);
                raw.set("jwt_jwks_refresh", refresh.map(str::to_owned));
            })),
            ..Default::default()
        },
    )
    .await
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(&pem("jwt-rsa.pem")).expect("rsa")
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(&pem("jwt-ec.pem")).expect("ec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_keys_verify_and_a_rotated_key_works_on_first_use() {
    // Keys of kinds not supported beside it are skipped, not fatal.
    let idp = JwksServer::start(with_unsupported_keys(jwks_of(&["rsa-1"]))).await;
    let app = url_app(&idp.url, None).await;
    assert_eq!(idp.fetches(), 1, "fetched once at start-up");
    let c = claims(&app);
    let (status, body, _) = app
        .get(
            "/v1/webhooks",
            &token(Algorithm::RS256, "rsa-1", &rsa(), &c),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The IdP rotates a new key in: its first token is accepted, after one fetch.
    idp.answer(200, jwks_of(&["rsa-1", "ec-1"]));
    let (status, body, _) = app
        .get("/v1/webhooks", &token(Algorithm::ES256, "ec-1", &ec(), &c))
        .await;
    assert_eq!(status, StatusCode::OK, "rotated key on first use: {body}");
    assert_eq!(idp.fetches(), 2);
    // A known kid never causes a fetch.
    for _ in 0..5 {
        let (status, _, _) = app
            .get("/v1/webhooks", &token(Algorithm::ES256, "ec-1", &ec(), &c))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_floods_fetch_the_jwks_url_at_most_once() {
    let idp = JwksServer::start(jwks_of(&["rsa-1"])).await;
    let app = url_app(&idp.url, None).await;
    let c = claims(&app);
    let key = rsa();
    let tokens: Vec<String> = (0..40)
        .map(|_| {
            let kid = uuid::Uuid::new_v4().to_string();
            token(Algorithm::RS256, &kid, &key, &c)
        })
        .collect();
    // Concurrent, then one after another: each made-up kid is refused.
    let answers =
        futures_util::future::join_all(tokens[..20].iter().map(|t| app.get("/v1/webhooks", t)))
            .await;
    for t in &tokens[20..] {
        let (status, _, _) = app.get("/v1/webhooks", t).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    for (status, body, _) in answers {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    assert_eq!(
        idp.fetches(),
        2,
        "start-up, then one fetch for all unknown kids"
    );
    // The bound holds for a real rotation within the interval too: its key
    // works from the next refresh (periodic, or unknown-kid after 30 s).
    idp.answer(200, jwks_of(&["rsa-1", "ec-1"]));
    let (status, _, _) = app
        .get("/v1/webhooks", &token(Algorithm::ES256, "ec-1", &ec(), &c))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(idp.fetches(), 2);
    // Known keys are unaffected.
    let (status, body, _) = app
        .get("/v1/webhooks", &token(Algorithm::RS256, "rsa-1", &key, &c))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_url_is_refreshed_periodically_and_a_bad_answer_keeps_the_keys() {
    let idp = JwksServer::start(jwks_of(&["rsa-1"])).await;
    let app = url_app(&idp.url, Some("1s")).await;
    let c = claims(&app);
    let rsa_token = token(Algorithm::RS256, "rsa-1", &rsa(), &c);
    // The IdP breaks: refreshes fail (operators see them counted), the last
    // good keys stay. Each refresh is a second ahead on the clock.
    let failed_refresh = |after: u64| {
        let app = &app;
        move || async move { loads(app, "url", "periodic", "failed").await > after }
    };
    idp.answer(
        200,
        r#"{"keys": [{"kty": "EC", "kid": "k2", "crv": "P-521"}]}"#.into(),
    );
    let failed = loads(&app, "url", "periodic", "failed").await;
    app.clock.advance(Duration::from_secs(1));
    eventually("a failed refresh counted", failed_refresh(failed)).await;
    assert!(idp.fetches() >= 2, "refreshed periodically");
    let (status, body, _) = app.get("/v1/webhooks", &rsa_token).await;
    assert_eq!(status, StatusCode::OK, "kept after a bad answer: {body}");
    idp.answer(503, "down".into());
    let failed = loads(&app, "url", "periodic", "failed").await;
    app.clock.advance(Duration::from_secs(1));
    eventually("a failed refresh counted", failed_refresh(failed)).await;
    let (status, body, _) = app.get("/v1/webhooks", &rsa_token).await;
    assert_eq!(status, StatusCode::OK, "kept while the IdP is down: {body}");
    // Back, with the RSA key retired: a periodic refresh alone removes it
    // (keys of kinds not supported published beside are skipped).
    idp.answer(200, with_unsupported_keys(jwks_of(&["ec-1"])));
    let before = idp.fetches();
    let ec_token = token(Algorithm::ES256, "ec-1", &ec(), &c);
    app.clock.advance(Duration::from_secs(1));
    eventually("the new key set used", || async {
        app.get("/v1/webhooks", &ec_token).await.0 == StatusCode::OK
    })
    .await;
    assert!(idp.fetches() > before);
    let (status, _, _) = app.get("/v1/webhooks", &rsa_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a retired key is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_file_is_reloaded_when_it_changes() {
    let dir = TempDir::new();
    let file = dir.0.join("jwks.json");
    std::fs::write(&file, jwks_of(&["rsa-1"])).expect("write");
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            jwks_file: Some(file.clone()),
            hs256: false,
            issuer: Some("https://idp.example"),
            audience: Some("hookwarden"),
            ..Default::default()
        },
    )
    .await;
    let c = claims(&app);
    let ec_token = token(Algorithm::ES256, "ec-1", &ec(), &c);
    let (status, _, _) = app.get("/v1/webhooks", &ec_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The file is looked at every 2 s on the clock.
    std::fs::write(&file, jwks_of(&["rsa-1", "ec-1"])).expect("write");
    app.clock.advance(Duration::from_secs(2));
    eventually("the new key is used without a restart", || async {
        app.get("/v1/webhooks", &ec_token).await.0 == StatusCode::OK
    })
    .await;
    // A file that no longer loads keeps the keys loaded last.
    let failed = loads(&app, "file", "changed", "failed").await;
    std::fs::write(&file, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).expect("write");
    app.clock.advance(Duration::from_secs(2));
    eventually("the file's failed load counted", || async {
        loads(&app, "file", "changed", "failed").await > failed
    })
    .await;
    let (status, body, _) = app.get("/v1/webhooks", &ec_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Settings of a development server verifying with this JWKS URL only.
fn url_settings(dir: &TempDir, url: &str) -> Settings {
    let mut raw = RawConfig::default();
    raw.set("data_dir", &dir.0).set("jwt_jwks_url", url);
    Settings::from_raw(raw).expect("settings")
}

async fn closed_port_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}/jwks.json")
}

/// `/ready` on the ops listener: its status and body.
async fn ready(app: &TestApp) -> (StatusCode, Value) {
    let resp = app
        .http
        .get(format!("http://{}/ready", app.ops))
        .send()
        .await
        .expect("ready");
    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
    (status, resp.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_bad_jwks_url_starts_degraded_and_fails_config_check() {
    use hookwarden_server::boot::Application;
    use hookwarden_server::config_check::connections;
    let dir = TempDir::new();
    let idp = JwksServer::start(jwks_of(&["rsa-1", "ed-1"])).await;
    let closed = closed_port_url().await;
    let check = |url: String| {
        let settings = url_settings(&dir, &url);
        async move {
            connections(&settings)
                .await
                .into_iter()
                .find(|f| f.setting == "HOOKWARDEN_JWT_JWKS_URL")
                .expect("a finding for the URL")
                .outcome
        }
    };
    let good = check(idp.url.clone()).await.expect("a good key set");
    assert!(good.contains(&idp.url), "{good}");
    assert!(good.contains("2 key(s): rsa-1 RS256, ed-1 EdDSA"), "{good}");

    // `config check --connect` is where the URL is verified: a key set
    // that does not load, or holds no usable key, is a failure there.
    let unsupported =
        r#"{"keys": [{"kty": "EC", "kid": "k2", "crv": "P-521", "x": "AA", "y": "AA"}]}"#;
    let malformed = r#"{"keys": [{"kty": "RSA", "kid": "r1", "n": "AQAB", "e": "AQAB"}]}"#;
    for (status, body, wants) in [
        (
            200,
            unsupported.to_owned(),
            vec![
                "no usable key",
                "JWKS key 0 (kid \"k2\"): field `crv` is \"P-521\"",
            ],
        ),
        (
            200,
            malformed.to_owned(),
            vec!["JWKS key 0 (kid \"r1\"): field `n` is a modulus of about 24 bits"],
        ),
        (200, "not json".to_owned(), vec!["JWKS is not JSON"]),
        (404, "{}".to_owned(), vec!["answered HTTP 404"]),
        (
            200,
            format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(2 << 20)),
            vec!["larger than 1048576 bytes"],
        ),
    ] {
        idp.answer(status, body);
        let why = check(idp.url.clone()).await.expect_err("refused");
        assert!(why.contains(&idp.url), "{why}");
        for want in wants {
            assert!(why.contains(want), "{why} does not say {want}");
        }
        assert!(!why.contains("variant"), "{why}");
    }
    let why = check(closed.clone()).await.expect_err("unreachable");
    assert!(why.contains(&closed), "{why}");
    // Keys skipped as not supported are listed beside the ones used.
    let mut with_ps256: Value = serde_json::from_str(&jwks_of(&["rsa-1"])).expect("json");
    let mut ps = with_ps256["keys"][0].clone();
    ps["kid"] = "ps-1".into();
    ps["alg"] = "PS256".into();
    with_ps256["keys"].as_array_mut().expect("keys").push(ps);
    idp.answer(200, with_ps256.to_string());
    let listed = check(idp.url.clone()).await.expect("loads");
    assert!(
        listed.contains("1 key(s): rsa-1 RS256; 1 key(s) skipped (not supported): JWKS key 1 (kid \"ps-1\"): field `alg` is \"PS256\""),
        "{listed}"
    );

    // Configuration errors still stop start-up (before anything listens).
    let mut bad_ca = url_settings(&dir, &idp.url);
    bad_ca.jwt_jwks_ca_file = Some(dir.0.join("no-such-ca.pem"));
    let err = match Application::build(bad_ca).await {
        Ok(_) => panic!("started with a CA file that does not load"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("HOOKWARDEN_JWT_JWKS_CA_FILE"), "{err}");

    // A fetch that fails does not: the service starts without the URL's
    // keys, refuses tokens, stays ready (degraded, naming the URL and why)
    // and loads the keys when the IdP answers, without a restart.
    idp.answer(503, "down".into());
    let app = url_app(&idp.url, None).await;
    let c = claims(&app);
    let rsa_token = token(Algorithm::RS256, "rsa-1", &rsa(), &c);
    let (status, body, _) = app.get("/v1/webhooks", &rsa_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = ready(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["jwks"], "degraded", "{body}");
    let why = body["reasons"]["jwks"].as_str().expect("a reason");
    assert!(
        why.contains(&format!("no key set loaded from {}", idp.url))
            && why.contains("answered HTTP 503"),
        "{why}"
    );
    let metrics = app
        .http
        .get(format!("http://{}/metrics", app.ops))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hookwarden_jwks_loads_total{")
                && l.contains("trigger=\"startup\"")
                && l.contains("outcome=\"failed\"")),
        "{metrics}"
    );
    // The token above used the unknown-kid fetch (bounded to one per 30 s
    // on the system clock): what loads the keys now is the background
    // retry, whose wait (at most 30 s) the clock skips.
    let fetched = idp.fetches();
    idp.answer(200, jwks_of(&["rsa-1"]));
    app.clock.advance(Duration::from_secs(30));
    eventually("the key set loads in the background", || async {
        ready(&app).await.1["checks"]["jwks"] == "ok"
    })
    .await;
    assert!(idp.fetches() > fetched);
    let (status, body) = ready(&app).await;
    assert!(body.get("reasons").is_none(), "{body}");
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = app.get("/v1/webhooks", &rsa_token).await;
    assert_eq!(status, StatusCode::OK, "accepted without a restart: {body}");

    // Unreachable at start-up: the same, naming the URL.
    let unreachable = url_app(&closed, None).await;
    let (status, body) = ready(&unreachable).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let why = body["reasons"]["jwks"].as_str().expect("a reason");
    assert!(
        why.contains(&format!("no key set loaded from {closed}")),
        "{why}"
    );
    let (status, _, _) = unreachable.get("/v1/webhooks", &rsa_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_url_is_retried_with_backoff_until_it_loads() {
    let idp = JwksServer::start("not json".into()).await;
    let app = url_app(&idp.url, None).await;
    assert_eq!(idp.fetches(), 1, "the fetch at start-up");
    // Fetched again 1 s, 2 s and 4 s later on the clock, the next 8 s
    // later: not one a poll.
    for (wait, fetches) in [(1, 2), (2, 3), (4, 4)] {
        app.clock.advance(Duration::from_secs(wait));
        eventually(&format!("fetch {fetches} after {wait} s"), || async {
            idp.fetches() >= fetches
        })
        .await;
    }
    // The clock also runs in real time: 6 s leaves a loaded machine 2 s.
    app.clock.advance(Duration::from_secs(6));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(idp.fetches(), 4, "backoff 1 s, 2 s, 4 s, then 8 s");
    let why = ready(&app).await.1["reasons"]["jwks"]
        .as_str()
        .expect("a reason")
        .to_owned();
    assert!(why.contains("JWKS is not JSON"), "{why}");
    // A key set whose only key is not supported loads nothing either.
    idp.answer(
        200,
        r#"{"keys": [{"kty": "RSA", "kid": "r5", "alg": "RS512", "n": "AQAB", "e": "AQAB"}]}"#
            .into(),
    );
    let reason = || async {
        ready(&app).await.1["reasons"]["jwks"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    app.clock.advance(Duration::from_secs(30));
    eventually("the next retry", || async {
        reason().await.contains("no usable key")
    })
    .await;
    let said = reason().await;
    assert!(
        said.contains("no usable key: JWKS key 0 (kid \"r5\"): field `alg` is \"RS512\""),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_jwks_url_behind_a_private_ca_is_trusted_with_its_ca_file_only() {
    let dir = TempDir::new();
    let ca = DevCa::new("the IdP's private CA").expect("ca");
    let stranger = DevCa::new("a CA nobody trusts").expect("ca");
    let good = ca.issue("idp", &["127.0.0.1"], true, None).expect("cert");
    let untrusted = stranger
        .issue("idp", &["127.0.0.1"], true, None)
        .expect("cert");
    let ca_file = dir.0.join("idp-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write");
    let idp = JwksServer::start_tls(jwks_of(&["rsa-1"]), &good).await;
    let impostor = JwksServer::start_tls(jwks_of(&["rsa-1"]), &untrusted).await;
    assert!(idp.url.starts_with("https://"));
    let with_ca = |url: String| {
        let ca_file = ca_file.clone();
        move |raw: &mut RawConfig| {
            raw.set("jwt_jwks_url", url);
            raw.set("jwt_jwks_ca_file", ca_file);
        }
    };
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            hs256: false,
            issuer: Some("https://idp.example"),
            audience: Some("hookwarden"),
            customize: Some(Box::new(with_ca(idp.url.clone()))),
            ..Default::default()
        },
    )
    .await;
    let c = claims(&app);
    let (status, body, _) = app
        .get(
            "/v1/webhooks",
            &token(Algorithm::RS256, "rsa-1", &rsa(), &c),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A server whose certificate the CA file does not vouch for, and the
    // IdP itself without the CA file: neither is trusted.
    let mut impostor_raw = RawConfig::default();
    impostor_raw.set("data_dir", &dir.0);
    with_ca(impostor.url.clone())(&mut impostor_raw);
    let mut without_ca = RawConfig::default();
    without_ca
        .set("data_dir", &dir.0)
        .set("jwt_jwks_url", &idp.url);
    for (name, raw, url) in [
        ("impostor", impostor_raw, &impostor.url),
        ("no CA file", without_ca, &idp.url),
    ] {
        let settings = Settings::from_raw(raw).expect("settings");
        let why = hookwarden_server::config_check::connections(&settings)
            .await
            .into_iter()
            .find(|f| f.setting == "HOOKWARDEN_JWT_JWKS_URL")
            .expect("a finding for the URL")
            .outcome
            .expect_err("an untrusted certificate");
        assert!(why.contains(url.as_str()), "{name}: {why}");
        assert!(why.to_lowercase().contains("certificate"), "{name}: {why}");
    }
    // `serve` starts, but takes no key from a server it does not trust.
    let untrusting = url_app(&idp.url, None).await;
    let (status, body) = ready(&untrusting).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let why = body["reasons"]["jwks"].as_str().expect("a reason");
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    let (status, _, _) = untrusting
        .get(
            "/v1/webhooks",
            &token(Algorithm::RS256, "rsa-1", &rsa(), &claims(&untrusting)),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(impostor.fetches(), 0, "nothing was asked of the impostor");
}
