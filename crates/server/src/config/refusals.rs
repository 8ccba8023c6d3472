//! Every insecure setting production refuses, in one place, all listed at
//! once so that one `config check` says everything to fix.

use super::{ConfigError, Settings};
use secrecy::ExposeSecret;
use std::path::Path;

/// Shortest HS256 secret and operator key accepted in production.
const MIN_SECRET_BYTES: usize = 32;

impl Settings {
    pub(super) fn production_refusals(&self) -> Result<(), ConfigError> {
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
            .is_some_and(|u| url::Url::parse(u).map_or(true, |u| u.scheme() != "https"))
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
}

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
