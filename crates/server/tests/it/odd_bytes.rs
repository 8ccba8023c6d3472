//! Odd bytes are stored or refused, never looped: a receiver answering with
//! NUL bytes or gzip, a payload holding U+0000 (over HTTP and NATS) or
//! serde_json's raw-value key (over NATS; HTTP: `api.rs`), a NATS
//! message the database refuses, and an outcome whose write fails.

use crate::helpers::*;
use axum::http::StatusCode;
use futures_util::StreamExt;
use hookwarden_server::shared::pump::Queue;
use hookwarden_store::model::{AttemptResult, AttemptStatus, Claim};
use hookwarden_store::on_both;
use hookwarden_store::testing::execute_raw;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

on_both!(
    receivers_answering_nul_or_gzip_bytes_are_recorded_once,
    payloads_holding_nul_are_refused_over_http,
    payloads_holding_nul_or_the_raw_value_key_are_dead_lettered_over_nats,
    nats_messages_that_fail_to_store_are_dead_lettered_after_bounded_deliveries,
    an_outcome_that_cannot_be_written_is_recorded_generically,
);

/// `{"ok":true}` compressed with gzip: NUL bytes and invalid UTF-8.
const GZIP: &[u8] = &[
    31, 139, 8, 0, 0, 0, 0, 0, 2, 3, 171, 86, 202, 207, 86, 178, 42, 41, 42, 77, 173, 5, 0, 144,
    95, 212, 167, 11, 0, 0, 0,
];

/// A receiver answering 200 with these exact bytes, counting requests.
async fn bytes_receiver(body: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            (
                StatusCode::OK,
                [("content-type", "application/octet-stream")],
                body,
            )
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), count)
}

async fn receivers_answering_nul_or_gzip_bytes_are_recorded_once(backend: Backend) {
    // A short lease: a try left unrecorded would be sent again within the test.
    let app = TestApp::with(
        backend,
        Options {
            delivery_timeout: "1s",
            customize: Some(Box::new(|raw| {
                raw.set("delivery_lease", "3s");
            })),
            ..Default::default()
        },
    )
    .await;
    let nul: &'static [u8] = b"ok\0\0\0binary\0";
    let utf16: &'static [u8] = b"o\0k\0";
    for body in [nul, GZIP, utf16] {
        let (url, count) = bytes_receiver(body).await;
        let account = format!("acct_{}", uuid::Uuid::new_v4().simple());
        let (webhook, _) = app.create_webhook(&account, &url, &["*"]).await;
        app.publish(&account, "t", json!({"n": 1})).await;
        app.deliver_until(Duration::from_secs(10), || {
            count.load(Ordering::SeqCst) >= 1
        })
        .await;
        // Past the lease: nothing is claimed again, nothing is sent again.
        app.clock.advance(Duration::from_millis(3500));
        assert_eq!(app.dispatcher.run_once().await.expect("step"), 0);
        assert_eq!(count.load(Ordering::SeqCst), 1, "sent exactly once");
        let tries = app.deliveries(&account, &webhook).await;
        assert_eq!(tries.len(), 1, "{tries:?}");
        assert_eq!(tries[0]["status"], "succeeded", "{tries:?}");
        let preview = tries[0]["responsePreview"].as_str().expect("preview");
        assert!(!preview.contains('\0'), "{preview:?}");
        assert!(preview.contains('\u{fffd}'), "{preview:?}");
    }
    app.stop().await;
}

