//! JWKS key sets for token verification: parsed key by key (a fault names the
//! key and the field, never serde's enum message), read from a file that is
//! reloaded when it changes, or fetched from a URL (bounded in size and time,
//! refreshed periodically and, at a bounded rate, on a token whose `kid` is
//! unknown). A key set that does not load never replaces the last good one.

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

/// Parses a JWKS document. Keys marked `"use": "enc"` are encryption keys
/// and skipped; any other key that does not load is an error naming it.
pub fn parse(bytes: &[u8]) -> Result<Vec<VerifyingKey>, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let Value::Object(doc) = doc else {
        return Err("JWKS must be a JSON object with a `keys` list".into());
    };
    let keys = match doc.get("keys") {
        None => return Err("JWKS: field `keys` is missing".into()),
        Some(Value::Array(keys)) => keys,
        Some(_) => return Err("JWKS: field `keys` must be a list of keys".into()),
    };
    let mut out = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        if let Some(k) = parse_key(key).map_err(|e| e.describe(i, key))? {
            out.push(k);
        }
    }
    Ok(out)
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

fn parse_key(key: &Value) -> Result<Option<VerifyingKey>, KeyFault> {
    let Value::Object(key) = key else {
        return Err(KeyFault::new("", "is not a JSON object"));
    };
    let kid = optional_str(key, "kid")?.map(str::to_owned);
    match optional_str(key, "use")? {
        None | Some("sig") => {}
        // An encryption key never verifies a signature; IdPs publish both.
        Some("enc") => return Ok(None),
        Some(other) => {
            return Err(KeyFault::new(
                "use",
                format!("is {}, not sig or enc", quoted(other)),
            ))
        }
    }
    let kty = required_str(key, "kty")?;
    let (alg, key) = match kty {
        "RSA" => {
            expect_alg(key, "RS256", "an RSA")?;
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
            expect_alg(key, "ES256", "an EC")?;
            match required_str(key, "crv")? {
                "P-256" => {}
                other => {
                    return Err(KeyFault::new(
                        "crv",
                        format!("is {}; only P-256 (ES256) is supported", quoted(other)),
                    ))
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
            expect_alg(key, "EdDSA", "an OKP")?;
            match required_str(key, "crv")? {
                "Ed25519" => {}
                other => {
                    return Err(KeyFault::new(
                        "crv",
                        format!("is {}; only Ed25519 (EdDSA) is supported", quoted(other)),
                    ))
                }
            }
            fixed_length(key, "x", 32)?;
            let key = DecodingKey::from_ed_components(required_str(key, "x")?)
                .map_err(|e| KeyFault::new("x", format!("does not make an Ed25519 key: {e}")))?;
            (Algorithm::EdDSA, key)
        }
        "oct" => {
            return Err(KeyFault::new(
                "kty",
                "is \"oct\", a symmetric key: a published key set must not hold one \
                 (a shared secret goes in HOOKWARDEN_JWT_HS256_SECRET)",
            ))
        }
        other => {
            return Err(KeyFault::new(
                "kty",
                format!(
                    "is {}, not a supported key type (RSA, EC or OKP)",
                    quoted(other)
                ),
            ))
        }
    };
    Ok(Some(VerifyingKey { kid, alg, key }))
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

/// The key's `alg`, when it names one, must be the one its type fixes.
fn expect_alg(key: &Map<String, Value>, alg: &str, kind: &str) -> Result<(), KeyFault> {
    match optional_str(key, "alg")? {
        None => Ok(()),
        Some(a) if a == alg => Ok(()),
        Some(other) => Err(KeyFault::new(
            "alg",
            format!("is {}; {kind} key verifies {alg} only", quoted(other)),
        )),
    }
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

/// Reads and parses a JWKS file (`serve` and `config check` alike).
pub fn load_file(path: &Path) -> anyhow::Result<Vec<VerifyingKey>> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("reading JWKS file {}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| anyhow::anyhow!("JWKS file {}: {e}", path.display()))
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
        let keys =
            parse(&bytes).map_err(|e| anyhow::anyhow!("JWKS file {}: {e}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            keys: RwLock::new(Arc::new(keys)),
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
            Ok(bytes) => (Sha256::digest(&bytes).into(), parse(&bytes)),
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
            Ok(keys) => {
                let count = keys.len();
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
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

/// The keys served at a JWKS URL, fetched at start-up and refreshed.
pub struct RemoteKeys {
    url: url::Url,
    /// The URL as logs and errors show it (no credentials).
    shown: String,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// When a fetch was last caused by an unknown `kid`. The lock is also
    /// held across every fetch, so concurrent callers wait for the one
    /// fetch in flight instead of starting their own.
    on_demand: tokio::sync::Mutex<Option<Instant>>,
}

impl RemoteKeys {
    /// Fetches the key set once; start-up fails when that fails. `ca_file`:
    /// PEM roots trusted for the URL's server besides the system's.
    pub async fn load(url: &str, ca_file: Option<&Path>) -> anyhow::Result<Self> {
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
        let remote = Self {
            url: parsed,
            shown,
            http,
            keys: RwLock::new(Arc::new(Vec::new())),
            on_demand: tokio::sync::Mutex::new(None),
        };
        let keys = remote.fetch().await?;
        *remote.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(remote)
    }

    pub fn keys(&self) -> KeySet {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One fetch: the key set, or why not (naming the URL, never the content).
    pub async fn fetch(&self) -> anyhow::Result<Vec<VerifyingKey>> {
        let url = &self.shown;
        let resp = self
            .http
            .get(self.url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("fetching {url}: {}", describe(e)))?;
        let status = resp.status();
        if !status.is_success() {
            anyhow::bail!("fetching {url}: answered HTTP {}", status.as_u16());
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            anyhow::bail!("fetching {url}: the key set is larger than {MAX_JWKS_BYTES} bytes");
        }
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| anyhow::anyhow!("fetching {url}: {}", describe(e)))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                anyhow::bail!("fetching {url}: the key set is larger than {MAX_JWKS_BYTES} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        parse(&body).map_err(|e| anyhow::anyhow!("{url}: {e}"))
    }

    /// Fetches and swaps the key set; a failure keeps the last good one.
    async fn fetch_and_swap(&self, trigger: &'static str) {
        let fetched = self.fetch().await;
        count_load("url", trigger, fetched.is_ok());
        match fetched {
            Ok(keys) => {
                let count = keys.len();
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
                tracing::debug!(url = %self.shown, keys = count, "JWKS fetched");
            }
            Err(e) => tracing::warn!(
                url = %self.shown,
                error.message = %format!("{e:#}"),
                "JWKS refresh failed; keeping the previous keys"
            ),
        }
    }

    /// The periodic refresh.
    pub async fn refresh(&self) {
        let _turn = self.on_demand.lock().await;
        self.fetch_and_swap("periodic").await;
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
        crate::metrics::JWKS_LOADS,
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
        let text = include_str!("../../tests/fixtures/jwks.json");
        serde_json::from_str(text).expect("fixture")
    }

    fn with_key(change: impl FnOnce(&mut Map<String, Value>), index: usize) -> String {
        let mut doc = fixture();
        let key = doc["keys"][index].as_object_mut().expect("key");
        change(key);
        match parse(doc.to_string().as_bytes()) {
            Ok(_) => "loaded".into(),
            Err(e) => e,
        }
    }

    #[test]
    fn the_fixture_loads_with_each_algorithm() {
        let keys = parse(fixture().to_string().as_bytes()).expect("keys");
        let algs: Vec<_> = keys.iter().map(|k| (k.kid.clone(), k.alg)).collect();
        assert_eq!(
            algs,
            vec![
                (Some("rsa-1".into()), Algorithm::RS256),
                (Some("ec-1".into()), Algorithm::ES256),
                (Some("ed-1".into()), Algorithm::EdDSA),
            ]
        );
    }

    #[test]
    fn a_bad_key_is_named_with_its_field() {
        let cases: Vec<(String, &str)> = vec![
            (
                with_key(|k| drop(k.insert("crv".into(), "P-521".into())), 1),
                "JWKS key 1 (kid \"ec-1\"): field `crv` is \"P-521\"",
            ),
            (
                with_key(|k| drop(k.remove("n")), 0),
                "JWKS key 0 (kid \"rsa-1\"): field `n` is missing",
            ),
            (
                with_key(|k| drop(k.insert("n".into(), 12.into())), 0),
                "JWKS key 0 (kid \"rsa-1\"): field `n` must be a string",
            ),
            (
                with_key(|k| drop(k.insert("e".into(), "A+B/".into())), 0),
                "JWKS key 0 (kid \"rsa-1\"): field `e` is not base64url",
            ),
            (
                with_key(|k| drop(k.insert("n".into(), "AQAB".into())), 0),
                "JWKS key 0 (kid \"rsa-1\"): field `n` is a modulus of about 24 bits",
            ),
            (
                with_key(|k| drop(k.insert("alg".into(), "RS512".into())), 0),
                "field `alg` is \"RS512\"; an RSA key verifies RS256 only",
            ),
            (
                with_key(|k| drop(k.insert("kty".into(), "oct".into())), 2),
                "JWKS key 2 (kid \"ed-1\"): field `kty` is \"oct\", a symmetric key",
            ),
            (
                with_key(|k| drop(k.insert("kty".into(), "DSA".into())), 2),
                "field `kty` is \"DSA\", not a supported key type",
            ),
            (
                with_key(|k| drop(k.remove("kty")), 2),
                "JWKS key 2 (kid \"ed-1\"): field `kty` is missing",
            ),
            (
                with_key(|k| drop(k.insert("x".into(), "AAAA".into())), 2),
                "field `x` holds 3 bytes; 32 were expected",
            ),
            (
                with_key(
                    |k| {
                        k.remove("kid");
                        k.insert("use".into(), "signing".into());
                    },
                    1,
                ),
                "JWKS key 1: field `use` is \"signing\"",
            ),
        ];
        for (got, want) in cases {
            assert!(got.contains(want), "{got:?} does not say {want:?}");
            assert!(!got.contains("variant"), "{got}");
        }
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
        assert!(parse(br#"{"keys": []}"#).expect("empty").is_empty());
    }

    #[test]
    fn values_quoted_in_errors_are_cut_short() {
        let long = "A".repeat(5000);
        let err = with_key(
            |k| {
                k.insert("kid".into(), long.clone().into());
                k.insert("kty".into(), long.clone().into());
            },
            0,
        );
        assert!(err.contains("field `kty` is \"AAAA"), "{err}");
        assert!(err.len() < 300, "{err}");
    }

    #[test]
    fn encryption_keys_are_skipped() {
        let mut doc = fixture();
        doc["keys"][0]["use"] = "enc".into();
        doc["keys"][0]["alg"] = "RSA-OAEP".into();
        let keys = parse(doc.to_string().as_bytes()).expect("keys");
        assert_eq!(keys.len(), 2);
        assert!(keys.iter().all(|k| k.kid.as_deref() != Some("rsa-1")));
    }
}
