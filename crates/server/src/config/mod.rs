//! Configuration: built-in defaults, then a TOML file, then `HOOKWARDEN_*`
//! environment variables; parsed into typed settings, cross-checked, and
//! refused in production when insecure. Secrets stay in `secrecy` types.

use integrations::IntegrationInput;
pub mod integrations;

use crate::tls::{ClientAuth, TlsSettings};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use hookwarden_core::destination::{parse_cidrs, AddressPolicy};
use hookwarden_core::duration::{format_duration, parse_duration, parse_schedule};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The keys accepted from the environment (`HOOKWARDEN_<KEY>`) and the TOML
/// file (`key = …`). Anything else in the environment is ignored; anything
/// else in the file is an error (a typo must not silently keep a default).
const KEYS: &[&str] = &[
    "env",
    "data_dir",
    "database_url",
    "run_migrations",
    "nats_url",
    "nats_creds_file",
    "nats_subject_prefix",
    "nats_stream",
    "redis_url",
    "listen",
    "ops_listen",
    "master_key",
    "master_key_file",
    "previous_master_keys",
    "jwt_hs256_secret",
    "jwt_jwks_file",
    "jwt_jwks_url",
    "jwt_jwks_refresh",
    "jwt_jwks_ca_file",
    "jwt_issuer",
    "jwt_audience",
    "management_api_keys",
    "allowed_destinations",
    "trusted_proxies",
    "trusted_proxy_header",
    "allow_http_destinations",
    "retry_schedule",
    "delivery_timeout",
    "delivery_lease",
    "delivery_ca_file",
    "max_in_flight",
    "max_in_flight_per_endpoint",
    "api_rate_limit_per_minute",
    "failed_auth_limit_per_minute",
    "publish_rate_limit_per_minute",
    "max_webhooks_per_account",
    "rotation_grace",
    "log_format",
    "poll_interval",
    "delivery_worker",
    "nats_consumer",
    "redis_prefix",
    "delivery_sink",
    "ingress_worker",
    "integrations",
    "nats_ack_wait",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
    "tls_client_auth",
    "ops_tls_cert_file",
    "ops_tls_key_file",
    "ops_tls_client_ca_file",
    "ops_tls_client_auth",
    "gateway_identity",
    "operator_client_identity",
    "producers",
    "nats_tls_ca_file",
    "nats_tls_cert_file",
    "nats_tls_key_file",
    "nats_max_age",
    "nats_max_bytes",
];

/// The configuration as written: every field optional, defaults applied later.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub env: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<SecretString>,
    pub run_migrations: Option<bool>,
    pub nats_url: Option<String>,
    pub nats_creds_file: Option<PathBuf>,
    pub nats_subject_prefix: Option<String>,
    pub nats_stream: Option<String>,
    pub nats_ack_wait: Option<String>,
    pub nats_tls_ca_file: Option<PathBuf>,
    pub nats_tls_cert_file: Option<PathBuf>,
    pub nats_tls_key_file: Option<PathBuf>,
    /// How long the JetStream stream keeps a message (`7d`).
    pub nats_max_age: Option<String>,
    /// How many bytes the JetStream stream keeps at most (`1GiB`).
    pub nats_max_bytes: Option<String>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_client_ca_file: Option<PathBuf>,
    pub tls_client_auth: Option<String>,
    pub ops_tls_cert_file: Option<PathBuf>,
    pub ops_tls_key_file: Option<PathBuf>,
    pub ops_tls_client_ca_file: Option<PathBuf>,
    pub ops_tls_client_auth: Option<String>,
    /// The client-certificate identity (CN or SAN) of the gateway allowed to
    /// set `X-Account-Id`.
    pub gateway_identity: Option<String>,
    /// When set, the operator API also requires this client-certificate identity.
    pub operator_client_identity: Option<String>,
    pub redis_url: Option<SecretString>,
    pub listen: Option<String>,
    pub ops_listen: Option<String>,
    pub master_key: Option<SecretString>,
    pub master_key_file: Option<PathBuf>,
    /// Older master keys, comma-separated: still read, never written (rotation).
    pub previous_master_keys: Option<SecretString>,
    pub jwt_hs256_secret: Option<SecretString>,
    pub jwt_jwks_file: Option<PathBuf>,
    /// A JWKS fetched over HTTPS (the IdP's), besides or instead of the file.
    pub jwt_jwks_url: Option<String>,
    /// How often the JWKS URL is fetched again (`5m`).
    pub jwt_jwks_refresh: Option<String>,
    /// PEM roots trusted for the JWKS URL besides the system's (a private CA).
    pub jwt_jwks_ca_file: Option<PathBuf>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub management_api_keys: Option<SecretString>,
    pub allowed_destinations: Option<String>,
    pub trusted_proxies: Option<String>,
    pub trusted_proxy_header: Option<String>,
    pub allow_http_destinations: Option<bool>,
    pub retry_schedule: Option<String>,
    pub delivery_timeout: Option<String>,
    pub delivery_lease: Option<String>,
    /// PEM roots trusted for HTTPS receivers besides the system's.
    pub delivery_ca_file: Option<PathBuf>,
    pub max_in_flight: Option<usize>,
    pub max_in_flight_per_endpoint: Option<usize>,
    pub api_rate_limit_per_minute: Option<u32>,
    pub failed_auth_limit_per_minute: Option<u32>,
    pub publish_rate_limit_per_minute: Option<u32>,
    pub max_webhooks_per_account: Option<u32>,
    pub rotation_grace: Option<String>,
    pub log_format: Option<String>,
    pub poll_interval: Option<String>,
    pub delivery_worker: Option<bool>,
    pub nats_consumer: Option<bool>,
    pub redis_prefix: Option<String>,
    pub delivery_sink: Option<bool>,
    pub ingress_worker: Option<bool>,
    /// Integrations declared in the file (`[[integrations]]`), applied at start.
    pub integrations: Option<Vec<IntegrationInput>>,
    /// Producer grants (`[[producers]]`), TOML only.
    pub producers: Option<Vec<crate::producers::ProducerGrant>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone)]
