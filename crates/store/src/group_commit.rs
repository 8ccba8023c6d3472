//! Group commit: writes that arrive while a commit is on disk wait together
//! and share the next transaction, so one fsync covers many of them. Used for
//! inbound events and for recording delivery tries. Nothing is answered
//! before its transaction commits, and a failing batch is retried item by
//! item, so one bad item never fails the others.

use crate::error::{Result, StoreError};
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Most items one commit carries.
const MAX_BATCH: usize = 128;

/// Writes several items in one transaction (each backend its own SQL).
#[async_trait]
pub(crate) trait BatchWriter: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Outcome: Send + 'static;
    /// What the writer is for, in errors.
    const NAME: &'static str;
    async fn commit(&self, items: &[&Self::Item]) -> Result<Vec<Self::Outcome>>;
}

type Request<I, O> = (I, oneshot::Sender<Result<O>>);

pub(crate) struct Batcher<I, O> {
    tx: mpsc::Sender<Request<I, O>>,
    name: &'static str,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            name: self.name,
        }
    }
}

impl<I: Send + Sync + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the batcher with `commits` transactions at most in progress at
    /// once (one for SQLite's single writer; a few for PostgreSQL, whose
    /// round trips would otherwise bound a lone committer). It ends when the
    /// store, holding the sender, drops.
    pub(crate) fn start<W: BatchWriter<Item = I, Outcome = O>>(writer: W, commits: usize) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        let (writer, rx) = (Arc::new(writer), Arc::new(Mutex::new(rx)));
        for _ in 0..commits.max(1) {
            tokio::spawn(run(writer.clone(), rx.clone()));
        }
        Self { tx, name: W::NAME }
    }

    /// Waits until `item` is committed (with the others of its batch).
    pub(crate) async fn submit(&self, item: I) -> Result<O> {
        let stopped = || StoreError::Corrupt(format!("the {} writer stopped", self.name));
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

type Queue<W> =
    Arc<Mutex<mpsc::Receiver<Request<<W as BatchWriter>::Item, <W as BatchWriter>::Outcome>>>>;

async fn run<W: BatchWriter>(writer: Arc<W>, rx: Queue<W>) {
    loop {
        // Take what is waiting (up to a batch), then let another committer in.
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        let items: Vec<&W::Item> = batch.iter().map(|(e, _)| e).collect();
        match writer.commit(&items).await {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            // Retry one by one: each answer then reflects its own item.
            Err(_) => {
                for (item, reply) in batch {
                    let one = writer.commit(&[&item]).await.and_then(|mut o| {
                        o.pop()
                            .ok_or_else(|| StoreError::Corrupt(format!("{}: no outcome", W::NAME)))
                    });
                    let _ = reply.send(one);
                }
            }
        }
    }
}
