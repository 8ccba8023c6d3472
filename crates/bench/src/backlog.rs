//! The scenarios over a grown backlog: the cost per delivery as pending
//! retries grow from 10⁴ to 10⁶, claims and lists as stored history grows
//! from 10⁴ to 10⁷ events, deliveries while retention prunes, and peak
//! memory at a steady rate beside 10⁵.

use crate::report::Figures;
use crate::rig::Rig;
use crate::seed::{self, Db};
use hookwarden_store::testing::Backend;
use std::time::{Duration, Instant};

/// Cost per delivery with 10⁴, 10⁵ and 10⁶ pending retries in the database:
/// claims are an index range scan, so it should stay flat.
pub(crate) async fn run(backend: Backend, events: u64) -> anyhow::Result<()> {
    let mut rig = Rig::start(backend, &[]).await?;
    let mut first: Option<Figures> = None;
    for total in [10_000u64, 100_000, 1_000_000] {
        rig.prefill(total).await?;
        let f = rig
            .run(
                format!("backlog {backend:?} {total} pending"),
                events,
                None,
                32,
                vec![],
            )
            .await;
        f.print(None);
        match &first {
            None => first = Some(f),
            Some(base) => {
                let per = |f: &Figures| f.cpu_seconds.unwrap_or(0.0) / f.count.max(1) as f64;
                println!(
                    "  vs 10000 pending: {:+.0} % CPU per delivery, {:+.0} % deliveries/s",
                    100.0 * (per(&f) / per(base) - 1.0),
                    100.0 * (f.rate() / base.rate() - 1.0)
                );
            }
        }
    }
    Ok(())
}
/// Peak RSS at a steady 1,000 events/s with 10⁵ pending retries.
pub(crate) async fn memory(backend: Backend, seconds: u64) -> anyhow::Result<()> {
    let mut rig = Rig::start(backend, &[]).await?;
    rig.prefill(100_000).await?;
    let f = rig
        .run(
            format!("memory {backend:?} 1000/s, 10^5 pending"),
            seconds * 1000,
            Some(1000),
            64,
            vec![],
        )
        .await;
    f.print(None);
    Ok(())
}

