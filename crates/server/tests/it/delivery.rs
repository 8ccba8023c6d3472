//! Delivery as SPEC §5: signatures checked by the reference library, retries,
//! dead letters, 410, slow-down, redirects, previews, timeouts, rotation and
//! fairness between endpoints.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_store::on_both;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

on_both!(
    deliveries_verify_with_the_reference_library,
    failures_retry_then_dead_letter_then_manual_retry,
    redirects_are_failures_and_never_followed,
    previews_are_bounded_and_bodies_never_read_whole,
    slow_endpoints_time_out,
    gone_disables_the_endpoint_until_updated,
    slow_down_answers_pause_the_endpoint,
    an_endpoint_failing_in_a_row_is_paused_and_the_others_go_on,
    rotation_signs_with_both_secrets_during_grace,
    a_slow_endpoint_cannot_starve_the_others,
    a_slow_endpoint_cannot_starve_the_others_under_the_fair_share,
    in_flight_tries_never_exceed_the_budget,
    a_lone_endpoint_uses_most_of_the_budget,
    first_tries_go_straight_to_a_worker_with_room_and_never_past_a_backlog,
);

const WAIT: Duration = Duration::from_secs(20);

async fn deliveries_verify_with_the_reference_library(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    let (id, secret) = app
        .create_webhook("acct_a", &rx.url("/hook"), &["invoice.paid"])
        .await;
    let other = Receiver::start().await;
    app.create_webhook("acct_a", &other.url("/other"), &["user.created"])
        .await;
    let mut events = Vec::new();
    for n in 0..3 {
        events.push(
            app.publish(
                "acct_a",
                "invoice.paid",
                json!({"n": n, "to": "+15557654321"}),
            )
            .await,
        );
    }
    app.deliver_until(WAIT, || rx.count() == 3).await;
    assert_eq!(other.count(), 0, "not subscribed to invoice.paid");
    let got = rx.received();
    let verdicts = reference_verify(&secret, &got);
    assert_eq!(verdicts, vec!["ok"; 3], "reference library verdicts");
    // A different secret must not verify (the check can fail).
    let wrong = hookwarden_core::secret::WebhookSecret::generate()
        .expose()
        .to_string();
    assert!(reference_verify(&wrong, &got)
        .iter()
        .all(|v| v.starts_with("fail")));
    for d in &got {
        assert_eq!(d.headers["content-type"], "application/json");
        let body: Value = serde_json::from_slice(&d.body).expect("json body");
        assert_eq!(body["type"], "invoice.paid");
        assert!(chrono::DateTime::parse_from_rfc3339(
            body["timestamp"].as_str().expect("timestamp")
        )
        .is_ok());
        assert!(events.contains(&d.headers["webhook-id"].to_str().expect("id").to_owned()));
    }
    let items = app.deliveries("acct_a", &id).await;
    assert_eq!(items.len(), 3);
    for item in &items {
        assert_eq!(item["status"], "succeeded");
        assert_eq!(item["httpStatus"], 200);
        assert_eq!(item["attempt"], 1);
        assert!(item["durationMs"].as_i64().is_some());
        assert!(
            item.get("payloadSnapshot").is_none(),
            "payloads (phone numbers) are not listed"
        );
    }
}

