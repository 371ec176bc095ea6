//! Group commit: the writes of many concurrent callers, one transaction per batch.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Store, StoreError, Write, Written};

type Reply = oneshot::Sender<Result<Vec<Written>, StoreError>>;

/// One caller's writes, waiting for their transaction.
struct Request {
    writes: Vec<Write>,
    reply: Reply,
}

/// Group commit: many concurrent callers, one transaction per batch.
///
/// A single writer task takes the requests queued so far (up to `max_batch` of them), applies
/// all their writes in one [`Store::commit`], and answers each caller once that transaction has
/// committed. If the batched transaction fails because of one write (a constraint, a compaction
/// conflict, a deadlock), the task retries each caller's writes in a transaction of their own,
/// so that one bad request does not fail the others; if it fails for a reason that no write
/// explains (the database is unreachable), every caller gets [`StoreError::BatchFailed`].
///
/// Retrying after a failed commit is safe even when the failure hid a commit that did happen
/// (a connection lost during `COMMIT`): appending the same chunk twice duplicates bytes that
/// Automerge loads idempotently, sync states are upserts, and a compaction whose chunks are
/// already gone fails with [`StoreError::CompactionConflict`] without writing.
///
/// Clones share the writer task.
#[derive(Clone)]
pub struct Committer {
    queue: mpsc::Sender<Request>,
    batches: Arc<AtomicU64>,
}

impl fmt::Debug for Committer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Committer")
            .field("batches", &self.batches())
            .field("closed", &self.queue.is_closed())
            .finish()
    }
}

impl Committer {
    /// Spawns the writer task on the current tokio runtime (panics outside one, as
    /// `tokio::spawn` does). At most `max_batch` requests (at least 1) share a transaction. The
    /// task ends once every `Committer` clone is dropped, after finishing what is queued.
    pub fn spawn(store: Store, max_batch: usize) -> (Committer, JoinHandle<()>) {
        let max_batch = max_batch.max(1);
        let (queue, requests) = mpsc::channel(max_batch.saturating_mul(4));
        let batches = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(store, requests, max_batch, Arc::clone(&batches)));
        (Committer { queue, batches }, task)
    }

    /// Queues `writes`, waits until the transaction holding them has committed, and returns
    /// one [`Written`] per write, in order.
    ///
    /// If the caller stops waiting (the future is dropped), the writes may still be committed.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Written>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Request { writes, reply }).await.map_err(|_| StoreError::CommitterStopped)?;
        answer.await.unwrap_or(Err(StoreError::CommitterStopped))
    }

    /// How many batches the writer task has taken from the queue so far; each ran as one
    /// transaction (plus one per request if it had to be retried request by request).
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

async fn run(store: Store, mut requests: mpsc::Receiver<Request>, max_batch: usize, batches: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(max_batch);
    while requests.recv_many(&mut batch, max_batch).await > 0 {
        batches.fetch_add(1, Ordering::Relaxed);
        commit_batch(&store, std::mem::take(&mut batch)).await;
    }
}

async fn commit_batch(store: &Store, mut batch: Vec<Request>) {
    if batch.len() == 1 {
        if let Some(request) = batch.pop() {
            let result = store.commit(&request.writes).await;
            let _ = request.reply.send(result);
        }
        return;
    }
    let writes: Vec<&Write> = batch.iter().flat_map(|request| request.writes.iter()).collect();
    let result = store.commit_all(&writes).await;
    drop(writes);
    match result {
        Ok(written) => {
            let mut written = written.into_iter();
            for request in batch {
                let answer: Vec<Written> = written.by_ref().take(request.writes.len()).collect();
                let _ = request.reply.send(Ok(answer));
            }
        }
        Err(error) if error.may_be_write_specific() => {
            for request in batch {
                let result = store.commit(&request.writes).await;
                let _ = request.reply.send(result);
            }
        }
        Err(error) => {
            let error = Arc::new(error);
            for request in batch {
                let _ = request.reply.send(Err(StoreError::BatchFailed(Arc::clone(&error))));
            }
        }
    }
}
