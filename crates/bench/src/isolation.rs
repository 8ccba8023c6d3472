//! The isolation scenario: a healthy endpoint's throughput and p99 alone,
//! beside an endpoint that always times out, and beside a healthy one as
//! the control.

use crate::receiver::start_baseline;
use crate::report::Figures;
use crate::rig::Rig;
use crate::server::add_webhook;
use hookwarden_store::testing::Backend;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One endpoint that times out on every request, beside a healthy one: the
/// healthy endpoint's throughput and p99, with and without it.
pub(crate) async fn run(backend: Backend, seconds: u64) -> anyhow::Result<()> {
    let rate = 500;
    let rig = Rig::start(backend, &[]).await?;
    let alone = rig
        .run(
            format!("isolation {backend:?} healthy alone at {rate}/s"),
            seconds * rate,
            Some(rate),
            32,
            vec![],
        )
        .await;
    alone.print(None);
    // The same again while another endpoint never answers (5 s timeout).
    let (slow_port, slow_count, _) = start_baseline(200, Duration::from_secs(30)).await?;
    let beside = beside_another(
        &rig,
        format!("isolation {backend:?} beside a timing-out one"),
        &format!("http://127.0.0.1:{slow_port}/slow"),
        seconds,
        rate,
    )
    .await?;
    beside.print(None);
    println!(
        "  healthy endpoint: {:+.0} % deliveries/s, {:+.0} % p99 (timing-out endpoint answered {} times)",
        100.0 * (beside.rate() / alone.rate() - 1.0),
        100.0 * (beside.pct(0.99) / alone.pct(0.99) - 1.0),
        slow_count.load(Ordering::Relaxed)
    );
    drop(rig);
    // Control: the same extra traffic to an endpoint that answers at once,
    // on a fresh instance, tells the cost of the traffic from the cost of
    // the failures.
    let rig = Rig::start(backend, &[]).await?;
    let (ok_port, _, _) = start_baseline(200, Duration::ZERO).await?;
    let control = beside_another(
        &rig,
        format!("isolation {backend:?} beside a healthy one (control)"),
        &format!("http://127.0.0.1:{ok_port}/ok"),
        seconds,
        rate,
    )
    .await?;
    control.print(None);
    println!(
        "  healthy endpoint beside the timing-out one vs beside a healthy one: {:+.0} % deliveries/s, {:+.0} % p99",
        100.0 * (beside.rate() / control.rate() - 1.0),
        100.0 * (beside.pct(0.99) / control.pct(0.99) - 1.0),
    );
    Ok(())
}

/// The healthy endpoint at `rate` while another account's endpoint at
/// `url` gets a tenth of that: enough to keep every slot it may hold busy
/// when each try takes the full 5 s timeout, without the publishing itself
/// competing for the CPU with what is measured.
async fn beside_another(
    rig: &Rig,
    name: String,
    url: &str,
    seconds: u64,
    rate: u64,
) -> anyhow::Result<Figures> {
    add_webhook(&rig.server, "acct_slow", url).await?;
    let noise = rig.publish("acct_slow", seconds * rate / 10, Some(rate / 10), 8);
    Ok(rig.run(name, seconds * rate, Some(rate), 32, noise).await)
}
