//! Group commit for the SQLite store's notifications.
//!
//! Every notification that changes something is written by one thread that
//! owns a rusqlite connection to the database, in a transaction whose
//! commit waits for the disk (`synchronous = FULL`). While that thread
//! writes, it holds the store's sqlx writer connection, so nothing else
//! writes meanwhile and neither connection ever meets the other's write
//! lock. Each transaction takes every notification queued while the
//! previous one ran, as one group, and the thread answers each notification
//! after that commit: one flush for many requests, each still answered
//! only once its changes are durable.
//!
//! Why a thread of its own: sqlx runs each statement as a round trip to its
//! connection's worker thread (two wake-ups, tens of µs on a busy small
//! machine, more than the statement), and a transaction is a chain of them
//! (BEGIN, reads, writes, COMMIT) that nothing else can write during. On
//! this thread the chain runs without a hand-off; it takes the
//! notifications from their queue itself and answers each with one
//! message.
//!
//! The thread is also what makes a write independent of the request that
//! asked for it: a client that disconnects cannot cancel a transaction
//! other requests share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::TransactionBehavior;
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::sqlite::write_batch;
use super::state_cache::StateCache;
use super::{ApplyOutcome, StoreError};
use crate::pipeline::card::CardBatch;

/// Notifications waiting for the writer; senders wait when it is full.
const QUEUE: usize = 1024;

/// Alerts per group transaction: bounds the transaction's size (and so the
/// wait of the requests in it); a single larger notification is written alone.
const MAX_GROUP_ALERTS: usize = 20_000;

/// How long the writer keeps the write lock while notifications keep
/// coming: the store's other writes (deliveries, actions) get their turn
/// at least this often.
const MAX_HOLD: Duration = Duration::from_millis(10);

type Answer = Result<Vec<ApplyOutcome>, StoreError>;

struct Job {
    batches: Vec<CardBatch>,
    now: DateTime<Utc>,
    answer: oneshot::Sender<Answer>,
}

impl Job {
    fn alerts(&self) -> usize {
        self.batches.iter().map(|b| b.alerts.len()).sum()
    }
}

/// Hands notifications to the writer thread.
pub(super) struct GroupWriter {
    jobs: mpsc::Sender<Job>,
}

impl GroupWriter {
    /// Starts the thread that owns `conn`, on the current runtime (which
    /// it uses to take the write lock); the thread ends when the writer is
    /// dropped. `lock` is the pool of the store's one sqlx writer
    /// connection, held while groups are written.
    pub fn start(
        lock: SqlitePool,
        conn: rusqlite::Connection,
        cache: Arc<StateCache>,
    ) -> Result<GroupWriter, StoreError> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("ackbar-sqlite-writer".into())
            .spawn(move || run(runtime, lock, conn, cache, queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(GroupWriter { jobs })
    }

    /// Writes `batches` in the next group; `Ok` once the group committed.
    pub async fn apply(&self, batches: Vec<CardBatch>, now: DateTime<Utc>) -> Answer {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            batches,
            now,
            answer,
        };
        let stopped = || StoreError::Unavailable("the store's writer has stopped".into());
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// The writer thread: waits for a notification, takes the write lock, and
/// writes groups of whatever is queued until the queue is empty or it has
/// held the lock for [`MAX_HOLD`], then lets the lock go.
///
/// Keeping the lock from one group to the next matters: giving back a sqlx
/// connection and taking it again each is a hop through the runtime's
/// busy workers, and the thread sat idle for a third of its time (0.3 ms
/// per group at one alert per request) waiting for those hops.
fn run(
    runtime: tokio::runtime::Handle,
    lock: SqlitePool,
    mut conn: rusqlite::Connection,
    cache: Arc<StateCache>,
    mut queue: mpsc::Receiver<Job>,
) {
    // sqlx gives a connection back to its pool on a task of the runtime.
    let _runtime = runtime.enter();
    let mut next: Option<Job> = None;
    loop {
        let Some(first) = next.take().or_else(|| queue.blocking_recv()) else {
            return; // the store is gone
        };
        // No other write while this thread writes.
        let held = match runtime.block_on(lock.acquire()) {
            Ok(held) => held,
            Err(e) => {
                let _ = first.answer.send(Err(StoreError::from(e)));
                continue;
            }
        };
        let since = Instant::now();
        let mut first = Some(first);
        while let Some(job) = first.take() {
            let (group, rest) = gather(job, &mut queue);
            commit_group(&mut conn, &cache, group);
            next = rest;
            if since.elapsed() < MAX_HOLD {
                first = next.take().or_else(|| queue.try_recv().ok());
            }
        }
        drop(held);
    }
}

/// `first` and what is queued behind it, up to [`MAX_GROUP_ALERTS`]; the
/// job that would pass the bound comes back for the next group.
fn gather(first: Job, queue: &mut mpsc::Receiver<Job>) -> (Vec<Job>, Option<Job>) {
    let mut alerts = first.alerts();
    let mut group = vec![first];
    while let Ok(job) = queue.try_recv() {
        alerts += job.alerts();
        if alerts > MAX_GROUP_ALERTS {
            return (group, Some(job));
        }
        group.push(job);
    }
    (group, None)
}

/// Writes the group in one transaction and answers every job. When it
/// fails, each job is written alone, so that one notification's error
/// (a constraint, a value SQLite refuses) fails only its own request.
fn commit_group(conn: &mut rusqlite::Connection, cache: &StateCache, group: Vec<Job>) {
    if group.len() > 1 {
        match write(conn, cache, &group) {
            Ok(outcomes) => {
                for (job, outcomes) in group.into_iter().zip(outcomes) {
                    let _ = job.answer.send(Ok(outcomes));
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, jobs = group.len(), "group commit failed; writing each notification alone")
            }
        }
    }
    for job in group {
        let answer =
            write(conn, cache, std::slice::from_ref(&job)).map(|mut outcomes| outcomes.remove(0));
        let _ = job.answer.send(answer);
    }
}

/// One transaction: each job's batches decided under the write lock (seeing
/// the batches before it) and written, one after another. After the
/// commit, before anyone is answered and while nothing else can write, the
/// cache forgets the keys written and learns what the other batches read.
fn write(
    conn: &mut rusqlite::Connection,
    cache: &StateCache,
    jobs: &[Job],
) -> Result<Vec<Vec<ApplyOutcome>>, StoreError> {
    let batches: Vec<(&CardBatch, DateTime<Utc>)> = jobs
        .iter()
        .flat_map(|job| job.batches.iter().map(|batch| (batch, job.now)))
        .collect();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes = batches
        .iter()
        .map(|(batch, now)| write_batch(&tx, batch, *now))
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit()?;
    // In order: a key a later batch wrote is forgotten even if an earlier
    // one read it, and a read after a write is what the key holds.
    for ((batch, _), (_, read)) in batches.iter().zip(&outcomes) {
        match read {
            Some((latest, known)) => {
                cache.fill(batch, latest.as_ref().map(|c| (c.seq, &c.snapshot)), known)
            }
            None => cache.forget([batch.key.as_str()]),
        }
    }
    // Back to one list per job.
    let mut outcomes = outcomes.into_iter().map(|(outcome, _)| outcome);
    Ok(jobs
        .iter()
        .map(|job| outcomes.by_ref().take(job.batches.len()).collect())
        .collect())
}
