//! `hookwarden config check`: every file the settings name is loaded with
//! the very loader `serve` uses (a file that passes here loads there), and
//! with `--connect` PostgreSQL, NATS and Redis are reached and the JWKS URL
//! fetched, within bounded timeouts. Each result is reported under its setting's name; no secret,
//! key or credential is ever printed.

use crate::boot::tls::{self, TlsSettings};
use crate::config::{without_credentials, NatsSettings, Settings};
use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use std::path::Path;
use std::time::Duration;

/// How long each backend may take to answer `--connect`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One setting's verdict: what was found, or why it does not do.
#[derive(Debug)]
pub struct Finding {
    pub setting: String,
    pub outcome: Result<String, String>,
}

impl Finding {
    fn new(setting: impl Into<String>, outcome: anyhow::Result<String>) -> Self {
        Self {
            setting: setting.into(),
            outcome: outcome.map_err(|e| format!("{e:#}")),
        }
    }

    pub fn ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// The findings as lines: `ok      SETTING  what` / `FAILED  SETTING  why`.
pub fn render(findings: &[Finding]) -> String {
    let width = findings.iter().map(|f| f.setting.len()).max().unwrap_or(0);
    findings
        .iter()
        .map(|f| match &f.outcome {
            Ok(what) => format!("ok      {:width$}  {what}\n", f.setting),
            Err(why) => format!("FAILED  {:width$}  {why}\n", f.setting),
        })
        .collect()
}

/// Loads every file the settings name.
pub async fn files(settings: &Settings) -> Vec<Finding> {
    let mut out = Vec::new();
    for (prefix, tls) in [("TLS", settings.tls()), ("OPS_TLS", settings.ops_tls())] {
        if let Some(t) = tls {
            listener_files(prefix, &t, &mut out);
        }
    }
    if let Some(path) = &settings.jwt_jwks_file {
        out.push(Finding::new(
            "HOOKWARDEN_JWT_JWKS_FILE",
            crate::shared::jwt::jwks::load_file(path)
                .map(|parsed| format!("{}: {}", path.display(), key_summary(&parsed))),
        ));
    }
    if let Some(path) = &settings.jwt_jwks_ca_file {
        out.push(Finding::new(
            "HOOKWARDEN_JWT_JWKS_CA_FILE",
            crate::shared::jwt::jwks::ca_roots(path)
                .map(|roots| format!("{}: {} certificate(s)", path.display(), roots.len())),
        ));
    }
    master_keys(settings, &mut out);
    if let Some(path) = &settings.delivery_ca_file {
        out.push(Finding::new(
            "HOOKWARDEN_DELIVERY_CA_FILE",
            crate::shared::client::extra_roots(Some(path))
                .map(|roots| format!("{}: {} certificate(s)", path.display(), roots.len())),
        ));
    }
    if let Some(nats) = &settings.nats() {
        nats_files(nats, &mut out).await;
    }
    out
}

/// A listener's certificate, key (and that they belong together) and client CA.
fn listener_files(prefix: &str, t: &TlsSettings, out: &mut Vec<Finding>) {
    let cert = certificate(&t.cert_file);
    let cert_ok = cert.is_ok();
    out.push(Finding::new(format!("HOOKWARDEN_{prefix}_CERT_FILE"), cert));
    let key = tls::load_private_key(&t.key_file).and_then(|_| {
        if cert_ok {
            // The pair as `serve` loads it: a key that is not the
            // certificate's is refused here, not at the first handshake.
            tls::load_key(&t.cert_file, &t.key_file)?;
        }
        Ok(format!(
            "{}: a private key that loads",
            t.key_file.display()
        ))
    });
    out.push(Finding::new(format!("HOOKWARDEN_{prefix}_KEY_FILE"), key));
    if let Some(ca) = &t.client_ca_file {
        out.push(Finding::new(
            format!("HOOKWARDEN_{prefix}_CLIENT_CA_FILE"),
            tls::load_roots(ca)
                .map(|roots| format!("{}: {} CA certificate(s)", ca.display(), roots.len())),
        ));
    }
}

/// A PEM certificate chain, with the leaf's validity: an expired one is a failure.
fn certificate(path: &Path) -> anyhow::Result<String> {
    let certs = tls::load_certs(path)?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&certs[0])
        .map_err(|e| anyhow::anyhow!("{}: the certificate does not parse: {e}", path.display()))?;
    let validity = leaf.validity();
    let day = |t: &x509_parser::time::ASN1Time| {
        chrono::DateTime::from_timestamp(t.timestamp(), 0)
            .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d").to_string())
    };
    let until = day(&validity.not_after);
    if !validity.is_valid() {
        anyhow::bail!(
            "{}: the certificate is not valid now (valid from {} until {until})",
            path.display(),
            day(&validity.not_before),
        );
    }
    Ok(format!(
        "{}: {} certificate(s), valid until {until}",
        path.display(),
        certs.len()
    ))
}

