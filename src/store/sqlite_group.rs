//! Group commit for the SQLite store's notifications.
//!
//! Every notification that changes something is written by one thread that
//! owns a rusqlite connection to the database, in a transaction whose
//! commit waits for the disk (`synchronous = FULL`). While that thread
//! writes, a task holds the store's sqlx writer connection, so nothing else
//! writes meanwhile and neither connection ever meets the other's write
//! lock. The task hands the thread every notification queued while the
//! previous transaction ran, as one group; the thread writes the group in
//! one transaction and answers each notification after that commit: one
//! flush for many requests, each still answered only once its changes are
//! durable.
//!
//! Why a thread of its own: sqlx runs each statement as a round trip to its
//! connection's worker thread (two wake-ups, tens of µs on a busy small
//! machine, more than the statement), and a transaction is a chain of them
//! (BEGIN, reads, writes, COMMIT) that nothing else can write during. On
//! this thread the chain runs without a hand-off; the notifications reach
//! it in one hand-off per group and return in one.
//!
//! The thread is also what makes a write independent of the request that
//! asked for it: a client that disconnects cannot cancel a transaction
//! other requests share.

use std::sync::Arc;

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

/// Hands notifications to the group-commit task.
pub(super) struct GroupWriter {
    jobs: mpsc::Sender<Job>,
}

/// A group for the writer thread, and how it says it is done.
type Group = (Vec<Job>, oneshot::Sender<()>);

impl GroupWriter {
    /// Starts the task on the current runtime and the thread that owns
    /// `conn`; both end when the writer is dropped. `lock` is the pool of
    /// the store's one sqlx writer connection, held while a group is
    /// written.
    pub fn start(
        lock: SqlitePool,
        conn: rusqlite::Connection,
        cache: Arc<StateCache>,
    ) -> Result<GroupWriter, StoreError> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let (groups, written) = std::sync::mpsc::channel::<Group>();
        std::thread::Builder::new()
            .name("ackbar-sqlite-writer".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok((group, done)) = written.recv() {
                    commit_group(&mut conn, &cache, group);
                    let _ = done.send(());
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        tokio::spawn(run(lock, groups, queue));
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

async fn run(
    lock: SqlitePool,
    groups: std::sync::mpsc::Sender<Group>,
    mut queue: mpsc::Receiver<Job>,
) {
    let mut next: Option<Job> = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut alerts = first.alerts();
        let mut group = vec![first];
        while let Ok(job) = queue.try_recv() {
            alerts += job.alerts();
            if alerts > MAX_GROUP_ALERTS {
                next = Some(job);
                break;
            }
            group.push(job);
        }
        // No other write while the thread writes the group.
        let held = match lock.acquire().await {
            Ok(held) => held,
            Err(e) => {
                let e = StoreError::from(e);
                for job in group {
                    let _ = job.answer.send(Err(e.clone()));
                }
                continue;
            }
        };
        let (done, written) = oneshot::channel();
        // A thread that has stopped drops the jobs: their requests fail.
        if groups.send((group, done)).is_err() {
            return;
        }
        let _ = written.await;
        drop(held);
    }
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
