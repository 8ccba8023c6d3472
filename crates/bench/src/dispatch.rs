//! The dispatch scenario: events published over HTTP (flat out and at a
//! steady 1,000/s) and over NATS JetStream, timed until delivered.

use crate::rig::Rig;
use anyhow::Context;
use hookwarden_store::testing::Backend;

pub(crate) async fn run(backend: Backend, events: u64, seconds: u64) -> anyhow::Result<()> {
    dispatch_http(backend, events, seconds).await?;
    dispatch_nats(backend, events).await
}

/// Events published on NATS JetStream (a stream and subject prefix of the
/// run's own, deleted afterwards) → delivered.
async fn dispatch_nats(backend: Backend, events: u64) -> anyhow::Result<()> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (prefix, stream) = (format!("hwbench_{tag}"), format!("HWBENCH_{tag}"));
    let client = async_nats::connect("127.0.0.1:4222")
        .await
        .context("NATS at 127.0.0.1:4222 (the NATS dispatch run needs it)")?;
    let js = async_nats::jetstream::new(client);
    let rig = Rig::start(
        backend,
        &[
            ("HOOKWARDEN_NATS_URL", "nats://127.0.0.1:4222".into()),
            ("HOOKWARDEN_NATS_SUBJECT_PREFIX", prefix.clone()),
            ("HOOKWARDEN_NATS_STREAM", stream.clone()),
        ],
    )
    .await?;
    let subject = format!("{prefix}.dispatch.bench");
    rig.run_with(
        format!("dispatch {backend:?} via NATS flat out"),
        events,
        || rig.publish_nats(&js, &subject, events, 32),
        vec![],
    )
    .await
    .print(None);
    drop(rig);
    let _ = js.delete_stream(&stream).await;
    Ok(())
}

async fn dispatch_http(backend: Backend, events: u64, seconds: u64) -> anyhow::Result<()> {
    let rig = Rig::start(backend, &[]).await?;
    rig.run(
        format!("dispatch {backend:?} flat out (publish→delivery)"),
        events,
        None,
        32,
        vec![],
    )
    .await
    .print(None);
    rig.run(
        format!("dispatch {backend:?} at 1000/s (publish→delivery)"),
        seconds * 1000,
        Some(1000),
        64,
        vec![],
    )
    .await
    .print(None);
    Ok(())
}
