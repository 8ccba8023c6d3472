//! Redis as accelerator and coordinator: losing it mid-run loses and
//! duplicates nothing, nor does starting without it; with it, one handler
//! per event across workers.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_store::on_both;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

on_both!(
    losing_redis_mid_run_loses_and_duplicates_nothing,
    redis_down_at_start_up_is_degraded_then_used,
);

/// A TCP proxy to the real Redis that the test can cut, like a network
/// outage, and restore on the same address.
struct Proxy {
    url: String,
    addr: std::net::SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let this = Self {
            url: format!("redis://{addr}"),
            addr,
            tasks: Arc::default(),
            accept: Mutex::default(),
        };
        this.serve(listener);
        this
    }

    fn serve(&self, listener: TcpListener) {
        let upstream = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let t = self.tasks.clone();
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
        *self.accept.lock().expect("lock") = Some(accept);
    }

    /// Closes the listener and every proxied connection: the listener
    /// first, and only once it has stopped the connections (one it accepted
    /// while being aborted would otherwise outlive the cut).
    async fn cut(&self) {
        let accept = self.accept.lock().expect("lock").take();
        if let Some(a) = accept {
            a.abort();
            let _ = a.await;
        }
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same address.
    async fn restore(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "rebind: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }
}

async fn ready(app: &TestApp) -> (StatusCode, serde_json::Value) {
    let resp = app
        .http
        .get(format!("http://{}/ready", app.ops))
        .send()
        .await
        .expect("ready");
    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
    (status, resp.json().await.expect("json"))
}

/// Keys under `prefix` in the real Redis.
fn keys(prefix: &RedisPrefix) -> Vec<String> {
    let mut c = redis::Client::open(redis_url().as_str())
        .and_then(|c| c.get_connection())
        .expect("redis");
    redis::cmd("KEYS")
        .arg(format!("{}*", prefix.0))
        .query(&mut c)
        .expect("keys")
}

fn sig(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(b"k").expect("key");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

async fn send(app: &TestApp, n: u32) -> (StatusCode, serde_json::Value) {
    let body = format!("{{\"n\":{n}}}");
    app.inbound("acme", &[("x-sig", sig(body.as_bytes()))], body.as_bytes())
        .await
}

async fn losing_redis_mid_run_loses_and_duplicates_nothing(backend: Backend) {
    let prefix = RedisPrefix::new();
    let proxy = Proxy::start().await;
    let app = TestApp::with(
        backend,
        Options {
            redis: Some((proxy.url.clone(), prefix.0.clone())),
            ..Default::default()
        },
    )
    .await;
    let target = Receiver::start().await;
    app.integration(json!({"name": "acme", "scheme": "hmac-sha256", "secret": "k", "signatureHeader": "x-sig", "targetUrl": target.url("/a")}))
        .await;
    let mut ids = HashMap::new();
    for n in 0..5 {
        let (status, body) = send(&app, n).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.insert(n, body["eventId"].as_str().expect("id").to_owned());
    }
    let (status, _) = send(&app, 0).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "duplicate caught by the Redis marker"
    );

    proxy.cut().await;
    let (_, ready) = ready(&app).await;
    assert_eq!(ready["checks"]["redis"], "degraded", "{ready}");
    // Duplicates of earlier deliveries: the database still names them.
    for n in 0..5 {
        let (status, body) = send(&app, n).await;
        assert_eq!(status, StatusCode::OK, "duplicate {n} without Redis");
        assert_eq!(body["eventId"].as_str(), Some(ids[&n].as_str()));
    }
    // New deliveries are still accepted.
    for n in 5..10 {
        let (status, body) = send(&app, n).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "new {n} without Redis: {body}"
        );
        let (status, again) = send(&app, n).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["eventId"], body["eventId"]);
    }
    // Forwarding goes on without the lock, once per event.
    app.forward_until(Duration::from_secs(30), || target.count() >= 10)
        .await;
    app.clock.advance(Duration::from_millis(200));
    let _ = app.forwarder.run_once().await;
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for r in target.received() {
        *per_event
            .entry(
                r.headers["x-hookwarden-event-id"]
                    .to_str()
                    .expect("id")
                    .to_owned(),
            )
            .or_default() += 1;
    }
    assert_eq!(per_event.len(), 10, "every accepted event forwarded");
    assert!(per_event.values().all(|&n| n == 1), "none twice");
}

