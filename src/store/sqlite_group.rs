//! Group commit for the SQLite store's notifications.
//!
//! Every notification that changes something is written under the single
//! writer connection, in a transaction whose commit waits for the disk
//! (`synchronous = FULL`) and whose every statement is a round trip to the
//! connection's worker thread; nothing else can be written meanwhile. One
//! task therefore writes every notification queued while the previous
//! transaction ran in one transaction, and answers each after that commit:
//! one flush and a few round trips for many requests, with each request
//! still answered only once its changes are durable.
//!
//! The task is also what makes a write independent of the request that
//! asked for it: a client that disconnects cannot cancel a transaction
//! other requests share.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, Sqlite, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::sqlite::write_wave;
use super::state_cache::StateCache;
use super::{ApplyOutcome, StoreError};
use crate::pipeline::card::CardBatch;

/// Notifications waiting for the writer; senders wait when it is full.
const QUEUE: usize = 1024;

/// Alerts per group transaction: bounds the transaction's size (and so the
/// wait of the requests in it); a single larger notification is written alone.
const MAX_GROUP_ALERTS: usize = 20_000;

/// Alerts per wave (see [`write`]). Waves save round trips where those
/// dominate, for notifications of a few alerts; a notification of a hundred
/// makes a wave of its own, whose time goes into writing its rows. Each
/// shape of wave script stays prepared in the connection's statement cache
/// (bounded by count): scripts of a few small batches keep those entries
/// small. Measured with the load harness's 16 connections: waves of up to
/// 500 alerts gained nothing at 100 alerts per notification and doubled the
/// process's memory.
const MAX_WAVE_ALERTS: usize = 100;

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

impl GroupWriter {
    /// Starts the task on the current runtime; it ends when the writer is
    /// dropped.
    pub fn start(pool: SqlitePool, cache: Arc<StateCache>) -> GroupWriter {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, cache, queue));
        GroupWriter { jobs }
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

async fn run(pool: SqlitePool, cache: Arc<StateCache>, mut queue: mpsc::Receiver<Job>) {
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
        match pool.acquire().await {
            Ok(mut conn) => commit_group(&mut conn, &cache, group).await,
            Err(e) => {
                let e = StoreError::from(e);
                for job in group {
                    let _ = job.answer.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Writes the group in one transaction and answers every job. When it
/// fails, each job is written alone, so that one notification's error
/// (a constraint, a value SQLite refuses) fails only its own request.
async fn commit_group(conn: &mut PoolConnection<Sqlite>, cache: &StateCache, group: Vec<Job>) {
    if group.len() > 1 {
        match write(conn, cache, &group).await {
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
        let answer = write(conn, cache, std::slice::from_ref(&job))
            .await
            .map(|mut outcomes| outcomes.remove(0));
        let _ = job.answer.send(answer);
    }
}

/// One transaction: each job's batches decided under the write lock (seeing
/// the jobs before it) and written. The batches go to SQLite in waves of
/// distinct keys (a key seen again starts the next wave, which then sees
/// the first one's rows): a wave's reads are one round trip and its writes
/// one or two, however many notifications it holds. The cache forgets every
/// key written after the commit, before anyone is answered.
async fn write(
    conn: &mut PoolConnection<Sqlite>,
    cache: &StateCache,
    jobs: &[Job],
) -> Result<Vec<Vec<ApplyOutcome>>, StoreError> {
    let batches: Vec<(&CardBatch, DateTime<Utc>)> = jobs
        .iter()
        .flat_map(|job| job.batches.iter().map(|batch| (batch, job.now)))
        .collect();
    let mut tx = conn.begin().await?;
    let mut outcomes = Vec::with_capacity(batches.len());
    let mut rest = &batches[..];
    while !rest.is_empty() {
        let (mut keys, mut alerts) = (HashSet::new(), 0);
        let len = rest
            .iter()
            .take_while(|(batch, _)| {
                alerts += batch.alerts.len();
                // The first batch always goes, however large.
                (keys.is_empty() || alerts <= MAX_WAVE_ALERTS) && keys.insert(batch.key.as_str())
            })
            .count();
        let (wave, next) = rest.split_at(len);
        outcomes.extend(write_wave(&mut tx, wave).await?);
        rest = next;
    }
    tx.commit().await?;
    cache.forget(batches.iter().map(|(batch, _)| batch.key.as_str()));
    // Back to one list per job.
    let mut outcomes = outcomes.into_iter();
    Ok(jobs
        .iter()
        .map(|job| outcomes.by_ref().take(job.batches.len()).collect())
        .collect())
}
