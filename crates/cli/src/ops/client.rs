//! The HTTP side of `hookwarden ops`: one client for a running instance's
//! operator API, carrying the operator key in `x-internal-api-key` (marked
//! sensitive, so no debug output shows it) and turning every failure into a
//! message that names what went wrong without the key.

use anyhow::{bail, Context};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

/// The header the operator API reads its key from.
const KEY_HEADER: &str = "x-internal-api-key";
/// Environment variable holding the operator key.
pub const KEY_ENV: &str = "HOOKWARDEN_OPERATOR_KEY";
/// The largest answer read: a list page is far smaller, so anything beyond
/// this is not the operator API and would only fill memory.
pub const MAX_BODY: usize = 32 << 20;

/// Where the operator key comes from: a file, else the environment, never
/// the command line (every user of the host can read that in `ps`).
pub fn read_key(key_file: Option<&Path>) -> anyhow::Result<Zeroizing<String>> {
    let text = match key_file {
        Some(path) => Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the operator key from {}", path.display()))?,
        ),
        None => match std::env::var(KEY_ENV) {
            Ok(v) => Zeroizing::new(v),
            Err(_) => bail!("no operator key: set {KEY_ENV} or give --key-file PATH"),
        },
    };
    let key = Zeroizing::new(text.trim().to_owned());
    if key.is_empty() {
        bail!("the operator key is empty");
    }
    Ok(key)
}

/// Where the key is exposed, as warnings: a key file that other users may
/// read, or a key sent unencrypted to another host or through a proxy.
pub fn exposure_warnings(key_file: Option<&Path>, url: &str, proxy: Option<&str>) -> Vec<String> {
    let mut warnings = Vec::new();
    #[cfg(unix)]
    if let Some(path) = key_file {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                warnings.push(format!(
                    "{} is readable or writable by group or others (mode {mode:o}): chmod 600 it",
                    path.display()
                ));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = key_file;
    if let Ok(u) = Url::parse(url) {
        let loopback = match u.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => true,
        };
        if u.scheme() == "http" && !loopback {
            warnings.push(format!(
                "the operator key is sent unencrypted to {}: use https://",
                u.host_str().unwrap_or_default()
            ));
        }
        if let Some(p) = proxy.and_then(|p| Url::parse(p).ok()) {
            if u.scheme() == "http" && matches!(p.scheme(), "http" | "https") {
                warnings.push(format!(
                    "the operator key passes unencrypted through the proxy {}: use https://",
                    p.host_str().unwrap_or_default()
                ));
            }
        }
    }
    warnings
}

/// How to reach the instance.
pub struct Connection<'a> {
    pub url: &'a str,
    pub key: Zeroizing<String>,
    /// PEM file of the CA that signed the server's certificate (only it is then trusted).
    pub ca_file: Option<&'a Path>,
    /// PEM files of a client certificate and its key, for an operator API behind mTLS.
    pub client_identity: Option<(&'a Path, &'a Path)>,
    /// An HTTP(S) proxy to go through; the environment's (`HTTP_PROXY`, …) is never used.
    pub proxy: Option<&'a str>,
}

/// A client bound to one instance and key.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// Answers longer than this are refused ([`MAX_BODY`]; smaller in tests).
    max_body: usize,
}

/// An answer that was not a success, as the server described it.
#[derive(Debug)]
pub struct ApiFailure {
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {}

impl Client {
    pub fn new(conn: Connection<'_>) -> anyhow::Result<Self> {
        let base = parse_base(conn.url)?;
        let mut value = HeaderValue::from_str(&conn.key).map_err(|_| {
            anyhow::anyhow!("the operator key holds characters a header cannot carry")
        })?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(KEY_HEADER, value);
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("hookwarden-ops/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            // Never follow a redirect: it would carry the key to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            // Nor a proxy from the environment: one set for other tools would
            // read the key (in clear over http://) without the operator asking.
            .no_proxy();
        if let Some(proxy) = conn.proxy {
            builder = builder.proxy(parse_proxy(proxy)?);
        }
        if let Some(path) = conn.ca_file {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
            if certs.is_empty() {
                bail!("{} holds no PEM certificate", path.display());
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = conn.client_identity {
            let read = |path: &Path| {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))
            };
            // One PEM holding both, as reqwest reads an identity.
            let mut pem = Zeroizing::new(read(key)?);
            pem.push(b'\n');
            pem.extend_from_slice(&read(cert)?);
            let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
                format!(
                    "--client-cert {} and --client-key {} must be a PEM certificate and its private key",
                    cert.display(),
                    key.display()
                )
            })?;
            builder = builder.identity(identity);
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(Self {
            http,
            base,
            max_body: MAX_BODY,
        })
    }

