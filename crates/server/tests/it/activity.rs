//! The console's activity charts: inbound accepted, duplicate and refused
//! requests, outbound deliveries, failures and dead letters, and delivery
//! latency, counted in memory, flushed to the database and read back per
//! minute, summed over two replicas.

use crate::helpers::*;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use hookwarden_server::shared::activity::{self, Chart, Point, Window};
use hookwarden_store::on_both;
use serde_json::json;
use sha2::Sha256;
use std::time::{Duration, Instant};

on_both!(activity_is_counted_flushed_and_charted_per_minute);

const WAIT: Duration = Duration::from_secs(20);

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("key");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// The start of the minute `t` is in.
fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp().div_euclid(60) * 60, 0).expect("minute")
}

/// Moves the app's clock to a second past the next minute's start, so what
/// a test does in the next few seconds falls in one minute; answers it.
fn start_of_a_minute(app: &TestApp) -> DateTime<Utc> {
    let into = app.now().timestamp().rem_euclid(60) as u64;
    app.clock.advance(Duration::from_secs(61 - into));
    minute_of(app.now())
}

async fn chart(app: &TestApp, window: Window) -> Chart {
    activity::series(app.state.store.as_ref(), app.now(), window)
        .await
        .expect("chart")
}

/// Flushes this app's counts and reads the hour's chart until `done` holds
/// for the point of `minute` (tries are recorded after their slot is given
/// back, so a count may come a moment after the receiver saw the request).
async fn point_until(app: &TestApp, minute: DateTime<Utc>, done: impl Fn(&Point) -> bool) -> Point {
    let deadline = Instant::now() + WAIT;
    loop {
        app.state
            .activity
            .flush(app.state.store.as_ref())
            .await
            .expect("flush");
        let c = chart(app, Window::Hour).await;
        let p = c
            .points
            .iter()
            .find(|p| p.at == minute)
            .expect("the minute is in the hour")
            .clone();
        if done(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "not reached: {p:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn activity_is_counted_flushed_and_charted_per_minute(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let minute = start_of_a_minute(&app);
    let target = Receiver::start().await;
    app.integration(
        json!({"name": "acme", "scheme": "hmac-sha256", "secret": "s3",
        "signatureHeader": "x-acme-signature", "targetUrl": target.url("/acme")}),
    )
    .await;
    let body = br#"{"n":1}"#;
    let signed = [("x-acme-signature", sign(b"s3", body))];
    let forged = [("x-acme-signature", sign(b"wrong", body))];
    assert_eq!(
        app.inbound("acme", &signed, body).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.inbound("acme", &signed, body).await.0, StatusCode::OK);
    assert_eq!(
        app.inbound("acme", &forged, body).await.0,
        StatusCode::UNAUTHORIZED
    );

    // One event delivered at once; one to an endpoint that always fails:
    // two failed tries, then a dead letter (schedule 200ms,400ms).
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.set_default(Reply::Status(500));
    app.create_webhook("acct_a", &ok.url("/hook"), &["invoice.paid"])
        .await;
    app.create_webhook("acct_a", &failing.url("/hook"), &["invoice.failed"])
        .await;
    app.publish("acct_a", "invoice.paid", json!({"n": 1})).await;
    app.publish("acct_a", "invoice.failed", json!({"n": 2}))
        .await;
    app.deliver_until(WAIT, || ok.count() == 1 && failing.count() == 3)
        .await;

    let p = point_until(&app, minute, |p| p.delivered == 1 && p.dead == 1).await;
    assert_eq!(
        (p.accepted, p.duplicate, p.refused),
        (1, 1, 1),
        "inbound: {p:?}"
    );
    assert_eq!(
        (p.delivered, p.failed, p.dead),
        (1, 2, 1),
        "outbound: {p:?}"
    );
    // Published and delivered within the test's few seconds.
    let (p50, p99) = (
        p.latency_p50_ms.expect("p50"),
        p.latency_p99_ms.expect("p99"),
    );
    assert!(p50 <= p99 && p99 <= 10_000, "{p:?}");
    assert!(
        app.now() - minute < chrono::Duration::seconds(55),
        "still the same minute"
    );

    // Every other minute of the hour is there, with zeros.
    let hour = chart(&app, Window::Hour).await;
    assert_eq!(hour.points.len(), 60);
    assert_eq!(hour.points.last().expect("last").at, minute);
    for other in hour.points.iter().filter(|q| q.at != minute) {
        assert_eq!(
            other,
            &Point {
                at: other.at,
                ..Point::default()
            }
        );
    }
    // The day's chart sums the same counts into its ten-minute point.
    let day = chart(&app, Window::Day).await;
    assert_eq!(day.points.len(), 144);
    let ten = day.points.last().expect("current ten minutes");
    assert!(ten.at <= minute && minute - ten.at < chrono::Duration::minutes(10));
    assert_eq!(
        (
            ten.accepted,
            ten.duplicate,
            ten.refused,
            ten.delivered,
            ten.failed,
            ten.dead
        ),
        (1, 1, 1, 1, 2, 1)
    );

    // The background flusher adds what is counted later on its own (every
    // 5 s on the application's clock), and a second replica's counts add
    // to the same rows.
    let replica = TestApp::with(
        backend,
        Options {
            shared: Some((app.database_url.clone(), app.master_key.clone())),
            ..Default::default()
        },
    )
    .await;
    let behind = (app.now() - replica.now()).to_std().unwrap_or_default();
    replica.clock.advance(behind);
    assert_eq!(minute_of(replica.now()), minute);
    assert_eq!(
        replica.inbound("acme", &forged, body).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.inbound("acme", &forged, body).await.0,
        StatusCode::UNAUTHORIZED
    );
    for a in [&app, &replica] {
        a.clock.advance(activity::FLUSH_EVERY);
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let c = chart(&app, Window::Hour).await;
        let p = c.points.iter().find(|p| p.at == minute).expect("minute");
        if p.refused == 3 {
            assert_eq!((p.accepted, p.delivered), (1, 1), "nothing counted twice");
            break;
        }
        assert!(p.refused < 3, "{p:?}");
        assert!(Instant::now() < deadline, "the flushers did not add: {p:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replica.stop().await;
    app.stop().await;
}
