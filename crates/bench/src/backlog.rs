//! The scenarios over a grown backlog: the cost per delivery as pending
//! retries grow from 10⁴ to 10⁶, and peak memory at a steady rate beside 10⁵.

use crate::report::Figures;
use crate::rig::Rig;
use hookwarden_store::testing::Backend;

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
