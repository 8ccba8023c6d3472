//! JWKS key sets for token verification: parsed key by key (a fault names the
//! key and the field, never serde's enum message; a key of a kind not
//! supported is skipped and named), read from a file that is reloaded when
//! it changes, or fetched from a URL (bounded in size and time, retried with
//! backoff while none has loaded, refreshed periodically and, at a bounded
//! rate, on a token whose `kid` is unknown). A key set that does not load
//! never replaces the last good one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The largest JWKS document read (a real one is a few KiB).
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// How long one fetch of the JWKS URL may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one fetch per this interval is caused by tokens with an unknown
/// `kid`: tokens with made-up key ids cannot make us hammer the IdP.
pub const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// The shortest RSA modulus accepted.
const MIN_RSA_BITS: usize = 2048;

/// One verification key and the algorithm it fixes.
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// A key set as it is swapped in: readers clone the `Arc`, never wait on a load.
pub type KeySet = Arc<Vec<VerifyingKey>>;

/// A parsed key set: the keys hookwarden verifies with, and what it left out.
#[derive(Default)]
pub struct Parsed {
    pub keys: Vec<VerifyingKey>,
    /// Keys of a type, algorithm or curve hookwarden does not verify with,
    /// each described (index, `kid`, field and why). An IdP may publish
    /// such keys beside the ones it signs our tokens with.
    pub skipped: Vec<String>,
    /// Keys marked `"use": "enc"`: encryption keys, never reported.
    pub encryption: usize,
}

impl Parsed {
    /// Why a document that lists keys holds none hookwarden can use (an
    /// empty `keys` list is a key set with no key, not a fault).
    pub fn unusable(&self) -> Option<String> {
        if !self.keys.is_empty() || (self.skipped.is_empty() && self.encryption == 0) {
            return None;
        }
        Some(if self.skipped.is_empty() {
            "no usable key: it holds encryption keys (\"use\": \"enc\") only".into()
        } else {
            format!("no usable key: {}", self.skipped.join("; "))
        })
    }
}

/// Parses a JWKS document. Keys marked `"use": "enc"` and keys of a type,
/// algorithm or curve not supported are skipped (the latter listed in
/// `skipped`); a key of a supported type that does not load is an error
/// naming it and the field.
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let Value::Object(doc) = doc else {
        return Err("JWKS must be a JSON object with a `keys` list".into());
    };
    let keys = match doc.get("keys") {
        None => return Err("JWKS: field `keys` is missing".into()),
        Some(Value::Array(keys)) => keys,
        Some(_) => return Err("JWKS: field `keys` must be a list of keys".into()),
    };
    let mut out = Parsed::default();
    for (i, key) in keys.iter().enumerate() {
        match parse_key(key).map_err(|e| e.describe(i, key))? {
            Outcome::Key(k) => out.keys.push(k),
            Outcome::Encryption => out.encryption += 1,
            Outcome::Unsupported(why) => out.skipped.push(why.describe(i, key)),
        }
    }
    Ok(out)
}

/// Parses a JWKS document that must hold at least one usable key when it
/// lists any (the file source; the URL source keeps its previous keys).
fn parse_usable(bytes: &[u8]) -> Result<Parsed, String> {
    let parsed = parse(bytes)?;
    match parsed.unusable() {
        Some(why) => Err(why),
        None => Ok(parsed),
    }
}

/// What became of one key of the document.
enum Outcome {
    Key(VerifyingKey),
    /// `"use": "enc"`: an encryption key never verifies a signature.
    Encryption,
    /// A key of a type, algorithm or curve hookwarden does not verify with.
    Unsupported(KeyFault),
}

/// What is wrong with one key: the field and why.
struct KeyFault {
    field: &'static str,
    why: String,
}

impl KeyFault {
    fn new(field: &'static str, why: impl Into<String>) -> Self {
        Self {
            field,
            why: why.into(),
        }
    }

    fn describe(&self, index: usize, key: &Value) -> String {
        let kid = match key.get("kid").and_then(Value::as_str) {
            Some(kid) => format!(" (kid {})", quoted(kid)),
            None => String::new(),
        };
        if self.field.is_empty() {
            format!("JWKS key {index}{kid}: {}", self.why)
        } else {
            format!("JWKS key {index}{kid}: field `{}` {}", self.field, self.why)
        }
    }
}

