//! Clients that cost without paying: a request head sent half way, an idle
//! keep-alive connection, a body trickled in, a path as long as a head may
//! be, a provider spelt another way to get a fresh budget of forgeries, and
//! an uncounted read of the whole event-type catalog. Each is bounded.

use crate::helpers::*;
use axum::http::StatusCode;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `within` passes);
/// answers what it sent and how long that took.
async fn until_closed(
    stream: &mut (impl AsyncReadExt + Unpin),
    within: Duration,
) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection was still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_half_sent_head_and_an_idle_connection_are_closed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let opened = Instant::now();
    // Half a request line, then nothing.
    let mut half = TcpStream::connect(app.addr).await.expect("connect");
    half.write_all(b"POST /api/v1/webhooks/acme HTTP/1.1\r\nHost: a\r\n")
        .await
        .expect("write");
    // A keep-alive connection that asked once and then says nothing.
    let mut idle = TcpStream::connect(app.addr).await.expect("connect");
    idle.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    // One that says nothing at all, and one that starts HTTP/2's preface
    // and stops (before the protocol is known, hyper reads with no deadline).
    let mut silent = TcpStream::connect(app.addr).await.expect("connect");
    let mut preface = TcpStream::connect(app.addr).await.expect("connect");
    preface
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    // The silent ones closed within the protocol's 10 s, the others within
    // the head's 30 s (a loaded machine gets 15 more).
    let (silent_got, silent_after) = until_closed(&mut silent, Duration::from_secs(25)).await;
    let (preface_got, _) = until_closed(&mut preface, Duration::from_secs(25)).await;
    assert_eq!((silent_got.as_str(), preface_got.as_str()), ("", ""));
    assert!(silent_after >= Duration::from_secs(9), "{silent_after:?}");
    let (half_got, _) = until_closed(&mut half, Duration::from_secs(35)).await;
    let half_after = opened.elapsed();
    let (idle_got, _) = until_closed(&mut idle, Duration::from_secs(20)).await;
    assert!(
        half_after >= Duration::from_secs(25),
        "closed too early: {half_after:?}"
    );
    assert!(!half_got.contains("200"), "{half_got}");
    assert!(idle_got.starts_with("HTTP/1.1 200"), "{idle_got}");
    // The server still serves.
    let (status, _, _) = app.call(Method::GET, "/api/v1/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn one_client_holds_at_most_its_share_of_connections() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // 256 connections that say nothing (yet: each would be closed after
    // 10 s), then one more, closed at once.
    let mut held = Vec::new();
    for _ in 0..256 {
        held.push(TcpStream::connect(app.addr).await.expect("connect"));
    }
    let mut over = TcpStream::connect(app.addr).await.expect("connect");
    let (got, after) = until_closed(&mut over, Duration::from_secs(5)).await;
    assert_eq!(got, "");
    assert!(after < Duration::from_secs(5));
    // Connections let go make room for the next (a few: the test's own
    // client may hold one of the 256).
    held.truncate(250);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut next = TcpStream::connect(app.addr).await.expect("connect");
    next.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let (answer, _) = until_closed(&mut next, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Reads HTTP/2 frames as a client would (answering the server's pings: a
/// graceful close waits for one) until the server closes the connection,
/// within `within`; answers when its GOAWAY came, and when the close did.
async fn h2_until_closed(h2: &mut TcpStream, within: Duration) -> (Option<Duration>, Duration) {
    let started = Instant::now();
    let (mut buf, mut goaway) = (Vec::new(), None);
    let mut chunk = [0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        let n = tokio::time::timeout(left, h2.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("still open after {within:?}"))
            .unwrap_or(0);
        if n == 0 {
            return (goaway, started.elapsed());
        }
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            if kind == 7 {
                goaway.get_or_insert(started.elapsed());
            }
            if kind == 6 && flags & 1 == 0 {
                let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                ack.extend_from_slice(&buf[9..17]);
                let _ = h2.write_all(&ack).await;
            }
            buf.drain(..9 + len);
        }
    }
}

/// HTTP/2's preface, then a SETTINGS frame (`settings`: its 6-byte entries).
fn h2_open(settings: &[u8]) -> Vec<u8> {
    let mut open = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    open.extend_from_slice(&[0, 0, settings.len() as u8, 4, 0, 0, 0, 0, 0]);
    open.extend_from_slice(settings);
    open
}

#[tokio::test]
async fn an_http2_connection_that_asks_nothing_is_closed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut h2 = TcpStream::connect(app.addr).await.expect("connect");
    // A connection, no request.
    h2.write_all(&h2_open(&[])).await.expect("write");
    // Told to go (GOAWAY) once it had gone 30 s without a request (checked
    // every 10 s), before the first keep-alive ping (60 s) could matter.
    let (goaway, _) = h2_until_closed(&mut h2, Duration::from_secs(55)).await;
    let goaway = goaway.expect("a GOAWAY before the close");
    assert!(
        goaway >= Duration::from_secs(25),
        "told to go too early: {goaway:?}"
    );
}

#[tokio::test]
async fn an_answer_the_client_never_lets_in_does_not_hold_its_connection() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut h2 = TcpStream::connect(app.addr).await.expect("connect");
    // A window of 0 for every stream: the server may send an answer's
    // head, never its body. Then one request for the OpenAPI document.
    let mut open = h2_open(&[0, 4, 0, 0, 0, 0]);
    let mut headers = vec![0x82, 0x86, 0x44, 13];
    headers.extend_from_slice(b"/openapi.json");
    headers.extend_from_slice(&[0x41, 1, b'a']);
    open.extend_from_slice(&[0, 0, headers.len() as u8, 1, 0x05, 0, 0, 0, 1]);
    open.extend_from_slice(&headers);
    h2.write_all(&open).await.expect("write");
    // Idle (no request in progress) after its handler answered: told to go
    // after 30 s, dropped 10 s later although the answer never went out.
    let (goaway, closed) = h2_until_closed(&mut h2, Duration::from_secs(70)).await;
    let goaway = goaway.expect("a GOAWAY before the close");
    assert!(
        goaway >= Duration::from_secs(25),
        "told to go too early: {goaway:?}"
    );
    assert!(
        closed >= goaway + Duration::from_secs(8),
        "dropped before its grace: {closed:?}"
    );
}