    /// `GET` a path under the base URL; `query` pairs whose value is `None` are left out.
    pub async fn get(
        &self,
        path: &[&str],
        query: &[(&str, Option<String>)],
    ) -> anyhow::Result<Value> {
        self.send(Method::GET, path, query, None).await
    }

    /// `POST` a JSON body to a path under the base URL.
    pub async fn post(&self, path: &[&str], body: &Value) -> anyhow::Result<Value> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    async fn send(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, Option<String>)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = self.url(path, query)?;
        let mut request = self.http.request(method, url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| unreachable(&url, &e))?;
        let status = response.status();
        let bytes = self.read_body(response, &url).await?;
        if status.is_success() {
            // Answers carry stored values as stored (`plain_json`).
            return hookwarden_core::plain_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} answered {status} with a body that is not JSON",
                    shown(&url)
                )
            });
        }
        Err(failure(status, &bytes, &url).into())
    }

    /// The answer's body, refused once it passes `max_body` (read chunk by
    /// chunk, so a huge or endless answer never sits in memory whole).
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        url: &Url,
    ) -> anyhow::Result<Vec<u8>> {
        let too_large = || {
            anyhow::anyhow!(
                "{} answered with a body over {} MiB: not the operator API's answer",
                shown(url),
                self.max_body >> 20
            )
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(url, &e))? {
            if body.len() + chunk.len() > self.max_body {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The base URL with `path` appended segment by segment (each one
    /// percent-encoded, so an id cannot reach another route).
    fn url(&self, path: &[&str], query: &[(&str, Option<String>)]) -> anyhow::Result<Url> {
        let mut url = self.base.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|_| anyhow::anyhow!("the URL cannot carry a path"))?;
            segments.pop_if_empty();
            for segment in path {
                if segment.is_empty() || *segment == "." || *segment == ".." {
                    bail!("{segment:?} is not an id");
                }
                segments.push(segment);
            }
        }
        let pairs: Vec<(&str, &str)> = query
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url)
    }
}

/// Checks the instance URL: http or https, no credentials, no query.
fn parse_base(text: &str) -> anyhow::Result<Url> {
    let url = Url::parse(text).with_context(|| format!("--url {text:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--url must be http:// or https://");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("--url must not carry credentials: the operator key is sent in its own header");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("--url must not carry a query or fragment");
    }
    Ok(url)
}

/// Checks `--proxy`: an http:// or https:// URL. Messages never repeat it,
/// since it may carry the proxy's password.
fn parse_proxy(text: &str) -> anyhow::Result<reqwest::Proxy> {
    let url = Url::parse(text).map_err(|_| anyhow::anyhow!("--proxy is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--proxy must be an http:// or https:// URL");
    }
    reqwest::Proxy::all(url).map_err(|_| anyhow::anyhow!("--proxy is not a usable proxy URL"))
}

/// The URL as shown in messages: scheme, host, port and path.
fn shown(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

fn unreachable(url: &Url, e: &reqwest::Error) -> anyhow::Error {
    // The innermost cause says why (refused, timed out, certificate unknown).
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let why = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        cause.to_string()
    };
    anyhow::anyhow!("cannot reach {}: {why}", shown(url))
}