/// The JWA algorithms (RFC 7518, 8037, 8812) of each key type: an `alg` of
/// the key's own type that hookwarden does not verify makes the key skipped;
/// one of another type contradicts the key and is a fault.
const RSA_ALGS: &[&str] = &[
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "RSA1_5",
    "RSA-OAEP",
    "RSA-OAEP-256",
    "RSA-OAEP-384",
    "RSA-OAEP-512",
];
const EC_ALGS: &[&str] = &[
    "ES256",
    "ES384",
    "ES512",
    "ES256K",
    "ECDH-ES",
    "ECDH-ES+A128KW",
    "ECDH-ES+A192KW",
    "ECDH-ES+A256KW",
];
const OKP_ALGS: &[&str] = &[
    "EdDSA",
    "Ed25519",
    "Ed448",
    "ECDH-ES",
    "ECDH-ES+A128KW",
    "ECDH-ES+A192KW",
    "ECDH-ES+A256KW",
];
const OCT_ALGS: &[&str] = &[
    "HS256",
    "HS384",
    "HS512",
    "A128KW",
    "A192KW",
    "A256KW",
    "A128GCMKW",
    "A192GCMKW",
    "A256GCMKW",
    "dir",
    "PBES2-HS256+A128KW",
    "PBES2-HS384+A192KW",
    "PBES2-HS512+A256KW",
];

fn parse_key(key: &Value) -> Result<Outcome, KeyFault> {
    let Value::Object(key) = key else {
        return Err(KeyFault::new("", "is not a JSON object"));
    };
    let kid = optional_str(key, "kid")?.map(str::to_owned);
    match optional_str(key, "use")? {
        None | Some("sig") => {}
        // An encryption key never verifies a signature; IdPs publish both.
        Some("enc") => return Ok(Outcome::Encryption),
        Some(other) => {
            return Ok(Outcome::Unsupported(KeyFault::new(
                "use",
                format!("is {}, not sig: not a signature key", quoted(other)),
            )))
        }
    }
    let kty = required_str(key, "kty")?;
    let (alg, key) = match kty {
        "RSA" => {
            if let Some(skip) = check_alg(key, "RS256", RSA_ALGS, "an RSA")? {
                return Ok(skip);
            }
            let n = base64url(key, "n")?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < MIN_RSA_BITS {
                return Err(KeyFault::new(
                    "n",
                    format!(
                        "is a modulus of about {bits} bits; at least {MIN_RSA_BITS} are required"
                    ),
                ));
            }
            let e = base64url(key, "e")?;
            (
                Algorithm::RS256,
                DecodingKey::from_rsa_raw_components(&n, &e),
            )
        }
        "EC" => {
            if let Some(skip) = check_alg(key, "ES256", EC_ALGS, "an EC")? {
                return Ok(skip);
            }
            match required_str(key, "crv")? {
                "P-256" => {}
                // ES256 is P-256: a key saying both is a fault, not a kind.
                other if optional_str(key, "alg")?.is_some() => {
                    return Err(KeyFault::new(
                        "crv",
                        format!("is {}; an ES256 key is on P-256", quoted(other)),
                    ))
                }
                other => {
                    return Ok(Outcome::Unsupported(KeyFault::new(
                        "crv",
                        format!("is {}; only P-256 (ES256) is supported", quoted(other)),
                    )))
                }
            }
            fixed_length(key, "x", 32)?;
            fixed_length(key, "y", 32)?;
            let (x, y) = (required_str(key, "x")?, required_str(key, "y")?);
            let key = DecodingKey::from_ec_components(x, y)
                .map_err(|e| KeyFault::new("x", format!("does not make a P-256 key: {e}")))?;
            (Algorithm::ES256, key)
        }
        "OKP" => {
            if let Some(skip) = check_alg(key, "EdDSA", OKP_ALGS, "an OKP")? {
                return Ok(skip);
            }
            match required_str(key, "crv")? {
                "Ed25519" => {}
                // Ed448 (EdDSA too) or X25519 / X448 (key agreement).
                other => {
                    return Ok(Outcome::Unsupported(KeyFault::new(
                        "crv",
                        format!("is {}; only Ed25519 (EdDSA) is supported", quoted(other)),
                    )))
                }
            }
            fixed_length(key, "x", 32)?;
            let key = DecodingKey::from_ed_components(required_str(key, "x")?)
                .map_err(|e| KeyFault::new("x", format!("does not make an Ed25519 key: {e}")))?;
            (Algorithm::EdDSA, key)
        }
        // Never used to verify: JWKS keys verify asymmetric signatures only,
        // so a published shared secret cannot be turned against us.
        "oct" => {
            return Ok(Outcome::Unsupported(KeyFault::new(
                "kty",
                "is \"oct\", a symmetric key: never used from a key set (a published \
                 shared secret is no secret; one goes in HOOKWARDEN_JWT_HS256_SECRET)",
            )))
        }
        other => {
            return Ok(Outcome::Unsupported(KeyFault::new(
                "kty",
                format!(
                    "is {}, not a supported key type (RSA, EC or OKP)",
                    quoted(other)
                ),
            )))
        }
    };
    Ok(Outcome::Key(VerifyingKey { kid, alg, key }))
}

