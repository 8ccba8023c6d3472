//! What is wrong in any environment, once every setting has been read:
//! bounds, and settings that go together or depend on one another. Then,
//! in production, the refusals (`refusals.rs`).

use super::{invalid, ConfigError, Environment, Settings};
use crate::boot::tls::ClientAuth;
use crate::shared::pump::LaneShare;
use std::path::PathBuf;
use std::time::Duration;

/// The smallest stream size accepted: below it, a few events fill the stream.
const MIN_STREAM_BYTES: u64 = 1 << 20;

/// One listener's four TLS settings (`<prefix>_cert_file`, …) agree.
fn listener(
    prefix: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    client_ca: &Option<PathBuf>,
    auth: ClientAuth,
) -> Result<(), ConfigError> {
    match (cert, key) {
        (None, None) if auth == ClientAuth::Off => Ok(()),
        (None, None) => Err(invalid(
            &format!("{prefix}_client_auth"),
            "client certificates need TLS: set the certificate and key files",
        )),
        (Some(_), Some(_)) if auth != ClientAuth::Off && client_ca.is_none() => Err(invalid(
            &format!("{prefix}_client_ca_file"),
            "client certificates need a CA file to verify them",
        )),
        (Some(_), Some(_)) => Ok(()),
        _ => Err(invalid(
            &format!("{prefix}_cert_file"),
            "the certificate and the key file go together",
        )),
    }
}

impl Settings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        listener(
            "tls",
            &self.tls_cert_file,
            &self.tls_key_file,
            &self.tls_client_ca_file,
            self.tls_client_auth,
        )?;
        listener(
            "ops_tls",
            &self.ops_tls_cert_file,
            &self.ops_tls_key_file,
            &self.ops_tls_client_ca_file,
            self.ops_tls_client_auth,
        )?;
        if self.nats_tls_cert_file.is_some() != self.nats_tls_key_file.is_some() {
            return Err(invalid(
                "nats_tls_cert_file",
                "the NATS client certificate and key file go together",
            ));
        }
        // Identities come from client certificates, so they need mTLS on the public listener.
        let public_mtls = self.tls().is_some_and(|t| t.client_auth != ClientAuth::Off);
        if (self.gateway_identity.is_some() || self.operator_client_identity.is_some())
            && !public_mtls
        {
            return Err(invalid("gateway_identity", "client-certificate identities need HOOKWARDEN_TLS_CLIENT_AUTH optional or required"));
        }
        if self.delivery_timeout.is_zero() || self.delivery_timeout > Duration::from_secs(60) {
            return Err(invalid("delivery_timeout", "must be between 1ms and 60s"));
        }
        // A lease must outlast a try, or a slow try could be claimed twice.
        if self.delivery_lease <= self.delivery_timeout {
            return Err(invalid(
                "delivery_lease",
                "must be longer than HOOKWARDEN_DELIVERY_TIMEOUT (a try could outlast it and be claimed twice)",
            ));
        }
        // A try starts only if it can end inside its lease (with a second to
        // spare): a shorter lease would never let one start.
        if self.delivery_lease < self.delivery_timeout + Duration::from_secs(2) {
            return Err(invalid(
                "delivery_lease",
                "must exceed HOOKWARDEN_DELIVERY_TIMEOUT by at least 2s (no try could start)",
            ));
        }
        if self.retention < Duration::from_secs(3600) {
            return Err(invalid(
                "retention",
                "must be at least 1h (history younger than that is still being delivered)",
            ));
        }
        if self.disable_after < Duration::from_secs(1) {
            return Err(invalid(
                "disable_after",
                "must be at least 1s (0 would disable an endpoint at its first failure)",
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 10_000 {
            return Err(invalid("max_in_flight", "must be between 1 and 10000"));
        }
        if let LaneShare::Fixed(n) = self.max_in_flight_per_endpoint {
            if n == 0 || n > self.max_in_flight {
                return Err(invalid(
                    "max_in_flight_per_endpoint",
                    "must be between 1 and max_in_flight",
                ));
            }
        }
        for (name, limit) in [
            ("api_rate_limit_per_minute", self.api_rate_limit_per_minute),
            (
                "failed_auth_limit_per_minute",
                self.failed_auth_limit_per_minute,
            ),
            (
                "publish_rate_limit_per_minute",
                self.publish_rate_limit_per_minute,
            ),
        ] {
            if limit == 0 {
                return Err(invalid(name, "rate limits must be at least 1"));
            }
        }
        if !(1..=10_000).contains(&self.max_webhooks_per_account) {
            return Err(invalid(
                "max_webhooks_per_account",
                "must be between 1 and 10000",
            ));
        }
        // A console session is a bearer credential: it may not outlive a day.
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400))
            .contains(&self.console_session_ttl)
        {
            return Err(invalid("console_session_ttl", "must be 1s–24h"));
        }
        if self.poll_interval.is_zero() {
            return Err(invalid("poll_interval", "must be positive"));
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
        // JetStream keeps nothing shorter than a second and counts bytes in an i64.
        if self.nats_url.is_some() {
            if self.nats_max_age < Duration::from_secs(1) {
                return Err(invalid("nats_max_age", "must be at least 1s"));
            }
            if self.nats_max_bytes < MIN_STREAM_BYTES || self.nats_max_bytes > i64::MAX as u64 {
                return Err(invalid(
                    "nats_max_bytes",
                    "must be between 1MiB and 8388607TiB",
                ));
            }
        }
        if self.env == Environment::Production {
            self.production_refusals()?;
        }
        Ok(())
    }
}