/// The server's error JSON, or a description of what came instead.
fn failure(status: StatusCode, body: &[u8], url: &Url) -> ApiFailure {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    let text = |field: &str| {
        error
            .and_then(|e| e[field].as_str())
            .map(crate::ops::table::clean)
    };
    match (text("code"), text("message")) {
        (Some(code), Some(message)) => ApiFailure {
            code,
            message,
            request_id: text("requestId"),
        },
        _ => ApiFailure {
            code: format!("HTTP {}", status.as_u16()),
            message: format!(
                "{} did not answer with hookwarden's error JSON (is --url the public listener?)",
                shown(url)
            ),
            request_id: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client::new(Connection {
            url: base,
            key: Zeroizing::new("k".into()),
            ca_file: None,
            client_identity: None,
            proxy: None,
        })
        .expect("client")
    }

    #[test]
    fn ids_are_one_encoded_segment_each() {
        let c = client("http://h:1/prefix/");
        let url = c
            .url(
                &["api", "v1", "events", "a/../b?x"],
                &[("limit", Some("5".into())), ("cursor", None)],
            )
            .expect("url");
        assert_eq!(
            url.as_str(),
            "http://h:1/prefix/api/v1/events/a%2F..%2Fb%3Fx?limit=5"
        );
        assert!(c.url(&["api", ".."], &[]).is_err());
        assert!(c.url(&["api", ""], &[]).is_err());
    }

    #[test]
    fn a_key_sent_in_clear_beyond_this_host_is_warned_about() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost/",
            "http://[::1]:1/",
            "https://gw.example.com",
        ] {
            assert!(exposure_warnings(None, url, None).is_empty(), "{url}");
        }
        let w = exposure_warnings(None, "http://gw.example.com:8080", None);
        assert_eq!(
            w,
            ["the operator key is sent unencrypted to gw.example.com: use https://"]
        );
    }

    #[test]
    fn a_proxy_is_warned_about_when_it_would_read_the_key() {
        let w = exposure_warnings(
            None,
            "http://127.0.0.1:8080",
            Some("http://u:pw@proxy.lan:3128"),
        );
        assert_eq!(
            w,
            ["the operator key passes unencrypted through the proxy proxy.lan: use https://"]
        );
        assert!(exposure_warnings(
            None,
            "https://gw.example.com",
            Some("http://proxy.lan:3128")
        )
        .is_empty());
    }

    #[test]
    fn a_proxy_must_be_an_http_url_and_is_never_echoed() {
        assert!(parse_proxy("http://proxy.lan:3128").is_ok());
        assert!(parse_proxy("https://u:pw@proxy.lan").is_ok());
        for bad in ["socks5://u:pw-secret@h:1", "pw-secret", "file:///pw-secret"] {
            let err = parse_proxy(bad).expect_err("refused");
            assert!(!err.to_string().contains("pw-secret"), "{err}");
        }
    }

    /// A server answering every connection with `head` then `size` bytes of `x`.
    async fn answering(head: String, size: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let head = head.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn.write_all(head.as_bytes()).await;
                    let chunk = [b'x'; 1024];
                    let mut left = size;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if conn.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        format!("http://127.0.0.1:{port}/")
    }

    #[tokio::test]
    async fn an_answer_over_the_cap_is_refused_naming_the_url() {
        const CAP: usize = 4 << 20;
        // Announced by its length, or only seen while reading (no length, endless).
        let declared = answering(
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", CAP + 1),
            CAP + 1,
        )
        .await;
        let streamed = answering(
            "HTTP/1.1 500 Oops\r\nconnection: close\r\n\r\n".to_owned(),
            CAP * 4,
        )
        .await;
        for base in [declared, streamed] {
            let mut c = client(&base);
            c.max_body = CAP;
            let err = c
                .get(&["api", "v1", "events"], &[])
                .await
                .expect_err("refused");
            assert_eq!(
                err.to_string(),
                format!("{base}api/v1/events answered with a body over 4 MiB: not the operator API's answer")
            );
        }
        // At the cap exactly, the answer is read (and here found not to be JSON).
        let exact = answering(
            format!("HTTP/1.1 200 OK\r\ncontent-length: {CAP}\r\n\r\n"),
            CAP,
        )
        .await;
        let mut c = client(&exact);
        c.max_body = CAP;
        let err = c.get(&["x"], &[]).await.expect_err("not JSON");
        assert!(err.to_string().contains("not JSON"), "{err}");
        assert_eq!(MAX_BODY, 32 << 20);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("hw_ops_key_{}", std::process::id()));
        std::fs::write(&path, "k").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let w = exposure_warnings(Some(&path), "http://127.0.0.1", None);
        assert!(w.len() == 1 && w[0].contains("mode 644"), "{w:?}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(exposure_warnings(Some(&path), "http://127.0.0.1", None).is_empty());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn base_urls_with_credentials_or_other_schemes_are_refused() {
        assert!(parse_base("http://user:pw@h/").is_err());
        assert!(parse_base("ftp://h/").is_err());
        assert!(parse_base("http://h/?a=1").is_err());
        assert!(parse_base("https://h:8443").is_ok());
    }

    #[test]
    fn the_error_json_is_read_and_anything_else_described() {
        let url = Url::parse("http://h/api/v1/events").expect("url");
        let f = failure(
            StatusCode::UNAUTHORIZED,
            br#"{"error":{"code":"UNAUTHORIZED","message":"invalid x-internal-api-key","requestId":"req_1"}}"#,
            &url,
        );
        assert_eq!(
            f.to_string(),
            "UNAUTHORIZED: invalid x-internal-api-key (request id req_1)"
        );
        let f = failure(StatusCode::BAD_GATEWAY, b"<html>\x1b[31m", &url);
        assert_eq!(f.code, "HTTP 502");
        assert!(f.message.contains("http://h/api/v1/events"));
    }

    #[test]
    fn a_key_that_cannot_be_a_header_is_refused_without_echoing_it() {
        let err = Client::new(Connection {
            url: "http://h/",
            key: Zeroizing::new("SECRET\nKEY".into()),
            ca_file: None,
            client_identity: None,
            proxy: None,
        })
        .err()
        .expect("refused");
        assert!(!format!("{err:#}").contains("SECRET"));
    }
}