/// The key's `alg`, when it names one: the one its type fixes (`None`),
/// another of its type's or one unknown (the key is skipped), or one of
/// another type's (a fault: the key contradicts itself).
fn check_alg(
    key: &Map<String, Value>,
    supported: &str,
    family: &[&str],
    kind: &str,
) -> Result<Option<Outcome>, KeyFault> {
    let alg = match optional_str(key, "alg")? {
        None => return Ok(None),
        Some(a) if a == supported => return Ok(None),
        Some(a) => a,
    };
    let other_type = [RSA_ALGS, EC_ALGS, OKP_ALGS, OCT_ALGS]
        .iter()
        .any(|algs| algs.contains(&alg));
    if family.contains(&alg) || !other_type {
        return Ok(Some(Outcome::Unsupported(KeyFault::new(
            "alg",
            format!(
                "is {}; only {supported} is supported for {kind} key",
                quoted(alg)
            ),
        ))));
    }
    Err(KeyFault::new(
        "alg",
        format!("is {}, which {kind} key cannot verify", quoted(alg)),
    ))
}

/// A value of the document quoted in an error, cut short: the document comes
/// from elsewhere and must not fill the log.
fn quoted(value: &str) -> String {
    const MAX: usize = 40;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

fn optional_str<'a>(
    key: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, KeyFault> {
    match key.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyFault::new(field, "must be a string")),
    }
}

fn required_str<'a>(key: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, KeyFault> {
    optional_str(key, field)?.ok_or_else(|| KeyFault::new(field, "is missing"))
}

fn base64url(key: &Map<String, Value>, field: &'static str) -> Result<Vec<u8>, KeyFault> {
    let text = required_str(key, field)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| KeyFault::new(field, "is not base64url without padding (RFC 7518)"))?;
    if bytes.is_empty() {
        return Err(KeyFault::new(field, "is empty"));
    }
    Ok(bytes)
}

fn fixed_length(key: &Map<String, Value>, field: &'static str, len: usize) -> Result<(), KeyFault> {
    let got = base64url(key, field)?.len();
    if got != len {
        return Err(KeyFault::new(
            field,
            format!("holds {got} bytes; {len} were expected"),
        ));
    }
    Ok(())
}

/// Reads and parses a JWKS file (`serve` and `config check` alike): a file
/// that lists keys but none usable is an error.
pub fn load_file(path: &Path) -> anyhow::Result<Parsed> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("reading JWKS file {}: {e}", path.display()))?;
    parse_usable(&bytes).map_err(|e| anyhow::anyhow!("JWKS file {}: {e}", path.display()))
}

/// The keys of a JWKS file, reloaded when its content changes.
pub struct FileKeys {
    path: PathBuf,
    keys: RwLock<KeySet>,
    /// The digest of the content last looked at (loaded or refused), so a
    /// bad file is reported once, not at every poll.
    seen: Mutex<[u8; 32]>,
}