pub struct NatsSettings {
    pub url: String,
    pub creds_file: Option<PathBuf>,
    /// Subjects are `<prefix>.dispatch` and `<prefix>.dispatch.deadletter`.
    pub subject_prefix: String,
    pub stream: String,
    /// How long a message may stay unacked before JetStream redelivers it
    /// (to another replica, if this one died holding it).
    pub ack_wait: Duration,
    /// CA to verify the NATS server with (TLS required when set).
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key for NATS (mTLS; mapped to a NATS user).
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// The stream's retention: messages older than this are discarded.
    pub max_age: Duration,
    /// The stream's retention: past this size the oldest messages go.
    pub max_bytes: u64,
}

/// The URL may carry a token or password: shown without it.
impl std::fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSettings")
            .field("url", &without_credentials(&self.url))
            .field("creds_file", &self.creds_file)
            .field("subject_prefix", &self.subject_prefix)
            .field("stream", &self.stream)
            .field("ack_wait", &self.ack_wait)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_client", &self.tls_client)
            .field("max_age", &self.max_age)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl NatsSettings {
    pub fn dispatch_subject(&self) -> String {
        format!("{}.dispatch", self.subject_prefix)
    }
    pub fn deadletter_subject(&self) -> String {
        format!("{}.dispatch.deadletter", self.subject_prefix)
    }
}

/// One listener's TLS settings from its four variables (`<prefix>_cert_file`, …).
fn tls_settings(
    prefix: &str,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    client_auth: Option<String>,
) -> Result<Option<TlsSettings>, ConfigError> {
    let auth = ClientAuth::parse(client_auth.as_deref().unwrap_or("off"))
        .map_err(|e| invalid(&format!("{prefix}_client_auth"), e))?;
    match (cert, key) {
        (None, None) if auth == ClientAuth::Off => Ok(None),
        (None, None) => Err(invalid(
            &format!("{prefix}_client_auth"),
            "client certificates need TLS: set the certificate and key files",
        )),
        (Some(cert_file), Some(key_file)) => {
            if auth != ClientAuth::Off && client_ca.is_none() {
                return Err(invalid(
                    &format!("{prefix}_client_ca_file"),
                    "client certificates need a CA file to verify them",
                ));
            }
            Ok(Some(TlsSettings {
                cert_file,
                key_file,
                client_ca_file: client_ca,
                client_auth: auth,
            }))
        }
        _ => Err(invalid(
            &format!("{prefix}_cert_file"),
            "the certificate and the key file go together",
        )),
    }
}

/// Validated settings. `Debug` never shows a secret (secrecy redacts them).
#[derive(Debug, Clone)]
pub struct Settings {
    pub env: Environment,
    pub data_dir: PathBuf,
    pub database_url: SecretString,
    pub run_migrations: bool,
    pub nats: Option<NatsSettings>,
    pub redis_url: Option<SecretString>,
    pub listen: SocketAddr,
    pub ops_listen: SocketAddr,
    pub master_key: Option<SecretString>,
    pub master_key_file: Option<PathBuf>,
    /// Older master keys, comma-separated: still read, never written (rotation).
    pub previous_master_keys: Option<SecretString>,
    pub jwt_hs256_secret: Option<SecretString>,
    pub jwt_jwks_file: Option<PathBuf>,
    /// HTTPS (plain HTTP only in development); its keys join the file's.
    pub jwt_jwks_url: Option<String>,
    pub jwt_jwks_refresh: Duration,
    /// PEM roots trusted for the JWKS URL besides the system's.
    pub jwt_jwks_ca_file: Option<PathBuf>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub management_api_keys: Vec<SecretString>,
    pub allowed_destinations: Vec<IpNet>,
    /// Peers whose `Forwarded` / `X-Forwarded-For` name the client.
    pub trusted_proxies: Vec<IpNet>,
    /// The one header those proxies write (the other is never read).
    pub trusted_proxy_header: hookwarden_core::client_addr::ProxyHeader,
    pub allow_http_destinations: bool,
    pub retry_schedule: Vec<Duration>,
    pub delivery_timeout: Duration,
    pub delivery_lease: Duration,
    /// PEM roots trusted for HTTPS receivers and forwarding targets besides
    /// the system's (private CAs).
    pub delivery_ca_file: Option<PathBuf>,
    pub max_in_flight: usize,
    /// `Fixed` when configured, else the fair share (see `pump::LaneShare`).
    pub max_in_flight_per_endpoint: crate::pump::LaneShare,
    pub api_rate_limit_per_minute: u32,
    /// Refused authentications per client and minute before it is answered 429.
    pub failed_auth_limit_per_minute: u32,
    pub publish_rate_limit_per_minute: u32,
    /// Webhooks an account may have; the database enforces it (written there at start-up).
    pub max_webhooks_per_account: u32,
    pub rotation_grace: Duration,
    pub log_format: LogFormat,
    pub poll_interval: Duration,
    pub delivery_worker: bool,
    pub nats_consumer: bool,
    /// Prefix of every Redis key (isolates deployments sharing a Redis).
    pub redis_prefix: String,
    /// The development delivery sink (`/api/v1/internal/delivery-sink`).
    pub delivery_sink: bool,
    pub ingress_worker: bool,
    pub integrations: Vec<IntegrationInput>,
    pub grants: crate::producers::Grants,
    pub tls: Option<TlsSettings>,
    pub ops_tls: Option<TlsSettings>,
    pub gateway_identity: Option<String>,
    pub operator_client_identity: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("refusing to start in production: {0}")]
    Production(String),
    #[error("configuration file: {0}")]
    File(String),
}

