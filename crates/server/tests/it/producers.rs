//! Producers scoped per service: grants enforced over HTTP and NATS; what is
//! refused over NATS is dead-lettered with the reason, never dropped.

use crate::helpers::*;
use axum::http::StatusCode;
use futures_util::StreamExt;
use hookwarden_server::producers::ProducerGrant;
use serde_json::{json, Value};
use std::time::Duration;

fn grants() -> Vec<ProducerGrant> {
    vec![
        ProducerGrant {
            name: "billing".into(),
            event_types: vec!["invoice.*".into()],
            accounts: vec![],
        },
        ProducerGrant {
            name: "crm".into(),
            event_types: vec!["user.created".into()],
            accounts: vec!["acct_1".into()],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_producers_publish_only_what_they_are_granted() {
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            customize: Some(Box::new(|raw| raw.producers = Some(grants()))),
            ..Default::default()
        },
    )
    .await;
    let token = |subject: &str| {
        let mut c = app.claims(None, "events:publish");
        c.sub = subject.into();
        app.sign(&c)
    };
    let publish =
        |account: &str, ty: &str| json!({"accountId": account, "eventType": ty, "payload": {}});
    for (who, account, ty, expected) in [
        ("billing", "acct_9", "invoice.paid", StatusCode::ACCEPTED),
        // `invoice.*` as webhook subscriptions read it: any depth, not `invoicex.`.
        (
            "billing",
            "acct_9",
            "invoice.refund.created",
            StatusCode::ACCEPTED,
        ),
        ("billing", "acct_9", "invoicex.paid", StatusCode::FORBIDDEN),
        ("billing", "acct_9", "invoice", StatusCode::FORBIDDEN),
        ("billing", "acct_9", "user.created", StatusCode::FORBIDDEN),
        ("crm", "acct_1", "user.created", StatusCode::ACCEPTED),
        ("crm", "acct_2", "user.created", StatusCode::FORBIDDEN),
        ("stranger", "acct_1", "invoice.paid", StatusCode::FORBIDDEN),
    ] {
        let (status, body, _) = app
            .post("/v1/events", &token(who), publish(account, ty))
            .await;
        assert_eq!(status, expected, "{who} {account} {ty}: {body}");
        if status == StatusCode::FORBIDDEN {
            assert_eq!(body["error"]["code"], "FORBIDDEN");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_producers_are_named_by_subject_and_checked_against_their_grant() {
    let nats = NatsTest::new().await;
    let (client, prefix) = (nats.client.clone(), nats.prefix.clone());
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            nats: nats.options(),
            customize: Some(Box::new(|raw| raw.producers = Some(grants()))),
            ..Default::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    app.create_webhook("acct_1", &rx.url("/h"), &["*"]).await;
    let mut dead = client
        .subscribe(format!("{prefix}.dispatch.deadletter"))
        .await
        .expect("subscribe");
    let js = async_nats::jetstream::new(client.clone());
    let send = |subject: String, ty: &str, id: &str| {
        let msg = json!({"accountId": "acct_1", "eventType": ty, "payload": {}, "id": id});
        let js = js.clone();
        async move {
            js.publish(subject, msg.to_string().into())
                .await
                .expect("publish")
                .await
                .expect("stored")
        }
    };
    send(
        format!("{prefix}.dispatch.billing"),
        "invoice.paid",
        "evt_g_ok",
    )
    .await;
    send(
        format!("{prefix}.dispatch.billing"),
        "user.created",
        "evt_g_denied",
    )
    .await;
    send(
        format!("{prefix}.dispatch"),
        "invoice.paid",
        "evt_g_unscoped",
    )
    .await;
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let msg = tokio::time::timeout(Duration::from_secs(15), dead.next())
            .await
            .expect("dead letter")
            .expect("message");
        let notice: Value = serde_json::from_slice(&msg.payload).expect("json");
        reasons.push(format!("{} {}", notice["subject"], notice["reason"]));
    }
    reasons.sort();
    assert!(
        reasons[0].ends_with("dispatch\" \"producer \\\"nats\\\" has no grant\""),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("dispatch.billing") && reasons[1].contains("may not publish"),
        "{reasons:?}"
    );
    app.deliver_until(Duration::from_secs(15), || rx.count() == 1)
        .await;
    assert_eq!(rx.received()[0].headers["webhook-id"], "evt_g_ok");
    app.stop().await;
}
