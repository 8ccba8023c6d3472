//! NATS JetStream intake and dead letters against the real server, each test
//! on its own stream and subject prefix (deleted afterwards); the stream's
//! bounded retention, and a subject overlap named with its way out.

use crate::helpers::*;
use futures_util::StreamExt;
use hookwarden_server::config::NatsSettings;
use hookwarden_server::outbound::nats::Nats;
use hookwarden_store::on_both;
use serde_json::{json, Value};
use std::time::Duration;

on_both!(
    events_published_on_nats_are_delivered,
    bad_messages_and_dead_deliveries_reach_the_dead_letter_subject
);

async fn next_json(sub: &mut async_nats::Subscriber) -> Value {
    let msg = tokio::time::timeout(Duration::from_secs(15), sub.next())
        .await
        .expect("a dead-letter notice in time")
        .expect("message");
    serde_json::from_slice(&msg.payload).expect("notice is JSON")
}

async fn events_published_on_nats_are_delivered(backend: Backend) {
    let nats = NatsTest::new().await;
    let app = TestApp::with(
        backend,
        Options {
            nats: nats.options(),
            ..Default::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    let (id, secret) = app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    let js = async_nats::jetstream::new(nats.client.clone());
    let subject = format!("{}.dispatch", nats.prefix);
    for n in 0..5 {
        let msg = json!({"accountId": "acct_a", "eventType": "invoice.paid", "payload": {"n": n}, "id": format!("evt_nats_{n}")});
        js.publish(subject.clone(), msg.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("stored by JetStream");
    }
    // The same id again is deduplicated by the database.
    let dup = json!({"accountId": "acct_a", "eventType": "invoice.paid", "payload": {"n": 0}, "id": "evt_nats_0"});
    js.publish(subject.clone(), dup.to_string().into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    app.deliver_until(Duration::from_secs(20), || rx.count() >= 5)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = app.dispatcher.run_once().await;
    assert_eq!(rx.count(), 5, "one delivery per event id");
    assert_eq!(reference_verify(&secret, &rx.received()), vec!["ok"; 5]);
    assert_eq!(app.deliveries("acct_a", &id).await.len(), 5);
    app.stop().await;
    drop(nats);
}

async fn bad_messages_and_dead_deliveries_reach_the_dead_letter_subject(backend: Backend) {
    let nats = NatsTest::new().await;
    let app = TestApp::with(
        backend,
        Options {
            nats: nats.options(),
            retry_schedule: "100ms",
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
    let subject = format!("{}.dispatch", nats.prefix);
    js.publish(subject.clone(), "not json".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let notice = next_json(&mut dead).await;
    assert_eq!(notice["kind"], "intake");
    assert!(
        notice["reason"]
            .as_str()
            .expect("reason")
            .contains("malformed"),
        "{notice}"
    );
    let array = json!({"accountId": "acct_a", "eventType": "t", "payload": [1]});
    js.publish(subject.clone(), array.to_string().into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let notice = next_json(&mut dead).await;
    assert!(
        notice["reason"]
            .as_str()
            .expect("reason")
            .contains("JSON object"),
        "{notice}"
    );

    // A delivery that fails every try ends as a dead-letter notice too, without its payload.
    let rx = Receiver::start().await;
    rx.set_default(Reply::Status(503));
    let (id, _) = app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    let event = app
        .publish("acct_a", "t", json!({"to": "+15550009999"}))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let notice = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery dead letter"
        );
        let _ = app.dispatcher.run_once().await;
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), dead.next()).await {
            break serde_json::from_slice::<Value>(&msg.payload).expect("json");
        }
    };
    assert_eq!(notice["kind"], "delivery");
    assert_eq!(notice["eventId"], event.as_str());
    assert_eq!(notice["webhookId"], id.as_str());
    assert!(
        !notice.to_string().contains("+15550009999"),
        "no payload in dead-letter notices"
    );
    app.stop().await;
    drop(nats);
}

/// The settings `Nats::connect` gets for a test's own prefix and stream.
fn stream_settings(nats: &NatsTest, max_age: Duration, max_bytes: u64) -> NatsSettings {
    NatsSettings {
        url: nats_url(),
        creds_file: None,
        subject_prefix: nats.prefix.clone(),
        stream: nats.stream.clone(),
        ack_wait: Duration::from_secs(30),
        tls_ca_file: None,
        tls_client: None,
        max_age,
        max_bytes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_keeps_events_for_a_bounded_age_and_size() {
    let nats = NatsTest::new().await;
    let js = async_nats::jetstream::new(nats.client.clone());
    // Created with the configured limits…
    let day = Duration::from_secs(86_400);
    Nats::connect(&stream_settings(&nats, 7 * day, 1 << 30))
        .await
        .expect("connect");
    let mut stream = js.get_stream(&nats.stream).await.expect("stream");
    let config = stream.info().await.expect("info").config.clone();
    assert_eq!(config.max_age, 7 * day);
    assert_eq!(config.max_bytes, 1 << 30);
    assert_eq!(
        config.discard,
        async_nats::jetstream::stream::DiscardPolicy::Old
    );
    // …and an existing stream of that name brought to new ones at start-up.
    Nats::connect(&stream_settings(&nats, day, 256 << 20))
        .await
        .expect("connect again");
    let config = stream.info().await.expect("info").config.clone();
    assert_eq!(config.max_age, day);
    assert_eq!(config.max_bytes, 256 << 20);
    assert_eq!(
        config.subjects,
        vec![
            format!("{}.dispatch", nats.prefix),
            format!("{}.dispatch.>", nats.prefix)
        ],
        "nothing else changed"
    );
    drop(nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_overlaps_is_named_with_the_setting_that_avoids_it() {
    let nats = NatsTest::new().await;
    // Someone else's stream already takes `<prefix>.>`.
    let other = NatsTest::new().await;
    let js = async_nats::jetstream::new(nats.client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: other.stream.clone(),
        subjects: vec![format!("{}.>", nats.prefix)],
        ..Default::default()
    })
    .await
    .expect("the other stream");
    let err = Nats::connect(&stream_settings(&nats, Duration::from_secs(3600), 1 << 20))
        .await
        .err()
        .expect("overlap refused");
    let text = format!("{err:#}");
    assert!(text.contains(&other.stream), "{text}");
    assert!(text.contains("HOOKWARDEN_NATS_SUBJECT_PREFIX"), "{text}");
    assert!(text.contains("HOOKWARDEN_NATS_STREAM"), "{text}");
    drop(other);
    drop(nats);
}

#[test]
fn subject_patterns_overlap_as_nats_matches_them() {
    use hookwarden_server::outbound::nats::subjects_overlap as o;
    assert!(o("webhook.dispatch", "webhook.dispatch"));
    assert!(o("webhook.dispatch.>", "webhook.>"));
    assert!(o("webhook.dispatch", "webhook.*"));
    assert!(o("webhook.dispatch.>", "*.dispatch.x"));
    assert!(!o("webhook.dispatch", "webhook.dispatch.>"));
    assert!(!o("webhook.dispatch", "other.dispatch"));
    assert!(!o("webhook.dispatch.>", "webhook.dispatch"));
    assert!(!o("webhook", "webhook.*"));
}
