//! Where settings come from, in order: `defaults.toml` (built in), the TOML
//! file, then `HOOKWARDEN_*` variables; or, for tests and tools, the defaults
//! and a `RawConfig` set in code. figment layers them, serde types them, and
//! an error names the setting, where its value came from and why it does not do.

use super::{ConfigError, Environment, Settings};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every setting with its default and what it means.
const DEFAULTS: &str = include_str!("defaults.toml");

/// Every setting's name and its default as written, in the defaults file's
/// order (a setting is one line of it: `name = value`; a test keeps it so).
pub(super) fn defaults() -> impl Iterator<Item = (&'static str, &'static str)> {
    DEFAULTS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(" = "))
}

/// Settings set in code (tests, tools), over the defaults as a file's would be.
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    values: Dict,
    error: Option<String>,
}

impl RawConfig {
    /// Sets the setting `name` (as the file names it) to `value`, written as
    /// the file would (`"5s"`, `true`, `20`, a list of tables). `None` sets
    /// nothing: the setting keeps its default.
    pub fn set(&mut self, name: &str, value: impl Serialize) -> &mut Self {
        match Value::serialize(value) {
            Ok(Value::Empty(..)) => {}
            Ok(v) => {
                self.values.insert(name.to_owned(), v);
            }
            Err(e) => self.error = Some(format!("{name}: {e}")),
        }
        self
    }
}

impl Settings {
    /// Loads defaults → `file` (if given) → the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::File(format!(
                    "{} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file(path));
        }
        // Other `HOOKWARDEN_*` variables belong to other tools (the CLI's
        // `ops`, tests): ignored, as are the lists that only a file can give.
        let names: Vec<&str> = defaults()
            .filter(|(_, default)| !default.starts_with('['))
            .map(|(name, _)| name)
            .collect();
        fig =
            fig.merge(Env::prefixed("HOOKWARDEN_").filter(move |k| names.iter().any(|n| k == *n)));
        Self::from_figment(fig)
    }

    /// Settings from the defaults and a TOML document (no file, no environment).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULTS)).merge(Toml::string(text)))
    }

    /// Settings from the defaults and values set in code (no file, no environment).
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        if let Some(e) = raw.error {
            return Err(ConfigError::Invalid(e));
        }
        Self::from_figment(
            Figment::from(Toml::string(DEFAULTS)).merge(Serialized::defaults(raw.values)),
        )
    }

    fn from_figment(fig: Figment) -> Result<Self, ConfigError> {
        let fig = derived_defaults(fig)?;
        let settings: Settings = fig.extract().map_err(figment_error)?;
        settings.check()?;
        Ok(settings)
    }
}

/// The settings other defaults follow from.
#[derive(Deserialize)]
struct Basis {
    env: Environment,
    data_dir: PathBuf,
    #[serde(deserialize_with = "super::values::duration")]
    delivery_timeout: Duration,
}

/// Fills in the defaults that follow from other settings, where they are
/// unset (`""`): the database in the data directory, a lease that outlasts
/// a try, and what development allows and production does not.
fn derived_defaults(fig: Figment) -> Result<Figment, ConfigError> {
    let basis: Basis = fig.extract().map_err(figment_error)?;
    let development = basis.env == Environment::Development;
    let derived: [(&str, Value); 4] = [
        (
            "database_url",
            format!(
                "sqlite://{}",
                basis.data_dir.join("hookwarden.db").display()
            )
            .into(),
        ),
        (
            "delivery_lease",
            hookwarden_core::duration::format_duration(
                basis.delivery_timeout * 2 + Duration::from_secs(20),
            )
            .into(),
        ),
        ("allow_http_destinations", development.into()),
        ("delivery_sink", development.into()),
    ];
    let mut fill = Dict::new();
    for (name, value) in derived {
        if matches!(fig.find_value(name), Ok(Value::String(_, s)) if s.is_empty()) {
            fill.insert(name.to_owned(), value);
        }
    }
    Ok(fig.merge(Serialized::defaults(fill)))
}

/// figment's error in the configuration's words: `HOOKWARDEN_<NAME> (name,
/// where it was set): why`. A secret's value never reaches a message: its
/// readers take any text, and the rest say only what was expected.
fn figment_error(err: figment::Error) -> ConfigError {
    let mut unknown = Vec::new();
    let mut invalid = Vec::new();
    for e in err {
        let origin = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
            Some(figment::Source::File(path)) => Some(path.display().to_string()),
            _ if e
                .metadata
                .as_ref()
                .is_some_and(|m| m.name.contains("environment")) =>
            {
                Some("the environment".to_owned())
            }
            _ => None,
        };
        let at = |what: String| match &origin {
            Some(origin) => format!("{what}, from {origin}"),
            None => what,
        };
        let kind = &e.kind;
        match (kind, e.path.as_slice()) {
            (figment::error::Kind::UnknownField(name, _), [_]) => unknown.push(format!(
                "{}{name:?} is not a setting (a typo? defaults.toml and the README list them all)",
                origin.map(|o| format!("{o}: ")).unwrap_or_default()
            )),
            (_, [name]) => invalid.push(format!(
                "HOOKWARDEN_{} ({}): {kind}",
                name.to_ascii_uppercase(),
                at(name.clone())
            )),
            // Inside a list of tables (`[[integrations]]`): the path says where.
            (_, [_, ..]) => invalid.push(format!("{}: {kind}", at(e.path.join(".")))),
            (_, []) => unknown.push(match origin {
                Some(origin) => format!("{origin}: {kind}"),
                None => kind.to_string(),
            }),
        }
    }
    if invalid.is_empty() {
        ConfigError::File(unknown.join("; "))
    } else {
        ConfigError::Invalid(
            invalid
                .into_iter()
                .chain(unknown)
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}
