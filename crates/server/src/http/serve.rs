//! Serving a router on a listener, plain HTTP or TLS (with optional client
//! certificates), through one accept loop that attaches the peer address and
//! client identity to every request and bounds what an idle or slow client
//! may hold: connections at once, time to say which protocol it speaks and
//! to send a request's head, and (for TLS) time to finish the handshake. A
//! request's body has its own deadline (`http::body_deadline`).

use crate::shared::client_identity::ClientIdentity;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's head (HTTP/1), also the
/// longest an idle keep-alive connection is kept waiting for its next
/// request: without it (hyper enforces nothing without a timer) a client
/// that sends half a request line holds its connection forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; the next waits in the kernel's backlog
/// until one closes, so a flood of idle connections cannot take every
/// file descriptor the process has (its logs, its database, its outbound
/// deliveries need them too).
const MAX_CONNECTIONS: usize = 4096;
/// After an accept that failed (no file descriptor left, say), the loop
/// waits this long before the next: retrying at once spins a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Requests one HTTP/2 connection may have in progress at once (hyper's
/// default is 200, each able to hold a body being read).
const H2_STREAMS: u32 = 32;
/// What a client speaking HTTP/2 without TLS sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long shutdown waits for open connections.
const DRAIN: Duration = Duration::from_secs(10);

pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot?,
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // One client's connection that failed on its way in: the
                // next may be accepted at once.
                Err(e) if is_one_connection(&e) => continue,
                Err(e) => {
                    accept_failed(&e);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // Held until the connection ends.
            let _slot = slot;
            let Some(acceptor) = acceptor else {
                // Which protocol, read before hyper's own reading (which
                // waits for it without a deadline).
                let Some(h2) = speaks_h2(&tcp).await else {
                    return;
                };
                let conn = connection(TokioIo::new(tcp), router, peer, None, h2);
                let _ = watcher.watch(conn).await;
                return;
            };
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                // Debug, not info: anyone can fail a handshake, as often as
                // they like.
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error.message = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| ClientIdentity::from_der(c));
            // Over TLS, HTTP/2 is what ALPN agreed (RFC 9113 §3.2).
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            let conn = connection(TokioIo::new(stream), router, peer, identity, h2);
            let _ = watcher.watch(conn).await;
        });
    }
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    Ok(())
}

/// One connection served with the router, HTTP/1 or HTTP/2, each request
/// carrying the peer's address and the client certificate's identity.
fn connection<I>(
    io: TokioIo<I>,
    router: Router,
    peer: SocketAddr,
    identity: Option<ClientIdentity>,
    h2: bool,
) -> impl hyper_util::server::graceful::GracefulConnection
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let svc = tower::ServiceExt::map_request(
        router,
        move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if let Some(id) = &identity {
                req.extensions_mut().insert(id.clone());
            }
            req
        },
    );
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_STREAMS)
        // A peer that stopped answering is let go.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    // The protocol is known already: hyper need not read for it (its
    // reading has no deadline).
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    builder
        .serve_connection_with_upgrades(io, TowerToHyperService::new(svc))
        .into_owned()
}

/// Whether a client without TLS opens with HTTP/2's preface: `None` if it
/// neither does nor sends anything else within `HEADER_READ_TIMEOUT` (a
/// connection that says nothing is closed, as one that sends half a head).
async fn speaks_h2(tcp: &tokio::net::TcpStream) -> Option<bool> {
    let sniff = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            let n = tcp.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if buf[..n] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            // Part of the preface so far: peeking again at once would find
            // the same bytes and spin.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(HEADER_READ_TIMEOUT, sniff)
        .await
        .ok()
        .flatten()
}

/// An accept error that concerns one connection only (its client gave up
/// on the way in), not the listener.
fn is_one_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// Says an accept failed, at most once in ten seconds (under a flood that
/// took every file descriptor, every accept fails).
fn accept_failed(e: &std::io::Error) {
    static LAST: AtomicI64 = AtomicI64::new(i64::MIN);
    let now = chrono::Utc::now().timestamp();
    let last = LAST.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(error.message = %e, "accepting a connection failed; retrying in 100 ms");
    }
}
