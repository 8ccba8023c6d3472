//! `hookwarden ops inbound …`: webhooks received from providers, their
//! forwarding jobs, and replays.

use super::client::Client;
use super::{views, Justification, Output, Paging, Status, TimeRange};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Lists received events (oldest first unless --newest-first).
    Events {
        /// Only this integration's events.
        #[arg(long)]
        provider: Option<String>,
        /// Status of the latest forwarding job.
        #[arg(long, value_enum)]
        status: Option<Status>,
        #[command(flatten)]
        time: TimeRange,
        /// Newest first.
        #[arg(long)]
        newest_first: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Shows one event: its fields, kept headers, body and forwarding jobs.
    Event {
        /// The inbound event id (ie_…).
        id: String,
    },
    /// Forwards an event to its target again, now (a new job; audited).
    Replay {
        /// The inbound event id (ie_…).
        id: String,
        #[command(flatten)]
        why: Justification,
    },
    /// Lists forwarding jobs (one per try), newest first.
    Jobs {
        /// Only this event's jobs.
        #[arg(long)]
        event: Option<String>,
        /// Only jobs with this status.
        #[arg(long, value_enum)]
        status: Option<Status>,
        #[command(flatten)]
        paging: Paging,
    },
}

pub async fn run(command: Command, client: &Client, out: &Output) -> anyhow::Result<ExitCode> {
    match command {
        Command::Events {
            provider,
            status,
            time,
            newest_first,
            paging,
        } => {
            let v = client
                .get(
                    &["api", "v1", "events"],
                    &[
                        ("provider", provider),
                        ("status", status.map(|s| s.as_str().to_owned())),
                        ("from", time.from),
                        ("to", time.to),
                        ("sort", newest_first.then(|| "-createdAt".to_owned())),
                        ("limit", paging.limit.map(|l| l.to_string())),
                        ("cursor", paging.cursor),
                    ],
                )
                .await?;
            out.show(&v, |v| super::table::page(v, views::INBOUND_EVENTS))?;
        }
        Command::Event { id } => {
            let v = client.get(&["api", "v1", "events", &id], &[]).await?;
            out.show(&v, views::inbound_event)?;
        }
        Command::Replay { id, why } => {
            let v = client
                .post(&["api", "v1", "events", &id, "replay"], &why.body())
                .await?;
            out.show(&v, views::replay)?;
        }
        Command::Jobs {
            event,
            status,
            paging,
        } => {
            let v = client
                .get(
                    &["api", "v1", "deliveries"],
                    &[
                        ("eventId", event),
                        ("status", status.map(|s| s.as_str().to_owned())),
                        ("limit", paging.limit.map(|l| l.to_string())),
                        ("cursor", paging.cursor),
                    ],
                )
                .await?;
            out.show(&v, |v| super::table::page(v, views::JOBS))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
