//! `hookwarden ops`: the operator's client for a running instance. It talks
//! to the operator API (`/api/v1/…`) of the public listener with an operator
//! key and prints each answer as a table, or as the server's JSON (`--json`).

mod audit;
mod client;
mod inbound;
mod outbound;
mod table;
mod views;

use anyhow::bail;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct OpsArgs {
    /// Base URL of the instance's public listener (HOOKWARDEN_LISTEN, not the ops listener).
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "HOOKWARDEN_OPS_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// A file holding the operator key; without it, HOOKWARDEN_OPERATOR_KEY.
    #[arg(long, global = true, help_heading = "Connection", value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Refused: a key in the arguments is visible to every user in `ps`.
    #[arg(long, global = true, hide = true, help_heading = "Connection")]
    key: Option<String>,
    /// PEM file of the CA that signed the server's certificate (then the only one trusted).
    #[arg(long, global = true, help_heading = "Connection", value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// PEM client certificate, when the operator API requires one
    /// (HOOKWARDEN_OPERATOR_CLIENT_IDENTITY); with --client-key.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        value_name = "PATH",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        value_name = "PATH",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
    /// Go through this HTTP(S) proxy; HTTP_PROXY, HTTPS_PROXY and ALL_PROXY are never used.
    #[arg(long, global = true, help_heading = "Connection", value_name = "URL")]
    proxy: Option<String>,
    /// Print the server's JSON answer (pretty; control and bidirectional
    /// characters as \uXXXX) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: OpsCommand,
}

#[derive(clap::Subcommand)]
enum OpsCommand {
    /// Inbound forwarding jobs by status and the oldest pending one's age.
    Status,
    /// Webhooks received from providers and their forwarding to your services.
    Inbound {
        #[command(subcommand)]
        command: inbound::Command,
    },
    /// Events published to tenants' endpoints: deliveries, retries, endpoints.
    Outbound {
        #[command(subcommand)]
        command: outbound::Command,
    },
    /// The hash-chained audit trail.
    Audit {
        #[command(subcommand)]
        command: audit::Command,
    },
}

/// Why an action is taken, recorded with it in the audit trail.
#[derive(clap::Args)]
struct Justification {
    /// Why (1–500 characters); kept in the audit trail.
    #[arg(long)]
    reason: String,
    /// Who asks (1–100 characters; default: $USER, else "cli").
    #[arg(long, value_name = "NAME")]
    requested_by: Option<String>,
}

impl Justification {
    fn body(&self) -> Value {
        let requested_by = self
            .requested_by
            .clone()
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
            .unwrap_or_else(|| "cli".into());
        json!({"requestedBy": requested_by, "reason": self.reason})
    }
}

