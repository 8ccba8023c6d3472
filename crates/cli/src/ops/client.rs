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
/// read, or a key sent unencrypted to another host.
pub fn exposure_warnings(key_file: Option<&Path>, url: &str) -> Vec<String> {
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
}

/// A client bound to one instance and key.
pub struct Client {
    http: reqwest::Client,
    base: Url,
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
            .redirect(reqwest::redirect::Policy::none());
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
        Ok(Self { http, base })
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
        let bytes = response.bytes().await.map_err(|e| unreachable(&url, &e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} answered {status} with a body that is not JSON",
                    shown(&url)
                )
            });
        }
        Err(failure(status, &bytes, &url).into())
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
            assert!(exposure_warnings(None, url).is_empty(), "{url}");
        }
        let w = exposure_warnings(None, "http://gw.example.com:8080");
        assert_eq!(
            w,
            ["the operator key is sent unencrypted to gw.example.com: use https://"]
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("hw_ops_key_{}", std::process::id()));
        std::fs::write(&path, "k").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let w = exposure_warnings(Some(&path), "http://127.0.0.1");
        assert!(w.len() == 1 && w[0].contains("mode 644"), "{w:?}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(exposure_warnings(Some(&path), "http://127.0.0.1").is_empty());
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
        })
        .err()
        .expect("refused");
        assert!(!format!("{err:#}").contains("SECRET"));
    }
}
