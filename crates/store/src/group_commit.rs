//! Group commit for SQLite's inbound writes: requests that arrive while a
//! commit is on disk wait together and share the next one, so one fsync
//! covers many events. Nothing is answered before its transaction commits,
//! and a failing batch is retried record by record, so one bad record never
//! fails the others.

use crate::error::{Result, StoreError};
use crate::ingress::{NewInbound, RecordOutcome};
use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

/// Most records one commit carries.
const MAX_BATCH: usize = 128;

type Request = (NewInbound, oneshot::Sender<Result<RecordOutcome>>);

/// Stores several inbound events in one transaction (each backend its own SQL).
#[async_trait]
pub(crate) trait BatchWriter: Send + Sync + 'static {
    async fn commit(&self, events: &[&NewInbound]) -> Result<Vec<RecordOutcome>>;
}

#[derive(Clone)]
pub(crate) struct InboundBatcher {
    tx: mpsc::Sender<Request>,
}

impl InboundBatcher {
    /// Starts the batcher (it ends when the store, holding the sender, drops).
    pub(crate) fn start(writer: impl BatchWriter) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        tokio::spawn(run(writer, rx));
        Self { tx }
    }

    pub(crate) async fn record(&self, event: NewInbound) -> Result<RecordOutcome> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, reply))
            .await
            .map_err(|_| StoreError::Corrupt("the inbound writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Corrupt("the inbound writer stopped".into()))?
    }
}

async fn run(writer: impl BatchWriter, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let events: Vec<&NewInbound> = batch.iter().map(|(e, _)| e).collect();
        match writer.commit(&events).await {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            // Retry one by one: each answer then reflects its own record.
            Err(_) => {
                for (event, reply) in batch {
                    let _ = reply.send(writer.commit(&[&event]).await.map(|mut o| o.remove(0)));
                }
            }
        }
    }
}