/// One query parameter; one whose value is `None` is left out.
type Pair = (&'static str, Option<String>);

/// Time filters: an RFC 3339 time, or a duration ago (`90m`, `2h`, `7d`).
#[derive(clap::Args)]
struct TimeRange {
    /// At or after: RFC 3339, or a duration ago such as 2h.
    #[arg(long, value_parser = parse_time)]
    from: Option<String>,
    /// Before: RFC 3339, or a duration ago such as 30m.
    #[arg(long, value_parser = parse_time)]
    to: Option<String>,
}

impl TimeRange {
    fn query(self) -> [Pair; 2] {
        [("from", self.from), ("to", self.to)]
    }
}

fn parse_time(text: &str) -> Result<String, String> {
    if chrono::DateTime::parse_from_rfc3339(text).is_ok() {
        return Ok(text.to_owned());
    }
    let ago = hookwarden_core::duration::parse_duration(text)
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a duration such as 2h"))?;
    let ago = chrono::Duration::from_std(ago).map_err(|e| e.to_string())?;
    let t = chrono::Utc::now()
        .checked_sub_signed(ago)
        .ok_or_else(|| format!("{text:?} ago is out of range"))?;
    Ok(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Paging: `--limit` items per page, `--cursor` from the previous page.
#[derive(clap::Args)]
struct Paging {
    /// Items per page, 1–100 (server default 50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    limit: Option<u32>,
    /// The cursor printed under the previous page.
    #[arg(long)]
    cursor: Option<String>,
}

impl Paging {
    fn query(self) -> [Pair; 2] {
        [
            ("limit", self.limit.map(|l| l.to_string())),
            ("cursor", self.cursor),
        ]
    }
}

/// The status of a try or job.
#[derive(clap::ValueEnum, Clone, Copy)]
enum Status {
    Pending,
    Succeeded,
    Failed,
    Dead,
}

impl Status {
    /// The `status` filter's value.
    fn query(status: Option<Self>) -> Option<String> {
        let text = match status? {
            Status::Pending => "pending",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Dead => "dead",
        };
        Some(text.to_owned())
    }
}

/// Prints answers the way the user asked.
struct Output {
    json: bool,
}

impl Output {
    /// The JSON answer, or what `table` makes of it.
    fn show(&self, answer: &Value, table: impl FnOnce(&Value) -> String) -> anyhow::Result<()> {
        if self.json {
            stdout(&format!("{}\n", table::json(answer)?))
        } else {
            stdout(&table(answer))
        }
    }
}

/// What every command works with: the instance, and how to print its answers.
struct Ops {
    client: client::Client,
    out: Output,
}

impl Ops {
    /// `GET path?query`, printed by `view`.
    async fn show(
        &self,
        path: &[&str],
        query: &[Pair],
        view: impl FnOnce(&Value) -> String,
    ) -> anyhow::Result<()> {
        let answer = self.client.get(path, query).await?;
        self.out.show(&answer, view)
    }

    /// One page of a list: `filters` then `paging`, printed as a table of `cols`.
    async fn list(
        &self,
        path: &[&str],
        filters: impl IntoIterator<Item = Pair>,
        paging: Paging,
        cols: &[table::Col],
    ) -> anyhow::Result<()> {
        let query: Vec<Pair> = filters.into_iter().chain(paging.query()).collect();
        self.show(path, &query, |v| table::page(v, cols)).await
    }

    /// `POST body` to `path` (an audited action), printed by `view`.
    async fn act(
        &self,
        path: &[&str],
        body: &Value,
        view: impl FnOnce(&Value) -> String,
    ) -> anyhow::Result<()> {
        let answer = self.client.post(path, body).await?;
        self.out.show(&answer, view)
    }
}

/// Writes to stdout; a reader that went away (`| head`) ends the output quietly.
fn stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

pub async fn run(args: OpsArgs) -> anyhow::Result<ExitCode> {
    if args.key.is_some() {
        bail!("--key is refused: command-line arguments are visible to every user of the host; use --key-file or {}", client::KEY_ENV);
    }
    let key = client::read_key(args.key_file.as_deref())?;
    let proxy = args.proxy.as_deref();
    for warning in client::exposure_warnings(args.key_file.as_deref(), &args.url, proxy) {
        let _ = writeln!(std::io::stderr(), "warning: {warning}");
    }
    let client = client::Client::new(client::Connection {
        url: &args.url,
        key,
        ca_file: args.ca_file.as_deref(),
        client_identity: args.client_cert.as_deref().zip(args.client_key.as_deref()),
        proxy,
    })?;
    let ops = Ops {
        client,
        out: Output { json: args.json },
    };
    match args.command {
        OpsCommand::Status => {
            let path = ["api", "v1", "processing-status"];
            ops.show(&path, &[], views::processing_status).await?;
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Inbound { command } => inbound::run(command, &ops).await,
        OpsCommand::Outbound { command } => outbound::run(command, &ops).await,
        OpsCommand::Audit { command } => audit::run(command, &ops).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        assert_eq!(
            parse_time("2026-12-02T04:00:00Z").as_deref(),
            Ok("2026-12-02T04:00:00Z")
        );
        let t = parse_time("2h").expect("2h ago");
        let t = chrono::DateTime::parse_from_rfc3339(&t).expect("rfc3339");
        let ago = chrono::Utc::now() - t.with_timezone(&chrono::Utc);
        assert!((ago.num_seconds() - 7200).abs() < 5, "{ago}");
        assert!(parse_time("yesterday").is_err());
    }
}