impl FileKeys {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("reading JWKS file {}: {e}", path.display()))?;
        let parsed = parse_usable(&bytes)
            .map_err(|e| anyhow::anyhow!("JWKS file {}: {e}", path.display()))?;
        warn_skipped_in_file(path, &parsed.skipped);
        Ok(Self {
            path: path.to_owned(),
            keys: RwLock::new(Arc::new(parsed.keys)),
            seen: Mutex::new(Sha256::digest(&bytes).into()),
        })
    }

    pub fn keys(&self) -> KeySet {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reloads when the content changed; a file that does not load keeps the
    /// previous keys (and says why, once).
    pub fn refresh(&self) {
        let (digest, outcome) = match std::fs::read(&self.path) {
            Ok(bytes) => (Sha256::digest(&bytes).into(), parse_usable(&bytes)),
            // A file being replaced may be missing for a moment.
            Err(e) => ([0u8; 32], Err(format!("reading it: {e}"))),
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == digest {
                return;
            }
            *seen = digest;
        }
        count_load("file", "changed", outcome.is_ok());
        match outcome {
            Ok(parsed) => {
                warn_skipped_in_file(&self.path, &parsed.skipped);
                let count = parsed.keys.len();
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(parsed.keys);
                tracing::info!(file = %self.path.display(), keys = count, "JWKS file reloaded");
            }
            Err(e) => tracing::error!(
                file = %self.path.display(),
                error.message = %e,
                "JWKS file changed but does not load; keeping the previous keys"
            ),
        }
    }
}

fn warn_skipped_in_file(path: &Path, skipped: &[String]) {
    for why in skipped {
        tracing::warn!(
            file = %path.display(),
            key = %why,
            "JWKS key skipped: a type, algorithm or curve not supported"
        );
    }
}

/// The first wait before fetching a JWKS URL again while no key set has
/// loaded from it; doubled after each failure up to `RETRY_MAX` (and never
/// beyond the refresh interval).
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between fetches while no key set has loaded: an IdP
/// that comes back is used within this, and a down one is asked at most
/// this often by each replica.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// The keys served at a JWKS URL: fetched at start-up, again with backoff
/// until a key set loads, then periodically. Start-up does not wait for it:
/// the ingress and delivery never use tokens, and tenant and producer tokens
/// are refused (401) until keys load.
pub struct RemoteKeys {
    url: url::Url,
    /// The URL as logs and errors show it (no credentials).
    shown: String,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// Whether a key set has ever loaded, and if not, why the last fetch
    /// did not load one (for `/ready`).
    status: Mutex<Status>,
    /// The skipped keys last reported, so a refresh repeating them is quiet.
    skipped: Mutex<Vec<String>>,
    /// When a fetch was last caused by an unknown `kid`. The lock is also
    /// held across every fetch, so concurrent callers wait for the one
    /// fetch in flight instead of starting their own.
    on_demand: tokio::sync::Mutex<Option<Instant>>,
}

enum Status {
    Loaded,
    /// No key set has loaded yet: why not.
    NotLoaded(String),
}

/// Why a fetch did not give keys to use.
enum Failure {
    /// No key set: unreachable, an HTTP error, too large, or it does not parse.
    Fetch(String),
    /// A key set that lists keys, none of them usable.
    Unusable(String),
}

