//! The outbound HTTP client for deliveries, SSRF-safe by construction:
//! every try re-checks the URL (IP literals never reach a resolver), names are
//! resolved once by our resolver, which refuses the name if any address is
//! blocked and hands the checked addresses to the connector (no second
//! resolution, so DNS rebinding cannot swap the address). A name that does
//! not resolve is refused in the same words as a blocked one, so delivery
//! errors cannot map internal DNS (operator forwarding targets, internal by
//! design, are told the DNS failure plainly). Redirects are off, proxies from
//! the environment are ignored, TLS uses the system roots plus the roots of
//! `HOOKWARDEN_DELIVERY_CA_FILE`. A failed try says what happened: refused,
//! reset, closed, TLS, or which of connecting and answering timed out.

use anyhow::Context;
use async_trait::async_trait;
use hookwarden_core::destination::{check_name, AddressPolicy, DestinationError, NOT_ALLOWED};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// Bytes of the response body read at most (enough for 512 characters).
const PREVIEW_BYTES: usize = 2048;
/// Characters of the response body kept.
pub const PREVIEW_CHARS: usize = 512;

/// Name resolution, replaceable in tests.
#[async_trait]
pub trait Lookup: Send + Sync + 'static {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The operating system's resolver.
pub struct SystemLookup;

#[async_trait]
impl Lookup for SystemLookup {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0))
            .await?
            .map(|a| a.ip())
            .collect())
    }
}

/// A destination turned away before any connection.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// By the address policy: the URL, the name or an address.
    #[error("destination refused: {0}")]
    Policy(DestinationError),
    /// The name did not resolve (or to nothing). Worded as a blocked address
    /// is: telling them apart would tell a tenant which internal names exist.
    #[error("destination refused: {NOT_ALLOWED}")]
    Unresolved,
}

/// A forwarding target's name that did not resolve. Operators configure
/// these internal services themselves, so the reason is theirs to read.
#[derive(Debug, thiserror::Error)]
#[error("DNS name not found: {host} ({reason})")]
pub struct NameNotFound {
    host: String,
    reason: String,
}

fn refused(
    host: &str,
    reason: &dyn std::fmt::Display,
    r: Refused,
) -> Box<dyn std::error::Error + Send + Sync> {
    // The precise reason is for operators only (names and rules, no secret).
    tracing::debug!(destination.host = %host, reason = %reason, "destination refused at resolution");
    Box::new(r)
}

struct PolicyResolver {
    policy: AddressPolicy,
    lookup: Arc<dyn Lookup>,
    /// Tell a name that does not resolve apart from a blocked one (operator
    /// targets only: for tenants that would map the internal DNS).
    explain_unresolved: bool,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let lookup = self.lookup.clone();
        let host = name.as_str().to_owned();
        let explain = self.explain_unresolved;
        let unresolved =
            move |host: &str, reason: String| -> Box<dyn std::error::Error + Send + Sync> {
                if explain {
                    Box::new(NameNotFound {
                        host: host.to_owned(),
                        reason,
                    })
                } else {
                    refused(host, &reason, Refused::Unresolved)
                }
            };
        Box::pin(async move {
            check_name(&host).map_err(|e| refused(&host, &e, Refused::Policy(e.clone())))?;
            let addrs = match lookup.lookup(&host).await {
                Ok(a) if !a.is_empty() => a,
                Ok(_) => return Err(unresolved(&host, "no address".into())),
                Err(e) => return Err(unresolved(&host, e.to_string())),
            };
            policy
                .check_resolved(&addrs)
                .map_err(|e| refused(&host, &e, Refused::Policy(e.clone())))?;
            // Port 0 is replaced by the URL's port by the connector.
            let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// What one try observed.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub http_status: Option<u16>,
    pub retry_after: Option<Duration>,
    pub preview: Option<String>,
    /// Why no HTTP status was obtained (or the destination was refused).
    pub error: Option<String>,
    pub duration: Duration,
}

pub struct DeliveryClient {
    http: reqwest::Client,
    policy: AddressPolicy,
    timeout: Duration,
}

impl DeliveryClient {
    /// The client of tenant destinations. `ca_file`: PEM certificates
    /// trusted as roots in addition to the system's (receivers behind a
    /// private CA).
    pub fn new(
        policy: AddressPolicy,
        timeout: Duration,
        lookup: Arc<dyn Lookup>,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        Self::build(policy, timeout, lookup, ca_file, false)
    }

    /// The client of operator forwarding targets: as `new`, and a name that
    /// does not resolve is said to be one.
    pub fn for_operator_targets(
        policy: AddressPolicy,
        timeout: Duration,
        lookup: Arc<dyn Lookup>,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        Self::build(policy, timeout, lookup, ca_file, true)
    }

    fn build(
        policy: AddressPolicy,
        timeout: Duration,
        lookup: Arc<dyn Lookup>,
        ca_file: Option<&Path>,
        explain_unresolved: bool,
    ) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder();
        for root in extra_roots(ca_file)? {
            builder = builder.add_root_certificate(root);
        }
        let http = builder
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
                lookup,
                explain_unresolved,
            }))
            // Shorter than the try, so that a try cut at its deadline was
            // cut waiting for the answer: the two timeouts read apart.
            .connect_timeout(connect_timeout(timeout))
            .timeout(timeout + Duration::from_secs(1))
            .user_agent(concat!("hookwarden/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build()?;
        Ok(Self {
            http,
            policy,
            timeout,
        })
    }

    /// POSTs `body` to `url` with `headers`, within the try's timeout.
    pub async fn send(&self, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Outcome {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut out = Outcome::default();
        let url = match self.policy.check_url(url) {
            Ok(u) => u,
            Err(e) => {
                out.error = Some(Refused::Policy(e).to_string());
                return out;
            }
        };
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        match timeout_at(deadline, req.send()).await {
            Err(_) => {
                out.error = Some(format!(
                    "response timed out: no answer within {}ms",
                    self.timeout.as_millis()
                ))
            }
            Ok(Err(e)) => out.error = Some(describe(&e, self.timeout)),
            Ok(Ok(resp)) => {
                out.http_status = Some(resp.status().as_u16());
                out.retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(hookwarden_core::backoff::parse_retry_after);
                out.preview = read_preview(resp, deadline).await;
            }
        }
        out.duration = started.elapsed();
        out
    }
}

/// How long connecting (resolving, TCP and TLS) may take within a try.
fn connect_timeout(timeout: Duration) -> Duration {
    timeout - timeout / 10
}

/// The certificates of `HOOKWARDEN_DELIVERY_CA_FILE`; a file that holds none
/// stops start-up rather than leaving HTTPS receivers failing later.
pub fn extra_roots(ca_file: Option<&Path>) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let Some(path) = ca_file else {
        return Ok(Vec::new());
    };
    let context = || {
        format!(
            "HOOKWARDEN_DELIVERY_CA_FILE: reading certificates from {}",
            path.display()
        )
    };
    let pem = std::fs::read(path).with_context(context)?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).with_context(context)?;
    if roots.is_empty() {
        anyhow::bail!(
            "HOOKWARDEN_DELIVERY_CA_FILE: {} holds no PEM certificate",
            path.display()
        );
    }
    Ok(roots)
}

