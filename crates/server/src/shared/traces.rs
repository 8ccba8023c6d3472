//! OpenTelemetry traces: one span per step an event takes through
//! hookwarden (its publication, each delivery try, an inbound webhook's
//! receipt, each forwarding), posted in batches to an OTLP/HTTP endpoint as
//! JSON when `HOOKWARDEN_OTLP_ENDPOINT` is set.
//!
//! Without an endpoint no span is made, and a `traceparent` received is
//! passed on unchanged (stored, then sent with the requests that follow),
//! so a trace crosses hookwarden even where hookwarden itself is not
//! traced. A span never blocks or fails the work it describes: spans wait
//! in a bounded queue and are dropped, and counted, when it is full or the
//! endpoint fails. Attributes name ids, types, hosts and outcomes only:
//! never a payload, a URL's path or query, a header value or a secret.

use crate::shared::metrics::{failure_reason, SPANS_DROPPED, SPANS_EXPORTED};
use hookwarden_core::trace_context::{TraceParent, HEADER};
use hookwarden_store::model::{AttemptResult, AttemptStatus};
use rand::RngCore;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Spans waiting to be posted; past this, new ones are dropped.
const QUEUE: usize = 8192;
/// Most spans per request to the endpoint.
const BATCH: usize = 512;
/// How long a batch gathers once its first span arrived.
const GATHER: Duration = Duration::from_millis(200);
/// One request to the endpoint, at most.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// The last spans' posting at shutdown, at most.
const DRAIN: Duration = Duration::from_secs(5);