impl RemoteKeys {
    /// The client for the URL, without fetching it. A URL that does not
    /// parse or a CA file that does not load (`ca_file`: PEM roots trusted
    /// for the URL's server besides the system's) is an error: configuration.
    pub fn new(url: &str, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("HOOKWARDEN_JWT_JWKS_URL does not parse: {e}"))?;
        let shown = crate::config::without_credentials(url);
        let mut builder = reqwest::Client::builder();
        if let Some(path) = ca_file {
            for root in ca_roots(path)? {
                builder = builder.add_root_certificate(root);
            }
        }
        let http = builder
            // A redirect could lead anywhere; the configured URL is the key source.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(FETCH_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("hookwarden/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            url: parsed,
            shown,
            http,
            keys: RwLock::new(Arc::new(Vec::new())),
            status: Mutex::new(Status::NotLoaded("not fetched yet".into())),
            skipped: Mutex::new(Vec::new()),
            on_demand: tokio::sync::Mutex::new(None),
        })
    }

    pub fn keys(&self) -> KeySet {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The URL as logs and errors show it (no credentials).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Has a key set ever loaded from the URL?
    pub fn has_loaded(&self) -> bool {
        matches!(
            *self.status.lock().unwrap_or_else(|p| p.into_inner()),
            Status::Loaded
        )
    }

    /// `Err` naming the URL and why while no key set has loaded from it.
    pub fn status(&self) -> Result<(), String> {
        match &*self.status.lock().unwrap_or_else(|p| p.into_inner()) {
            Status::Loaded => Ok(()),
            Status::NotLoaded(why) => Err(format!("no key set loaded from {}: {why}", self.shown)),
        }
    }

    /// One fetch: the key set, or why not (naming the URL, never the content).
    pub async fn fetch(&self) -> anyhow::Result<Parsed> {
        self.fetch_cause()
            .await
            .map_err(|why| anyhow::anyhow!("fetching {}: {why}", self.shown))
    }

    /// One fetch; the error is the cause only (the caller names the URL).
    async fn fetch_cause(&self) -> Result<Parsed, String> {
        let mut resp = self
            .http
            .get(self.url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(describe)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("answered HTTP {}", status.as_u16()));
        }
        let too_large = || format!("the key set is larger than {MAX_JWKS_BYTES} bytes");
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        parse(&body)
    }

    /// Fetches and swaps the key set; a failure keeps the last good one.
    async fn fetch_and_swap(&self, trigger: &'static str) {
        let outcome = match self.fetch_cause().await {
            Err(why) => Err(Failure::Fetch(why)),
            Ok(parsed) => match parsed.unusable() {
                Some(why) => Err(Failure::Unusable(why)),
                None => Ok(parsed),
            },
        };
        count_load("url", trigger, outcome.is_ok());
        let url = &self.shown;
        let loaded_before = self.has_loaded();
        let why = match outcome {
            Ok(parsed) => {
                self.warn_skipped_if_new(parsed.skipped);
                let count = parsed.keys.len();
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(parsed.keys);
                *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Status::Loaded;
                if loaded_before {
                    tracing::debug!(url = %url, keys = count, "JWKS fetched");
                } else {
                    tracing::info!(url = %url, keys = count, "JWKS loaded: tokens are verified with its keys");
                }
                return;
            }
            // At start-up, the first word an operator reads about it.
            Err(Failure::Fetch(why)) if trigger == "startup" => {
                tracing::error!(
                    url = %url,
                    error.message = %why,
                    "JWKS URL does not load: starting without its keys (tenant and producer \
                     tokens are refused until they load); retrying in the background"
                );
                why
            }
            Err(Failure::Fetch(why)) if loaded_before => {
                tracing::warn!(
                    url = %url,
                    error.message = %why,
                    "JWKS refresh failed; keeping the previous keys"
                );
                why
            }
            Err(Failure::Fetch(why)) => {
                tracing::warn!(
                    url = %url,
                    error.message = %why,
                    "JWKS URL still does not load; tenant and producer tokens are refused until it does"
                );
                why
            }
            Err(Failure::Unusable(why)) => {
                tracing::warn!(
                    url = %url,
                    error.message = %why,
                    "JWKS URL publishes no key hookwarden can use; keeping the previous keys"
                );
                why
            }
        };
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if let Status::NotLoaded(last) = &mut *status {
            *last = why;
        }
    }

    fn warn_skipped_if_new(&self, skipped: Vec<String>) {
        let mut seen = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == skipped {
            return;
        }
        for why in &skipped {
            tracing::warn!(
                url = %self.shown,
                key = %why,
                "JWKS key skipped: a type, algorithm or curve not supported"
            );
        }
        *seen = skipped;
    }

    /// The fetch at start-up: a failure is logged (an ERROR naming the URL
    /// and the cause) and retried by `run`, never fatal.
    pub async fn load_at_start_up(&self) {
        let _turn = self.on_demand.lock().await;
        self.fetch_and_swap("startup").await;
    }

    /// Fetches again until stopped: with backoff (`RETRY_FIRST` doubling to
    /// `RETRY_MAX`, at most `every`) while no key set has loaded, then every
    /// `every`; the waits are on `clock`.
    pub async fn run(
        &self,
        every: Duration,
        clock: &crate::shared::clock::Clock,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut backoff = RETRY_FIRST;
        loop {
            let loaded = self.has_loaded();
            let wait = if loaded { every } else { backoff.min(every) };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = clock.sleep(wait) => {}
            }
            // Taken after the sleep: a fetch for an unknown `kid` may have
            // loaded keys meanwhile.
            let _turn = self.on_demand.lock().await;
            if self.has_loaded() {
                self.fetch_and_swap("periodic").await;
            } else {
                self.fetch_and_swap("retry").await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }

    /// A token named a `kid` no key has: fetch again, unless a fetch for that
    /// reason happened within `UNKNOWN_KID_REFRESH_INTERVAL`. A caller that
    /// finds a fetch in flight waits for it rather than starting another.
    pub async fn refresh_for_unknown_kid(&self) {
        let mut last = self.on_demand.lock().await;
        if last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_REFRESH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        self.fetch_and_swap("unknown_kid").await;
    }
}

