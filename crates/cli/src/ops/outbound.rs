//! `hookwarden ops outbound …`: events published to tenants' endpoints,
//! their deliveries (one per try), retries of dead letters, and endpoints
//! disabled or enabled by the operator.

use super::{views, Justification, Ops, Paging, Status, TimeRange};
use serde_json::Value;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Lists delivery tries across accounts, newest first.
    Deliveries {
        /// Only this account's.
        #[arg(long)]
        account: Option<String>,
        /// Only this endpoint's.
        #[arg(long)]
        webhook: Option<String>,
        /// Only this event's.
        #[arg(long)]
        event: Option<String>,
        /// Only tries with this status.
        #[arg(long, value_enum)]
        status: Option<Status>,
        #[command(flatten)]
        time: TimeRange,
        #[command(flatten)]
        paging: Paging,
    },
    /// Shows one delivery try, with the receiver's answer.
    Delivery {
        /// The try (delivery) id (att_…).
        id: String,
    },
    /// Lists published events.
    Events {
        /// Only this account's.
        #[arg(long)]
        account: Option<String>,
        /// Only events of this type.
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        #[command(flatten)]
        time: TimeRange,
        #[command(flatten)]
        paging: Paging,
    },
    /// Shows one event, its payload and its fan-out: each endpoint and its tries.
    Event {
        /// The event id (evt_…).
        id: String,
    },
    /// Delivers the event of a try to its endpoint again, now (audited).
    Retry {
        /// The try (delivery) id (att_…).
        id: String,
        #[command(flatten)]
        why: Justification,
    },
    /// Re-queues the dead letters a filter selects (at least one filter),
    /// paced and audited; run it again while it reports that more remain.
    RetryDead {
        /// Only this account's.
        #[arg(long)]
        account: Option<String>,
        /// Only this endpoint's.
        #[arg(long)]
        webhook: Option<String>,
        /// Only this event's.
        #[arg(long)]
        event: Option<String>,
        #[command(flatten)]
        time: TimeRange,
        /// New tries per second (server default 20), so a recovered endpoint is not flooded.
        #[arg(long, value_name = "N")]
        per_second: Option<u32>,
        /// Dead letters re-queued by this call at most (server maximum 1000).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        #[command(flatten)]
        why: Justification,
    },
    /// Lists endpoints across accounts.
    Webhooks {
        /// Only this account's.
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Shows one endpoint.
    Webhook {
        /// The endpoint id (wh_…).
        id: String,
    },
    /// Stops deliveries to an endpoint (its pending tries wait; audited).
    Disable {
        /// The endpoint id (wh_…).
        id: String,
        #[command(flatten)]
        why: Justification,
    },
    /// Lets deliveries to a disabled endpoint go again (audited).
    Enable {
        /// The endpoint id (wh_…).
        id: String,
        #[command(flatten)]
        why: Justification,
    },
}

const BASE: [&str; 3] = ["api", "v1", "outbound"];

fn path<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    BASE.iter().copied().chain(rest.iter().copied()).collect()
}

pub async fn run(command: Command, ops: &Ops) -> anyhow::Result<ExitCode> {
    match command {
        Command::Deliveries {
            account,
            webhook,
            event,
            status,
            time,
            paging,
        } => {
            let filters = [
                ("accountId", account),
                ("webhookId", webhook),
                ("eventId", event),
                ("status", Status::query(status)),
            ];
            let filters = filters.into_iter().chain(time.query());
            ops.list(&path(&["deliveries"]), filters, paging, views::ATTEMPTS)
                .await?;
        }
        Command::Delivery { id } => {
            ops.show(&path(&["deliveries", &id]), &[], views::attempt)
                .await?;
        }
        Command::Events {
            account,
            event_type,
            time,
            paging,
        } => {
            let filters = [("accountId", account), ("eventType", event_type)];
            let filters = filters.into_iter().chain(time.query());
            ops.list(&path(&["events"]), filters, paging, views::OUTBOUND_EVENTS)
                .await?;
        }
        Command::Event { id } => {
            ops.show(&path(&["events", &id]), &[], views::outbound_event)
                .await?;
        }
        Command::Retry { id, why } => {
            let to = path(&["deliveries", &id, "retry"]);
            ops.act(&to, &why.body(), views::attempt).await?;
        }
        Command::RetryDead {
            account,
            webhook,
            event,
            time,
            per_second,
            limit,
            why,
        } => {
            let mut body = why.body();
            let filters = [
                ("accountId", account.map(Value::from)),
                ("webhookId", webhook.map(Value::from)),
                ("eventId", event.map(Value::from)),
                ("from", time.from.map(Value::from)),
                ("to", time.to.map(Value::from)),
                ("perSecond", per_second.map(Value::from)),
                ("limit", limit.map(Value::from)),
            ];
            for (name, value) in filters {
                if let Some(value) = value {
                    body[name] = value;
                }
            }
            let to = path(&["deliveries", "retry"]);
            ops.act(&to, &body, views::bulk_retry).await?;
        }
        Command::Webhooks { account, paging } => {
            let filters = [("accountId", account)];
            ops.list(&path(&["webhooks"]), filters, paging, views::WEBHOOKS)
                .await?;
        }
        Command::Webhook { id } => {
            ops.show(&path(&["webhooks", &id]), &[], views::webhook)
                .await?;
        }
        Command::Disable { id, why } => {
            let to = path(&["webhooks", &id, "disable"]);
            ops.act(&to, &why.body(), views::webhook).await?;
        }
        Command::Enable { id, why } => {
            let to = path(&["webhooks", &id, "enable"]);
            ops.act(&to, &why.body(), views::webhook).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
