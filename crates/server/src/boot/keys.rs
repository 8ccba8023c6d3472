//! Where the master key and the development JWT secret come from: the
//! environment, a key file, or (development only) a file generated in the
//! data directory with a loud warning.

use crate::config::Settings;
use anyhow::{bail, Context};
use hookwarden_core::crypto::{Keyring, MasterKey};
use secrecy::{ExposeSecret, SecretString};
use std::path::Path;

const DEV_MASTER_KEY_FILE: &str = "master.key";
const DEV_JWT_SECRET_FILE: &str = "jwt-hs256.secret";

/// Loads the keyring: `HOOKWARDEN_MASTER_KEY`, else `HOOKWARDEN_MASTER_KEY_FILE`,
/// else (development only) `<data dir>/master.key`, generated when missing.
pub fn load_keyring(settings: &Settings) -> anyhow::Result<Keyring> {
    let current = if let Some(k) = &settings.master_key {
        MasterKey::from_base64(k.expose_secret()).context("HOOKWARDEN_MASTER_KEY")?
    } else if let Some(path) = &settings.master_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading master key file {}", path.display()))?;
        MasterKey::from_base64(&text)
            .with_context(|| format!("master key file {}", path.display()))?
    } else if settings.is_production() {
        // `production_refusals()` refuses this first on every path that
        // serves; kept so that no caller (an offline CLI command, a future
        // one) can ever generate a development key for production.
        bail!("production needs HOOKWARDEN_MASTER_KEY or HOOKWARDEN_MASTER_KEY_FILE");
    } else {
        let text = dev_file(
            &settings.data_dir,
            DEV_MASTER_KEY_FILE,
            "master key",
            || MasterKey::generate().to_base64().to_string(),
        )?;
        MasterKey::from_base64(&text).context("development master key file")?
    };
    let previous = match &settings.previous_master_keys {
        Some(list) => list
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| MasterKey::from_base64(k).context("HOOKWARDEN_PREVIOUS_MASTER_KEYS"))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    Ok(Keyring::new(current, previous))
}

/// The HS256 secret for tenant tokens: configured, or in development a
/// generated one in the data directory (so `hookwarden token` and `serve` agree).
pub fn jwt_hs256_secret(settings: &Settings) -> anyhow::Result<Option<SecretString>> {
    if let Some(s) = &settings.jwt_hs256_secret {
        return Ok(Some(s.clone()));
    }
    if settings.is_production()
        || settings.jwt_jwks_file.is_some()
        || settings.jwt_jwks_url.is_some()
    {
        return Ok(None);
    }
    let text = dev_file(
        &settings.data_dir,
        DEV_JWT_SECRET_FILE,
        "JWT HS256 secret",
        || {
            hookwarden_core::secret::WebhookSecret::generate()
                .expose()
                .to_string()
        },
    )?;
    Ok(Some(SecretString::from(text)))
}

/// The HS256 secret `hookwarden token` signs with: the one `serve` verifies
/// with, read and never created (a secret made up here would mint tokens the
/// server refuses). `HOOKWARDEN_JWT_HS256_SECRET`, else in development the
/// file `serve` generated in the data directory.
pub fn existing_jwt_hs256_secret(settings: &Settings) -> anyhow::Result<SecretString> {
    if let Some(s) = &settings.jwt_hs256_secret {
        return Ok(s.clone());
    }
    if settings.is_production() {
        bail!(
            "no HS256 secret: in production the server never uses a generated development secret, \
             so neither does `hookwarden token`; set HOOKWARDEN_JWT_HS256_SECRET to the server's \
             (production tokens normally come from your identity provider)"
        );
    }
    if settings.jwt_jwks_file.is_some() || settings.jwt_jwks_url.is_some() {
        bail!(
            "no HS256 secret: the server verifies tokens with HOOKWARDEN_JWT_JWKS_FILE or _URL only, so \
             tokens come from your identity provider; to mint development tokens, set \
             HOOKWARDEN_JWT_HS256_SECRET for both the server and this command"
        );
    }
    let path = settings.data_dir.join(DEV_JWT_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(SecretString::from(text.trim().to_owned())),
        Ok(_) => bail!("the HS256 secret file {} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no HS256 secret at {}: start the server once (`hookwarden serve` with the same \
             HOOKWARDEN_DATA_DIR) so that it generates one there, or set \
             HOOKWARDEN_JWT_HS256_SECRET to the secret the server uses",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn dev_file(
    dir: &Path,
    name: &str,
    what: &str,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    let path = dir.join(name);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_owned());
    }
    // Private to hookwarden's user: it holds keys and the embedded database.
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let text = generate();
    write_private(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "GENERATED A DEVELOPMENT {what}: fine on a laptop, refused in production (HOOKWARDEN_ENV=production)"
    );
    Ok(text)
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