fn invalid(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!(
        "HOOKWARDEN_{} ({key}): {why}",
        key.to_ascii_uppercase()
    ))
}

impl Settings {
    /// Loads defaults → `file` (if given) → the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::File(format!(
                    "{} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("HOOKWARDEN_").filter(|k| KEYS.iter().any(|n| k == *n)));
        let raw: RawConfig = fig
            .extract()
            .map_err(|e| ConfigError::File(e.to_string()))?;
        Self::from_raw(raw)
    }

    /// Settings from a TOML document alone (no file, no environment).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = Figment::new()
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::File(e.to_string()))?;
        Self::from_raw(raw)
    }

    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let env = match raw.env.as_deref().unwrap_or("development") {
            "development" | "dev" => Environment::Development,
            "production" | "prod" => Environment::Production,
            other => {
                return Err(invalid(
                    "env",
                    format!("{other:?} is neither development nor production"),
                ))
            }
        };
        let data_dir = raw.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        let database_url = raw.database_url.unwrap_or_else(|| {
            SecretString::from(format!(
                "sqlite://{}",
                data_dir.join("hookwarden.db").display()
            ))
        });
        {
            let u = database_url.expose_secret();
            if !(u.starts_with("sqlite:")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://"))
            {
                return Err(invalid(
                    "database_url",
                    "must start with sqlite:, postgres:// or postgresql://",
                ));
            }
        }
        let duration = |key: &str, v: Option<String>, default: &str| {
            parse_duration(v.as_deref().unwrap_or(default)).map_err(|e| invalid(key, e))
        };
        let addr = |key: &str, v: Option<String>, default: &str| {
            v.as_deref()
                .unwrap_or(default)
                .parse::<SocketAddr>()
                .map_err(|e| invalid(key, e))
        };
        let delivery_timeout = duration("delivery_timeout", raw.delivery_timeout, "5s")?;
        let nats_ack_wait = duration("nats_ack_wait", raw.nats_ack_wait.clone(), "30s")?;
        let nats_max_age = duration("nats_max_age", raw.nats_max_age.clone(), "7d")?;
        let nats_max_bytes = parse_bytes(raw.nats_max_bytes.as_deref().unwrap_or("1GiB"))
            .map_err(|e| invalid("nats_max_bytes", e))?;
        let nats_tls_client = match (
            raw.nats_tls_cert_file.clone(),
            raw.nats_tls_key_file.clone(),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "nats_tls_cert_file",
                    "the NATS client certificate and key file go together",
                ))
            }
        };
        let max_in_flight = raw.max_in_flight.unwrap_or(20);
        let settings = Settings {
            env,
            database_url,
            run_migrations: raw.run_migrations.unwrap_or(true),
            nats: raw
                .nats_url
                .filter(|u| !u.is_empty())
                .map(|url| NatsSettings {
                    url,
                    creds_file: raw.nats_creds_file,
                    subject_prefix: raw.nats_subject_prefix.unwrap_or_else(|| "webhook".into()),
                    stream: raw
                        .nats_stream
                        .unwrap_or_else(|| "HOOKWARDEN_DISPATCH".into()),
                    ack_wait: nats_ack_wait,
                    tls_ca_file: raw.nats_tls_ca_file.clone(),
                    tls_client: nats_tls_client,
                    max_age: nats_max_age,
                    max_bytes: nats_max_bytes,
                }),
            redis_url: raw.redis_url,
            listen: addr("listen", raw.listen, "127.0.0.1:8080")?,
            ops_listen: addr("ops_listen", raw.ops_listen, "127.0.0.1:9090")?,
            master_key: raw.master_key,
            master_key_file: raw.master_key_file,
            previous_master_keys: raw.previous_master_keys,
            jwt_hs256_secret: raw.jwt_hs256_secret,
            jwt_jwks_file: raw.jwt_jwks_file,
            jwt_jwks_url: raw.jwt_jwks_url.filter(|u| !u.is_empty()),
            jwt_jwks_refresh: duration("jwt_jwks_refresh", raw.jwt_jwks_refresh, "5m")?,
            jwt_jwks_ca_file: raw.jwt_jwks_ca_file,
            jwt_issuer: raw.jwt_issuer,
            jwt_audience: raw.jwt_audience,
            management_api_keys: raw
                .management_api_keys
                .map(|k| {
                    k.expose_secret()
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| SecretString::from(s.to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            allowed_destinations: parse_cidrs(raw.allowed_destinations.as_deref().unwrap_or(""))
                .map_err(|e| invalid("allowed_destinations", e))?,
            trusted_proxies: parse_cidrs(raw.trusted_proxies.as_deref().unwrap_or(""))
                .map_err(|e| invalid("trusted_proxies", e))?,
            trusted_proxy_header: match raw.trusted_proxy_header.as_deref() {
                None => Default::default(),
                Some(h) => {
                    hookwarden_core::client_addr::ProxyHeader::parse(h).ok_or_else(|| {
                        invalid(
                            "trusted_proxy_header",
                            "must be x-forwarded-for or forwarded (the header your proxies write)",
                        )
                    })?
                }
            },
            allow_http_destinations: raw
                .allow_http_destinations
                .unwrap_or(env == Environment::Development),
            retry_schedule: parse_schedule(
                raw.retry_schedule
                    .as_deref()
                    .unwrap_or("5s,5m,30m,2h,5h,10h,10h"),
            )
            .map_err(|e| invalid("retry_schedule", e))?,
            delivery_timeout,
            // A lease must outlast a try, or a slow try could be claimed twice.
            delivery_lease: duration(
                "delivery_lease",
                raw.delivery_lease,
                &format_duration(delivery_timeout * 2 + Duration::from_secs(20)),
            )?,
            delivery_ca_file: raw.delivery_ca_file,
            max_in_flight,
            max_in_flight_per_endpoint: raw
                .max_in_flight_per_endpoint
                .map_or(crate::pump::LaneShare::Fair, crate::pump::LaneShare::Fixed),
            api_rate_limit_per_minute: raw.api_rate_limit_per_minute.unwrap_or(60),
            failed_auth_limit_per_minute: raw.failed_auth_limit_per_minute.unwrap_or(120),
            publish_rate_limit_per_minute: raw.publish_rate_limit_per_minute.unwrap_or(60_000),
            max_webhooks_per_account: raw.max_webhooks_per_account.unwrap_or(10),
            rotation_grace: duration("rotation_grace", raw.rotation_grace, "24h")?,
            log_format: match raw.log_format.as_deref().unwrap_or("text") {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(invalid(
                        "log_format",
                        format!("{other:?} is neither text nor json"),
                    ))
                }
            },
            poll_interval: duration("poll_interval", raw.poll_interval, "500ms")?,
            delivery_worker: raw.delivery_worker.unwrap_or(true),
            nats_consumer: raw.nats_consumer.unwrap_or(true),
            redis_prefix: raw.redis_prefix.unwrap_or_else(|| "hookwarden:".into()),
            delivery_sink: raw.delivery_sink.unwrap_or(env == Environment::Development),
            ingress_worker: raw.ingress_worker.unwrap_or(true),
            integrations: raw.integrations.unwrap_or_default(),
            grants: crate::producers::Grants::new(raw.producers.unwrap_or_default())
                .map_err(|e| invalid("producers", e))?,
            tls: tls_settings(
                "tls",
                raw.tls_cert_file,
                raw.tls_key_file,
                raw.tls_client_ca_file,
                raw.tls_client_auth,
            )?,
            ops_tls: tls_settings(
                "ops_tls",
                raw.ops_tls_cert_file,
                raw.ops_tls_key_file,
                raw.ops_tls_client_ca_file,
                raw.ops_tls_client_auth,
            )?,
            gateway_identity: raw.gateway_identity.filter(|g| !g.is_empty()),
            operator_client_identity: raw.operator_client_identity.filter(|o| !o.is_empty()),
            data_dir,
        };
        settings.cross_check()?;
        Ok(settings)
    }

    fn cross_check(&self) -> Result<(), ConfigError> {
        // Identities come from client certificates, so they need mTLS on the public listener.
        let public_mtls = self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_auth != ClientAuth::Off);
        if (self.gateway_identity.is_some() || self.operator_client_identity.is_some())
            && !public_mtls
        {
            return Err(invalid("gateway_identity", "client-certificate identities need HOOKWARDEN_TLS_CLIENT_AUTH optional or required"));
        }
        if self.delivery_timeout.is_zero() || self.delivery_timeout > Duration::from_secs(60) {
            return Err(invalid("delivery_timeout", "must be between 1ms and 60s"));
        }
        // A try starts only if it can end inside its lease (with a second to
        // spare): a shorter lease would never let one start.
        if self.delivery_lease < self.delivery_timeout + Duration::from_secs(2) {
            return Err(invalid(
                "delivery_lease",
                "must exceed HOOKWARDEN_DELIVERY_TIMEOUT by at least 2s",
            ));
        }
        if self.delivery_lease <= self.delivery_timeout {
            return Err(invalid(
                "delivery_lease",
                "must be longer than delivery_timeout",
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 10_000 {
            return Err(invalid("max_in_flight", "must be between 1 and 10000"));
        }
        if let crate::pump::LaneShare::Fixed(n) = self.max_in_flight_per_endpoint {
            if n == 0 || n > self.max_in_flight {
                return Err(invalid(
                    "max_in_flight_per_endpoint",
                    "must be between 1 and max_in_flight",
                ));
            }
        }
        if self.api_rate_limit_per_minute == 0
            || self.publish_rate_limit_per_minute == 0
            || self.failed_auth_limit_per_minute == 0
        {
            return Err(invalid(
                "api_rate_limit_per_minute",
                "rate limits must be at least 1",
            ));
        }
        if !(1..=10_000).contains(&self.max_webhooks_per_account) {
            return Err(invalid(
                "max_webhooks_per_account",
                "must be between 1 and 10000",
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(invalid("poll_interval", "must be positive"));
        }
        if let Some(url) = &self.jwt_jwks_url {
            match url::Url::parse(url) {
                Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
                Ok(_) => return Err(invalid("jwt_jwks_url", "must be an https:// URL")),
                Err(e) => return Err(invalid("jwt_jwks_url", e)),
            }
        }
        if self.jwt_jwks_ca_file.is_some() && self.jwt_jwks_url.is_none() {
            return Err(invalid(
                "jwt_jwks_ca_file",
                "is for the server of HOOKWARDEN_JWT_JWKS_URL, which is not set",
            ));
        }
        if self.jwt_jwks_refresh < Duration::from_secs(1) {
            return Err(invalid("jwt_jwks_refresh", "must be at least 1s"));
        }
        if let Some(n) = &self.nats {
            // JetStream keeps nothing shorter than a second and counts bytes in an i64.
            if n.max_age < Duration::from_secs(1) {
                return Err(invalid("nats_max_age", "must be at least 1s"));
            }
            if n.max_bytes < MIN_STREAM_BYTES || n.max_bytes > i64::MAX as u64 {
                return Err(invalid("nats_max_bytes", "must be at least 1MiB"));
            }
        }
        if self.env == Environment::Production {
            self.production_refusals()?;
        }
        Ok(())
    }

    /// Every insecure setting production refuses, in one place.
    fn production_refusals(&self) -> Result<(), ConfigError> {
        // All of them at once, so one `config check` lists everything to fix.
        let mut refused: Vec<String> = Vec::new();
        let mut refuse = |why: &str| refused.push(why.to_owned());
        if self.master_key.is_none() && self.master_key_file.is_none() {
            refuse("no master key: set HOOKWARDEN_MASTER_KEY or HOOKWARDEN_MASTER_KEY_FILE (a generated development key is not accepted)");
        }
        if !self.allowed_destinations.is_empty() {
            refuse("HOOKWARDEN_ALLOWED_DESTINATIONS exempts addresses from the SSRF policy");
        }
        if self.allow_http_destinations {
            refuse("HOOKWARDEN_ALLOW_HTTP_DESTINATIONS allows plain http:// destinations");
        }
        if self.delivery_sink {
            refuse("HOOKWARDEN_DELIVERY_SINK enables the development delivery sink");
        }
        if self.jwt_hs256_secret.is_none()
            && self.jwt_jwks_file.is_none()
            && self.jwt_jwks_url.is_none()
        {
            refuse("no tenant API authentication: set HOOKWARDEN_JWT_JWKS_URL or HOOKWARDEN_JWT_JWKS_FILE (or HOOKWARDEN_JWT_HS256_SECRET)");
        }
        // Keys fetched in the clear could be swapped by anyone on the path.
        if self
            .jwt_jwks_url
            .as_deref()
            .is_some_and(|u| !u.starts_with("https://"))
        {
            refuse("HOOKWARDEN_JWT_JWKS_URL is not https:// (keys fetched in the clear can be replaced on the way)");
        }
        // A token minted for another service of the same issuer, or by
        // another issuer sharing a key, must not pass here.
        if self.jwt_issuer.is_none() || self.jwt_audience.is_none() {
            refuse("tokens are not bound to this service: set HOOKWARDEN_JWT_ISSUER and HOOKWARDEN_JWT_AUDIENCE");
        }
        if self
            .jwt_hs256_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().len() < MIN_SECRET_BYTES)
        {
            refuse("HOOKWARDEN_JWT_HS256_SECRET is shorter than 32 bytes (guessable offline from any token)");
        }
        if self
            .management_api_keys
            .iter()
            .any(|k| k.expose_secret().len() < MIN_SECRET_BYTES)
        {
            refuse("a key in HOOKWARDEN_MANAGEMENT_API_KEYS is shorter than 32 bytes");
        }
        if let Some(path) = &self.master_key_file {
            if let Some(why) = readable_by_others(path) {
                refuse(&format!(
                    "HOOKWARDEN_MASTER_KEY_FILE {why}: make it readable by hookwarden's user only (chmod 600)"
                ));
            }
        }
        match refused.len() {
            0 => Ok(()),
            1 => Err(ConfigError::Production(refused.remove(0))),
            n => Err(ConfigError::Production(format!(
                "{n} settings are refused:\n  - {}",
                refused.join("\n  - ")
            ))),
        }
    }

    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    /// The destination policy derived from the settings.
    pub fn address_policy(&self) -> AddressPolicy {
        AddressPolicy::new(
            self.allowed_destinations.clone(),
            self.allow_http_destinations,
        )
    }

    /// The effective configuration as TOML, secrets redacted (`config check`).
    pub fn redacted_toml(&self) -> String {
        let secret = |s: &Option<SecretString>| {
            if s.is_some() {
                "\"<redacted>\"".to_owned()
            } else {
                "# unset".to_owned()
            }
        };
        let opt = |s: &Option<String>| {
            s.as_ref()
                .map(|v| format!("{v:?}"))
                .unwrap_or_else(|| "# unset".into())
        };
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|v| format!("{:?}", v.display().to_string()))
                .unwrap_or_else(|| "# unset".into())
        };
        let schedule = self
            .retry_schedule
            .iter()
            .map(|d| format_duration(*d))
            .collect::<Vec<_>>()
            .join(",");
        let cidrs = self
            .allowed_destinations
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut out = vec![
            format!(
                "env = {:?}",
                if self.is_production() {
                    "production"
                } else {
                    "development"
                }
            ),
            format!("data_dir = {:?}", self.data_dir.display().to_string()),
            format!(
                "database_url = {:?}",
                hookwarden_store::redact_url(self.database_url.expose_secret())
            ),
            format!("run_migrations = {}", self.run_migrations),
            // A NATS URL may carry a token or a password: neither is shown.
            format!(
                "nats_url = {}",
                opt(&self.nats.as_ref().map(|n| without_credentials(&n.url)))
            ),
            format!(
                "redis_url = {}",
                self.redis_url
                    .as_ref()
                    .map(|u| format!("{:?}", hookwarden_store::redact_url(u.expose_secret())))
                    .unwrap_or_else(|| "# unset".into())
            ),
            format!("listen = \"{}\"", self.listen),
            format!("ops_listen = \"{}\"", self.ops_listen),
            format!("master_key = {}", secret(&self.master_key)),
            format!("master_key_file = {}", path(&self.master_key_file)),
            format!(
                "previous_master_keys = {}",
                secret(&self.previous_master_keys)
            ),
            format!("jwt_hs256_secret = {}", secret(&self.jwt_hs256_secret)),
            format!("jwt_jwks_file = {}", path(&self.jwt_jwks_file)),
            format!(
                "jwt_jwks_url = {}",
                opt(&self.jwt_jwks_url.as_deref().map(without_credentials))
            ),
            format!(
                "jwt_jwks_refresh = {:?}",
                format_duration(self.jwt_jwks_refresh)
            ),
            format!("jwt_jwks_ca_file = {}", path(&self.jwt_jwks_ca_file)),
            format!("jwt_issuer = {}", opt(&self.jwt_issuer)),
            format!("jwt_audience = {}", opt(&self.jwt_audience)),
            format!(
                "management_api_keys = \"<{} redacted>\"",
                self.management_api_keys.len()
            ),
            format!("allowed_destinations = {cidrs:?}"),
            format!(
                "trusted_proxies = {:?}",
                self.trusted_proxies
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            format!(
                "trusted_proxy_header = {:?}",
                self.trusted_proxy_header.name()
            ),
            format!("allow_http_destinations = {}", self.allow_http_destinations),
            format!("retry_schedule = {schedule:?}"),
            format!(
                "delivery_timeout = {:?}",
                format_duration(self.delivery_timeout)
            ),
            format!(
                "delivery_lease = {:?}",
                format_duration(self.delivery_lease)
            ),
            format!("delivery_ca_file = {}", path(&self.delivery_ca_file)),
            format!("max_in_flight = {}", self.max_in_flight),
            match self.max_in_flight_per_endpoint {
                crate::pump::LaneShare::Fixed(n) => format!("max_in_flight_per_endpoint = {n}"),
                crate::pump::LaneShare::Fair => {
                    "# max_in_flight_per_endpoint: unset, the fair share".to_string()
                }
            },
            format!(
                "api_rate_limit_per_minute = {}",
                self.api_rate_limit_per_minute
            ),
            format!(
                "failed_auth_limit_per_minute = {}",
                self.failed_auth_limit_per_minute
            ),
            format!(
                "publish_rate_limit_per_minute = {}",
                self.publish_rate_limit_per_minute
            ),
            format!(
                "max_webhooks_per_account = {}",
                self.max_webhooks_per_account
            ),
            format!(
                "rotation_grace = {:?}",
                format_duration(self.rotation_grace)
            ),
            format!(
                "log_format = {:?}",
                if self.log_format == LogFormat::Json {
                    "json"
                } else {
                    "text"
                }
            ),
            format!("poll_interval = {:?}", format_duration(self.poll_interval)),
            format!("delivery_worker = {}", self.delivery_worker),
            format!("nats_consumer = {}", self.nats_consumer),
            format!("redis_prefix = {:?}", self.redis_prefix),
            format!("delivery_sink = {}", self.delivery_sink),
            format!("ingress_worker = {}", self.ingress_worker),
            format!("# integrations from the file: {}", self.integrations.len()),
            format!("tls = {}", tls_line(&self.tls)),
            format!("ops_tls = {}", tls_line(&self.ops_tls)),
            format!("gateway_identity = {}", opt(&self.gateway_identity)),
            format!(
                "operator_client_identity = {}",
                opt(&self.operator_client_identity)
            ),
        ];
        if let Some(n) = &self.nats {
            out.push(format!("nats_subject_prefix = {:?}", n.subject_prefix));
            out.push(format!("nats_stream = {:?}", n.stream));
            out.push(format!("nats_creds_file = {}", path(&n.creds_file)));
            out.push(format!("nats_tls_ca_file = {}", path(&n.tls_ca_file)));
            let (cert, key) = n.tls_client.clone().unzip();
            out.push(format!("nats_tls_cert_file = {}", path(&cert)));
            out.push(format!("nats_tls_key_file = {}", path(&key)));
            out.push(format!("nats_ack_wait = {:?}", format_duration(n.ack_wait)));
            out.push(format!("nats_max_age = {:?}", format_duration(n.max_age)));
            out.push(format!("nats_max_bytes = {:?}", format_bytes(n.max_bytes)));
        }
        out.join("\n") + "\n"
    }
}

fn tls_line(t: &Option<TlsSettings>) -> String {
    match t {
        Some(t) => format!(
            "\"{} (client certificates {:?})\"",
            t.cert_file.display(),
            t.client_auth
        ),
        None => "\"off\"".into(),
    }
}

/// A URL fit to print: user name and password (or a token in their place) removed.
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.to_string()
        }
        Err(_) => "<unparseable url>".to_owned(),
    }
}

