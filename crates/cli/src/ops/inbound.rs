//! `hookwarden ops inbound …`: webhooks received from providers, their
//! forwarding jobs, and replays.

use super::{views, Justification, Ops, Paging, Status, TimeRange};
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

pub async fn run(command: Command, ops: &Ops) -> anyhow::Result<ExitCode> {
    match command {
        Command::Events {
            provider,
            status,
            time,
            newest_first,
            paging,
        } => {
            let filters = [
                ("provider", provider),
                ("status", Status::query(status)),
                ("sort", newest_first.then(|| "-createdAt".to_owned())),
            ];
            let filters = filters.into_iter().chain(time.query());
            let path = ["api", "v1", "events"];
            ops.list(&path, filters, paging, views::INBOUND_EVENTS)
                .await?;
        }
        Command::Event { id } => {
            let path = ["api", "v1", "events", &id];
            ops.show(&path, &[], views::inbound_event).await?;
        }
        Command::Replay { id, why } => {
            let path = ["api", "v1", "events", &id, "replay"];
            ops.act(&path, &why.body(), views::replay).await?;
        }
        Command::Jobs {
            event,
            status,
            paging,
        } => {
            let filters = [("eventId", event), ("status", Status::query(status))];
            ops.list(&["api", "v1", "deliveries"], filters, paging, views::JOBS)
                .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
