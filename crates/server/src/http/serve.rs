//! Serving a router on a listener, plain HTTP or TLS (with optional client
//! certificates), through one accept loop that attaches the peer address and
//! client identity to every request and bounds what an idle or slow client
//! may hold: connections at once (in all, and from one client), time to say
//! which protocol it speaks and to send a request's head, time without a
//! request, and (for TLS) time to finish the handshake. A request's body has
//! its own deadline (`http::body_deadline`).

use crate::shared::client_identity::ClientIdentity;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to say which protocol it speaks (its first
/// bytes): a client means to send a request when it connects.
const PROTOCOL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's head (HTTP/1), also the
/// longest an idle keep-alive connection is kept waiting for its next
/// request (hyper cannot set the two apart): without it (hyper enforces
/// nothing without a timer) a client that sends half a request line holds
/// its connection forever. hyper's own default, once it has a timer; a
/// client that keeps idle connections longer may find one closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may go without a request in progress before it is
/// closed (gracefully): HTTP/2 has no head deadline between requests, and a
/// connection that only answers pings would otherwise be kept for ever.
const IDLE: Duration = Duration::from_secs(30);
/// How long a connection told to close (idle, or at shutdown) may take to
/// finish what it is sending before it is dropped: a client that never
/// reads its answer, or never opens HTTP/2's window for it, would otherwise
/// keep it open for ever (a graceful close waits for the answer).
const GRACE: Duration = Duration::from_secs(10);
/// Connections served at once; the next waits in the kernel's backlog
/// until one closes, so a flood of connections cannot take every file
/// descriptor the process has (its logs, its database, its outbound
/// deliveries need them too).
const MAX_CONNECTIONS: usize = 4096;
/// Connections one client (an IPv4 address, an IPv6 /64) may hold at once;
/// past it, the next is closed at once. Trusted proxies are exempt: behind
/// one, every client arrives from its address.
const PER_CLIENT: usize = 256;
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

/// Serves `router` on `listener` until `shutdown`; `trusted_proxies` are
/// exempt from the per-client connection cap (give none for a listener
/// that no proxy fronts).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    trusted_proxies: Vec<IpNet>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let clients = Arc::new(Clients::new(trusted_proxies));
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
        let Some(held) = clients.admit(peer.ip()) else {
            tracing::debug!(peer = %peer, "connection closed: the client holds too many");
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // Both held until the connection ends.
            let _slot = slot;
            let _held = held;
            let Some(acceptor) = acceptor else {
                // Which protocol, read before hyper's own reading (which
                // waits for it without a deadline). A connection that has
                // said nothing yet is let go at shutdown (a client's pool
                // may hold one open, unused): else shutdown waits its 10 s.
                let h2 = tokio::select! {
                    h2 = speaks_h2(&tcp) => h2,
                    _ = shutdown.cancelled() => None,
                };
                let Some(h2) = h2 else {
                    return;
                };
                run(TokioIo::new(tcp), router, peer, None, h2, shutdown).await;
                return;
            };
            let handshake = tokio::select! {
                done = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => done,
                _ = shutdown.cancelled() => return,
            };
            let stream = match handshake {
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
            run(TokioIo::new(stream), router, peer, identity, h2, shutdown).await;
        });
    }
    // Every connection gives its slot back when it ends: holding them all
    // again means all have ended.
    let _ = tokio::time::timeout(DRAIN, slots.acquire_many(MAX_CONNECTIONS as u32)).await;
    Ok(())
}

