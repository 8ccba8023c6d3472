//! `hookwarden-bench`: starts the release `hookwarden` binary as its own
//! process (so its CPU time and peak RSS can be read from /proc) against
//! SQLite or PostgreSQL, drives it from a load generator on loopback, and
//! prints throughput, latency percentiles, CPU seconds per 1,000 events and
//! peak RSS — beside a bare server on the same framework, in the same run.
//!
//! Usage: `hookwarden-bench [ingress|dispatch|backlog|isolation|memory|all]
//! [--seconds N] [--events N] [--concurrency N] [--in-flight N]`; `--in-flight`
//! sets the delivery budget and lets one endpoint use all of it (defaults:
//! 20 in flight, 5 per endpoint). Not part of `all`: the console's pages
//! over a seeded database, `hookwarden-bench console [--rows N] [--repeat N]
//! [--keep]` (10⁶ inbound events, 200 GETs per page; `--keep` keeps the
//! database and reuses it next time), and the back-to-back load test on one
//! database that has lived, `hookwarden-bench sustained [--lived N]
//! [--bursts N] [--burst-events N] [--short-seconds N] [--long-seconds N]`,
//! and claims and lists as stored history grows from 10⁴ to 10⁷ events,
//! `hookwarden-bench history [--max-stored N] [--events N]`, and deliveries
//! while retention prunes, `hookwarden-bench retention [--stored N]
//! [--seconds N]`. `--unmigrated` starts the server on an empty database
//! that it migrates itself, so that an older binary can be measured beside
//! today's (build first: `cargo build --release -p hookwarden -p hookwarden-bench`).

mod backlog;
mod console;
mod dispatch;
mod ingress;
mod isolation;
mod receiver;
mod report;
mod rig;
mod seed;
mod server;
mod sustained;

use hookwarden_store::testing::Backend;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("all");
    let flag = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seconds = flag("--seconds", 10);
    let concurrency = flag("--concurrency", 64) as usize;
    let events = flag("--events", 5000);
    let _ = server::PG_TLS.set(args.iter().any(|a| a == "--pg-tls"));
    let _ = rig::UNMIGRATED.set(args.iter().any(|a| a == "--unmigrated"));
    if let Some(n) = args
        .iter()
        .position(|a| a == "--in-flight")
        .and_then(|i| args.get(i + 1))
    {
        let _ = rig::IN_FLIGHT.set(n.clone());
    }
    println!(
        "machine: {} cores; hookwarden and the load generator share them",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let only = args
        .iter()
        .position(|a| a == "--backend")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let backends: Vec<Backend> = [Backend::Sqlite, Backend::Postgres]
        .into_iter()
        .filter(|b| only.is_none_or(|o| format!("{b:?}").eq_ignore_ascii_case(o)))
        .collect();
    if which == "ingress" || which == "all" {
        ingress::run(&backends, seconds, concurrency).await?;
    }
    if which == "dispatch" || which == "all" {
        for &backend in &backends {
            dispatch::run(backend, events, seconds).await?;
        }
    }
    if which == "backlog" || which == "all" {
        for &backend in &backends {
            backlog::run(backend, events).await?;
        }
    }
    // Not part of `all`: minutes per backend.
    if which == "retention" {
        for &backend in &backends {
            backlog::retention(backend, flag("--stored", 400_000), flag("--seconds", 60)).await?;
        }
    }
    // Not part of `all`: 10⁷ events take a while to write.
    if which == "history" {
        for &backend in &backends {
            backlog::history(backend, events, flag("--max-stored", 10_000_000)).await?;
        }
    }
    if which == "isolation" || which == "all" {
        for &backend in &backends {
            isolation::run(backend, seconds).await?;
        }
    }
    // Not part of `all`: it takes minutes per backend.
    if which == "sustained" {
        let plan = sustained::Plan {
            lived: flag("--lived", 100_000),
            bursts: flag("--bursts", 3),
            burst_events: flag("--burst-events", 20_000),
            short_seconds: flag("--short-seconds", 20),
            long_seconds: flag("--long-seconds", 60),
        };
        for &backend in &backends {
            sustained::run(backend, &plan).await?;
        }
    }
    if which == "console" {
        let options = console::Options {
            repeat: flag("--repeat", 200),
            rows: flag("--rows", 1_000_000),
            keep: args.iter().any(|a| a == "--keep"),
        };
        for &backend in &backends {
            console::run(backend, &options).await?;
        }
    }
    if which == "memory" || which == "all" {
        for &backend in &backends {
            backlog::memory(backend, seconds).await?;
        }
    }
    Ok(())
}
