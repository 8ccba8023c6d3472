//! PostgreSQL and NATS outages read as such: `/ready` names the dependency
//! and why, and a request that fails on the database logs "database
//! unavailable", not a bare internal error.

use crate::helpers::*;
use crate::logs;
use axum::http::StatusCode;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy to a real service that the test cuts, like a network outage.
struct Cut {
    addr: std::net::SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Cut {
    async fn to(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let t = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                t.lock().expect("lock").push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self {
            addr,
            accept: Mutex::new(Some(accept)),
            tasks,
        }
    }

    /// Closes the listener and every proxied connection. The listener
    /// first, and only once it has stopped the connections: one it accepted
    /// while being aborted would otherwise outlive the cut.
    async fn cut(&self) {
        let accept = self.accept.lock().expect("lock").take();
        if let Some(accept) = accept {
            accept.abort();
            let _ = accept.await;
        }
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }
}

/// Polls `/ready` until `done` holds for its answer.
async fn ready_until(app: &TestApp, done: impl Fn(StatusCode, &Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = app
            .http
            .get(format!("http://{}/ready", app.ops))
            .send()
            .await
            .expect("ready");
        let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
        let body: Value = resp.json().await.expect("json");
        if done(status, &body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready still answers {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_reads_database_unavailable() {
    logs::capture();
    let db = hookwarden_store::testing::TestDb::new(Backend::Postgres).await;
    let mut url = url::Url::parse(&db.url).expect("url");
    let upstream = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().unwrap_or(5432)
    );
    let proxy = Cut::to(upstream).await;
    url.set_port(Some(proxy.addr.port())).expect("port");
    url.set_host(Some("127.0.0.1")).expect("host");
    let proxied = url.to_string();
    let app = TestApp::with(
        Backend::Postgres,
        Options {
            customize: Some(Box::new(move |raw| {
                raw.set("database_url", proxied);
            })),
            ..Default::default()
        },
    )
    .await;
    ready_until(&app, |s, _| s == StatusCode::OK).await;
    proxy.cut().await;
    let body = ready_until(&app, |s, _| s == StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["checks"]["database"], "unavailable", "{body}");
    assert!(
        body["reasons"]["database"]
            .as_str()
            .is_some_and(|r| r.starts_with("database unavailable")),
        "{body}"
    );
    // A request that needs the database: the body stays generic, the log says why.
    let account = format!("acct_{}", uuid::Uuid::new_v4().simple());
    let (status, err, _) = app.get("/v1/webhooks", &app.tenant(&account)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{err}");
    assert_eq!(err["error"]["code"], "INTERNAL");
    let logs = logs::captured();
    assert!(
        logs.lines()
            .any(|l| l.contains("list webhooks") && l.contains("database unavailable")),
        "no \"database unavailable\" for the failed request in the logs"
    );
    app.stop().await;
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_reads_nats_unavailable() {
    let nats = NatsTest::new().await;
    let upstream = nats_url()
        .trim_start_matches("nats://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = Cut::to(upstream).await;
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            nats: Some((format!("nats://{}", proxy.addr), nats.prefix.clone())),
            ..Default::default()
        },
    )
    .await;
    let body = ready_until(&app, |s, _| s == StatusCode::OK).await;
    assert_eq!(body["checks"]["nats"], "ok", "{body}");
    proxy.cut().await;
    let body = ready_until(&app, |s, _| s == StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["checks"]["nats"], "unavailable", "{body}");
    assert!(
        body["reasons"]["nats"]
            .as_str()
            .is_some_and(|r| r.starts_with("NATS unavailable")),
        "{body}"
    );
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    app.stop().await;
    drop(nats);
}
