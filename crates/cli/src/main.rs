//! The `hookwarden` binary: a thin shell over the server crate, and the
//! operator's client for a running instance (`ops`).

mod ops;

/// mimalloc, not glibc's malloc: a publish and a delivery allocate and free
/// thousands of small buffers (HTTP, JSON, SQL values), and malloc and free
/// were a sixth of the runtime thread's CPU at a steady rate (README ›
/// Benchmarks › Sustained load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hookwarden_core::secret::WebhookSecret;
use hookwarden_core::standard_webhooks;
use hookwarden_server::boot::Application;
use hookwarden_server::boot::{keys, telemetry};
use hookwarden_server::config::Settings;
use hookwarden_server::shared::jwt::{mint_hs256, Claims};
use secrecy::ExposeSecret;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "hookwarden",
    version,
    about = "A secure webhook gateway: signed outbound delivery and verified inbound ingestion."
)]
struct Cli {
    /// TOML configuration file; HOOKWARDEN_* environment variables override it.
    #[arg(long, global = true, env = "HOOKWARDEN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Where `sign` and `verify` read the `whsec_…` secret.
#[derive(clap::Args)]
struct SecretSource {
    /// A file holding the secret.
    #[arg(long)]
    secret_file: Option<std::path::PathBuf>,
    /// Refused: a secret in the arguments is visible to every user in `ps`.
    #[arg(long, hide = true)]
    secret: Option<String>,
}

impl SecretSource {
    fn read(&self) -> anyhow::Result<WebhookSecret> {
        if self.secret.is_some() {
            anyhow::bail!("--secret is refused: command-line arguments are visible to every user of the host; use --secret-file or HOOKWARDEN_WEBHOOK_SECRET");
        }
        let text = match (
            &self.secret_file,
            std::env::var("HOOKWARDEN_WEBHOOK_SECRET"),
        ) {
            (Some(path), _) => zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            (None, Ok(v)) => zeroize::Zeroizing::new(v),
            (None, Err(_)) => {
                anyhow::bail!("no secret: give --secret-file PATH or set HOOKWARDEN_WEBHOOK_SECRET")
            }
        };
        Ok(WebhookSecret::parse(text.trim())?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Runs the APIs, the delivery worker and (when configured) the NATS consumer.
    Serve,
    /// Applies database migrations and exits.
    Migrate,
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Mints a development tenant or producer token with the server's HS256
    /// secret: HOOKWARDEN_JWT_HS256_SECRET, else (development) the one `serve`
    /// generated in the data directory. Never creates a secret.
    Token {
        /// The account the token acts for (omit for a producer token).
        #[arg(long)]
        account: Option<String>,
        /// Space-separated scopes: webhooks:read webhooks:write events:publish.
        #[arg(long, default_value = "webhooks:read webhooks:write")]
        scope: String,
        /// Lifetime, e.g. 15m, 1h.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// The subject (defaults to the account, or "dev-producer").
        #[arg(long)]
        subject: Option<String>,
    },
    /// Master key tools.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Certificate tools.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Signs a body read from stdin as Standard Webhooks and prints the headers.
    /// The secret comes from `--secret-file` or `HOOKWARDEN_WEBHOOK_SECRET`,
    /// never from the command line (every user of the host can read that).
    Sign {
        #[command(flatten)]
        secret: SecretSource,
        #[arg(long)]
        id: String,
        /// Unix seconds (default: now).
        #[arg(long)]
        timestamp: Option<i64>,
    },
    /// Verifies a Standard Webhooks signature over a body read from stdin
    /// (secret from `--secret-file` or `HOOKWARDEN_WEBHOOK_SECRET`).
    Verify {
        #[command(flatten)]
        secret: SecretSource,
        #[arg(long)]
        id: String,
        #[arg(long)]
        timestamp: String,
        #[arg(long)]
        signature: String,
        /// Accepted clock difference in seconds.
        #[arg(long, default_value_t = standard_webhooks::DEFAULT_TOLERANCE_SECS)]
        tolerance: i64,
    },
    /// The operator's client for a running instance: inbound and outbound
    /// events and deliveries, replays and retries, endpoints, the audit
    /// trail. The key comes from HOOKWARDEN_OPERATOR_KEY or --key-file.
    Ops(Box<ops::OpsArgs>),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validates the configuration and prints it with secrets redacted;
    /// loads every file it names (certificates, keys, JWKS, master key, CA
    /// and creds files) as `serve` would and reports each by setting.
    /// Exits non-zero when anything fails.
    Check {
        /// Also reach PostgreSQL, NATS and Redis and fetch the JWKS URL (5 s
        /// each), and report each.
        #[arg(long)]
        connect: bool,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Writes a development CA and certificates (ca.pem, server.pem,
    /// server-key.pem, client.pem, client-key.pem) to try TLS and mTLS.
    Dev {
        #[arg(long, default_value = "./data/certs")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Checks the audit trail's chain and reports the first broken link; when
    /// intact, prints its head as SEQ:HASH (keep it outside the database).
    Verify {
        /// A head printed or logged earlier: fails unless the chain still
        /// holds that entry unchanged (finds removed newest entries and rewrites).
        #[arg(long, value_name = "SEQ:HASH")]
        head: Option<hookwarden_core::audit::Head>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Prints a new random master key (base64 of 32 bytes) and its key id.
    Generate,
    /// Re-encrypts every stored secret under the current master key (online,
    /// safe to interrupt and re-run). Older keys must be listed in
    /// HOOKWARDEN_PREVIOUS_MASTER_KEYS until it reports nothing remaining.
    Rotate {
        /// Secrets re-encrypted per batch.
        #[arg(long, default_value_t = 200)]
        batch: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // One thread fewer than the machine's cores (at least one), unless
    // TOKIO_WORKER_THREADS says otherwise: the database's own threads
    // (SQLite's connection threads and checkpoint, or a PostgreSQL on the
    // same host) need a core, and on a small machine at a steady rate each
    // extra runtime thread mostly wakes up to steal a task from the other.
    // Measured on 2 cores (README › Benchmarks): a fifth less CPU per event
    // at 500–1,000 events/s, bursts 5–9 % slower.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // Not `eprintln!`: it panics when stderr is a closed pipe.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = || Settings::load(cli.config.as_deref());
    match cli.command {
        Command::Ops(args) => return ops::run(*args).await,
        Command::Serve => {
            let settings = settings()?;
            let _logs = telemetry::init(settings.log_format);
            let app = Application::build(settings).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            app.run_until_stopped(shutdown).await?;
        }
        Command::Migrate => {
            let settings = settings()?;
            let _logs = telemetry::init(settings.log_format);
            let url = settings.database_url.expose_secret();
            let store = hookwarden_store::connect(url)
                .await
                .with_context(|| format!("connecting to {}", hookwarden_store::redact_url(url)))?;
            store.migrate().await?;
            println!("migrations applied ({})", store.backend());
        }
        Command::Config {
            command: ConfigCommand::Check { connect },
        } => {
            use hookwarden_server::config_check;
            let settings = settings()?;
            print!("{}", settings.redacted_toml());
            let mut findings = config_check::files(&settings).await;
            if connect {
                findings.extend(config_check::connections(&settings).await);
            }
            eprint!("{}", config_check::render(&findings));
            let failed = findings.iter().filter(|f| !f.ok()).count();
            if failed > 0 {
                eprintln!(
                    "configuration check failed: {failed} of {} checks failed",
                    findings.len()
                );
                return Ok(ExitCode::from(1));
            }
            eprintln!("configuration is valid");
        }
        Command::Token {
            account,
            scope,
            ttl,
            subject,
        } => {
            let settings = settings()?;
            // Only a secret the server already verifies with: never a new one.
            let secret = keys::existing_jwt_hs256_secret(&settings)?;
            let ttl = hookwarden_core::duration::parse_duration(&ttl)?;
            let now = chrono::Utc::now().timestamp();
            let claims = Claims {
                sub: subject
                    .or_else(|| account.clone())
                    .unwrap_or_else(|| "dev-producer".into()),
                account_id: account,
                scope,
                exp: now + ttl.as_secs() as i64,
                nbf: Some(now),
                iat: Some(now),
                iss: settings.jwt_issuer.clone(),
                aud: settings.jwt_audience.clone(),
            };
            println!("{}", mint_hs256(&secret, &claims)?);
        }
        Command::Keys {
            command: KeysCommand::Rotate { batch },
        } => {
            let settings = settings()?;
            let url = settings.database_url.expose_secret();
            let store = hookwarden_store::connect(url)
                .await
                .with_context(|| format!("connecting to {}", hookwarden_store::redact_url(url)))?;
            let keyring = keys::load_keyring(&settings)?;
            eprintln!("re-encrypting under master key {}", keyring.current_id());
            let report = hookwarden_server::shared::rotate::rotate_all(
                store.as_ref(),
                &keyring,
                batch.max(1),
                |done, total| {
                    eprintln!("re-encrypted {done} of {total}");
                },
            )
            .await?;
            // The chain key was re-sealed like any secret; open it to append.
            hookwarden_server::shared::audit::load_chain_key(store.as_ref(), &keyring).await?;
            let entry = hookwarden_store::ingress::NewAudit {
                actor: "cli".into(),
                action: "keys.rotated".into(),
                target: format!("master_key:{}", keyring.current_id()),
                request_id: "cli".into(),
                details: serde_json::json!({"resealed": report.resealed, "remaining": report.remaining}),
            };
            store.append_audit(&entry, chrono::Utc::now()).await?;
            println!(
                "rotation complete: {} re-encrypted, {} remaining under older keys",
                report.resealed, report.remaining
            );
            if report.remaining == 0 {
                println!(
                    "older master keys may now be removed from HOOKWARDEN_PREVIOUS_MASTER_KEYS"
                );
            } else {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Keys {
            command: KeysCommand::Generate,
        } => {
            let key = hookwarden_core::crypto::MasterKey::generate();
            println!("{}", &*key.to_base64());
            eprintln!("key id: {}", key.id());
        }
        Command::Certs {
            command: CertsCommand::Dev { out },
        } => {
            hookwarden_server::boot::devcerts::write_dev_certs(&out)?;
            println!(
                "development CA and certificates written to {}",
                out.display()
            );
            println!("try: HOOKWARDEN_TLS_CERT_FILE={0}/server.pem HOOKWARDEN_TLS_KEY_FILE={0}/server-key.pem \\", out.display());
            println!("     HOOKWARDEN_TLS_CLIENT_CA_FILE={0}/ca.pem HOOKWARDEN_TLS_CLIENT_AUTH=required hookwarden serve", out.display());
            println!("     curl --cacert {0}/ca.pem --cert {0}/client.pem --key {0}/client-key.pem https://localhost:8080/api/v1/health", out.display());
        }
        Command::Audit {
            command: AuditCommand::Verify { head },
        } => {
            let settings = settings()?;
            let url = settings.database_url.expose_secret();
            let store = hookwarden_store::connect(url)
                .await
                .with_context(|| format!("connecting to {}", hookwarden_store::redact_url(url)))?;
            let keyring = keys::load_keyring(&settings)?;
            let verdict =
                hookwarden_server::shared::audit::verify(store.as_ref(), &keyring, head.as_ref())
                    .await?;
            return Ok(match verdict {
                Ok(v) => {
                    println!(
                        "audit trail intact: {} entries, {} keyed (HMAC-SHA256), {} from before the chain was keyed",
                        v.entries,
                        v.keyed,
                        v.entries - v.keyed
                    );
                    if let Some(h) = &head {
                        println!("it holds the recorded head {h}");
                    }
                    if v.keyed == 0 && v.entries > 0 {
                        eprintln!("warning: no entry is keyed, so a rewrite of the whole trail would pass; check it against a head recorded earlier (--head)");
                    }
                    // Last, alone on its line: `audit verify | tail -n 1` is the head to record.
                    println!("{}", v.head);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("audit trail broken: {e}");
                    ExitCode::from(1)
                }
            });
        }
        Command::Sign {
            secret,
            id,
            timestamp,
        } => {
            let secret = secret.read()?;
            let body = read_stdin()?;
            let ts = timestamp.unwrap_or_else(|| chrono::Utc::now().timestamp());
            println!("webhook-id: {id}");
            println!("webhook-timestamp: {ts}");
            println!(
                "webhook-signature: {}",
                standard_webhooks::sign(&secret, &id, ts, &body)
            );
        }
        Command::Verify {
            secret,
            id,
            timestamp,
            signature,
            tolerance,
        } => {
            let secret = secret.read()?;
            let body = read_stdin()?;
            let now = chrono::Utc::now().timestamp();
            return Ok(
                match standard_webhooks::verify(
                    &[&secret],
                    &id,
                    &timestamp,
                    &signature,
                    &body,
                    now,
                    tolerance,
                ) {
                    Ok(()) => {
                        println!("valid");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        println!("invalid: {e}");
                        ExitCode::from(1)
                    }
                },
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("reading the body from stdin")?;
    Ok(body)
}

/// Cancels on SIGTERM or Ctrl-C so tasks drain in-flight work.
async fn stop_on_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
    token.cancel();
}