/// The master key (file, variable or development file) and the previous keys.
fn master_keys(settings: &Settings, out: &mut Vec<Finding>) {
    let dev_file = settings.data_dir.join("master.key");
    // In the order `load_keyring` takes them.
    let (setting, source) = if settings.master_key.is_some() {
        ("HOOKWARDEN_MASTER_KEY", "the variable".to_owned())
    } else if let Some(path) = &settings.master_key_file {
        ("HOOKWARDEN_MASTER_KEY_FILE", path.display().to_string())
    } else if dev_file.exists() {
        ("HOOKWARDEN_MASTER_KEY", dev_file.display().to_string())
    } else {
        out.push(Finding::new(
            "HOOKWARDEN_MASTER_KEY",
            Ok(format!(
                "unset: serve generates a development key in {} (refused in production)",
                dev_file.display()
            )),
        ));
        return;
    };
    // Only the current key: the previous ones are reported on their own.
    let current = Settings {
        previous_master_keys: None,
        ..settings.clone()
    };
    out.push(Finding::new(
        setting,
        crate::boot::keys::load_keyring(&current)
            .map(|k| format!("{source}: key id {}", k.current_id())),
    ));
    if settings.previous_master_keys.is_some() {
        // The same loader, with a stand-in current key: only theirs can fail.
        let previous = Settings {
            master_key: Some(SecretString::from(
                hookwarden_core::crypto::MasterKey::generate()
                    .to_base64()
                    .to_string(),
            )),
            master_key_file: None,
            ..settings.clone()
        };
        let count = settings
            .previous_master_keys
            .as_ref()
            .map(|k| {
                k.expose_secret()
                    .split(',')
                    .filter(|k| !k.trim().is_empty())
                    .count()
            })
            .unwrap_or(0);
        out.push(Finding::new(
            "HOOKWARDEN_PREVIOUS_MASTER_KEYS",
            crate::boot::keys::load_keyring(&previous).map(|_| format!("{count} key(s)")),
        ));
    }
}

/// The NATS creds file and TLS files.
async fn nats_files(nats: &NatsSettings, out: &mut Vec<Finding>) {
    if let Some(creds) = &nats.creds_file {
        out.push(Finding::new(
            "HOOKWARDEN_NATS_CREDS_FILE",
            crate::outbound::nats::connect_options(nats)
                .await
                .map(|_| format!("{}: credentials that load", creds.display())),
        ));
    }
    if let Some(ca) = &nats.tls_ca_file {
        out.push(Finding::new(
            "HOOKWARDEN_NATS_TLS_CA_FILE",
            tls::load_roots(ca)
                .map(|roots| format!("{}: {} CA certificate(s)", ca.display(), roots.len())),
        ));
    }
    if let Some((cert, key)) = &nats.tls_client {
        let c = certificate(cert);
        let cert_ok = c.is_ok();
        out.push(Finding::new("HOOKWARDEN_NATS_TLS_CERT_FILE", c));
        out.push(Finding::new(
            "HOOKWARDEN_NATS_TLS_KEY_FILE",
            tls::load_private_key(key).and_then(|_| {
                if cert_ok {
                    tls::load_key(cert, key)?;
                }
                Ok(format!("{}: a private key that loads", key.display()))
            }),
        ));
    }
}

/// Reaches each configured backend: PostgreSQL, NATS (and its stream), Redis.
pub async fn connections(settings: &Settings) -> Vec<Finding> {
    let mut out = vec![Finding::new(
        "HOOKWARDEN_DATABASE_URL",
        database(&settings.database_url).await,
    )];
    if let Some(nats) = &settings.nats() {
        out.push(Finding::new("HOOKWARDEN_NATS_URL", reach_nats(nats).await));
    }
    if let Some(url) = &settings.redis_url {
        out.push(Finding::new("HOOKWARDEN_REDIS_URL", redis(url).await));
    }
    if let Some(url) = &settings.jwt_jwks_url {
        out.push(Finding::new(
            "HOOKWARDEN_JWT_JWKS_URL",
            jwks_url(url, settings.jwt_jwks_ca_file.as_deref()).await,
        ));
    }
    out
}

/// The JWKS URL fetched and parsed as `serve` does. A fetch that fails, or
/// a key set with no usable key, is a failure here (though `serve` starts
/// and retries): this is where operators verify the URL.
async fn jwks_url(url: &str, ca_file: Option<&Path>) -> anyhow::Result<String> {
    let remote = crate::shared::jwt::jwks::RemoteKeys::new(url, ca_file)?;
    let parsed = remote.fetch().await?;
    if let Some(why) = parsed.unusable() {
        anyhow::bail!("fetching {}: {why}", remote.shown());
    }
    Ok(format!("{}: {}", remote.shown(), key_summary(&parsed)))
}

