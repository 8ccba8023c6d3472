//! The sustained scenario: one database that has lived (10⁵ events
//! delivered through the API first), then, back to back on it, bursts of
//! 20,000 events at 32 connections and steady rates at 64 connections, each
//! with a fresh account and endpoint, publish bodies of 381 bytes — the
//! independent load test's shape, with per-second delivered counts so a
//! stall shows.

use crate::report::Figures;
use crate::rig::Rig;
use hookwarden_store::testing::Backend;

/// What one sustained run does; the defaults are the load test's.
pub(crate) struct Plan {
    /// Events delivered before anything is measured.
    pub(crate) lived: u64,
    pub(crate) bursts: u64,
    pub(crate) burst_events: u64,
    /// Seconds at each of the short steady rates (200/s, 500/s).
    pub(crate) short_seconds: u64,
    /// Seconds at 1,000/s, the rate where the stall was seen.
    pub(crate) long_seconds: u64,
}

pub(crate) async fn run(backend: Backend, plan: &Plan) -> anyhow::Result<()> {
    let mut rig = Rig::start(backend, &[]).await?;
    rig.body_bytes = 381;
    println!(
        "sustained {backend:?}: {} events delivered first, then each scenario on a fresh endpoint",
        plan.lived
    );
    rig.fresh_endpoint("acct_lived").await?;
    rig.run(
        format!("lived: {} events flat out", plan.lived),
        plan.lived,
        None,
        32,
        vec![],
    )
    .await
    .print(None);
    // Every scenario after the lived events, as an outside load test that
    // runs them back to back would count its CPU per event.
    let mut all = Totals::default();
    // The load test's own shape: its 1,000/s ran as long as the other
    // rates, so that run counts here for the events of `short_seconds`.
    let mut shaped = Totals::default();
    for i in 1..=plan.bursts {
        rig.fresh_endpoint(&format!("acct_burst{i}")).await?;
        let f = rig
            .run(
                format!("burst {i}: {} at 32 conns", plan.burst_events),
                plan.burst_events,
                None,
                32,
                vec![],
            )
            .await;
        f.print(None);
        print_cpu_per_event(&f);
        all.add(&f);
        shaped.add(&f);
    }
    for (rate, seconds) in [
        (200, plan.short_seconds),
        (500, plan.short_seconds),
        (1000, plan.long_seconds),
    ] {
        // 0 s: bursts only (a quicker comparison).
        if seconds == 0 {
            continue;
        }
        rig.fresh_endpoint(&format!("acct_steady{rate}")).await?;
        let f = rig
            .run(
                format!("steady {rate}/s for {seconds} s, 64 conns"),
                rate * seconds,
                Some(rate),
                64,
                vec![],
            )
            .await;
        f.print(None);
        print_cpu_per_event(&f);
        all.add(&f);
        shaped.add_as(&f, rate * plan.short_seconds);
        // Delivered within the publishing window, as a share of the rate.
        let on_time: u64 = f.timeline.iter().take(seconds as usize).sum();
        println!(
            "  delivered within the {seconds} s: {:.1} % of {}",
            100.0 * on_time as f64 / (rate * seconds) as f64,
            rate * seconds
        );
    }
    all.print("all scenarios above (bursts and steady rates)");
    if plan.short_seconds > 0 && plan.long_seconds > 0 && plan.long_seconds != plan.short_seconds {
        shaped.print(&format!(
            "the load test's shape ({} s at 1,000/s counted as {} s)",
            plan.long_seconds, plan.short_seconds
        ));
    }
    Ok(())
}

/// Events and CPU seconds summed over scenarios.
#[derive(Default)]
struct Totals {
    events: u64,
    ours: f64,
    database: f64,
}

impl Totals {
    fn add(&mut self, f: &Figures) {
        self.events += f.count;
        self.ours += f.cpu_seconds.unwrap_or(0.0);
        self.database += f.others.database.max(0.0);
    }

    /// `f` counted as if it had delivered `events`, at its CPU per event.
    fn add_as(&mut self, f: &Figures, events: u64) {
        let scale = events as f64 / f.count.max(1) as f64;
        self.events += events;
        self.ours += f.cpu_seconds.unwrap_or(0.0) * scale;
        self.database += f.others.database.max(0.0) * scale;
    }

    fn print(&self, what: &str) {
        let n = self.events.max(1) as f64;
        let (ours, db) = (self.ours * 1e3 / n, self.database * 1e3 / n);
        println!(
            "{what}, {} events: CPU per event {:.3} ms (hookwarden {ours:.3} + database {db:.3})",
            self.events,
            ours + db
        );
    }
}

/// CPU per delivered event, hookwarden and PostgreSQL apart and together.
fn print_cpu_per_event(f: &Figures) {
    let n = f.count.max(1) as f64;
    let ours = f.cpu_seconds.unwrap_or(0.0) * 1e3 / n;
    let db = f.others.database.max(0.0) * 1e3 / n;
    println!(
        "  CPU per event: {:.3} ms (hookwarden {ours:.3} + database {db:.3})",
        ours + db
    );
}