/// The smallest stream size accepted: below it, a few events fill the stream.
const MIN_STREAM_BYTES: u64 = 1 << 20;

const BYTE_UNITS: [(&str, u64); 4] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
];

/// A size as configuration writes it: bytes, or a whole number of `KiB`,
/// `MiB`, `GiB` or `TiB` (binary units only: `GB` would be ambiguous).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let err =
        || format!("{t:?} is not a size (bytes, or a number with KiB, MiB, GiB or TiB, e.g. 1GiB)");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let size = match unit.trim() {
        "" => 1,
        u => {
            BYTE_UNITS
                .iter()
                .find(|(name, _)| *name == u)
                .ok_or_else(err)?
                .1
        }
    };
    n.checked_mul(size).ok_or_else(err)
}

/// Formats a size the way `parse_bytes` reads it (largest exact unit).
pub fn format_bytes(n: u64) -> String {
    BYTE_UNITS
        .iter()
        .find(|(_, size)| n >= *size && n.is_multiple_of(*size))
        .map_or_else(
            || n.to_string(),
            |(unit, size)| format!("{}{unit}", n / size),
        )
}

/// Shortest HS256 secret and operator key accepted in production.
const MIN_SECRET_BYTES: usize = 32;

/// Why a key file is not private to its owner, if it is not.
#[cfg(unix)]
fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Some(format!(
            "is readable or writable by group or others (mode {:o})",
            m.permissions().mode() & 0o777
        )),
        Ok(_) => None,
        Err(e) => Some(format!("cannot be read ({})", e.kind())),
    }
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawConfig {
        RawConfig::default()
    }

    #[test]
    fn every_setting_can_come_from_the_environment() {
        // serde lists every field of RawConfig when it meets an unknown one.
        let err = serde_json::from_str::<RawConfig>(r#"{"no_such_setting": 1}"#)
            .expect_err("unknown field");
        let text = err.to_string();
        let fields = text.split("expected one of ").nth(1).expect("field list");
        for field in fields.split(", ").map(|f| {
            f.trim_matches(|c| c == '`' || c == ' ')
                .split('`')
                .next()
                .unwrap_or("")
        }) {
            if field.is_empty() || field == "integrations" || field == "producers" {
                continue; // a list: the TOML file only
            }
            assert!(
                KEYS.contains(&field),
                "HOOKWARDEN_{} is ignored: add {field:?} to KEYS",
                field.to_ascii_uppercase()
            );
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::from_raw(raw()).expect("defaults");
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.ops_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(s.retry_schedule.len(), 7);
        assert_eq!(s.delivery_timeout, Duration::from_secs(5));
        assert_eq!(s.max_in_flight, 20);
        assert_eq!(s.api_rate_limit_per_minute, 60);
        assert_eq!(s.rotation_grace, Duration::from_secs(86400));
        assert!(s
            .database_url
            .expose_secret()
            .ends_with("data/hookwarden.db"));
        assert!(s.allow_http_destinations);
    }

    #[test]
    fn a_lease_too_short_for_a_try_is_refused() {
        let short = RawConfig {
            delivery_timeout: Some("5s".into()),
            delivery_lease: Some("6s".into()),
            ..raw()
        };
        let err = Settings::from_raw(short).expect_err("lease shorter than a try");
        assert!(
            err.to_string().contains("HOOKWARDEN_DELIVERY_LEASE"),
            "{err}"
        );
        let enough = RawConfig {
            delivery_timeout: Some("1s".into()),
            delivery_lease: Some("3s".into()),
            ..raw()
        };
        assert!(Settings::from_raw(enough).is_ok());
    }

    #[test]
    fn production_refuses_each_insecure_setting() {
        let prod = || RawConfig {
            env: Some("production".into()),
            master_key: Some(SecretString::from("k".to_owned())),
            jwt_jwks_file: Some("/etc/jwks.json".into()),
            jwt_issuer: Some("https://auth.example".into()),
            jwt_audience: Some("hookwarden".into()),
            management_api_keys: Some(SecretString::from(
                "0123456789abcdef0123456789abcdef".to_owned(),
            )),
            ..raw()
        };
        assert!(Settings::from_raw(prod()).is_ok());
        // Everything refused is listed at once, not one per try.
        let two = Settings::from_raw(RawConfig {
            delivery_sink: Some(true),
            jwt_issuer: None,
            ..prod()
        })
        .expect_err("refused")
        .to_string();
        assert!(
            two.contains("2 settings are refused")
                && two.contains("HOOKWARDEN_DELIVERY_SINK")
                && two.contains("HOOKWARDEN_JWT_ISSUER"),
            "{two}"
        );
        // A JWKS URL alone, over HTTPS, authenticates tokens in production.
        assert!(Settings::from_raw(RawConfig {
            jwt_jwks_file: None,
            jwt_jwks_url: Some("https://idp.example/jwks.json".into()),
            ..prod()
        })
        .is_ok());
        let dir = std::env::temp_dir().join(format!("hw-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let open_key = dir.join("open.key");
        std::fs::write(&open_key, "k").expect("write");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
        let cases = [
            RawConfig {
                jwt_issuer: None,
                ..prod()
            },
            RawConfig {
                jwt_audience: None,
                ..prod()
            },
            RawConfig {
                jwt_hs256_secret: Some(SecretString::from("short-secret".to_owned())),
                ..prod()
            },
            RawConfig {
                management_api_keys: Some(SecretString::from(
                    "0123456789abcdef0123456789abcdef,short".to_owned(),
                )),
                ..prod()
            },
            RawConfig {
                master_key: None,
                master_key_file: Some(open_key.clone()),
                ..prod()
            },
            RawConfig {
                master_key: None,
                ..prod()
            },
            RawConfig {
                allowed_destinations: Some("127.0.0.0/8".into()),
                ..prod()
            },
            RawConfig {
                allow_http_destinations: Some(true),
                ..prod()
            },
            RawConfig {
                jwt_jwks_file: None,
                ..prod()
            },
            RawConfig {
                jwt_jwks_url: Some("http://idp.example/jwks.json".into()),
                ..prod()
            },
        ];
        for case in cases {
            let err = Settings::from_raw(case).expect_err("refused");
            assert!(matches!(err, ConfigError::Production(_)), "{err}");
            assert!(!err.to_string().contains("short-secret"), "{err}");
        }
        // The same key file, private to its owner, is accepted.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
        }
        assert!(Settings::from_raw(RawConfig {
            master_key: None,
            master_key_file: Some(open_key),
            ..prod()
        })
        .is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = Settings::from_raw(RawConfig {
            retry_schedule: Some("5x".into()),
            ..raw()
        })
        .expect_err("bad");
        assert!(
            err.to_string().contains("HOOKWARDEN_RETRY_SCHEDULE"),
            "{err}"
        );
        let err = Settings::from_raw(RawConfig {
            max_in_flight: Some(0),
            ..raw()
        })
        .expect_err("bad");
        assert!(
            err.to_string().contains("HOOKWARDEN_MAX_IN_FLIGHT"),
            "{err}"
        );
    }

    #[test]
    fn the_nats_stream_retention_is_bounded_by_default_and_configurable() {
        let with_nats = |extra: &str| {
            Settings::from_toml(&format!("nats_url = \"nats://127.0.0.1:4222\"\n{extra}"))
        };
        let n = with_nats("").expect("defaults").nats.expect("nats");
        assert_eq!(n.max_age, Duration::from_secs(7 * 86_400));
        assert_eq!(n.max_bytes, 1 << 30);
        let s = with_nats("nats_max_age = \"36h\"\nnats_max_bytes = \"512MiB\"\n").expect("set");
        let n = s.nats.as_ref().expect("nats");
        assert_eq!(n.max_age, Duration::from_secs(36 * 3600));
        assert_eq!(n.max_bytes, 512 << 20);
        assert!(s.redacted_toml().contains("nats_max_bytes = \"512MiB\""));
        for (extra, variable) in [
            ("nats_max_bytes = \"1GB\"", "HOOKWARDEN_NATS_MAX_BYTES"),
            ("nats_max_bytes = \"1000\"", "HOOKWARDEN_NATS_MAX_BYTES"),
            ("nats_max_age = \"0s\"", "HOOKWARDEN_NATS_MAX_AGE"),
            (
                "nats_tls_cert_file = \"/c.pem\"",
                "HOOKWARDEN_NATS_TLS_CERT_FILE",
            ),
        ] {
            let err = with_nats(extra).expect_err(extra);
            assert!(err.to_string().contains(variable), "{extra}: {err}");
        }
        assert_eq!(parse_bytes("1073741824"), Ok(1 << 30));
        assert_eq!(format_bytes(3 << 20), "3MiB");
        assert_eq!(format_bytes(1000), "1000");
    }

    #[test]
    fn the_delivery_ca_file_comes_from_the_file_and_is_shown() {
        let s = Settings::from_toml("delivery_ca_file = \"/etc/hookwarden/receivers-ca.pem\"\n")
            .expect("settings");
        let path = "/etc/hookwarden/receivers-ca.pem";
        assert_eq!(s.delivery_ca_file.as_deref(), Some(Path::new(path)));
        assert!(s
            .redacted_toml()
            .contains(&format!("delivery_ca_file = {path:?}")));
    }

    #[test]
    fn redacted_output_hides_secrets() {
        let s = Settings::from_raw(RawConfig {
            master_key: Some(SecretString::from("TOPSECRETKEY".to_owned())),
            jwt_hs256_secret: Some(SecretString::from("JWTSECRET".to_owned())),
            management_api_keys: Some(SecretString::from("OPKEY1,OPKEY2".to_owned())),
            database_url: Some(SecretString::from("postgres://u:DBPASS@h/db".to_owned())),
            nats_url: Some("nats://NATSTOKEN@nats:4222".to_owned()),
            ..raw()
        })
        .expect("settings");
        let text = s.redacted_toml() + &format!("{s:?}");
        for secret in ["TOPSECRETKEY", "JWTSECRET", "OPKEY1", "DBPASS", "NATSTOKEN"] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }

    #[test]
    fn the_jwks_url_is_checked_and_shown_without_credentials() {
        let s = Settings::from_toml(
            "jwt_jwks_url = \"https://user:JWKSPASS@idp.example/jwks.json\"\njwt_jwks_refresh = \"10m\"\n",
        )
        .expect("settings");
        assert_eq!(s.jwt_jwks_refresh, Duration::from_secs(600));
        let shown = s.redacted_toml();
        assert!(
            shown.contains("jwt_jwks_url = \"https://idp.example/jwks.json\""),
            "{shown}"
        );
        assert!(!shown.contains("JWKSPASS"));
        assert_eq!(
            Settings::from_toml("").expect("defaults").jwt_jwks_refresh,
            Duration::from_secs(300)
        );
        for (toml, variable) in [
            (
                "jwt_jwks_url = \"ftp://idp.example/jwks\"",
                "HOOKWARDEN_JWT_JWKS_URL",
            ),
            ("jwt_jwks_url = \"not a url\"", "HOOKWARDEN_JWT_JWKS_URL"),
            (
                "jwt_jwks_refresh = \"500ms\"",
                "HOOKWARDEN_JWT_JWKS_REFRESH",
            ),
            (
                "jwt_jwks_ca_file = \"/ca.pem\"",
                "HOOKWARDEN_JWT_JWKS_CA_FILE",
            ),
        ] {
            let err = Settings::from_toml(toml).expect_err(toml);
            assert!(err.to_string().contains(variable), "{toml}: {err}");
        }
    }
}