/// The span kinds hookwarden makes (OTLP's enum values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request received (`POST /v1/events`, an inbound webhook).
    Server = 2,
    /// A request sent (a delivery try, a forwarding).
    Client = 3,
    /// A message taken from NATS.
    Consumer = 5,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Text(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Attr {
    fn from(v: &str) -> Self {
        Attr::Text(v.to_owned())
    }
}
impl From<String> for Attr {
    fn from(v: String) -> Self {
        Attr::Text(v)
    }
}
impl From<i64> for Attr {
    fn from(v: i64) -> Self {
        Attr::Int(v)
    }
}
impl From<i32> for Attr {
    fn from(v: i32) -> Self {
        Attr::Int(v.into())
    }
}
impl From<u16> for Attr {
    fn from(v: u16) -> Self {
        Attr::Int(v.into())
    }
}
impl From<u64> for Attr {
    fn from(v: u64) -> Self {
        Attr::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Attr {
    fn from(v: bool) -> Self {
        Attr::Bool(v)
    }
}

/// A finished span, as queued for the exporter.
#[derive(Debug, Clone)]
pub struct Finished {
    pub context: TraceParent,
    pub parent_span: Option<[u8; 8]>,
    pub name: &'static str,
    pub kind: Kind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attrs: Vec<(&'static str, Attr)>,
    /// Set when the step failed: a fixed description, never a value.
    pub error: Option<&'static str>,
}

/// Where spans go; cheap to clone. `Traces::default()` makes none.
#[derive(Clone, Default)]
pub struct Traces {
    queue: Option<mpsc::Sender<Finished>>,
}

impl Traces {
    /// Spans to `endpoint` (a base URL, `/v1/traces` added unless it ends
    /// so), and the exporter to run beside the service.
    pub fn to(endpoint: &str) -> anyhow::Result<(Self, Exporter)> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let http = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        Ok((
            Self { queue: Some(tx) },
            Exporter {
                queue: rx,
                url: traces_url(endpoint),
                http,
            },
        ))
    }

    /// Whether spans are made at all.
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// A span of `name` under `parent` (a new trace when there is none). A
    /// parent that is not sampled is passed on, with no span of ours.
    pub fn start(&self, name: &'static str, kind: Kind, parent: Option<TraceParent>) -> Span {
        let own = match &self.queue {
            Some(queue) if parent.is_none_or(|p| p.sampled()) => {
                let mut rng = rand::thread_rng();
                let span_id = nonzero(|b: &mut [u8; 8]| rng.fill_bytes(b));
                let context = match parent {
                    Some(p) => p.child(span_id),
                    None => {
                        TraceParent::root(nonzero(|b: &mut [u8; 16]| rng.fill_bytes(b)), span_id)
                    }
                };
                Some(Own {
                    finished: Finished {
                        context,
                        parent_span: parent.map(|p| p.span_id),
                        name,
                        kind,
                        start_ns: now_ns(),
                        end_ns: 0,
                        attrs: Vec::new(),
                        error: None,
                    },
                    queue: queue.clone(),
                })
            }
            _ => None,
        };
        Span { parent, own }
    }

    /// A span under a `traceparent` as text: one a request or message
    /// carried (a malformed one is ignored: a new trace starts), or one
    /// stored with a row.
    pub fn start_under(&self, name: &'static str, kind: Kind, traceparent: Option<&str>) -> Span {
        self.start(name, kind, traceparent.and_then(TraceParent::parse))
    }
}

/// The `traceparent` of an HTTP request's headers, if readable.
pub fn header(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get(HEADER).and_then(|v| v.to_str().ok())
}

/// Random bytes, never all zero (a zero id is invalid).
fn nonzero<const N: usize>(mut fill: impl FnMut(&mut [u8; N])) -> [u8; N] {
    let mut bytes = [0u8; N];
    while bytes == [0u8; N] {
        fill(&mut bytes);
    }
    bytes
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One step being traced; queued for export when it ends (`end`, or
/// dropped).
pub struct Span {
    parent: Option<TraceParent>,
    own: Option<Own>,
}

struct Own {
    finished: Finished,
    queue: mpsc::Sender<Finished>,
}

impl Span {
    /// What this step hands on, stored with its row and sent as
    /// `traceparent`: this span, or (no span of ours) the parent unchanged.
    pub fn context(&self) -> Option<TraceParent> {
        match &self.own {
            Some(own) => Some(own.finished.context),
            None => self.parent,
        }
    }

    /// `context` as stored text.
    pub fn stored(&self) -> Option<String> {
        self.context().map(|c| c.to_string())
    }

    /// Sets an attribute (ids, types, hosts, outcomes: never a payload,
    /// a path, a header value or a secret).
    pub fn set(&mut self, key: &'static str, value: impl Into<Attr>) {
        if let Some(own) = &mut self.own {
            own.finished.attrs.push((key, value.into()));
        }
    }

    /// Marks the step failed, with a fixed description.
    pub fn fail(&mut self, why: &'static str) {
        if let Some(own) = &mut self.own {
            own.finished.error = Some(why);
        }
    }

    /// The header that carries `context` on a request sent.
    pub fn header(&self) -> Option<(&'static str, String)> {
        self.context().map(|c| (HEADER, c.to_string()))
    }

    /// Ends the span of a request sent (a delivery try, a forwarding) with
    /// what came of it: the receiver's host and port (never its path or
    /// query, which may hold a token), its status, the try's outcome and
    /// the failure's class.
    pub fn end_try(mut self, url: &str, result: &AttemptResult) {
        if self.own.is_none() {
            return;
        }
        self.set("http.request.method", "POST");
        if let Ok(url) = url::Url::parse(url) {
            if let Some(host) = url.host_str() {
                self.set("server.address", host);
            }
            if let Some(port) = url.port_or_known_default() {
                self.set("server.port", port);
            }
        }
        if let Some(status) = result.http_status {
            self.set("http.response.status_code", status);
        }
        self.set("hookwarden.outcome", result.status.as_str());
        if result.status != AttemptStatus::Succeeded {
            let class = failure_reason(result.http_status, result.error.as_deref());
            self.set("error.type", class);
            self.fail(class);
        }
        self.end()
    }

    /// Ends the step: its span is queued (as when it is dropped).
    pub fn end(self) {}
}

/// A span ends when it goes out of scope, whichever way its step ended
/// (an early return included), and is queued; dropped, and counted, if the
/// queue is full.
impl Drop for Span {
    fn drop(&mut self) {
        let Some(mut own) = self.own.take() else {
            return;
        };
        own.finished.end_ns = now_ns().max(own.finished.start_ns);
        if own.queue.try_send(own.finished).is_err() {
            metrics::counter!(SPANS_DROPPED, "reason" => "queue_full").increment(1);
        }
    }
}

/// `<endpoint>/v1/traces`, or the endpoint itself when its path names
/// that; a query (a collector's token, say) is kept.
fn traces_url(endpoint: &str) -> String {
    let Ok(mut url) = url::Url::parse(endpoint) else {
        return endpoint.to_owned();
    };
    let path = url.path().trim_end_matches('/').to_owned();
    if !path.ends_with("/v1/traces") {
        url.set_path(&format!("{path}/v1/traces"));
    }
    url.to_string()
}

/// Posts queued spans to the endpoint in batches.
pub struct Exporter {
    queue: mpsc::Receiver<Finished>,
    url: String,
    http: reqwest::Client,
}

impl Exporter {
    /// Runs until `stop`, then posts what is queued and returns.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let open = tokio::select! {
                _ = stop.cancelled() => false,
                n = self.queue.recv_many(&mut batch, BATCH) => n > 0,
            };
            if open && batch.len() < BATCH {
                // Let a burst gather into one request.
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(GATHER) => {}
                }
            }
            while batch.len() < BATCH {
                match self.queue.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.post(&batch).await;
                batch.clear();
            }
            if !open || stop.is_cancelled() {
                // Whatever is still queued goes before the exporter stops,
                // within `DRAIN`: a collector that does not answer must
                // not hold the shutdown.
                let drain = async {
                    while let Ok(span) = self.queue.try_recv() {
                        batch.push(span);
                        if batch.len() == BATCH {
                            self.post(&batch).await;
                            batch.clear();
                        }
                    }
                    if !batch.is_empty() {
                        self.post(&batch).await;
                    }
                };
                if tokio::time::timeout(DRAIN, drain).await.is_err() {
                    tracing::warn!(
                        "the OTLP endpoint did not take the last spans in time; they are dropped"
                    );
                }
                return;
            }
        }
    }

    async fn post(&self, spans: &[Finished]) {
        let body = request(spans);
        let outcome = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let n = spans.len() as u64;
        match outcome {
            Ok(r) if r.status().is_success() => {
                metrics::counter!(SPANS_EXPORTED).increment(n);
            }
            Ok(r) => {
                metrics::counter!(SPANS_DROPPED, "reason" => "export_failed").increment(n);
                tracing::warn!(
                    http.status = r.status().as_u16(),
                    spans = n,
                    "the OTLP endpoint refused spans; they are dropped"
                );
            }
            Err(e) => {
                metrics::counter!(SPANS_DROPPED, "reason" => "export_failed").increment(n);
                // Its kind only: reqwest's text names the URL, which may
                // carry credentials.
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                tracing::warn!(
                    error.kind = kind,
                    spans = n,
                    "the OTLP endpoint did not take spans; they are dropped"
                );
            }
        }
    }
}

/// An OTLP `ExportTraceServiceRequest` in its JSON form (ids in hex, times
/// and 64-bit integers as decimal strings), written straight into bytes:
/// building a `serde_json::Value` per span cost more CPU than the step it
/// described.
pub fn request(spans: &[Finished]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + spans.len() * 1024);
    out.extend_from_slice(b"{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    attribute(&mut out, "service.name", &Attr::Text("hookwarden".into()));
    out.push(b',');
    attribute(
        &mut out,
        "service.version",
        &Attr::Text(env!("CARGO_PKG_VERSION").into()),
    );
    out.extend_from_slice(b"]},\"scopeSpans\":[{\"scope\":{\"name\":\"hookwarden\",\"version\":");
    text(&mut out, env!("CARGO_PKG_VERSION"));
    out.extend_from_slice(b"},\"spans\":[");
    for (i, span) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        span_json(&mut out, span);
    }
    out.extend_from_slice(b"]}]}]}");
    out
}

