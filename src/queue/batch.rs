//! Group commit at intake: deliveries arriving together are written in one transaction, so
//! the cost of a durable commit (a disk flush on SQLite, a round trip and a WAL flush on
//! PostgreSQL) is shared by every delivery waiting for it instead of paid by each.
//!
//! No delivery waits for a batch to fill: a writer takes whatever is waiting the moment it is
//! free, writes it, and answers each submitter once the commit is done. Under light load a
//! batch is one delivery; under heavy load batches grow on their own.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{JobQueue, NewJob};
use crate::metrics::Metrics;

/// Most jobs written in one transaction.
const MAX_BATCH_JOBS: usize = 512;
/// Submissions waiting for a writer before intake pushes back.
const BACKLOG: usize = 8_192;

/// The jobs could not be written; the forge is told to deliver again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the job queue could not be written: {0}")]
pub struct BatchError(pub String);

type Reply = oneshot::Sender<Result<Vec<bool>, BatchError>>;

struct Pending {
    jobs: Vec<NewJob>,
    reply: Reply,
}

/// The intake's handle on the group-commit writers. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts `writers` writer tasks on `queue` (one for SQLite, which has a single writer
    /// anyway; a few for PostgreSQL, so one batch is collected while another commits).
    pub fn start(queue: JobQueue, writers: usize, metrics: Metrics) -> GroupCommit {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            let (queue, rx, metrics) = (queue.clone(), Arc::clone(&rx), metrics.clone());
            tokio::spawn(async move { write_batches(queue, rx, metrics).await });
        }
        GroupCommit { tx }
    }

    /// Queues `jobs` durably and returns, per job, whether it was new (`false`: a redelivery).
    /// Returns only once the jobs are committed.
    pub async fn submit(&self, jobs: Vec<NewJob>) -> Result<Vec<bool>, BatchError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { jobs, reply })
            .await
            .map_err(|_| BatchError("the queue writer has stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| BatchError("the queue writer has stopped".to_owned()))?
    }
}

async fn write_batches(queue: JobQueue, rx: Arc<Mutex<mpsc::Receiver<Pending>>>, metrics: Metrics) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut size = first.jobs.len();
            let mut batch = vec![first];
            while size < MAX_BATCH_JOBS {
                match rx.try_recv() {
                    Ok(next) => {
                        size += next.jobs.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        metrics.queue_commit(batch.len());
        write(&queue, batch).await;
    }
}

/// Writes a batch in one statement; if that fails, each submission on its own, so one bad
/// submission cannot fail the others.
async fn write(queue: &JobQueue, batch: Vec<Pending>) {
    let now = chrono::Utc::now().timestamp_millis();
    let jobs: Vec<NewJob> = batch.iter().flat_map(|p| p.jobs.iter().cloned()).collect();
    match queue.enqueue_batch(&jobs, now).await {
        Ok(fresh) => {
            let mut fresh = fresh.into_iter();
            for pending in batch {
                let mine = fresh.by_ref().take(pending.jobs.len()).collect();
                let _ = pending.reply.send(Ok(mine));
            }
        }
        Err(error) if batch.len() == 1 => {
            tracing::error!(%error, "cannot write to the job queue");
            for pending in batch {
                let _ = pending.reply.send(Err(BatchError(error.to_string())));
            }
        }
        Err(error) => {
            tracing::warn!(%error, size = batch.len(), "a queue batch failed; writing its deliveries one by one");
            for pending in batch {
                let result = queue
                    .enqueue_batch(&pending.jobs, now)
                    .await
                    .map_err(|e| BatchError(e.to_string()));
                let _ = pending.reply.send(result);
            }
        }
    }
}