async fn payloads_holding_nul_are_refused_over_http(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let p = app.producer();
    for payload in [
        json!({"name": "a\u{0}b"}),
        json!({"k\u{0}ey": 1}),
        json!({"nested": {"list": [1, "x", {"deep": "\u{0}"}]}}),
    ] {
        let (status, err, _) = app
            .post(
                "/v1/events",
                &p,
                json!({"accountId": "acct_a", "eventType": "t", "payload": payload}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["error"]["code"], "VALIDATION_ERROR");
        assert!(
            err["error"]["message"]
                .as_str()
                .expect("message")
                .contains("U+0000"),
            "{err}"
        );
    }
    // The escape as text (a backslash, a "u" and digits) is ordinary content.
    let (status, body, _) = app
        .post(
            "/v1/events",
            &p,
            json!({"accountId": "acct_a", "eventType": "t", "payload": {"s": "\\u0000"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.stop().await;
}

/// Waits until the dispatcher's durable consumer has nothing pending or
/// unacknowledged, then checks it stays so (no redelivery loop).
async fn consumer_settles(nats: &NatsTest) {
    let js = async_nats::jetstream::new(nats.client.clone());
    let stream = js.get_stream(&nats.stream).await.expect("stream");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = stream
            .consumer_info("hookwarden-dispatcher")
            .await
            .expect("consumer");
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages still pending: {} unacked, {} waiting",
            info.num_ack_pending,
            info.num_pending
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = stream
        .consumer_info("hookwarden-dispatcher")
        .await
        .expect("consumer")
        .delivered
        .consumer_sequence;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = stream
        .consumer_info("hookwarden-dispatcher")
        .await
        .expect("consumer");
    assert_eq!(
        after.delivered.consumer_sequence, before,
        "nothing was delivered again"
    );
    assert_eq!((after.num_ack_pending, after.num_pending), (0, 0));
}

/// Publishes `message` to JetStream and waits up to `within` seconds for
/// its dead-letter notice.
async fn dead_letter_of(
    js: &async_nats::jetstream::Context,
    subject: String,
    message: &str,
    dead: &mut async_nats::Subscriber,
    within: u64,
) -> Value {
    js.publish(subject, message.to_owned().into())
        .await
        .expect("publish")
        .await
        .expect("stored by JetStream");
    next_notice(dead, Duration::from_secs(within)).await
}

async fn next_notice(sub: &mut async_nats::Subscriber, within: Duration) -> Value {
    let msg = tokio::time::timeout(within, sub.next())
        .await
        .expect("a dead-letter notice in time")
        .expect("message");
    serde_json::from_slice(&msg.payload).expect("notice is JSON")
}

async fn payloads_holding_nul_or_the_raw_value_key_are_dead_lettered_over_nats(backend: Backend) {
    let nats = NatsTest::new().await;
    let app = TestApp::with(
        backend,
        Options {
            nats: nats.options(),
            ..Default::default()
        },
    )
    .await;
    let mut dead = nats
        .client
        .subscribe(format!("{}.dispatch.deadletter", nats.prefix))
        .await
        .expect("subscribe");
    let js = async_nats::jetstream::new(nats.client.clone());
    for (message, reason) in [
        // Written by hand: JSON allows the escape, PostgreSQL's jsonb does not.
        (
            r#"{"accountId":"acct_a","eventType":"t","payload":{"to":"a\u0000b"},"id":"evt_nul_1"}"#,
            "U+0000",
        ),
        // Not first, serde_json keeps the key as any other; stored (keys
        // sorted) it would come first, and the payload would be read back as
        // the JSON text `0` followed by more: never again.
        (
            r#"{"accountId":"acct_a","eventType":"t","payload":{"zzzz":1,"$serde_json::private::RawValue":"0"},"id":"evt_raw_1"}"#,
            "must not hold the key $serde_json::private::RawValue",
        ),
    ] {
        let subject = format!("{}.dispatch", nats.prefix);
        let notice = dead_letter_of(&js, subject, message, &mut dead, 15).await;
        assert_eq!(notice["kind"], "intake");
        assert!(
            notice["reason"].as_str().expect("reason").contains(reason),
            "{notice}"
        );
        assert_eq!(notice["message"], message, "kept to be repaired");
    }
    consumer_settles(&nats).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), dead.next())
            .await
            .is_err(),
        "one dead letter, not one per redelivery"
    );
    app.stop().await;
    drop(nats);
}

async fn nats_messages_that_fail_to_store_are_dead_lettered_after_bounded_deliveries(
    backend: Backend,
) {
    let nats = NatsTest::new().await;
    let app = TestApp::with(
        backend,
        Options {
            nats: nats.options(),
            ..Default::default()
        },
    )
    .await;
    // The database refuses this one event whatever happens: a failure no
    // redelivery can cure.
    let sabotage = match backend {
        Backend::Sqlite => {
            "CREATE TRIGGER refuse_type BEFORE INSERT ON events WHEN NEW.event_type = 'refused.type' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
        }
        Backend::Postgres => {
            "ALTER TABLE hook.events ADD CONSTRAINT refuse_type CHECK (event_type <> 'refused.type')"
        }
    };
    execute_raw(backend, &app.database_url, sabotage)
        .await
        .expect("sabotage");
    let mut dead = nats
        .client
        .subscribe(format!("{}.dispatch.deadletter", nats.prefix))
        .await
        .expect("subscribe");
    let js = async_nats::jetstream::new(nats.client.clone());
    let subject = format!("{}.dispatch", nats.prefix);
    let refused = json!({"accountId": "acct_a", "eventType": "refused.type", "payload": {"n": 1}});
    // 1 + 2 + 4 + 8 s between the five deliveries.
    let notice = dead_letter_of(&js, subject.clone(), &refused.to_string(), &mut dead, 30).await;
    assert_eq!(notice["kind"], "intake");
    let reason = notice["reason"].as_str().expect("reason");
    assert!(
        reason.contains("could not be stored after 5 deliveries"),
        "{notice}"
    );
    consumer_settles(&nats).await;
    // Other events still flow.
    let rx = Receiver::start().await;
    app.create_webhook("acct_a", &rx.url("/h"), &["*"]).await;
    let fine = json!({"accountId": "acct_a", "eventType": "t", "payload": {"n": 2}});
    js.publish(subject, fine.to_string().into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    app.deliver_until(Duration::from_secs(15), || rx.count() == 1)
        .await;
    app.stop().await;
    drop(nats);
}

/// A try's outcome the database refuses to write (here, a constraint on
/// its error text) is written again, generically, keeping its status and
/// next try: it is never left to be sent again after every lease.
async fn an_outcome_that_cannot_be_written_is_recorded_generically(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (webhook, _) = app
        .create_webhook("acct_a", "https://example.com/h", &["*"])
        .await;
    app.publish("acct_a", "t", json!({"n": 1})).await;
    let sabotage = match backend {
        Backend::Sqlite => {
            "CREATE TRIGGER refuse_error BEFORE UPDATE ON delivery_attempts \
             WHEN NEW.error LIKE '%refuse-me%' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
        }
        Backend::Postgres => {
            "ALTER TABLE hook.delivery_attempts ADD CONSTRAINT refuse_error \
             CHECK (error IS NULL OR error NOT LIKE '%refuse-me%')"
        }
    };
    execute_raw(backend, &app.database_url, sabotage)
        .await
        .expect("sabotage");
    let now = chrono::Utc::now();
    let claimed = app
        .state
        .store
        .claim_due_with_webhooks(&Claim {
            worker_id: "w-test",
            now,
            lease_until: now + chrono::Duration::seconds(30),
            limit: 10,
            exclude_webhooks: &[],
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let (attempt, _) = claimed.into_iter().next().expect("one");
    let result = AttemptResult {
        attempt_id: attempt.id.clone(),
        worker_id: "w-test".into(),
        status: AttemptStatus::Failed,
        http_status: Some(500),
        duration_ms: 12,
        response_preview: Some("refuse-me".into()),
        error: Some("refuse-me".into()),
        completed_at: chrono::Utc::now(),
        next: Some((
            hookwarden_core::ids::attempt_id(),
            chrono::Utc::now() + chrono::Duration::hours(1),
        )),
    };
    app.dispatcher
        .queue()
        .record("w-test", Some((attempt.clone(), result)))
        .await;
    let tries = app.deliveries("acct_a", &webhook).await;
    let done = tries
        .iter()
        .find(|t| t["id"] == attempt.id.as_str())
        .expect("the try");
    assert_eq!(done["status"], "failed", "{tries:?}");
    assert_eq!(done["httpStatus"], 500);
    assert_eq!(
        done["error"],
        hookwarden_server::outbound::dispatch::worker::UNRECORDABLE,
        "{done}"
    );
    assert!(done["responsePreview"].is_null(), "{done}");
    assert!(
        tries.iter().any(|t| t["status"] == "pending"),
        "the next try is scheduled: {tries:?}"
    );
    app.stop().await;
}