async fn failures_retry_then_dead_letter_then_manual_retry(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    rx.set_default(Reply::Status(500));
    let (id, secret) = app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    app.publish("acct_a", "t", json!({"n": 1})).await;
    // Schedule 200ms,400ms: three tries, then a dead letter.
    app.deliver_until(WAIT, || rx.count() == 3).await;
    let mut items = Vec::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        items = app.deliveries("acct_a", &id).await;
        if items.iter().any(|i| i["status"] == "dead") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let statuses: Vec<&str> = items
        .iter()
        .map(|i| i["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["dead", "failed", "failed"], "newest first");
    let got = rx.received();
    let ids: Vec<_> = got
        .iter()
        .map(|d| d.headers["webhook-id"].clone())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "webhook-id is stable across retries"
    );
    assert_eq!(
        reference_verify(&secret, &got),
        vec!["ok"; 3],
        "each retry is signed afresh"
    );
    // Nothing more happens to a dead letter, past the whole schedule.
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 0);
    // The dead letter is listed by status and retried on request.
    let (_, dead, _) = app
        .get(
            &format!("/v1/webhooks/{id}/deliveries?status=dead"),
            &app.tenant("acct_a"),
        )
        .await;
    let dead_id = dead["items"][0]["id"].as_str().expect("dead id").to_owned();
    rx.set_default(Reply::Status(204));
    let (status, retry, _) = app
        .post(
            &format!("/v1/deliveries/{dead_id}/retry"),
            &app.tenant("acct_a"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retry}");
    assert_eq!(retry["status"], "pending");
    assert_eq!(retry["attempt"], 4);
    app.deliver_until(WAIT, || rx.count() == 4).await;
    let items = app.deliveries("acct_a", &id).await;
    assert_eq!(items[0]["status"], "succeeded");
    assert_eq!(items[0]["httpStatus"], 204);
}

async fn redirects_are_failures_and_never_followed(backend: Backend) {
    let app = TestApp::with(
        backend,
        Options {
            retry_schedule: "1h",
            ..Default::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    let target = Receiver::start().await;
    for status in [301, 302, 307, 308] {
        rx.push(Reply::Full {
            status,
            headers: vec![("location", target.url("/stolen"))],
            body: String::new(),
        });
    }
    let (id, _) = app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    for n in 0..4 {
        app.publish("acct_a", "t", json!({"n": n})).await;
    }
    app.deliver_until(WAIT, || rx.count() == 4).await;
    // A redirect followed would have been within its try, which the step awaited.
    assert_eq!(target.count(), 0, "the redirect target was never contacted");
    let items = app.deliveries("acct_a", &id).await;
    let mut codes: Vec<i64> = items
        .iter()
        .filter(|i| i["status"] == "failed")
        .map(|i| i["httpStatus"].as_i64().expect("status"))
        .collect();
    codes.sort();
    assert_eq!(codes, [301, 302, 307, 308]);
}

async fn previews_are_bounded_and_bodies_never_read_whole(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    rx.push(Reply::Full {
        status: 200,
        headers: vec![],
        body: "é".repeat(2000),
    });
    rx.push(Reply::Huge(10 * 1024 * 1024));
    rx.push(Reply::Full {
        status: 500,
        headers: vec![],
        body: "<script>alert(1)</script>".into(),
    });
    let (id, _) = app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    for n in 0..3 {
        app.publish("acct_a", "t", json!({"n": n})).await;
    }
    let started = Instant::now();
    app.deliver_until(WAIT, || rx.count() >= 3).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a 10 MB body is not read to the end"
    );
    let items = app.deliveries("acct_a", &id).await;
    let previews: Vec<String> = items
        .iter()
        .filter_map(|i| i["responsePreview"].as_str().map(str::to_owned))
        .collect();
    assert!(
        previews
            .iter()
            .any(|p| p.chars().count() == 512 && p.chars().all(|c| c == 'é')),
        "{previews:?}"
    );
    assert!(previews
        .iter()
        .any(|p| p.chars().count() == 512 && p.chars().all(|c| c == 'x')));
    assert!(
        previews.iter().any(|p| p == "<script>alert(1)</script>"),
        "kept as text, verbatim"
    );
}

async fn slow_endpoints_time_out(backend: Backend) {
    let app = TestApp::with(
        backend,
        Options {
            delivery_timeout: "500ms",
            retry_schedule: "1h",
            ..Default::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    rx.push(Reply::Slow {
        delay: Duration::from_secs(3),
        status: 200,
    });
    let (id, _) = app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    app.publish("acct_a", "t", json!({})).await;
    let started = Instant::now();
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the try was cut at the timeout"
    );
    let items = app.deliveries("acct_a", &id).await;
    let failed = items
        .iter()
        .find(|i| i["status"] == "failed")
        .expect("failed try");
    assert!(
        failed["error"]
            .as_str()
            .expect("error")
            .contains("timed out"),
        "{failed}"
    );
    assert_eq!(failed["httpStatus"], Value::Null);
}

async fn gone_disables_the_endpoint_until_updated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    rx.push(Reply::Status(410));
    let (id, _) = app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    app.publish("acct_a", "t", json!({"n": 1})).await;
    app.deliver_until(WAIT, || rx.count() == 1).await;
    let t = app.tenant("acct_a");
    let mut disabled = json!(null);
    for _ in 0..100 {
        disabled = app.get(&format!("/v1/webhooks/{id}"), &t).await.1;
        if disabled["disabled"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(disabled["disabled"], true, "{disabled}");
    assert!(disabled["disabledReason"]
        .as_str()
        .expect("reason")
        .contains("410"));
    assert_eq!(
        app.deliveries("acct_a", &id).await[0]["status"],
        "dead",
        "410 is final"
    );
    let (_, accepted, _) = app
        .post(
            "/v1/events",
            &app.producer(),
            json!({"accountId": "acct_a", "eventType": "t", "payload": {"n": 2}}),
        )
        .await;
    assert_eq!(
        accepted["deliveries"], 0,
        "a disabled endpoint gets no new deliveries"
    );
    let (_, updated, _) = app
        .put(
            &format!("/v1/webhooks/{id}"),
            &t,
            json!({"description": "fixed"}),
        )
        .await;
    assert_eq!(updated["disabled"], false, "an update re-enables it");
    app.publish("acct_a", "t", json!({"n": 3})).await;
    app.deliver_until(WAIT, || rx.count() == 2).await;
}

async fn slow_down_answers_pause_the_endpoint(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    rx.push(Reply::Full {
        status: 429,
        headers: vec![("retry-after", "2".into())],
        body: String::new(),
    });
    let (id, _) = app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    app.publish("acct_a", "t", json!({"n": 1})).await;
    let started = app.now();
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 1);
    let items = app.deliveries("acct_a", &id).await;
    let (pending, limited) = (&items[0], &items[1]);
    assert_eq!(limited["httpStatus"], 429);
    assert_eq!(limited["status"], "failed");
    let due = chrono::DateTime::parse_from_rfc3339(pending["dueAt"].as_str().expect("due"))
        .expect("time");
    let done = chrono::DateTime::parse_from_rfc3339(limited["completedAt"].as_str().expect("done"))
        .expect("time");
    assert!(
        due - done >= chrono::Duration::milliseconds(1900),
        "Retry-After: 2 beats the 200ms schedule"
    );
    // The whole endpoint is paused, not just that attempt.
    app.publish("acct_a", "t", json!({"n": 2})).await;
    assert_eq!(
        app.dispatcher.run_once().await.expect("step"),
        0,
        "paused endpoint gets no tries"
    );
    // Stepping moves the clock to the end of the pause.
    app.deliver_until(WAIT, || rx.count() == 3).await;
    assert!(app.now() - started >= chrono::Duration::milliseconds(1900));
}

/// The breaker: five failed tries in a row pause the endpoint (visible in
/// the API); its pending tries wait out the pause, tries to other endpoints
/// go on, and the first pause lasts 5 s.
async fn an_endpoint_failing_in_a_row_is_paused_and_the_others_go_on(backend: Backend) {
    let app = TestApp::with(
        backend,
        Options {
            retry_schedule: "1h",
            max_in_flight_per_endpoint: Some(5),
            ..Default::default()
        },
    )
    .await;
    let (down, up) = (Receiver::start().await, Receiver::start().await);
    down.set_default(Reply::Status(500));
    let (down_id, _) = app
        .create_webhook("acct_down", &down.url("/hook"), &["*"])
        .await;
    app.create_webhook("acct_up", &up.url("/hook"), &["*"])
        .await;
    for n in 0..8 {
        app.publish("acct_down", "t", json!({"n": n})).await;
    }
    // One step: five tries at once (its share), all failed.
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 5);
    let tried = down.count();
    assert_eq!(tried, 5);
    // The pause is written as the step's outcomes are (shared commits): on a
    // loaded machine it can land a while after the step returns (CI once
    // saw more than a second).
    let mut hook = Value::Null;
    for _ in 0..200 {
        hook = app
            .get(&format!("/v1/webhooks/{down_id}"), &app.tenant("acct_down"))
            .await
            .1;
        if hook["pausedUntil"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let paused = chrono::DateTime::parse_from_rfc3339(
        hook["pausedUntil"]
            .as_str()
            .unwrap_or_else(|| panic!("paused within 10 s: {hook}")),
    )
    .expect("time");
    let ahead = paused.signed_duration_since(app.now());
    assert!(
        ahead > chrono::Duration::seconds(3) && ahead <= chrono::Duration::seconds(5),
        "the first pause is 5 s: {ahead}"
    );
    // Its untried events wait out the pause in the database, due when it ends.
    let items = app.deliveries("acct_down", &down_id).await;
    let waiting: Vec<&Value> = items.iter().filter(|i| i["status"] == "pending").collect();
    assert_eq!(waiting.len(), 8, "one pending try per event: {items:?}");
    for i in waiting.iter().filter(|i| i["attempt"] == 1) {
        let due =
            chrono::DateTime::parse_from_rfc3339(i["dueAt"].as_str().expect("due")).expect("time");
        assert!(due >= paused, "an untried event waits for the pause: {i}");
    }
    // Meanwhile the other endpoint is served, and the paused one gets nothing.
    app.publish("acct_up", "t", json!({"n": 1})).await;
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 1);
    assert_eq!(up.count(), 1);
    assert_eq!(down.count(), tried, "no try during the pause");
    // After the pause, the endpoint no longer shows it, and the waiting
    // events are tried.
    app.clock.advance(Duration::from_secs(5));
    let hook = app
        .get(&format!("/v1/webhooks/{down_id}"), &app.tenant("acct_down"))
        .await
        .1;
    assert!(hook["pausedUntil"].is_null(), "{hook}");
    app.deliver_until(WAIT, || down.count() == 8).await;
}

async fn rotation_signs_with_both_secrets_during_grace(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    let (id, old) = app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    let (_, rotated, _) = app
        .put(
            &format!("/v1/webhooks/{id}"),
            &app.tenant("acct_a"),
            json!({"rotateSecret": true}),
        )
        .await;
    let new = rotated["secret"].as_str().expect("new secret").to_owned();
    app.publish("acct_a", "t", json!({"n": 1})).await;
    app.deliver_until(WAIT, || rx.count() == 1).await;
    let got = rx.received();
    let header = got[0].headers["webhook-signature"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(
        header.split(' ').count(),
        2,
        "two signatures during the grace period: {header}"
    );
    assert_eq!(
        reference_verify(&old, &got),
        ["ok"],
        "receivers still holding the old secret accept it"
    );
    assert_eq!(
        reference_verify(&new, &got),
        ["ok"],
        "receivers with the new secret accept it"
    );
}

async fn a_slow_endpoint_cannot_starve_the_others(backend: Backend) {
    slow_beside_fast(backend, Some(2)).await;
}

async fn a_slow_endpoint_cannot_starve_the_others_under_the_fair_share(backend: Backend) {
    slow_beside_fast(backend, None).await;
}

/// A slow endpoint with a backlog, then a fast one: the fast one is served
/// at once, whether the share is a fixed cap or the default fair share.
async fn slow_beside_fast(backend: Backend, per_endpoint: Option<usize>) {
    let app = worker_app(backend, 4, per_endpoint).await;
    let slow = Receiver::start().await;
    slow.set_default(Reply::Slow {
        delay: Duration::from_millis(1500),
        status: 200,
    });
    let fast = Receiver::start().await;
    app.create_webhook("acct_slow", &slow.url("/slow"), &["*"])
        .await;
    app.create_webhook("acct_fast", &fast.url("/fast"), &["*"])
        .await;
    for n in 0..12 {
        app.publish("acct_slow", "t", json!({"n": n})).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    for n in 0..12 {
        app.publish("acct_fast", "t", json!({"n": n})).await;
    }
    while fast.count() < 12 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "fast endpoint starved: {} of 12",
            fast.count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fast_time = started.elapsed();
    assert!(
        fast_time < Duration::from_secs(3),
        "fast endpoint took {fast_time:?} behind a slow one"
    );
    assert!(
        slow.count() < 12,
        "the slow endpoint is still being worked through"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_failed_tries() {
    // An https:// endpoint whose server does not speak TLS (or presents a
    // certificate the system roots do not trust) is a failed try, not a hang.
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            retry_schedule: "1h",
            ..Default::default()
        },
    )
    .await;
    let plain = Receiver::start().await;
    let (id, _) = app
        .create_webhook("acct_a", &format!("https://{}/hook", plain.addr), &["*"])
        .await;
    app.publish("acct_a", "t", json!({})).await;
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 1);
    let items = app.deliveries("acct_a", &id).await;
    let failed = items
        .iter()
        .find(|i| i["status"] == "failed")
        .expect("failed try");
    assert_eq!(failed["httpStatus"], Value::Null);
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("TLS handshake failed")),
        "{failed}"
    );
}

async fn a_lone_endpoint_uses_most_of_the_budget(backend: Backend) {
    let app = worker_app(backend, 8, None).await;
    let rx = Receiver::start().await;
    rx.set_default(Reply::Slow {
        delay: Duration::from_millis(300),
        status: 200,
    });
    app.create_webhook("acct_1", &rx.url("/hook"), &["*"]).await;
    for n in 0..24 {
        app.publish("acct_1", "t", json!({"n": n})).await;
    }
    let deadline = Instant::now() + WAIT;
    while rx.count() < 24 {
        assert!(Instant::now() < deadline, "only {} of 24", rx.count());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        rx.max_concurrent(),
        6,
        "alone, an endpoint may use all but a quarter of the budget of 8"
    );
    app.stop().await;
}

async fn in_flight_tries_never_exceed_the_budget(backend: Backend) {
    let app = worker_app(backend, 3, Some(3)).await;
    let rx = Receiver::start().await;
    rx.set_default(Reply::Slow {
        delay: Duration::from_millis(200),
        status: 200,
    });
    for account in ["acct_1", "acct_2", "acct_3", "acct_4"] {
        app.create_webhook(account, &rx.url("/hook"), &["*"]).await;
        for n in 0..4 {
            app.publish(account, "t", json!({"n": n})).await;
        }
    }
    let deadline = Instant::now() + WAIT;
    while rx.count() < 16 {
        assert!(
            Instant::now() < deadline,
            "only {} of 16 delivered",
            rx.count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        rx.max_concurrent(),
        3,
        "the budget of 3 was used fully and never exceeded"
    );
    app.stop().await;
}

/// #16: a first try whose endpoint has room is handed to the worker as it is
/// stored (no claim); once the endpoint is full, its tries wait in the
/// database and later ones wait behind them (none overtakes the backlog),
/// until a claim has taken them all.
async fn first_tries_go_straight_to_a_worker_with_room_and_never_past_a_backlog(backend: Backend) {
    // No polls: a poll's claim under way takes the free slots, so a try
    // stored meanwhile would be claimed rather than handed over, by chance.
    let app = TestApp::with(
        backend,
        Options {
            worker: true,
            max_in_flight: 4,
            max_in_flight_per_endpoint: Some(2),
            retry_schedule: "1h",
            customize: Some(Box::new(|raw| {
                raw.set("poll_interval", "1h");
            })),
            ..Default::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    let (webhook, _) = app.create_webhook("acct_1", &rx.url("/hook"), &["*"]).await;
    // The worker's first claims have shown nothing waits.
    caught_up(&app, &webhook).await;
    let before = app.dispatcher.handed();
    app.publish("acct_1", "t", json!({"n": 0})).await;
    received(&rx, 1).await;
    assert_eq!(
        app.dispatcher.handed(),
        before + 1,
        "handed over, not claimed"
    );
    // Slow answers: two tries fill the endpoint's share; the next four wait.
    rx.set_default(Reply::Slow {
        delay: Duration::from_millis(300),
        status: 200,
    });
    for n in 1..=6 {
        app.publish("acct_1", "t", json!({"n": n})).await;
    }
    received(&rx, 7).await;
    assert_eq!(
        app.dispatcher.handed(),
        before + 3,
        "only the two with room went straight to the worker"
    );
    let order: Vec<i64> = rx
        .received()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body)
                .map_or(-1, |v| v["data"]["n"].as_i64().unwrap_or(-1))
        })
        .collect();
    for (i, n) in order.iter().enumerate().skip(1) {
        assert!(
            (*n - i as i64).abs() <= 1,
            "published in order, sent in order two at a time: {order:?}"
        );
    }
    // Once a claim has taken the backlog, new tries go straight again.
    caught_up(&app, &webhook).await;
    app.publish("acct_1", "t", json!({"n": 7})).await;
    received(&rx, 8).await;
    assert_eq!(app.dispatcher.handed(), before + 4);
    app.stop().await;
}

/// Waits until the worker's claims have shown that nothing of this
/// endpoint waits in the database (a fixed pause was too short on a busy
/// machine).
async fn caught_up(app: &TestApp, webhook: &str) {
    let deadline = Instant::now() + WAIT;
    while app.dispatcher.behind(webhook) {
        assert!(Instant::now() < deadline, "the worker never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the receiver got `n` requests.
async fn received(rx: &Receiver, n: usize) {
    let deadline = Instant::now() + WAIT;
    while rx.count() < n {
        assert!(Instant::now() < deadline, "only {} of {n}", rx.count());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An app whose own worker delivers, with this budget and endpoint share,
/// and retries an hour away.
async fn worker_app(
    backend: Backend,
    max_in_flight: usize,
    per_endpoint: Option<usize>,
) -> TestApp {
    TestApp::with(
        backend,
        Options {
            worker: true,
            max_in_flight,
            max_in_flight_per_endpoint: per_endpoint,
            retry_schedule: "1h",
            ..Default::default()
        },
    )
    .await
}
