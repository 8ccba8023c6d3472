//! The settings' contract: the defaults file, the struct and the README
//! agree; values are typed with errors naming the setting; refusals fire;
//! nothing secret is shown.

use super::load::defaults;
use super::*;
use secrecy::ExposeSecret;
use serde::de::{self, Deserializer, Visitor};
use std::collections::BTreeSet;
use std::path::Path;

/// The names serde reads into `Settings`, in field order.
fn struct_fields() -> &'static [&'static str] {
    struct Introspect<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Introspect<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = Settings::deserialize(Introspect(&mut fields));
    fields
}

fn names() -> Vec<&'static str> {
    defaults().map(|(name, _)| name).collect()
}

#[test]
fn every_field_has_a_line_in_the_defaults_file_and_every_line_a_field() {
    let fields = struct_fields();
    assert!(fields.len() > 50, "{fields:?}");
    // In the same order, so `config check` prints them as the file lists them.
    assert_eq!(
        fields.to_vec(),
        names(),
        "Settings' fields and defaults.toml's settings differ"
    );
    // The line scan `defaults()` does reads what a TOML parser reads.
    let parsed: toml::Table =
        toml::from_str(include_str!("defaults.toml")).expect("defaults.toml parses");
    let scanned: BTreeSet<&str> = names().into_iter().collect();
    let keys: BTreeSet<&str> = parsed.keys().map(String::as_str).collect();
    assert_eq!(scanned, keys);
    assert_eq!(names().len(), keys.len(), "a setting written twice");
}

/// The README's configuration table: each row's setting names and its default column.
fn readme_rows() -> Vec<(Vec<String>, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Configuration section");
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
            let names = cells[0]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|code| {
                    if let Some(list) = code.strip_prefix("[[").and_then(|c| c.strip_suffix("]]")) {
                        list.to_owned()
                    } else {
                        code.strip_prefix("HOOKWARDEN_")
                            .unwrap_or_else(|| panic!("{code:?} in {row}"))
                            .to_ascii_lowercase()
                    }
                })
                .collect();
            (names, cells[cells.len() - 1].to_owned())
        })
        .collect()
}

#[test]
fn the_readme_documents_every_setting_and_its_default() {
    let rows = readme_rows();
    let mut documented = BTreeSet::new();
    for (named, default) in &rows {
        assert!(!named.is_empty(), "a row that names no setting: {default}");
        for name in named {
            assert!(
                names().contains(&name.as_str()),
                "README documents {name:?}, which is not a setting"
            );
            assert!(documented.insert(name.clone()), "{name:?} documented twice");
            let (_, written) = defaults().find(|(n, _)| n == name).expect("a default");
            let value = written.trim_matches('"');
            if !value.is_empty() && !value.starts_with('[') {
                assert!(
                    default.contains(&format!("`{value}`")),
                    "README gives {name:?} the default {default:?}, defaults.toml `{value}`"
                );
            }
        }
    }
    let missing: Vec<&str> = names()
        .into_iter()
        .filter(|n| !documented.contains(*n))
        .collect();
    assert!(missing.is_empty(), "not in the README's table: {missing:?}");
}

#[test]
fn defaults_are_the_documented_ones() {
    let s = Settings::from_toml("").expect("defaults");
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.ops_listen.to_string(), "127.0.0.1:9090");
    assert_eq!(s.retry_schedule.len(), 7);
    assert_eq!(s.delivery_timeout, Duration::from_secs(5));
    assert_eq!(s.delivery_lease, Duration::from_secs(30));
    assert_eq!(s.max_in_flight, 20);
    assert_eq!(s.max_in_flight_per_endpoint, LaneShare::Fair);
    assert_eq!(s.api_rate_limit_per_minute, 60);
    assert_eq!(s.failed_auth_limit_per_minute, 120);
    assert_eq!(s.publish_rate_limit_per_minute, 60_000);
    assert_eq!(s.rotation_grace, Duration::from_secs(86400));
    assert_eq!(s.jwt_jwks_refresh, Duration::from_secs(300));
    assert_eq!(s.trusted_proxy_header, ProxyHeader::XForwardedFor);
    assert_eq!(s.log_format, LogFormat::Text);
    assert!(s
        .database_url
        .expose_secret()
        .ends_with("data/hookwarden.db"));
    assert!(s.allow_http_destinations && s.delivery_sink);
    assert!(s.nats().is_none() && s.tls().is_none() && s.ops_tls().is_none());
    assert!(s.master_key.is_none() && s.management_api_keys.is_empty());
    assert!(s.integrations.is_empty() && s.grants.is_empty());
}

