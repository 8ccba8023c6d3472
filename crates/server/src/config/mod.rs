//! Configuration. Every setting is a typed field of `Settings` and a line of
//! `defaults.toml` (its default and meaning, built into the binary): adding
//! one touches those two places. Loaded from the defaults, a TOML file and
//! `HOOKWARDEN_*` variables (`load.rs`), each value read by its field's
//! reader (`values.rs`), cross-checked (`checks.rs`), refused in production
//! when insecure (`refusals.rs`), and shown by `config check` serialized with
//! secrets redacted (`redact.rs`). Secrets stay in `secrecy` types.

mod checks;
pub mod integrations;
mod load;
pub mod operational;
mod redact;
mod refusals;
#[cfg(test)]
mod tests;
mod values;

pub use load::RawConfig;
pub use redact::without_credentials;
pub use values::{format_bytes, parse_bytes};

use crate::boot::tls::{ClientAuth, TlsSettings};
use crate::outbound::producers::Grants;
use crate::shared::pump::LaneShare;
use hookwarden_core::client_addr::ProxyHeader;
use hookwarden_core::destination::AddressPolicy;
use integrations::IntegrationInput;
use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[serde(alias = "dev")]
    Development,
    #[serde(alias = "prod")]
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every setting, typed, named and ordered as in `defaults.toml` (a test
/// holds the two together). `Debug` shows what `config check` shows: no
/// secret, no URL's credentials.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub env: Environment,
    pub data_dir: PathBuf,
    #[serde(
        deserialize_with = "values::database_url",
        serialize_with = "redact::secret_url"
    )]
    pub database_url: SecretString,
    pub run_migrations: bool,

    #[serde(deserialize_with = "values::socket_addr")]
    pub listen: SocketAddr,
    #[serde(deserialize_with = "values::socket_addr")]
    pub ops_listen: SocketAddr,
    #[serde(deserialize_with = "values::optional")]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(deserialize_with = "values::optional")]
    pub tls_key_file: Option<PathBuf>,
    #[serde(deserialize_with = "values::optional")]
    pub tls_client_ca_file: Option<PathBuf>,
    #[serde(
        deserialize_with = "values::client_auth",
        serialize_with = "redact::client_auth"
    )]
    pub tls_client_auth: ClientAuth,
    #[serde(deserialize_with = "values::optional")]
    pub ops_tls_cert_file: Option<PathBuf>,
    #[serde(deserialize_with = "values::optional")]
    pub ops_tls_key_file: Option<PathBuf>,
    #[serde(deserialize_with = "values::optional")]
    pub ops_tls_client_ca_file: Option<PathBuf>,
    #[serde(
        deserialize_with = "values::client_auth",
        serialize_with = "redact::client_auth"
    )]
    pub ops_tls_client_auth: ClientAuth,
    /// The private listener of the console and the operator API, if any.
    #[serde(deserialize_with = "values::optional_socket_addr")]
    pub operator_listen: Option<SocketAddr>,
    /// The public listener's address as clients reach it (portal links).
    #[serde(deserialize_with = "values::http_url")]
    pub public_url: Option<String>,
    #[serde(
        deserialize_with = "values::duration",
        serialize_with = "redact::duration"
    )]
    pub console_session_ttl: Duration,
    /// Origins that may frame the portal (CSP `frame-ancestors`).
    #[serde(
        deserialize_with = "values::origins",
        serialize_with = "redact::origins"
    )]
    pub portal_frame_ancestors: Vec<String>,
    /// The client-certificate identity (CN or SAN) of the gateway allowed to
    /// set `X-Account-Id`.
    #[serde(deserialize_with = "values::optional")]
    pub gateway_identity: Option<String>,
    /// When set, the operator API also requires this client-certificate identity.
    #[serde(deserialize_with = "values::optional")]
    pub operator_client_identity: Option<String>,
    /// Peers whose `Forwarded` / `X-Forwarded-For` name the client.
    #[serde(deserialize_with = "values::cidrs", serialize_with = "redact::cidrs")]
    pub trusted_proxies: Vec<IpNet>,
    /// The one header those proxies write (the other is never read).
    #[serde(
        deserialize_with = "values::proxy_header",
        serialize_with = "redact::proxy_header"
    )]
    pub trusted_proxy_header: ProxyHeader,

    #[serde(
        deserialize_with = "values::optional",
        serialize_with = "redact::secret"
    )]
    pub master_key: Option<SecretString>,
    #[serde(deserialize_with = "values::optional")]
    pub master_key_file: Option<PathBuf>,
    /// Older master keys, comma-separated: still read, never written (rotation).
    #[serde(
        deserialize_with = "values::optional",
        serialize_with = "redact::secret"
    )]
    pub previous_master_keys: Option<SecretString>,
    #[serde(
        deserialize_with = "values::optional",
        serialize_with = "redact::secret"
    )]
    pub jwt_hs256_secret: Option<SecretString>,
    #[serde(deserialize_with = "values::optional")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// HTTPS (plain HTTP only in development); its keys join the file's.
    #[serde(deserialize_with = "values::http_url", serialize_with = "redact::url")]
    pub jwt_jwks_url: Option<String>,
    #[serde(
        deserialize_with = "values::duration",
        serialize_with = "redact::duration"
    )]
    pub jwt_jwks_refresh: Duration,
    /// PEM roots trusted for the JWKS URL besides the system's.
    #[serde(deserialize_with = "values::optional")]
    pub jwt_jwks_ca_file: Option<PathBuf>,
    #[serde(deserialize_with = "values::optional")]
    pub jwt_issuer: Option<String>,
    #[serde(deserialize_with = "values::optional")]
    pub jwt_audience: Option<String>,
    #[serde(
        deserialize_with = "values::secret_list",
        serialize_with = "redact::secret_list"
    )]
    pub management_api_keys: Vec<SecretString>,

    pub api_rate_limit_per_minute: u32,
    /// Refused authentications per client and minute before it is answered 429.
    pub failed_auth_limit_per_minute: u32,
    pub publish_rate_limit_per_minute: u32,
    /// Webhooks an account may have; the database enforces it (written there at start-up).
    pub max_webhooks_per_account: u32,

    #[serde(deserialize_with = "values::cidrs", serialize_with = "redact::cidrs")]
    pub allowed_destinations: Vec<IpNet>,
    pub allow_http_destinations: bool,
    #[serde(
        deserialize_with = "values::schedule",
        serialize_with = "redact::schedule"
    )]
    pub retry_schedule: Vec<Duration>,
    #[serde(
        deserialize_with = "values::duration",
        serialize_with = "redact::duration"
    )]
    pub delivery_timeout: Duration,
    #[serde(
        deserialize_with = "values::duration",
        serialize_with = "redact::duration"
    )]
    pub delivery_lease: Duration,
    /// PEM roots trusted for HTTPS receivers and forwarding targets besides
    /// the system's (private CAs).
    #[serde(deserialize_with = "values::optional")]
    pub delivery_ca_file: Option<PathBuf>,
    pub max_in_flight: usize,
    /// `Fixed` when configured, else the fair share (see `pump::LaneShare`).
    #[serde(
        deserialize_with = "values::lane_share",
        serialize_with = "redact::lane_share"
    )]
    pub max_in_flight_per_endpoint: LaneShare,
    #[serde(
        deserialize_with = "values::duration",
        serialize_with = "redact::duration"
    )]
    pub rotation_grace: Duration,
    /// An endpoint that has failed every try this long is disabled.
    #[serde(
        deserialize_with = "values::duration",
        serialize_with = "redact::duration"
    )]
    pub disable_after: Duration,
    /// Events, tries, inbound events and forwarding jobs older than this
    /// are deleted (the audit trail never is).
    #[serde(
        deserialize_with = "values::duration",
        serialize_with = "redact::duration"
    )]
    pub retention: Duration,
    /// Inbound refusals of one integration in a minute above which an
    /// `integration.verification_failing` operational event is sent.
    pub verification_failing_threshold: u32,
    #[serde(
        deserialize_with = "values::duration",
        serialize_with = "redact::duration"
    )]
    pub poll_interval: Duration,

    pub delivery_worker: bool,
    pub nats_consumer: bool,
    pub ingress_worker: bool,
    /// The development delivery sink (`/api/v1/internal/delivery-sink`).
    pub delivery_sink: bool,

    /// A NATS URL may carry a token or a password: never shown.
    #[serde(deserialize_with = "values::optional", serialize_with = "redact::url")]
    pub nats_url: Option<String>,
    #[serde(deserialize_with = "values::optional")]
    pub nats_creds_file: Option<PathBuf>,
    pub nats_subject_prefix: String,
    pub nats_stream: String,
    #[serde(
        deserialize_with = "values::duration",
        serialize_with = "redact::duration"
    )]
    pub nats_ack_wait: Duration,
    #[serde(deserialize_with = "values::optional")]
    pub nats_tls_ca_file: Option<PathBuf>,
    #[serde(deserialize_with = "values::optional")]
    pub nats_tls_cert_file: Option<PathBuf>,
    #[serde(deserialize_with = "values::optional")]
    pub nats_tls_key_file: Option<PathBuf>,
    #[serde(
        deserialize_with = "values::duration",
        serialize_with = "redact::duration"
    )]
    pub nats_max_age: Duration,
    #[serde(deserialize_with = "values::bytes", serialize_with = "redact::bytes")]
    pub nats_max_bytes: u64,

    #[serde(
        deserialize_with = "values::optional",
        serialize_with = "redact::optional_secret_url"
    )]
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key (isolates deployments sharing a Redis).
    pub redis_prefix: String,

    pub log_format: LogFormat,
    /// Where spans go (OTLP over HTTP, JSON); unset: no span is made.
    #[serde(deserialize_with = "values::http_url", serialize_with = "redact::url")]
    pub otlp_endpoint: Option<String>,

    /// Integrations declared in the file (`[[integrations]]`), applied at
    /// start. Not shown: they hold secrets (`config check` counts them).
    #[serde(skip_serializing)]
    pub integrations: Vec<IntegrationInput>,
    /// Operational webhooks declared in the file (`[[operational_webhooks]]`),
    /// applied at start. Not shown: they hold secrets.
    #[serde(skip_serializing)]
    pub operational_webhooks: Vec<operational::OperationalWebhookInput>,
    /// Producer grants (`[[producers]]`).
    #[serde(
        rename = "producers",
        deserialize_with = "values::grants",
        skip_serializing
    )]
    pub grants: Grants,
}

