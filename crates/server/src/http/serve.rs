//! Serving a router on a listener, plain HTTP or TLS (with optional client
//! certificates), through one accept loop that attaches the peer address and
//! client identity to every request and bounds what an idle or slow client
//! may hold: connections at once, time to send a request's head, and (for
//! TLS) time to finish the handshake. A request's body has its own deadline
//! where it is read (`shared::limits::read_body`).

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
                let conn = connection(TokioIo::new(tcp), router, peer, None);
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
            let conn = connection(TokioIo::new(stream), router, peer, identity);
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
    builder.http2().timer(TokioTimer::new());
    builder
        .serve_connection_with_upgrades(io, TowerToHyperService::new(svc))
        .into_owned()
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
