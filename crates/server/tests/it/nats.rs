//! NATS JetStream intake and dead letters against the real server, each test
//! on its own stream and subject prefix (deleted afterwards).

use crate::helpers::*;
use futures_util::StreamExt;
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
