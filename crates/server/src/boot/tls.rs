//! TLS and mTLS on the listeners (rustls, ring): the certificate and key come
//! from files and are reloaded when they change, without a restart; client
//! certificates are off, optional or required, verified against a configured
//! CA; the client's identity (subject CN and SANs) reaches handlers as a
//! request extension.

use anyhow::Context;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Off,
    Optional,
    Required,
}

impl ClientAuth {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "off" => Ok(Self::Off),
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            other => Err(format!("{other:?} is not off, optional or required")),
        }
    }
}

/// One listener's TLS settings.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain of a PEM file (what a listener presents).
pub fn load_certs(cert_file: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("reading certificate {}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificate {}", cert_file.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", cert_file.display());
    }
    Ok(certs)
}

/// The private key of a PEM file, loaded as the listener signs with it.
pub fn load_private_key(key_file: &Path) -> anyhow::Result<Arc<dyn rustls::sign::SigningKey>> {
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading private key {}", key_file.display()))?;
    provider()
        .key_provider
        .load_private_key(key)
        .with_context(|| format!("loading the private key {}", key_file.display()))
}

/// The certificates of a PEM file as trust roots (client CAs, the NATS CA).
pub fn load_roots(ca_file: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("reading CA certificates {}", ca_file.display()))?
    {
        roots
            .add(ca.with_context(|| format!("parsing CA certificates {}", ca_file.display()))?)
            .with_context(|| format!("adding a CA certificate of {}", ca_file.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("{} holds no CA certificate", ca_file.display());
    }
    Ok(roots)
}

/// A certificate and its key, refused when the key is not the certificate's.
pub fn load_key(cert_file: &Path, key_file: &Path) -> anyhow::Result<CertifiedKey> {
    let key = CertifiedKey::new(load_certs(cert_file)?, load_private_key(key_file)?);
    match key.keys_match() {
        // `Unknown`: the key type cannot tell its public key; the handshake will.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            anyhow::bail!(
                "the private key {} is not the key of the certificate {}",
                key_file.display(),
                cert_file.display()
            )
        }
        Err(e) => anyhow::bail!("certificate {}: {e}", cert_file.display()),
    }
    Ok(key)
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Serves the certificate loaded last; a background task swaps it when the
/// files change (certificate renewal without a restart).
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
    cert_file: PathBuf,
    key_file: PathBuf,
    stamp: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ReloadingCert {
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<Self>> {
        let key = load_key(cert_file, key_file)?;
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(key)),
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            stamp: RwLock::new((mtime(cert_file), mtime(key_file))),
        }))
    }

    /// Reloads when either file changed; a bad new pair keeps the old one.
    pub fn refresh(&self) {
        let now = (mtime(&self.cert_file), mtime(&self.key_file));
        if *self.stamp.read().unwrap_or_else(|p| p.into_inner()) == now {
            return;
        }
        match load_key(&self.cert_file, &self.key_file) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
                *self.stamp.write().unwrap_or_else(|p| p.into_inner()) = now;
                tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(cert = %self.cert_file.display(), error.message = %format!("{e:#}"), "TLS certificate changed but does not load; keeping the previous one")
            }
        }
    }

    /// Checks the files every `every` until `stop`.
    pub fn watch(self: Arc<Self>, every: Duration, stop: tokio_util::sync::CancellationToken) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => self.refresh(),
                }
            }
        });
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Builds the rustls configuration of one listener.
pub fn server_config(
    settings: &TlsSettings,
) -> anyhow::Result<(Arc<ServerConfig>, Arc<ReloadingCert>)> {
    let cert = ReloadingCert::load(&settings.cert_file, &settings.key_file)?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match settings.client_auth {
        ClientAuth::Off => builder.with_no_client_auth(),
        auth => {
            let ca_file = settings
                .client_ca_file
                .as_ref()
                .context("client certificates need a client CA file")?;
            let roots = load_roots(ca_file).context("the client CA file")?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .context("building the client certificate verifier")?,
            )
        }
    };
    let mut config = builder.with_cert_resolver(cert.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), cert))
}