#[tokio::test]
async fn a_body_trickled_in_is_refused_at_its_deadline() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let target = Receiver::start().await;
    app.integration(
        json!({"name": "acme", "scheme": "hmac-sha256", "secret": "acme-secret",
        "signatureHeader": "x-acme-signature", "targetUrl": target.url("/a")}),
    )
    .await;
    let slow = TcpStream::connect(app.addr).await.expect("connect");
    let (mut rd, mut wr) = slow.into_split();
    wr.write_all(
        b"POST /api/v1/webhooks/acme HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
          x-acme-signature: 00\r\nContent-Length: 100\r\n\r\n{\"n\":",
    )
    .await
    .expect("write");
    // A byte every few seconds keeps the body coming, never done; the last
    // well before the deadline (bytes the server never reads when it closes
    // could reset the connection before its answer is read), and the
    // connection kept open after it.
    let trickle = tokio::spawn(async move {
        for _ in 0..7 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            if wr.write_all(b" ").await.is_err() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(wr);
    });
    let (got, after) = until_closed(&mut rd, Duration::from_secs(45)).await;
    trickle.abort();
    assert!(
        after >= Duration::from_secs(25),
        "refused too early: {after:?}"
    );
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(
        got.contains("VALIDATION_ERROR") && got.contains("did not arrive within 30 s"),
        "{got}"
    );
    // Nothing was stored for it.
    let (_, events, _) = app
        .operator(Method::GET, "/api/v1/events?limit=10", None)
        .await;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(0),
        "{events}"
    );
}

#[tokio::test]
async fn a_provider_spelt_another_way_shares_its_budget_of_forgeries() {
    let app = TestApp::with(Backend::Sqlite, behind_proxy(Some(4))).await;
    let target = Receiver::start().await;
    app.integration(
        json!({"name": "acme", "scheme": "hmac-sha256", "secret": "acme-secret",
        "signatureHeader": "x-acme-signature", "targetUrl": target.url("/a")}),
    )
    .await;
    let app = &app;
    let forged = |provider: &'static str| async move {
        let headers = [
            ("x-acme-signature", "00".repeat(32)),
            ("x-forwarded-for", "198.51.100.7".to_owned()),
        ];
        app.inbound(provider, &headers, b"{\"n\":1}").await.0
    };
    // Four spellings of one provider: one budget of four refusals.
    for provider in ["acme", "%61cme", "ac%6De", "%61%63%6d%65"] {
        assert_eq!(
            forged(provider).await,
            StatusCode::UNAUTHORIZED,
            "{provider}"
        );
    }
    for provider in ["acme", "a%63me"] {
        assert_eq!(
            forged(provider).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{provider}: a fresh spelling is not a fresh budget"
        );
    }
}

#[tokio::test]
async fn the_event_type_catalog_is_read_within_the_api_rate_limit() {
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            rate_limit: 2,
            ..Default::default()
        },
    )
    .await;
    let tenant = app.tenant("acct_catalog");
    for _ in 0..2 {
        let (status, _, _) = app.get("/v1/event-types", &tenant).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, err, _) = app.get("/v1/event-types", &tenant).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{err}");
    assert_eq!(err["error"]["code"], "RATE_LIMITED");
}

#[tokio::test]
async fn a_long_path_and_a_blocked_client_do_not_fill_the_log() {
    crate::logs::capture();
    let app = TestApp::with(Backend::Sqlite, behind_proxy(Some(2))).await;
    let marker = format!("longpath{}", uuid::Uuid::new_v4().simple());
    let path = format!("/v1/webhooks/{marker}{}", "x".repeat(60_000));
    for _ in 0..20 {
        let resp = app
            .http
            .get(app.url(&path))
            .header("authorization", "Bearer not-a-token")
            .header("x-forwarded-for", "198.51.100.9")
            .send()
            .await
            .expect("send");
        assert!(
            resp.status() == 401 || resp.status() == 429,
            "{}",
            resp.status()
        );
    }
    let logs = crate::logs::captured();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(&marker)).collect();
    assert!(!lines.is_empty(), "the requests are logged");
    assert!(
        lines.iter().all(|l| l.len() < 2_000),
        "a line of {} bytes",
        lines.iter().map(|l| l.len()).max().unwrap_or(0)
    );
    // Refused early (429) from the third on: those are not logged at INFO.
    let info = lines
        .iter()
        .filter(|l| l.contains(" INFO ") && l.contains("request finished"))
        .count();
    assert!(info <= 3, "{info} INFO lines for a blocked client");
}

#[tokio::test]
async fn a_form_anyone_may_post_is_read_only_up_to_16_kib() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for path in ["/console/sign-in", "/portal/enter"] {
        let big = format!("key={}", "k".repeat(64 * 1024));
        let resp = app
            .http
            .post(app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
    }
}

#[tokio::test]
async fn a_connection_that_said_nothing_does_not_hold_up_shutdown() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Opened and unused, as a client's pool may keep one.
    let _silent = TcpStream::connect(app.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for a silent connection",
        started.elapsed()
    );
}