/// The NATS settings together, as the NATS client takes them.
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

/// One listener's TLS, when its certificate and key are set (the checks
/// have made sure the four settings agree).
fn listener_tls(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    client_ca: &Option<PathBuf>,
    client_auth: ClientAuth,
) -> Option<TlsSettings> {
    Some(TlsSettings {
        cert_file: cert.clone()?,
        key_file: key.clone()?,
        client_ca_file: client_ca.clone(),
        client_auth,
    })
}

impl Settings {
    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    /// NATS, when `nats_url` is set.
    pub fn nats(&self) -> Option<NatsSettings> {
        Some(NatsSettings {
            url: self.nats_url.clone()?,
            creds_file: self.nats_creds_file.clone(),
            subject_prefix: self.nats_subject_prefix.clone(),
            stream: self.nats_stream.clone(),
            ack_wait: self.nats_ack_wait,
            tls_ca_file: self.nats_tls_ca_file.clone(),
            tls_client: self
                .nats_tls_cert_file
                .clone()
                .zip(self.nats_tls_key_file.clone()),
            max_age: self.nats_max_age,
            max_bytes: self.nats_max_bytes,
        })
    }

    /// The public listener's TLS, if it has any.
    pub fn tls(&self) -> Option<TlsSettings> {
        listener_tls(
            &self.tls_cert_file,
            &self.tls_key_file,
            &self.tls_client_ca_file,
            self.tls_client_auth,
        )
    }

    /// The ops listener's TLS, if it has any.
    pub fn ops_tls(&self) -> Option<TlsSettings> {
        listener_tls(
            &self.ops_tls_cert_file,
            &self.ops_tls_key_file,
            &self.ops_tls_client_ca_file,
            self.ops_tls_client_auth,
        )
    }

    /// The destination policy derived from the settings.
    pub fn address_policy(&self) -> AddressPolicy {
        AddressPolicy::new(
            self.allowed_destinations.clone(),
            self.allow_http_destinations,
        )
    }
}