fn count_load(source: &'static str, trigger: &'static str, ok: bool) {
    metrics::counter!(
        crate::shared::metrics::JWKS_LOADS,
        "source" => source,
        "trigger" => trigger,
        "outcome" => if ok { "loaded" } else { "failed" },
    )
    .increment(1);
}

/// The certificates of `HOOKWARDEN_JWT_JWKS_CA_FILE`; a file holding none
/// is an error (the IdP would otherwise fail later, less clearly).
pub fn ca_roots(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let context = || {
        format!(
            "HOOKWARDEN_JWT_JWKS_CA_FILE: reading certificates from {}",
            path.display()
        )
    };
    let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", context()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", context()))?;
    if roots.is_empty() {
        anyhow::bail!(
            "HOOKWARDEN_JWT_JWKS_CA_FILE: {} holds no PEM certificate",
            path.display()
        );
    }
    Ok(roots)
}

/// A reqwest error without its URL (which may carry credentials): the URL is
/// named by the caller, redacted.
fn describe(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    if timeout {
        format!("no answer within {}s ({text})", FETCH_TIMEOUT.as_secs())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        let text = include_str!("../../../tests/fixtures/jwks.json");
        serde_json::from_str(text).expect("fixture")
    }

    /// What parsing the fixture with key `index` changed says: `loaded`,
    /// `skipped: <why>` or the error.
    fn with_key(change: impl FnOnce(&mut Map<String, Value>), index: usize) -> String {
        let mut doc = fixture();
        let key = doc["keys"][index].as_object_mut().expect("key");
        change(key);
        match parse(doc.to_string().as_bytes()) {
            Ok(p) if p.skipped.is_empty() => {
                assert_eq!(p.keys.len(), 3);
                "loaded".into()
            }
            Ok(p) => {
                // The other keys still load.
                assert_eq!(p.keys.len(), 2, "{:?}", p.skipped);
                format!("skipped: {}", p.skipped.join("; "))
            }
            Err(e) => e,
        }
    }

    fn set(field: &'static str, value: &'static str) -> impl FnOnce(&mut Map<String, Value>) {
        move |k| drop(k.insert(field.into(), value.into()))
    }

    #[test]
    fn the_fixture_loads_with_each_algorithm() {
        let parsed = parse(fixture().to_string().as_bytes()).expect("keys");
        let algs: Vec<_> = parsed.keys.iter().map(|k| (k.kid.clone(), k.alg)).collect();
        assert_eq!(
            algs,
            vec![
                (Some("rsa-1".into()), Algorithm::RS256),
                (Some("ec-1".into()), Algorithm::ES256),
                (Some("ed-1".into()), Algorithm::EdDSA),
            ]
        );
        assert!(parsed.skipped.is_empty());
        assert!(parsed.unusable().is_none());
    }

    #[test]
    fn a_malformed_key_of_a_supported_type_is_named_with_its_field() {
        let cases: Vec<(String, &str)> = vec![
            (
                with_key(|k| drop(k.remove("n")), 0),
                "JWKS key 0 (kid \"rsa-1\"): field `n` is missing",
            ),
            (
                with_key(|k| drop(k.insert("n".into(), 12.into())), 0),
                "JWKS key 0 (kid \"rsa-1\"): field `n` must be a string",
            ),
            (
                with_key(set("e", "A+B/"), 0),
                "JWKS key 0 (kid \"rsa-1\"): field `e` is not base64url",
            ),
            (
                with_key(set("n", "AQAB"), 0),
                "JWKS key 0 (kid \"rsa-1\"): field `n` is a modulus of about 24 bits",
            ),
            // An `alg` another key type's contradicts the key.
            (
                with_key(set("alg", "ES256"), 0),
                "JWKS key 0 (kid \"rsa-1\"): field `alg` is \"ES256\", which an RSA key cannot verify",
            ),
            (
                with_key(set("alg", "HS256"), 2),
                "JWKS key 2 (kid \"ed-1\"): field `alg` is \"HS256\", which an OKP key cannot verify",
            ),
            (
                with_key(set("alg", "RS256"), 1),
                "JWKS key 1 (kid \"ec-1\"): field `alg` is \"RS256\", which an EC key cannot verify",
            ),
            // ES256 is on P-256: a key saying ES256 on another curve is at fault.
            (
                with_key(set("crv", "P-521"), 1),
                "JWKS key 1 (kid \"ec-1\"): field `crv` is \"P-521\"; an ES256 key is on P-256",
            ),
            (
                with_key(|k| drop(k.remove("crv")), 1),
                "JWKS key 1 (kid \"ec-1\"): field `crv` is missing",
            ),
            (
                with_key(|k| drop(k.remove("y")), 1),
                "JWKS key 1 (kid \"ec-1\"): field `y` is missing",
            ),
            (
                with_key(|k| drop(k.remove("kty")), 2),
                "JWKS key 2 (kid \"ed-1\"): field `kty` is missing",
            ),
            (
                with_key(set("x", "AAAA"), 2),
                "JWKS key 2 (kid \"ed-1\"): field `x` holds 3 bytes; 32 were expected",
            ),
            (
                with_key(|k| drop(k.insert("kid".into(), 7.into())), 2),
                "JWKS key 2: field `kid` must be a string",
            ),
            (
                with_key(|k| drop(k.insert("use".into(), true.into())), 2),
                "JWKS key 2 (kid \"ed-1\"): field `use` must be a string",
            ),
        ];
        for (got, want) in cases {
            assert!(got.contains(want), "{got:?} does not say {want:?}");
            assert!(!got.starts_with("skipped"), "{got}");
            assert!(!got.contains("variant"), "{got}");
        }
    }

    #[test]
    fn a_key_of_an_unsupported_kind_is_skipped_and_named() {
        let cases: Vec<(String, &str)> = vec![
            (
                with_key(set("alg", "RS512"), 0),
                "JWKS key 0 (kid \"rsa-1\"): field `alg` is \"RS512\"; only RS256 is supported for an RSA key",
            ),
            (
                with_key(set("alg", "PS256"), 0),
                "JWKS key 0 (kid \"rsa-1\"): field `alg` is \"PS256\"",
            ),
            (
                with_key(set("alg", "ES384"), 1),
                "JWKS key 1 (kid \"ec-1\"): field `alg` is \"ES384\"; only ES256",
            ),
            // No `alg`: the curve decides.
            (
                with_key(
                    |k| {
                        k.remove("alg");
                        k.insert("crv".into(), "P-384".into());
                    },
                    1,
                ),
                "JWKS key 1 (kid \"ec-1\"): field `crv` is \"P-384\"; only P-256 (ES256) is supported",
            ),
            (
                with_key(set("crv", "Ed448"), 2),
                "JWKS key 2 (kid \"ed-1\"): field `crv` is \"Ed448\"; only Ed25519 (EdDSA)",
            ),
            (
                with_key(set("kty", "DSA"), 2),
                "JWKS key 2 (kid \"ed-1\"): field `kty` is \"DSA\", not a supported key type",
            ),
            (
                with_key(set("kty", "oct"), 2),
                "JWKS key 2 (kid \"ed-1\"): field `kty` is \"oct\", a symmetric key",
            ),
            (
                with_key(set("alg", "XY999"), 0),
                "JWKS key 0 (kid \"rsa-1\"): field `alg` is \"XY999\"",
            ),
            (
                with_key(
                    |k| {
                        k.remove("kid");
                        k.insert("use".into(), "signing".into());
                    },
                    1,
                ),
                "JWKS key 1: field `use` is \"signing\", not sig",
            ),
        ];
        for (got, want) in cases {
            assert!(got.starts_with("skipped: "), "{got:?} is not a skip");
            assert!(got.contains(want), "{got:?} does not say {want:?}");
        }
    }

    #[test]
    fn an_idp_publishing_a_ps256_key_beside_its_rs256_key_still_loads() {
        let mut doc = fixture();
        let mut ps = doc["keys"][0].clone();
        ps["kid"] = "ps-1".into();
        ps["alg"] = "PS256".into();
        let keys = doc["keys"].as_array_mut().expect("keys");
        keys.insert(0, ps);
        keys.push(
            serde_json::json!({"kty": "EC", "kid": "ec-384", "crv": "P-384", "x": "AA", "y": "AA"}),
        );
        let parsed = parse(doc.to_string().as_bytes()).expect("loads");
        let kids: Vec<_> = parsed.keys.iter().filter_map(|k| k.kid.clone()).collect();
        assert_eq!(kids, ["rsa-1", "ec-1", "ed-1"]);
        assert_eq!(parsed.skipped.len(), 2, "{:?}", parsed.skipped);
        assert!(parsed.skipped[0].starts_with("JWKS key 0 (kid \"ps-1\"): field `alg`"));
        assert!(parsed.skipped[1].starts_with("JWKS key 4 (kid \"ec-384\"): field `crv`"));
        assert!(parsed.unusable().is_none());
    }

    #[test]
    fn a_document_with_no_usable_key_says_so_and_a_file_of_it_does_not_load() {
        let only_skipped =
            br#"{"keys": [{"kty": "RSA", "kid": "r5", "alg": "RS512", "n": "AQAB", "e": "AQAB"}]}"#;
        let parsed = parse(only_skipped).expect("parses");
        let why = parsed.unusable().expect("unusable");
        assert!(
            why.starts_with("no usable key: JWKS key 0 (kid \"r5\"): field `alg` is \"RS512\""),
            "{why}"
        );
        let only_enc = br#"{"keys": [{"kty": "RSA", "use": "enc", "alg": "RSA-OAEP"}]}"#;
        let why = parse(only_enc)
            .expect("parses")
            .unusable()
            .expect("unusable");
        assert!(why.contains("encryption keys"), "{why}");
        // An empty list is a key set with no key, as before.
        assert!(parse(br#"{"keys": []}"#)
            .expect("empty")
            .unusable()
            .is_none());

        let dir = std::env::temp_dir().join(format!("jwks-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("only-skipped.json");
        std::fs::write(&file, only_skipped).expect("write");
        let err = format!("{:#}", load_file(&file).err().expect("refused"));
        assert!(
            err.contains("only-skipped.json") && err.contains("no usable key"),
            "{err}"
        );
        let err = format!("{:#}", FileKeys::load(&file).err().expect("refused"));
        assert!(
            err.contains("no usable key: JWKS key 0 (kid \"r5\")"),
            "{err}"
        );
        // One usable key beside it: loads, the other listed as skipped.
        let mut doc = fixture();
        doc["keys"]
            .as_array_mut()
            .expect("keys")
            .push(serde_json::from_slice::<Value>(only_skipped).expect("json")["keys"][0].clone());
        std::fs::write(&file, doc.to_string()).expect("write");
        let parsed = load_file(&file).expect("loads");
        assert_eq!((parsed.keys.len(), parsed.skipped.len()), (3, 1));
        assert_eq!(FileKeys::load(&file).expect("loads").keys().len(), 3);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_document_itself_is_checked() {
        for (doc, want) in [
            ("{", "JWKS is not JSON"),
            ("[]", "JWKS must be a JSON object"),
            ("{}", "field `keys` is missing"),
            (r#"{"keys": {}}"#, "field `keys` must be a list"),
            (r#"{"keys": [1]}"#, "JWKS key 0: is not a JSON object"),
        ] {
            let err = parse(doc.as_bytes()).err().expect(doc);
            assert!(err.contains(want), "{doc}: {err}");
        }
        assert!(parse(br#"{"keys": []}"#).expect("empty").keys.is_empty());
    }

    #[test]
    fn values_quoted_in_errors_are_cut_short() {
        let long = "A".repeat(5000);
        for (field, index) in [("kty", 0), ("n", 0)] {
            let err = with_key(
                |k| {
                    k.insert("kid".into(), long.clone().into());
                    if field == "n" {
                        k.insert("alg".into(), long.clone().into());
                    } else {
                        k.insert(field.into(), long.clone().into());
                    }
                },
                index,
            );
            assert!(err.contains("is \"AAAA"), "{err}");
            assert!(err.len() < 300, "{err}");
        }
    }

    #[test]
    fn encryption_keys_are_skipped() {
        let mut doc = fixture();
        doc["keys"][0]["use"] = "enc".into();
        doc["keys"][0]["alg"] = "RSA-OAEP".into();
        let parsed = parse(doc.to_string().as_bytes()).expect("keys");
        assert_eq!(parsed.keys.len(), 2);
        assert!(parsed
            .keys
            .iter()
            .all(|k| k.kid.as_deref() != Some("rsa-1")));
        // Quietly: an IdP publishes both, nothing to warn about.
        assert!(parsed.skipped.is_empty());
        assert_eq!(parsed.encryption, 1);
    }
}