#[test]
fn defaults_that_follow_other_settings_follow_them() {
    let s = Settings::from_toml("data_dir = \"/srv/hw\"\ndelivery_timeout = \"10s\"\n")
        .expect("settings");
    assert_eq!(
        s.database_url.expose_secret(),
        "sqlite:///srv/hw/hookwarden.db"
    );
    assert_eq!(s.delivery_lease, Duration::from_secs(40));
    // Written empty is the same as not written.
    let s = Settings::from_toml("delivery_lease = \"\"\nnats_url = \"\"\n").expect("settings");
    assert_eq!(s.delivery_lease, Duration::from_secs(30));
    assert!(s.nats().is_none());
    let mut raw = RawConfig::default();
    raw.set("env", "production")
        .set("master_key", "k")
        .set("jwt_jwks_file", "/etc/jwks.json")
        .set("jwt_issuer", "https://auth.example")
        .set("jwt_audience", "hookwarden")
        .set("jwt_hs256_secret", None::<&str>);
    let s = Settings::from_raw(raw).expect("production");
    assert!(!s.allow_http_destinations && !s.delivery_sink);
    assert!(s.jwt_hs256_secret.is_none());
}

#[test]
fn a_lease_too_short_for_a_try_is_refused() {
    // Not longer than a try: a slow try could be claimed twice.
    let err = Settings::from_toml("delivery_timeout = \"5s\"\ndelivery_lease = \"5s\"\n")
        .expect_err("lease no longer than a try");
    assert!(
        err.to_string()
            .contains("HOOKWARDEN_DELIVERY_LEASE (delivery_lease): must be longer than"),
        "{err}"
    );
    // Longer, but with no room for a try to start.
    let err = Settings::from_toml("delivery_timeout = \"5s\"\ndelivery_lease = \"6s\"\n")
        .expect_err("lease shorter than a try and 2s");
    assert!(
        err.to_string()
            .contains("HOOKWARDEN_DELIVERY_LEASE (delivery_lease): must exceed"),
        "{err}"
    );
    assert!(Settings::from_toml("delivery_timeout = \"1s\"\ndelivery_lease = \"3s\"\n").is_ok());
}

fn prod() -> RawConfig {
    let mut raw = RawConfig::default();
    raw.set("env", "production")
        .set("master_key", "k")
        .set("jwt_jwks_file", "/etc/jwks.json")
        .set("jwt_issuer", "https://auth.example")
        .set("jwt_audience", "hookwarden")
        .set("management_api_keys", "0123456789abcdef0123456789abcdef");
    raw
}

fn with(mut raw: RawConfig, changes: &[(&str, serde_json::Value)]) -> RawConfig {
    for (name, value) in changes {
        raw.set(name, value);
    }
    raw
}