/// How many keys a set holds and their ids (public: no secret is shown),
/// and each key skipped as of a type, algorithm or curve not supported.
fn key_summary(parsed: &crate::shared::jwt::jwks::Parsed) -> String {
    let kids: Vec<String> = parsed
        .keys
        .iter()
        .map(|k| format!("{} {:?}", k.kid.as_deref().unwrap_or("(no kid)"), k.alg))
        .collect();
    let mut summary = if kids.is_empty() {
        "a key set that loads, with no key".to_owned()
    } else {
        format!("{} key(s): {}", kids.len(), kids.join(", "))
    };
    if !parsed.skipped.is_empty() {
        summary.push_str(&format!(
            "; {} key(s) skipped (not supported): {}",
            parsed.skipped.len(),
            parsed.skipped.join("; ")
        ));
    }
    summary
}

/// Bounds `fut` by `CONNECT_TIMEOUT`.
async fn bounded<T>(
    what: &str,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(CONNECT_TIMEOUT, fut)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{what} did not answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            )
        })?
}

async fn database(url: &SecretString) -> anyhow::Result<String> {
    let url = url.expose_secret();
    let shown = without_credentials(url);
    if url.starts_with("sqlite:") {
        return Ok(format!("{shown}: embedded SQLite, nothing to reach"));
    }
    // The pool retries a refused connection until its timeout and then
    // says only that it timed out: a plain TCP connection first tells why.
    if let Ok(u) = url::Url::parse(url) {
        if let Some(host) = u.host_str().filter(|h| !h.is_empty()) {
            let port = u.port().unwrap_or(5432);
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            bounded("PostgreSQL", async {
                tokio::net::TcpStream::connect((host.as_str(), port))
                    .await
                    .with_context(|| format!("{shown}: cannot reach {host}:{port}"))
            })
            .await?;
        }
    }
    bounded("PostgreSQL", async {
        let store = hookwarden_store::connect(url)
            .await
            .with_context(|| format!("{shown}: connecting"))?;
        store
            .ping()
            .await
            .with_context(|| format!("{shown}: a query"))?;
        Ok(format!("{shown}: reached ({})", store.backend()))
    })
    .await
}

async fn reach_nats(settings: &NatsSettings) -> anyhow::Result<String> {
    let shown = without_credentials(&settings.url);
    bounded("NATS", async {
        let client = crate::outbound::nats::connect_options(settings)
            .await?
            .connect(&settings.url)
            .await
            .with_context(|| format!("{shown}: connecting"))?;
        let js = async_nats::jetstream::new(client);
        let stream = match js.get_stream(&settings.stream).await {
            Ok(_) => format!("stream {} exists", settings.stream),
            Err(e)
                if matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                format!("stream {} will be created by serve", settings.stream)
            }
            Err(e) => return Err(e).with_context(|| format!("{shown}: JetStream")),
        };
        Ok(format!("{shown}: reached, JetStream {stream}"))
    })
    .await
}

async fn redis(url: &SecretString) -> anyhow::Result<String> {
    let shown = without_credentials(url.expose_secret());
    bounded("Redis", async {
        // A Redis error's text already holds its cause: not chained twice.
        let client = redis::Client::open(url.expose_secret())
            .map_err(|e| anyhow::anyhow!("{shown}: the URL does not parse: {e}"))?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| anyhow::anyhow!("{shown}: connecting: {e}"))?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| anyhow::anyhow!("{shown}: PING: {e}"))?;
        Ok(format!("{shown}: reached"))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_jwks_file_lists_the_keys_it_skips_and_fails_with_none_usable() {
        let dir = std::env::temp_dir().join(format!("config-check-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/jwks.json")).expect("fixture");
        let ps256 = serde_json::json!({"kty": "RSA", "kid": "ps-1", "alg": "PS256", "n": "AQAB", "e": "AQAB"});
        let finding = |doc: serde_json::Value| {
            let file = dir.join("jwks.json");
            std::fs::write(&file, doc.to_string()).expect("write");
            let mut raw = crate::config::RawConfig::default();
            raw.set("data_dir", &dir).set("jwt_jwks_file", &file);
            let settings = Settings::from_raw(raw).expect("settings");
            async move {
                files(&settings)
                    .await
                    .into_iter()
                    .find(|f| f.setting == "HOOKWARDEN_JWT_JWKS_FILE")
                    .expect("a finding")
                    .outcome
            }
        };
        let mut doc = fixture.clone();
        doc["keys"]
            .as_array_mut()
            .expect("keys")
            .push(ps256.clone());
        let listed = finding(doc).await.expect("loads");
        assert!(
            listed.contains("3 key(s): rsa-1 RS256, ec-1 ES256, ed-1 EdDSA; 1 key(s) skipped (not supported): JWKS key 3 (kid \"ps-1\"): field `alg` is \"PS256\""),
            "{listed}"
        );
        let why = finding(serde_json::json!({"keys": [ps256]}))
            .await
            .expect_err("no usable key");
        assert!(
            why.contains("no usable key: JWKS key 0 (kid \"ps-1\")"),
            "{why}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn printed_urls_carry_no_credentials() {
        for (url, secret) in [
            ("postgres://hook:DBPASS@db:5432/app", "DBPASS"),
            ("nats://TOKEN123@nats:4222", "TOKEN123"),
            ("redis://:REDISPASS@cache:6379/0", "REDISPASS"),
        ] {
            let shown = without_credentials(url);
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