/// Claims and lists over a database that has lived: 10⁴ up to `max` stored
/// events, each with its finished tries (one in 100 failed, then dead),
/// all of the rig's own account and endpoint (the worst case for their
/// indexes), spread over 30 days. At each size a flat-out delivery run
/// (claims walk the due index, never the history) and the first page of
/// each list a tenant or the operator reads, timed; both should stay flat.
pub(crate) async fn history(backend: Backend, events: u64, max: u64) -> anyhow::Result<()> {
    let rig = Rig::start(backend, &[]).await?;
    let (url, account, webhook) = rig.history_target();
    let mut db = Db::open(backend, &url).await?;
    let now_ms = crate::receiver::now_us() / 1000;
    let mut stored = 0u64;
    let mut first: Option<(Figures, Vec<Duration>)> = None;
    for total in [10_000u64, 100_000, 1_000_000, 10_000_000] {
        if total > max {
            break;
        }
        let started = Instant::now();
        grow(&mut db, (stored + 1, total), now_ms, &account, &webhook).await?;
        stored = total;
        eprintln!(
            "  (history grown to {total} events in {:.0} s)",
            started.elapsed().as_secs_f64()
        );
        let f = rig
            .run(
                format!("history {backend:?} {total} stored events"),
                events,
                None,
                32,
                vec![],
            )
            .await;
        f.print(None);
        let lists = rig.time_lists(&webhook).await?;
        match &first {
            None => first = Some((f, lists)),
            Some((base, base_lists)) => {
                let per = |f: &Figures| f.cpu_seconds.unwrap_or(0.0) / f.count.max(1) as f64;
                println!(
                    "  vs 10000 stored: {:+.0} % CPU per delivery, {:+.0} % deliveries/s; list p50 {}",
                    100.0 * (per(&f) / per(base) - 1.0),
                    100.0 * (f.rate() / base.rate() - 1.0),
                    lists
                        .iter()
                        .zip(base_lists)
                        .map(|(now, then)| format!(
                            "{:+.0} %",
                            100.0 * (now.as_secs_f64() / then.as_secs_f64().max(1e-6) - 1.0)
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
    Ok(())
}

/// Retention under load: `stored` events over the last 30 days with a
/// retention of 15 days (half of them past it), then a steady 1,000
/// events/s for `seconds` while pruning runs (its rows per second printed
/// beside the deliveries'), and the same steady run again once pruning is
/// done: the baseline, on the same database.
pub(crate) async fn retention(backend: Backend, stored: u64, seconds: u64) -> anyhow::Result<()> {
    let rig = Rig::start(backend, &[("HOOKWARDEN_RETENTION", "15d".to_string())]).await?;
    let (url, account, webhook) = rig.history_target();
    let mut db = Db::open(backend, &url).await?;
    let now_ms = crate::receiver::now_us() / 1000;
    let started = Instant::now();
    grow(&mut db, (1, stored), now_ms, &account, &webhook).await?;
    eprintln!(
        "  ({stored} events stored in {:.0} s; waiting for the first pruning run)",
        started.elapsed().as_secs_f64()
    );
    let metrics = format!("http://127.0.0.1:{}/metrics", rig.server.ops_port);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while pruned(&client, &metrics).await? == 0 {
        anyhow::ensure!(Instant::now() < deadline, "no pruning run within 2 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Rows pruned per second, sampled beside the steady run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (client, metrics, stop) = (client.clone(), metrics.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = pruned(&client, &metrics).await.unwrap_or(0);
            let mut per_second = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = pruned(&client, &metrics).await.unwrap_or(last);
                per_second.push(now - last);
                last = now;
            }
            per_second
        })
    };
    let f = rig
        .run(
            format!("retention {backend:?} 1000/s while pruning"),
            seconds * 1000,
            Some(1000),
            64,
            vec![],
        )
        .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let per_second = sampler.await?;
    f.print(None);
    println!(
        "  events pruned per second: {}",
        per_second
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Until the backlog is worked off: a period prunes less than a batch
    // (the bound moves on, so a few events age past it every minute).
    let mut last = pruned(&client, &metrics).await?;
    loop {
        tokio::time::sleep(Duration::from_secs(65)).await;
        let now = pruned(&client, &metrics).await?;
        if now - last < 500 {
            last = now;
            break;
        }
        last = now;
    }
    println!(
        "  {last} events pruned in all, {:.0} s after they were stored",
        started.elapsed().as_secs_f64()
    );
    let base = rig
        .run(
            format!("retention {backend:?} 1000/s, pruning done (baseline)"),
            seconds * 1000,
            Some(1000),
            64,
            vec![],
        )
        .await;
    base.print(None);
    Ok(())
}

/// Events `from..=to` of one endpoint's history (spread over 30 days as if
/// `to` were all there is), in chunks, then the planner's statistics.
async fn grow(
    db: &mut Db,
    (from, to): (u64, u64),
    now_ms: u64,
    account: &str,
    webhook: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (webhook, account) = (format!("'{webhook}'"), format!("'{account}'"));
    let mut next = from;
    while next <= to {
        let last = (next + seed::CHUNK - 1).min(to);
        seed::outbound(db, (next, last), to, now_ms, &webhook, &account).await?;
        eprintln!(
            "  ({last} stored events, {:.0} s)",
            started.elapsed().as_secs_f64()
        );
        next = last + 1;
    }
    db.analyze().await
}

/// `hookwarden_pruned_rows_total{table="events"}` as the ops listener
/// reports it (0 before the first pruning).
async fn pruned(client: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let text = client.get(url).send().await?.text().await?;
    Ok(text
        .lines()
        .find(|l| l.starts_with("hookwarden_pruned_rows_total{table=\"events\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0))
}