/// One connection served until it ends, closed gracefully at shutdown or
/// once it has gone `IDLE` without a request in progress.
async fn run<I>(
    io: TokioIo<I>,
    router: Router,
    peer: SocketAddr,
    identity: Option<ClientIdentity>,
    h2: bool,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let activity = Arc::new(Activity::new());
    let conn = connection(io, router, peer, identity, h2, activity.clone());
    let mut conn = std::pin::pin!(conn);
    let mut check = tokio::time::interval(IDLE / 3);
    // Set once the connection is told to close: then it has `GRACE`.
    let mut dropped_at: Option<tokio::time::Instant> = None;
    loop {
        let grace = async {
            match dropped_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // The connection first: a request already in its socket when
            // shutdown came is read before the close is asked for.
            biased;
            _ = conn.as_mut() => break,
            _ = grace => break,
            _ = shutdown.cancelled(), if dropped_at.is_none() => {
                dropped_at = Some(tokio::time::Instant::now() + GRACE);
                conn.as_mut().graceful_shutdown();
            }
            _ = check.tick(), if dropped_at.is_none() => {
                if activity.idle_longer_than(IDLE) {
                    dropped_at = Some(tokio::time::Instant::now() + GRACE);
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The connection, HTTP/1 or HTTP/2 as already known, each request carrying
/// the peer's address and the client certificate's identity, and counted
/// in `activity` while in progress.
fn connection<I>(
    io: TokioIo<I>,
    router: Router,
    peer: SocketAddr,
    identity: Option<ClientIdentity>,
    h2: bool,
    activity: Arc<Activity>,
) -> impl GracefulConnection
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let svc = tower::service_fn(
        move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if let Some(id) = &identity {
                req.extensions_mut().insert(id.clone());
            }
            let busy = Busy::begin(activity.clone());
            let answer = tower::ServiceExt::oneshot(router.clone(), req);
            async move {
                let answer = answer.await;
                drop(busy);
                answer
            }
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
        // A peer that stopped answering is let go (one that answers but
        // asks nothing is closed at `IDLE`, before the first ping).
        .keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(10));
    // The protocol is known already: hyper need not read for it (its
    // reading has no deadline). `serve_connection`, not the one with
    // upgrades, which ignores this and reads anyway (no route upgrades).
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    builder
        .serve_connection(io, TowerToHyperService::new(svc))
        .into_owned()
}

/// Requests in progress on one connection, and when the last one ended.
struct Activity {
    since: Instant,
    in_progress: AtomicUsize,
    /// Milliseconds from `since` to the end of the last request.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            in_progress: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn idle_longer_than(&self, d: Duration) -> bool {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.in_progress.load(Ordering::Relaxed) == 0
            && self.since.elapsed().saturating_sub(last) > d
    }
}

/// One request in progress (`Activity`), until dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.in_progress.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_ms
            .store(a.since.elapsed().as_millis() as u64, Ordering::Relaxed);
        a.in_progress.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connections held per client (`PER_CLIENT`).
struct Clients {
    held: Mutex<HashMap<IpAddr, usize>>,
    exempt: Vec<IpNet>,
}

impl Clients {
    fn new(exempt: Vec<IpNet>) -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
            exempt,
        }
    }

    /// A connection from `ip`, if its client holds fewer than `PER_CLIENT`.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Held> {
        // A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`.
        let ip = hookwarden_core::client_addr::canonical(ip);
        if self.exempt.iter().any(|net| net.contains(&ip)) {
            return Some(Held(None));
        }
        let client = client_of(ip);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(client).or_insert(0);
        if *n >= PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(Held(Some((self.clone(), client))))
    }
}

/// A connection counted against its client until dropped.
struct Held(Option<(Arc<Clients>, IpAddr)>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((clients, client)) = &self.0 {
            let mut held = clients.held.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = held.get_mut(client) {
                *n -= 1;
                if *n == 0 {
                    held.remove(client);
                }
            }
        }
    }
}

/// The client a connection counts against: an IPv4 address (or an IPv6 one
/// mapping it), or an IPv6 /64, which one subscriber usually holds whole.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    }
}

/// Whether a client without TLS opens with HTTP/2's preface: `None` if it
/// neither does nor sends anything else within `PROTOCOL_TIMEOUT` (a
/// connection that says nothing is closed, as one that sends half a head).
async fn speaks_h2(tcp: &tokio::net::TcpStream) -> Option<bool> {
    let sniff = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        let mut wait = Duration::from_millis(5);
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
            // the same bytes and spin, and a client that stops there must
            // not cost a wake-up every few milliseconds.
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(500));
        }
    };
    tokio::time::timeout(PROTOCOL_TIMEOUT, sniff)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share_of_connections() {
        let proxy: IpNet = "10.0.0.1/32".parse().expect("net");
        let clients = Arc::new(Clients::new(vec![proxy]));
        let one: IpAddr = "198.51.100.1".parse().expect("ip");
        let mut held: Vec<Held> = (0..PER_CLIENT)
            .map(|_| clients.admit(one).expect("within the share"))
            .collect();
        assert!(clients.admit(one).is_none(), "one over its share");
        // Another client, and a trusted proxy however many it holds.
        assert!(clients.admit("198.51.100.2".parse().expect("ip")).is_some());
        let behind: Vec<_> = (0..PER_CLIENT + 10)
            .map(|_| clients.admit("10.0.0.1".parse().expect("ip")))
            .collect();
        assert!(behind.iter().all(Option::is_some));
        // One /64 is one client; a connection let go makes room.
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        assert_eq!(client_of(a), client_of(b));
        held.pop();
        assert!(clients.admit(one).is_some());
    }

    #[test]
    fn a_connection_is_idle_only_with_no_request_in_progress() {
        let a = Arc::new(Activity::new());
        let busy = Busy::begin(a.clone());
        assert!(!a.idle_longer_than(Duration::ZERO), "a request in progress");
        drop(busy);
        std::thread::sleep(Duration::from_millis(5));
        assert!(a.idle_longer_than(Duration::from_millis(1)));
        assert!(!a.idle_longer_than(Duration::from_secs(60)));
    }
}
