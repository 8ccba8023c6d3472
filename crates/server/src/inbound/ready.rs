//! An integration made ready for the receive path once, when the in-memory
//! copy is loaded: its verification scheme resolved, its allowed source
//! ranges parsed and its rate limit settled, so no request parses them again.
//! Its provider secrets are opened at the first request that needs them and
//! kept with it, so no later request pays for the key derivation and the
//! decryption (nor can a caller with bad signatures make each request pay).

use super::integrations::open_secrets;
use hookwarden_core::crypto::Keyring;
use hookwarden_core::destination::parse_cidrs;
use hookwarden_core::inbound::Scheme;
use hookwarden_store::ingress::Integration;
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use zeroize::Zeroizing;

/// An integration's provider secrets in the clear, zeroed when the last
/// holder drops them; `Debug` says how many, never what.
#[derive(Clone)]
pub struct OpenSecrets(Arc<[Zeroizing<String>]>);

impl OpenSecrets {
    pub fn iter(&self) -> impl Iterator<Item = &Zeroizing<String>> {
        self.0.iter()
    }

    /// Is this the very copy `other` is (not merely equal secrets)?
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for OpenSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} provider secrets]", self.0.len())
    }
}

/// Requests per minute per provider and source address when the integration
/// sets none.
pub const DEFAULT_RATE_LIMIT: i64 = 600;

/// The verification scheme a stored integration names.
pub fn scheme_of(i: &Integration) -> anyhow::Result<Scheme> {
    Scheme::from_config(
        &i.scheme,
        i.signature_header.as_deref(),
        i.encoding.as_deref(),
        i.prefix.as_deref(),
    )
    .map_err(anyhow::Error::msg)
}

/// A stored integration and what the receive path derives from it.
pub struct Ready {
    pub row: Integration,
    /// The scheme, or why the stored row names none (rows are validated when
    /// written, so this is a damaged row: its requests fail as internal
    /// errors and are never accepted).
    /// Shared, so a request takes it without copying its strings.
    pub scheme: Result<Arc<Scheme>, String>,
    /// The allowed source ranges; empty when any source may call. A stored
    /// range that does not parse is dropped and the integration's requests
    /// are refused as from outside (`pinning_broken`), never let through.
    allowed: Vec<IpNet>,
    pinning_broken: bool,
    /// Requests per minute per source address.
    pub rate_limit: u32,
    /// The provider secrets once opened (`secrets`). This copy is replaced
    /// whenever the row changes (a secret rotated in or out, the row
    /// re-sealed under a new master key), so they never outlive their row.
    opened: OnceLock<OpenSecrets>,
}

impl Ready {
    pub fn new(row: Integration) -> Self {
        let scheme = scheme_of(&row).map(Arc::new).map_err(|e| format!("{e:#}"));
        let (allowed, pinning_broken) = if row.allowed_cidrs.is_empty() {
            (Vec::new(), false)
        } else {
            match parse_cidrs(&row.allowed_cidrs.join(",")) {
                Ok(nets) => (nets, false),
                Err(_) => (Vec::new(), true),
            }
        };
        let rate_limit = row
            .rate_limit_per_minute
            .unwrap_or(DEFAULT_RATE_LIMIT)
            .clamp(1, i64::from(u32::MAX)) as u32;
        Self {
            row,
            scheme,
            allowed,
            pinning_broken,
            rate_limit,
            opened: OnceLock::new(),
        }
    }

    /// The provider secrets, opened with `keyring` the first time. A failure
    /// (a row sealed under a key this replica does not hold) is not kept:
    /// the next request tries again.
    pub fn secrets(&self, keyring: &Keyring) -> anyhow::Result<OpenSecrets> {
        if let Some(open) = self.opened.get() {
            return Ok(open.clone());
        }
        let open = OpenSecrets(open_secrets(keyring, &self.row)?.into());
        Ok(self.opened.get_or_init(|| open).clone())
    }