async fn redis_down_at_start_up_is_degraded_then_used(backend: Backend) {
    // Redis is configured but its address answers nothing: hookwarden starts
    // anyway (it used to refuse to), ready and degraded, on the database alone.
    let prefix = RedisPrefix::new();
    let proxy = Proxy::start().await;
    proxy.cut().await;
    let app = TestApp::with(
        backend,
        Options {
            redis: Some((proxy.url.clone(), prefix.0.clone())),
            ..Default::default()
        },
    )
    .await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["redis"], "degraded", "{body}");
    let target = Receiver::start().await;
    app.integration(json!({"name": "acme", "scheme": "hmac-sha256", "secret": "k", "signatureHeader": "x-sig", "targetUrl": target.url("/a")}))
        .await;
    let (status, first) = send(&app, 1).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "inbound without Redis: {first}"
    );
    let (status, again) = send(&app, 1).await;
    assert_eq!(status, StatusCode::OK, "the database names the duplicate");
    assert_eq!(again["eventId"], first["eventId"]);
    let rx = Receiver::start().await;
    app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    app.publish("acct_a", "t", json!({})).await;
    app.deliver_until(Duration::from_secs(10), || rx.count() == 1)
        .await;
    assert!(keys(&prefix).is_empty(), "nothing reached Redis yet");

    // Redis comes up: it is used without a restart.
    proxy.restore().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = ready(&app).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["checks"]["redis"] == "ok" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis not in use once reachable: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = send(&app, 2).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let stored = keys(&prefix);
    assert!(
        stored.iter().any(|k| k.contains(":dedup:")),
        "the new delivery's marker is in Redis: {stored:?}"
    );
    app.publish("acct_a", "t", json!({})).await;
    assert!(
        keys(&prefix).iter().any(|k| k.contains(":rl:")),
        "rate limits are shared through Redis again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_one_handler_per_event() {
    let prefix = RedisPrefix::new();
    let opts = || Options {
        redis: prefix.options(),
        ..Default::default()
    };
    let a = TestApp::with(Backend::Postgres, opts()).await;
    let b = TestApp::with(
        Backend::Postgres,
        Options {
            shared: Some((a.database_url.clone(), a.master_key.clone())),
            ..opts()
        },
    )
    .await;
    let target = Receiver::start().await;
    target.set_default(Reply::Slow {
        delay: Duration::from_millis(300),
        status: 200,
    });
    a.integration(json!({"name": "acme", "scheme": "token", "secret": "t", "signatureHeader": "x-t", "targetUrl": target.url("/a")})).await;
    let (_, accepted) = a
        .inbound("acme", &[("x-t", "t".into())], b"{\"n\":1}")
        .await;
    let id = accepted["eventId"].as_str().expect("id").to_owned();
    // Four replays: five pending jobs for one event.
    for i in 0..4 {
        let (status, _, _) = a
            .operator(
                reqwest::Method::POST,
                &format!("/api/v1/events/{id}/replay"),
                Some(json!({"requestedBy": "ops", "reason": format!("r{i}")})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while target.count() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 5 handled",
            target.count()
        );
        let (x, y) = tokio::join!(a.forwarder.run_once(), b.forwarder.run_once());
        if x.expect("a") + y.expect("b") == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        target.max_concurrent(),
        1,
        "one handler per event at a time, across both workers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_rate_limit_holds_across_replicas() {
    let prefix = RedisPrefix::new();
    let opts = || Options {
        redis: prefix.options(),
        rate_limit: 60,
        ..Default::default()
    };
    let a = TestApp::with(Backend::Postgres, opts()).await;
    let b = TestApp::with(
        Backend::Postgres,
        Options {
            shared: Some((a.database_url.clone(), a.master_key.clone())),
            ..opts()
        },
    )
    .await;
    // Both replicas verify the same tokens (the test's HS256 secret differs per app: use each app's own).
    for i in 0..60 {
        let app = if i % 2 == 0 { &a } else { &b };
        let (status, _, _) = app.get("/v1/webhooks", &app.tenant("acct_shared")).await;
        assert_eq!(status, StatusCode::OK, "request {i}");
    }
    for app in [&a, &b] {
        let (status, body, headers) = app.get("/v1/webhooks", &app.tenant("acct_shared")).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "the 61st, whichever replica: {body}"
        );
        assert!(headers.contains_key("retry-after"));
    }
    let (status, _, _) = a.get("/v1/webhooks", &a.tenant("acct_other")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "other accounts keep their own budget"
    );
}