/// Reads at most `PREVIEW_BYTES` before the deadline and keeps the first
/// `PREVIEW_CHARS` characters as text: never interpreted, never all of it.
async fn read_preview(mut resp: reqwest::Response, deadline: Instant) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < PREVIEW_BYTES {
        match timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                buf.extend_from_slice(&chunk[..chunk.len().min(PREVIEW_BYTES - buf.len())])
            }
            _ => break,
        }
    }
    // Dropping the response here closes a body we did not finish reading.
    (!buf.is_empty()).then(|| {
        String::from_utf8_lossy(&buf)
            .chars()
            .take(PREVIEW_CHARS)
            .collect()
    })
}

/// Every error behind a failure, outermost first. rustls' and hyper's
/// errors reach us wrapped in `io::Error`, whose `source()` skips the
/// wrapped error itself: look through every layer.
fn causes<'a>(e: &'a reqwest::Error) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut all = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let mut layer: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(l) = layer {
            all.push(l);
            layer = l
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|i| i as &(dyn std::error::Error + 'static));
        }
        source = err.source();
    }
    all
}

/// rustls' words, except the certificate errors it prints as bare variant
/// names, which read as a sentence here (they are what a tenant sees).
fn tls_text(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let plain = match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => "unknown issuer",
        rustls::Error::InvalidCertificate(C::NotValidForName) => "certificate not valid for name",
        rustls::Error::InvalidCertificate(C::Expired) => "certificate expired",
        rustls::Error::InvalidCertificate(C::NotValidYet) => "certificate not valid yet",
        rustls::Error::InvalidCertificate(C::Revoked) => "certificate revoked",
        rustls::Error::InvalidCertificate(C::BadSignature) => "bad certificate signature",
        _ => return e.to_string(),
    };
    format!("invalid peer certificate: {plain}")
}

/// A failure description without the URL (which may carry customer
/// tokens): what happened, in the words an operator searches for.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    let causes = causes(e);
    let find = |f: &dyn Fn(&(dyn std::error::Error + 'static)) -> Option<String>| {
        causes.iter().find_map(|c| f(*c))
    };
    // Refusals first, in their own (uniform) words.
    if let Some(text) = find(&|c| {
        c.downcast_ref::<Refused>()
            .map(ToString::to_string)
            .or_else(|| c.downcast_ref::<NameNotFound>().map(ToString::to_string))
    }) {
        return text;
    }
    if let Some(tls) = find(&|c| c.downcast_ref::<rustls::Error>().map(tls_text)) {
        return format!("TLS handshake failed: {tls}");
    }
    if e.is_timeout() {
        return if e.is_connect() {
            format!(
                "connect timed out: no connection within {}ms",
                connect_timeout(timeout).as_millis()
            )
        } else {
            format!(
                "response timed out: no answer within {}ms",
                timeout.as_millis()
            )
        };
    }
    if let Some(text) = find(&|c| c.downcast_ref::<std::io::Error>().and_then(io_text)) {
        return text;
    }
    if let Some(text) = find(&|c| c.downcast_ref::<hyper::Error>().and_then(hyper_text)) {
        return text;
    }
    let chain = || {
        causes
            .iter()
            .skip(1)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ")
    };
    if e.is_connect() {
        format!("connection failed: {}", chain())
    } else {
        format!("request failed: {}", chain())
    }
}

/// The socket failures an operator tells apart.
fn io_text(e: &std::io::Error) -> Option<String> {
    use std::io::ErrorKind as K;
    let text = match e.kind() {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
            "connection reset by the receiver"
        }
        K::HostUnreachable => "host unreachable",
        K::NetworkUnreachable => "network unreachable",
        K::TimedOut => "connection timed out",
        K::UnexpectedEof => "connection closed by the receiver before a complete response",
        _ => return None,
    };
    Some(text.to_owned())
}

/// The HTTP-level failures of an answer that did arrive, in part.
fn hyper_text(e: &hyper::Error) -> Option<String> {
    if e.is_incomplete_message() {
        Some("connection closed by the receiver before a complete response".into())
    } else if e.is_parse() || e.is_parse_status() {
        Some(format!("malformed HTTP response: {e}"))
    } else {
        None
    }
}