    /// May a request from `ip` be considered at all? Source pinning is an
    /// extra layer, never the only one: verification follows.
    pub fn admits(&self, ip: IpAddr) -> bool {
        if self.pinning_broken {
            return false;
        }
        if self.allowed.is_empty() {
            return true;
        }
        let ip = hookwarden_core::client_addr::canonical(ip);
        self.allowed.iter().any(|n| n.contains(&ip))
    }

    /// The header the scheme reads its signature or token from, when it is a
    /// configurable one (it is never kept with the event).
    pub fn scheme_header(&self) -> Option<&str> {
        match self.scheme.as_deref() {
            Ok(Scheme::HmacSha256 { header, .. }) | Ok(Scheme::Token { header }) => {
                Some(header.as_str())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cidrs: &[&str]) -> Integration {
        let sealed = || hookwarden_core::crypto::Sealed {
            key_id: "k1".into(),
            ciphertext: Vec::new(),
        };
        Integration {
            name: "acme".into(),
            scheme: "github".into(),
            signature_header: None,
            encoding: None,
            prefix: None,
            tolerance_seconds: 300,
            target_url: "http://127.0.0.1:1/".into(),
            allowed_cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
            rate_limit_per_minute: None,
            idempotency_header: None,
            secrets: sealed(),
            forwarding_secret: sealed(),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            forward_raw_body: false,
        }
    }

    #[test]
    fn source_ranges_are_parsed_once_and_a_broken_one_refuses() {
        let open = Ready::new(row(&[]));
        assert!(open.admits("203.0.113.9".parse().expect("ip")));
        let pinned = Ready::new(row(&["10.0.0.0/8"]));
        assert!(pinned.admits("10.1.2.3".parse().expect("ip")));
        assert!(pinned.admits("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!pinned.admits("11.0.0.1".parse().expect("ip")));
        let broken = Ready::new(row(&["not a range"]));
        assert!(!broken.admits("10.1.2.3".parse().expect("ip")));
        assert_eq!(open.rate_limit, DEFAULT_RATE_LIMIT as u32);
        assert!(open.scheme.is_ok());
    }

    fn keyring() -> Keyring {
        Keyring::new(hookwarden_core::crypto::MasterKey::generate(), Vec::new())
    }

    /// An integration whose stored secrets are `plain`, sealed with `keyring`.
    fn sealed(keyring: &Keyring, plain: &[u8]) -> Ready {
        use crate::shared::secrets::row_identity;
        use hookwarden_store::sealed::SealedColumn;
        let mut r = row(&[]);
        r.secrets = keyring.seal(
            row_identity(SealedColumn::IntegrationSecrets, &r.name, ""),
            plain,
        );
        Ready::new(r)
    }

    #[test]
    fn secrets_are_opened_once_and_a_failure_is_not_kept() {
        let holder = keyring();
        let ready = sealed(&holder, br#"["whsec-one","whsec-two"]"#);
        // A replica without the sealing key fails, and keeps trying.
        let stranger = keyring();
        assert!(ready.secrets(&stranger).is_err());
        let first = ready.secrets(&holder).expect("opened");
        let names: Vec<&str> = first.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["whsec-one", "whsec-two"]);
        // The same opened copy afterwards, whatever keyring is passed.
        assert!(first.same(&ready.secrets(&stranger).expect("kept")));
        assert_eq!(format!("{first:?}"), "[2 provider secrets]");
    }

    #[test]
    fn a_damaged_secrets_list_is_refused_without_quoting_it() {
        let holder = keyring();
        // Authenticated, so only a bug could write it: a string, not a list.
        let ready = sealed(&holder, br#""whsec-never-shown""#);
        let err = format!("{:#}", ready.secrets(&holder).expect_err("refused"));
        assert!(!err.contains("whsec-never-shown"), "{err}");
        assert!(err.contains("not a list of strings"), "{err}");
    }
}