#[test]
fn production_refuses_each_insecure_setting() {
    use serde_json::json;
    assert!(Settings::from_raw(prod()).is_ok());
    // Everything refused is listed at once, not one per try.
    let two = Settings::from_raw(with(
        prod(),
        &[("delivery_sink", json!(true)), ("jwt_issuer", json!(""))],
    ))
    .expect_err("refused")
    .to_string();
    assert!(
        two.contains("2 settings are refused")
            && two.contains("HOOKWARDEN_DELIVERY_SINK")
            && two.contains("HOOKWARDEN_JWT_ISSUER"),
        "{two}"
    );
    // A JWKS URL alone, over HTTPS, authenticates tokens in production.
    assert!(Settings::from_raw(with(
        prod(),
        &[
            ("jwt_jwks_file", json!("")),
            ("jwt_jwks_url", json!("https://idp.example/jwks.json"))
        ]
    ))
    .is_ok());
    let dir = std::env::temp_dir().join(format!("hw-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let open_key = dir.join("open.key");
    std::fs::write(&open_key, "k").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let key_file = json!(open_key.display().to_string());
    let cases = [
        (vec![("jwt_issuer", json!(""))], "HOOKWARDEN_JWT_ISSUER"),
        (vec![("jwt_audience", json!(""))], "HOOKWARDEN_JWT_AUDIENCE"),
        (
            vec![("jwt_hs256_secret", json!("short-secret"))],
            "HOOKWARDEN_JWT_HS256_SECRET",
        ),
        (
            vec![(
                "management_api_keys",
                json!("0123456789abcdef0123456789abcdef,short-secret"),
            )],
            "HOOKWARDEN_MANAGEMENT_API_KEYS",
        ),
        (
            vec![
                ("master_key", json!("")),
                ("master_key_file", key_file.clone()),
            ],
            "HOOKWARDEN_MASTER_KEY_FILE",
        ),
        (vec![("master_key", json!(""))], "no master key"),
        (
            vec![("allowed_destinations", json!("127.0.0.0/8"))],
            "HOOKWARDEN_ALLOWED_DESTINATIONS",
        ),
        (
            vec![("allow_http_destinations", json!(true))],
            "HOOKWARDEN_ALLOW_HTTP_DESTINATIONS",
        ),
        (
            vec![("delivery_sink", json!(true))],
            "HOOKWARDEN_DELIVERY_SINK",
        ),
        (
            vec![("jwt_jwks_file", json!(""))],
            "no tenant API authentication",
        ),
        (
            vec![("jwt_jwks_url", json!("http://idp.example/jwks.json"))],
            "HOOKWARDEN_JWT_JWKS_URL is not https://",
        ),
    ];
    for (changes, why) in cases {
        let err = Settings::from_raw(with(prod(), &changes)).expect_err(why);
        assert!(matches!(err, ConfigError::Production(_)), "{err}");
        assert!(err.to_string().contains(why), "{why}: {err}");
        assert!(!err.to_string().contains("short-secret"), "{err}");
    }
    // The same key file, private to its owner, is accepted.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    assert!(Settings::from_raw(with(
        prod(),
        &[("master_key", json!("")), ("master_key_file", key_file)]
    ))
    .is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_values_name_the_setting_and_the_value() {
    for (toml, setting, value) in [
        ("retry_schedule = \"5x\"", "HOOKWARDEN_RETRY_SCHEDULE", "5x"),
        (
            "delivery_timeout = \"soon\"",
            "HOOKWARDEN_DELIVERY_TIMEOUT",
            "soon",
        ),
        ("listen = \"localhost\"", "HOOKWARDEN_LISTEN", "localhost"),
        (
            "max_in_flight = \"many\"",
            "HOOKWARDEN_MAX_IN_FLIGHT",
            "many",
        ),
        (
            "max_in_flight_per_endpoint = \"some\"",
            "HOOKWARDEN_MAX_IN_FLIGHT_PER_ENDPOINT",
            "some",
        ),
        (
            "allowed_destinations = \"10.0.0.0/33\"",
            "HOOKWARDEN_ALLOWED_DESTINATIONS",
            "10.0.0.0/33",
        ),
        (
            "trusted_proxy_header = \"via\"",
            "HOOKWARDEN_TRUSTED_PROXY_HEADER",
            "via",
        ),
        (
            "tls_client_auth = \"sometimes\"",
            "HOOKWARDEN_TLS_CLIENT_AUTH",
            "sometimes",
        ),
        ("env = \"staging\"", "HOOKWARDEN_ENV", "staging"),
        ("log_format = \"xml\"", "HOOKWARDEN_LOG_FORMAT", "xml"),
        (
            "delivery_worker = \"maybe\"",
            "HOOKWARDEN_DELIVERY_WORKER",
            "maybe",
        ),
        (
            "nats_max_bytes = \"1GB\"",
            "HOOKWARDEN_NATS_MAX_BYTES",
            "1GB",
        ),
    ] {
        let err = Settings::from_toml(toml).expect_err(toml).to_string();
        assert!(
            err.contains(setting) && err.contains(value),
            "{toml}: {err}"
        );
    }
    let err = Settings::from_toml("max_in_flight = 0").expect_err("zero");
    assert!(
        err.to_string().contains("HOOKWARDEN_MAX_IN_FLIGHT"),
        "{err}"
    );
    // Inside a list of tables, the path says where.
    let err = Settings::from_toml("[[integrations]]\nname = \"acme\"\ntargetUrl = 7\n")
        .expect_err("bad integration")
        .to_string();
    assert!(err.contains("integrations"), "{err}");
}

#[test]
fn a_secret_value_is_never_in_an_error() {
    for toml in [
        "database_url = \"mysql://u:SECRETPW@db/app\"",
        "database_url = [\"SECRETPW\"]",
        "master_key = [\"SECRETPW\"]",
        "management_api_keys = { key = \"SECRETPW\" }",
        "redis_url = [\"redis://:SECRETPW@cache\"]",
        "jwt_jwks_url = \"ftp://u:SECRETPW@idp.example/jwks\"",
    ] {
        let err = Settings::from_toml(toml).expect_err(toml).to_string();
        assert!(!err.contains("SECRETPW"), "{toml}: {err}");
        assert!(err.contains("HOOKWARDEN_"), "{toml}: {err}");
    }
}

#[test]
fn an_unknown_setting_in_a_file_is_an_error() {
    let err = Settings::from_toml("retry_shedule = \"1s\"").expect_err("typo");
    assert!(
        err.to_string()
            .contains("\"retry_shedule\" is not a setting"),
        "{err}"
    );
    let mut raw = RawConfig::default();
    raw.set("no_such_setting", 1);
    assert!(Settings::from_raw(raw).is_err());
}

#[test]
fn the_nats_stream_retention_is_bounded_by_default_and_configurable() {
    let with_nats = |extra: &str| {
        Settings::from_toml(&format!("nats_url = \"nats://127.0.0.1:4222\"\n{extra}"))
    };
    let n = with_nats("").expect("defaults").nats().expect("nats");
    assert_eq!(n.max_age, Duration::from_secs(7 * 86_400));
    assert_eq!(n.max_bytes, 1 << 30);
    assert_eq!(n.dispatch_subject(), "webhook.dispatch");
    let s = with_nats("nats_max_age = \"36h\"\nnats_max_bytes = \"512MiB\"\n").expect("set");
    let n = s.nats().expect("nats");
    assert_eq!(n.max_age, Duration::from_secs(36 * 3600));
    assert_eq!(n.max_bytes, 512 << 20);
    assert!(s.redacted_toml().contains("nats_max_bytes = \"512MiB\""));
    for (extra, variable) in [
        ("nats_max_bytes = \"1GB\"", "HOOKWARDEN_NATS_MAX_BYTES"),
        ("nats_max_bytes = \"1000\"", "HOOKWARDEN_NATS_MAX_BYTES"),
        ("nats_max_bytes = 1000", "HOOKWARDEN_NATS_MAX_BYTES"),
        ("nats_max_age = \"0s\"", "HOOKWARDEN_NATS_MAX_AGE"),
        (
            "nats_tls_cert_file = \"/c.pem\"",
            "HOOKWARDEN_NATS_TLS_CERT_FILE",
        ),
    ] {
        let err = with_nats(extra).expect_err(extra);
        assert!(err.to_string().contains(variable), "{extra}: {err}");
    }
    let s = with_nats("nats_tls_cert_file = \"/c.pem\"\nnats_tls_key_file = \"/k.pem\"\n")
        .expect("mtls");
    assert_eq!(
        s.nats().expect("nats").tls_client,
        Some(("/c.pem".into(), "/k.pem".into()))
    );
    assert_eq!(parse_bytes("1073741824"), Ok(1 << 30));
    assert_eq!(format_bytes(3 << 20), "3MiB");
    assert_eq!(format_bytes(1000), "1000");
}

#[test]
fn listener_tls_settings_go_together() {
    let s = Settings::from_toml(
        "tls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\ntls_client_ca_file = \"/ca.pem\"\n\
         tls_client_auth = \"required\"\ngateway_identity = \"gw\"\n",
    )
    .expect("mtls");
    let tls = s.tls().expect("tls");
    assert_eq!(tls.client_auth, ClientAuth::Required);
    assert_eq!(tls.cert_file, Path::new("/c.pem"));
    assert!(s.ops_tls().is_none());
    for (toml, variable) in [
        ("tls_cert_file = \"/c.pem\"", "HOOKWARDEN_TLS_CERT_FILE"),
        ("ops_tls_client_auth = \"optional\"", "HOOKWARDEN_OPS_TLS_CLIENT_AUTH"),
        (
            "ops_tls_cert_file = \"/c.pem\"\nops_tls_key_file = \"/k.pem\"\nops_tls_client_auth = \"required\"",
            "HOOKWARDEN_OPS_TLS_CLIENT_CA_FILE",
        ),
        ("gateway_identity = \"gw\"", "HOOKWARDEN_GATEWAY_IDENTITY"),
    ] {
        let err = Settings::from_toml(toml).expect_err(toml);
        assert!(err.to_string().contains(variable), "{toml}: {err}");
    }
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
fn redacted_output_hides_secrets_and_credentials() {
    let mut raw = RawConfig::default();
    raw.set("master_key", "TOPSECRETKEY")
        .set("previous_master_keys", "OLDKEY1,OLDKEY2")
        .set("jwt_hs256_secret", "JWTSECRET")
        .set("management_api_keys", "OPKEY1,OPKEY2")
        .set("database_url", "postgres://u:DBPASS@h/db")
        .set("redis_url", "redis://:REDISPASS@cache:6379/0")
        .set("nats_url", "nats://NATSTOKEN@nats:4222")
        .set(
            "jwt_jwks_url",
            "https://user:JWKSPASS@idp.example/jwks.json",
        );
    let s = Settings::from_raw(raw).expect("settings");
    let shown = s.redacted_toml();
    let text = format!("{shown}{s:?}{:?}", s.nats());
    for secret in [
        "TOPSECRETKEY",
        "OLDKEY",
        "JWTSECRET",
        "OPKEY1",
        "DBPASS",
        "REDISPASS",
        "NATSTOKEN",
        "JWKSPASS",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    for line in [
        "master_key = \"<redacted>\"",
        "management_api_keys = \"<2 redacted>\"",
        "database_url = \"postgres://h/db\"",
        "redis_url = \"redis://cache:6379/0\"",
        "nats_url = \"nats://nats:4222\"",
        "jwt_jwks_url = \"https://idp.example/jwks.json\"",
    ] {
        assert!(shown.contains(line), "{line}: {shown}");
    }
}

#[test]
fn config_check_output_is_toml_that_loads_back_to_the_same_settings() {
    let s = Settings::from_toml(
        "data_dir = \"/srv/hw\"\nretry_schedule = \"1s,90s\"\nmax_in_flight = 8\n\
         max_in_flight_per_endpoint = 2\nallowed_destinations = \"10.0.0.0/8,::1\"\n\
         trusted_proxy_header = \"forwarded\"\nlog_format = \"json\"\nnats_url = \"nats://n:4222\"\n\
         [[integrations]]\nname = \"acme\"\nscheme = \"token\"\nsecret = \"INTEGRATIONSECRET\"\n\
         targetUrl = \"http://127.0.0.1:9/acme\"\n",
    )
    .expect("settings");
    let shown = s.redacted_toml();
    for line in [
        "retry_schedule = \"1s,90s\"",
        "max_in_flight = 8\n",
        "max_in_flight_per_endpoint = 2\n",
        "allowed_destinations = \"10.0.0.0/8,::1/128\"",
        "log_format = \"json\"",
        "delivery_lease = \"30s\"",
        "# integrations from the file: 1",
    ] {
        assert!(shown.contains(line), "{line}: {shown}");
    }
    assert!(!shown.contains("INTEGRATIONSECRET"), "{shown}");
    // Unset settings are named, not given a value.
    let unset = shown
        .lines()
        .find_map(|l| l.strip_prefix("# unset: "))
        .expect("an unset line");
    assert!(unset.split(", ").any(|n| n == "master_key"), "{unset}");
    assert!(
        !shown.lines().any(|l| l.starts_with("master_key ")),
        "{shown}"
    );
    let again = Settings::from_toml(&shown).expect("the output loads");
    assert_eq!(
        again.redacted_toml(),
        shown.replace(
            "# integrations from the file: 1",
            "# integrations from the file: 0"
        )
    );
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
