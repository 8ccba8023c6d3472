//! Development certificates (`hookwarden certs dev`): a CA, a server
//! certificate for localhost, and a client certificate, so that TLS and mTLS
//! can be tried in minutes. Never for production.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::Path;

/// A certificate authority that can issue certificates (tests use it too).
pub struct DevCa {
    pub cert: rcgen::Certificate,
    key: KeyPair,
}

/// A calendar date: (year, month, day).
pub type Date = (i32, u8, u8);

pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl DevCa {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Issues a certificate for `common_name` with `sans`; `server` selects the
    /// key usage; `valid` overrides the validity window as (from, to) dates
    /// (expired certificates in tests).
    pub fn issue(
        &self,
        common_name: &str,
        sans: &[&str],
        server: bool,
        valid: Option<(Date, Date)>,
    ) -> anyhow::Result<Issued> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        if let Some(((y1, m1, d1), (y2, m2, d2))) = valid {
            params.not_before = rcgen::date_time_ymd(y1, m1, d1);
            params.not_after = rcgen::date_time_ymd(y2, m2, d2);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Writes ca.pem, server.pem, server-key.pem, client.pem, client-key.pem.
pub fn write_dev_certs(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = DevCa::new("hookwarden development CA")?;
    let server = ca.issue("localhost", &["localhost", "127.0.0.1", "::1"], true, None)?;
    let client = ca.issue(
        "hookwarden-dev-client",
        &["hookwarden-dev-client"],
        false,
        None,
    )?;
    for (name, text) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server.cert_pem),
        ("server-key.pem", server.key_pem),
        ("client.pem", client.cert_pem),
        ("client-key.pem", client.key_pem),
    ] {
        let path = dir.join(name);
        if name.ends_with("-key.pem") {
            // Private keys: readable by their owner only.
            let _ = std::fs::remove_file(&path);
            crate::boot::keys::write_private(&path, &text)
        } else {
            std::fs::write(&path, text)
        }
        .with_context(|| format!("writing {name}"))?;
    }
    Ok(())
}
