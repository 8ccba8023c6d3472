//! The ingress scenario: signed inbound webhooks posted to hookwarden flat
//! out and at half that rate, beside the bare baseline in the same run.

use crate::receiver::start_baseline;
use crate::report::{embedded_db_cpu, proc_usage, Figures, OtherCpu};
use crate::server::start_hookwarden;
use hmac::{Hmac, Mac};
use hookwarden_store::testing::{Backend, TestDb};
use serde_json::json;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-provider-secret";

/// The baseline first, then each backend against it.
pub(crate) async fn run(
    backends: &[Backend],
    seconds: u64,
    concurrency: usize,
) -> anyhow::Result<()> {
    let (bport, _, _) = start_baseline(202, Duration::ZERO).await?;
    let baseline = drive_ingress(
        "baseline (bare axum, 202)",
        format!("http://127.0.0.1:{bport}/"),
        seconds,
        concurrency,
        None,
        None,
    )
    .await;
    baseline.print(None);
    for &backend in backends {
        ingress_on(backend, seconds, concurrency, &baseline).await?;
    }
    Ok(())
}

fn sign(body: &[u8]) -> String {
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes())
        .unwrap_or_else(|_| unreachable!());
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// `concurrency` loops posting signed 1 KiB bodies (unique, so none is a duplicate) for `seconds`.
async fn drive_ingress(
    name: &str,
    url: String,
    seconds: u64,
    concurrency: usize,
    pid: Option<u32>,
    rate: Option<f64>,
) -> Figures {
    // At a set rate, each connection sends on its own schedule.
    let interval = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r.max(1.0)));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap_or_default();
    let before = pid.map(proc_usage);
    let db_before = pid.map(embedded_db_cpu);
    let others = OtherCpu::now();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            let filler = "x".repeat(960);
            while Instant::now() < deadline {
                if let Some(every) = interval {
                    // Staggered, so the connections do not send in bursts.
                    let offset = every * worker as u32 / concurrency as u32;
                    tokio::time::sleep_until((started + offset + every * n as u32).into()).await;
                }
                let body = format!("{{\"w\":{worker},\"n\":{n},\"pad\":\"{filler}\"}}");
                let sig = sign(body.as_bytes());
                let t = Instant::now();
                let ok = client
                    .post(&url)
                    .header("x-signature", sig)
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                }
                n += 1;
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    let seconds = started.elapsed().as_secs_f64();
    let (cpu, rss) = match (pid, before) {
        (Some(p), Some((c0, _))) => {
            let (c1, r) = proc_usage(p);
            (Some(c1 - c0), Some(r))
        }
        _ => (None, None),
    };
    let db = pid.zip(db_before).map(|(p, d0)| embedded_db_cpu(p) - d0);
    Figures {
        name: name.into(),
        count: latencies.len() as u64,
        seconds,
        latencies_us: latencies,
        cpu_seconds: cpu,
        embedded_db_cpu: db,
        peak_rss_mb: rss,
        timeline: vec![],
        slowest_us: vec![],
        answers_us: vec![],
        unanswered: 0,
        others: OtherCpu::now().since(others),
    }
}

async fn ingress_on(
    backend: Backend,
    seconds: u64,
    concurrency: usize,
    baseline: &Figures,
) -> anyhow::Result<()> {
    let db = TestDb::new(backend).await;
    let server = start_hookwarden(&db, &[("HOOKWARDEN_INGRESS_WORKER", "false".into())]).await?;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://127.0.0.1:{}/api/v1/integrations", server.port))
        .header("x-internal-api-key", "bench-key")
        .json(&json!({"name": "bench", "scheme": "hmac-sha256", "secret": SECRET, "signatureHeader": "x-signature",
            "rateLimitPerMinute": 1000000, "targetUrl": "http://127.0.0.1:9/"}))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "integration: {}",
        resp.text().await?
    );
    let url = format!("http://127.0.0.1:{}/api/v1/webhooks/bench", server.port);
    let f = drive_ingress(
        &format!("ingress {backend:?} (verify+dedup+commit)"),
        url,
        seconds,
        concurrency,
        Some(server.child.id()),
        None,
    )
    .await;
    f.print(Some(baseline));
    // The latency target is set at half the rate reached flat out.
    let half = drive_ingress(
        &format!("ingress {backend:?} at half that rate"),
        format!("http://127.0.0.1:{}/api/v1/webhooks/bench", server.port),
        seconds,
        concurrency,
        Some(server.child.id()),
        Some(f.rate() / 2.0),
    )
    .await;
    half.print(None);
    Ok(())
}
