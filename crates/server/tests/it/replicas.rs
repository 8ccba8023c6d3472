//! Two replicas on one PostgreSQL database: every event delivered, no try
//! sent twice.

use crate::helpers::*;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_outbox_without_sending_twice() {
    let opts = || Options {
        worker: true,
        max_in_flight: 8,
        retry_schedule: "1h",
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
    let rx = Receiver::start().await;
    rx.set_default(Reply::Slow {
        delay: Duration::from_millis(5),
        status: 200,
    });
    a.create_webhook("acct_a", &rx.url("/a"), &["*"]).await;
    a.create_webhook("acct_b", &rx.url("/b"), &["*"]).await;
    let mut events = Vec::new();
    for n in 0..150 {
        // Publish through both replicas alternately.
        let app = if n % 2 == 0 { &a } else { &b };
        events.push(
            app.publish(
                if n % 3 == 0 { "acct_a" } else { "acct_b" },
                "t",
                json!({"n": n}),
            )
            .await,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while rx.count() < events.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} delivered",
            rx.count(),
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for d in rx.received() {
        *per_id
            .entry(d.headers["webhook-id"].to_str().expect("id").to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), events.len(), "every event delivered");
    assert!(per_id.values().all(|&n| n == 1), "no event delivered twice");
    b.stop().await;
    a.stop().await;
}