/// A JSON string, escaped by serde_json.
fn text(out: &mut Vec<u8>, value: &str) {
    // Writing a `&str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// `{"key":…,"value":{…}}`
fn attribute(out: &mut Vec<u8>, key: &str, value: &Attr) {
    out.extend_from_slice(b"{\"key\":");
    text(out, key);
    out.extend_from_slice(b",\"value\":{");
    match value {
        Attr::Text(t) => {
            out.extend_from_slice(b"\"stringValue\":");
            text(out, t);
        }
        Attr::Int(i) => {
            out.extend_from_slice(format!("\"intValue\":\"{i}\"").as_bytes());
        }
        Attr::Bool(b) => {
            out.extend_from_slice(format!("\"boolValue\":{b}").as_bytes());
        }
    }
    out.extend_from_slice(b"}}");
}

fn span_json(out: &mut Vec<u8>, s: &Finished) {
    out.extend_from_slice(
        format!(
            "{{\"traceId\":\"{}\",\"spanId\":\"{}\",",
            s.context.trace_id_hex(),
            s.context.span_id_hex()
        )
        .as_bytes(),
    );
    if let Some(parent) = s.parent_span {
        out.extend_from_slice(format!("\"parentSpanId\":\"{}\",", hex::encode(parent)).as_bytes());
    }
    out.extend_from_slice(b"\"name\":");
    text(out, s.name);
    out.extend_from_slice(
        format!(
            ",\"kind\":{},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":[",
            s.kind as u8, s.start_ns, s.end_ns
        )
        .as_bytes(),
    );
    for (i, (key, value)) in s.attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        attribute(out, key, value);
    }
    out.extend_from_slice(b"],\"status\":");
    match s.error {
        Some(why) => {
            out.extend_from_slice(b"{\"code\":2,\"message\":");
            text(out, why);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"{\"code\":0}"),
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn without_an_endpoint_a_received_parent_is_passed_on_unchanged() {
        let traces = Traces::default();
        let span = traces.start_under("x", Kind::Server, Some(PARENT));
        assert_eq!(span.stored().as_deref(), Some(PARENT));
        let none = traces.start_under("x", Kind::Server, Some("garbage"));
        assert_eq!(none.stored(), None);
    }

    #[tokio::test]
    async fn a_span_continues_its_parent_s_trace_with_an_id_of_its_own() {
        let (traces, mut exporter) = Traces::to("http://127.0.0.1:1/").expect("traces");
        assert_eq!(exporter.url, "http://127.0.0.1:1/v1/traces");
        let mut span = traces.start_under("deliver", Kind::Client, Some(PARENT));
        let context = span.context().expect("a context");
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(context.span_id_hex(), "00f067aa0ba902b7");
        span.set("hookwarden.attempt", 2);
        span.fail("http 503");
        span.end();
        let finished = exporter.queue.recv().await.expect("queued");
        let body: Value =
            serde_json::from_slice(&request(std::slice::from_ref(&finished))).expect("JSON");
        let json = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(json["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(json["kind"], 3);
        assert_eq!(json["status"]["code"], 2);
        assert_eq!(json["attributes"][0]["value"]["intValue"], "2");
        // A parent that is not sampled is passed on, not recorded.
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let span = traces.start_under("x", Kind::Server, Some(unsampled));
        assert_eq!(span.stored().as_deref(), Some(unsampled));
        span.end();
        assert!(exporter.queue.try_recv().is_err());
        // No parent: a new, sampled trace.
        let root = traces.start("x", Kind::Server, None);
        assert!(root.context().expect("root").sampled());
    }

    #[test]
    fn the_request_is_json_whatever_an_attribute_holds() {
        let span = Finished {
            context: TraceParent::root([7; 16], [9; 8]),
            parent_span: None,
            name: "deliver webhook",
            kind: Kind::Client,
            start_ns: 1,
            end_ns: u64::MAX,
            attrs: vec![
                ("hookwarden.event.type", Attr::from("a\"b\\c\n\u{7f}é")),
                ("hookwarden.attempt", Attr::from(-3i64)),
                ("hookwarden.duplicate", Attr::from(true)),
            ],
            error: Some("http_5xx"),
        };
        let body: Value = serde_json::from_slice(&request(&[span.clone(), span])).expect("JSON");
        let spans = &body["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert_eq!(spans.as_array().map(Vec::len), Some(2));
        let first = &spans[0];
        assert_eq!(first["traceId"], "07".repeat(16));
        assert!(first.get("parentSpanId").is_none());
        assert_eq!(first["endTimeUnixNano"], u64::MAX.to_string());
        assert_eq!(
            first["attributes"][0]["value"]["stringValue"],
            "a\"b\\c\n\u{7f}é"
        );
        assert_eq!(first["attributes"][1]["value"]["intValue"], "-3");
        assert_eq!(first["attributes"][2]["value"]["boolValue"], true);
        assert_eq!(first["status"]["message"], "http_5xx");
        assert_eq!(
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "hookwarden"
        );
    }

    #[test]
    fn an_endpoint_naming_the_path_is_used_as_it_is() {
        assert_eq!(
            traces_url("https://collector:4318/v1/traces"),
            "https://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://collector:4318"),
            "https://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://collector:4318/otlp/?token=t"),
            "https://collector:4318/otlp/v1/traces?token=t"
        );
    }
}
