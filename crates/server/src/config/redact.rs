//! How settings are shown (`config check`, `Debug`): `Settings` serialized
//! as TOML in the words the file uses, through these `serialize_with`
//! functions: secrets as `<redacted>`, URLs without their credentials,
//! durations and sizes as they are written. An unset setting is left out of
//! the TOML and named in a comment.

use super::values::format_bytes;
use super::Settings;
use crate::boot::tls::ClientAuth;
use crate::shared::pump::LaneShare;
use hookwarden_core::client_addr::ProxyHeader;
use hookwarden_core::duration::format_duration;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;
use std::time::Duration;

const REDACTED: &str = "<redacted>";

pub fn secret<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str(REDACTED),
        None => s.serialize_none(),
    }
}

/// How many there are, never what they are.
pub fn secret_list<S: Serializer>(v: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    match v.len() {
        0 => s.serialize_none(),
        n => s.serialize_str(&format!("<{n} redacted>")),
    }
}

/// A URL that may carry a password or a token: shown without either.
pub fn url<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.serialize_str(&without_credentials(u)),
        None => s.serialize_none(),
    }
}

/// A URL kept secret as a whole: shown without its credentials.
pub fn secret_url<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&without_credentials(v.expose_secret()))
}

pub fn optional_secret_url<S: Serializer>(
    v: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => secret_url(u, s),
        None => s.serialize_none(),
    }
}

pub fn duration<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*v))
}

pub fn schedule<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    let list: Vec<String> = v.iter().map(|d| format_duration(*d)).collect();
    s.serialize_str(&list.join(","))
}

pub fn bytes<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_bytes(*v))
}

/// Comma-separated, or nothing when there are none (unset).
pub fn cidrs<S: Serializer>(v: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        return s.serialize_none();
    }
    let list: Vec<String> = v.iter().map(ToString::to_string).collect();
    s.serialize_str(&list.join(","))
}

pub fn origins<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.join(" "))
}

pub fn proxy_header<S: Serializer>(v: &ProxyHeader, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.name())
}

pub fn client_auth<S: Serializer>(v: &ClientAuth, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match v {
        ClientAuth::Off => "off",
        ClientAuth::Optional => "optional",
        ClientAuth::Required => "required",
    })
}

/// A fixed cap, or nothing (unset: the fair share).
pub fn lane_share<S: Serializer>(v: &LaneShare, s: S) -> Result<S::Ok, S::Error> {
    match v {
        LaneShare::Fixed(n) => s.serialize_u64(*n as u64),
        LaneShare::Fair => s.serialize_none(),
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

impl Settings {
    /// The settings as TOML, as `config check` prints them: what is set, in
    /// the defaults file's order and words, secrets redacted; then what is
    /// unset, and how many integrations the file gave (their secrets are
    /// not shown).
    pub fn redacted_toml(&self) -> String {
        let (text, shown) = match (toml::to_string(self), toml::Table::try_from(self)) {
            (Ok(text), Ok(table)) => (text, table),
            (Err(e), _) | (_, Err(e)) => return format!("# the settings cannot be shown: {e}\n"),
        };
        let unset: Vec<&str> = super::load::defaults()
            .filter(|(name, default)| !default.starts_with('[') && !shown.contains_key(*name))
            .map(|(name, _)| name)
            .collect();
        format!(
            "{text}# unset: {}\n# integrations from the file: {}\n",
            unset.join(", "),
            self.integrations.len(),
        )
    }
}

/// The shown settings, one field each: no secret, no credential.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Shown(toml::Value);
        impl std::fmt::Debug for Shown {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }
        let mut out = f.debug_struct("Settings");
        match toml::Table::try_from(self) {
            Ok(table) => {
                for (name, value) in table {
                    out.field(&name, &Shown(value));
                }
            }
            Err(e) => {
                out.field("unshowable", &e.to_string());
            }
        }
        out.finish_non_exhaustive()
    }
}
