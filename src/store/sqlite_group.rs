//! Group commit for the SQLite store's notifications.
//!
//! Every notification that changes something is written by one thread that
//! owns a rusqlite connection to the database. While that thread writes,
//! it holds the store's sqlx writer connection, so nothing else writes
//! meanwhile and neither connection ever meets the other's write lock.
//! Each transaction takes every notification queued while the previous one
//! ran, as one group.
//!
//! A group is answered only once its commit is on disk, but the writer
//! does not wait for the disk itself: its connection commits with
//! `synchronous = NORMAL` (the log is written, not flushed) and hands the
//! group to a second thread, the flusher, which flushes the log
//! (`fdatasync`) once for every group committed meanwhile, then updates the
//! cache and answers, group after group in commit order. So the next group
//! is written while the disk takes the last one: at one alert per request
//! the writer spent half its time waiting for that flush. The log holds
//! the commits in order, so a flush covers every commit before it; SQLite
//! still flushes the log itself before a checkpoint copies it into the
//! database, and the header of a restarted log before its first frame.
//! Every other connection commits with `synchronous = FULL`, which flushes
//! the writer's earlier commits as well: the delivery worker's hand-out of
//! a card's first post is durable only after the card is.
//!
//! Why a thread of its own: sqlx runs each statement as a round trip to its
//! connection's worker thread (two wake-ups, tens of µs on a busy small
//! machine, more than the statement), and a transaction is a chain of them
//! (BEGIN, reads, writes, COMMIT) that nothing else can write during. On
//! this thread the chain runs without a hand-off; it takes the
//! notifications from their queue itself.
//!
//! The thread is also what makes a write independent of the request that
//! asked for it: a client that disconnects cannot cancel a transaction
//! other requests share.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::TransactionBehavior;
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::sqlite::{KeyRead, write_batch};
use super::state_cache::StateCache;
use super::{ApplyOutcome, StoreError};
use crate::pipeline::card::CardBatch;

/// Notifications waiting for the writer; senders wait when it is full.
const QUEUE: usize = 1024;

/// Alerts per group transaction: bounds the transaction's size (and so the
/// wait of the requests in it); a single larger notification is written alone.
const MAX_GROUP_ALERTS: usize = 20_000;

/// Groups committed and waiting for the flusher; the writer waits when
/// this many are.
const COMMITTED: usize = 64;

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
    /// Why notifications cannot be answered any more, once they cannot.
    broken: Arc<OnceLock<String>>,
}

impl GroupWriter {
    /// Starts the thread that owns `conn`, on the current runtime (which
    /// it uses to take the write lock), and its flusher; both end when the
    /// writer is dropped. `lock` is the pool of the store's one sqlx writer
    /// connection, held while groups are written. `log` is the database's
    /// write-ahead log file (`None` for an in-memory database: nothing to
    /// flush); `conn` must commit without flushing it.
    pub fn start(
        lock: SqlitePool,
        conn: rusqlite::Connection,
        log: Option<PathBuf>,
        cache: Arc<StateCache>,
    ) -> Result<GroupWriter, StoreError> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let (committed, flush_queue) = std_mpsc::sync_channel(COMMITTED);
        let runtime = tokio::runtime::Handle::current();
        let spawn_err = |e: std::io::Error| {
            StoreError::Unavailable(format!("cannot start the writer thread: {e}"))
        };
        let broken = Arc::new(OnceLock::new());
        let (flusher_cache, flusher_broken) = (cache.clone(), broken.clone());
        std::thread::Builder::new()
            .name("ackbar-sqlite-flush".into())
            .spawn(move || flush(log, flusher_cache, flush_queue, &flusher_broken))
            .map_err(spawn_err)?;
        let writer_broken = broken.clone();
        std::thread::Builder::new()
            .name("ackbar-sqlite-writer".into())
            .spawn(move || run(runtime, lock, conn, cache, queue, committed, &writer_broken))
            .map_err(spawn_err)?;
        Ok(GroupWriter { jobs, broken })
    }

    /// `Err` once notifications can no longer be written and answered: a
    /// thread of the writer ended (a bug: it panicked) or the log could
    /// not be flushed. Readiness reports it, so that an orchestrator
    /// restarts the process instead of it refusing every notification.
    pub fn health(&self) -> Result<(), StoreError> {
        if let Some(reason) = self.broken.get() {
            return Err(StoreError::Unavailable(reason.clone()));
        }
        if self.jobs.is_closed() {
            return Err(StoreError::Unavailable(
                "the store's writer thread has stopped".into(),
            ));
        }
        Ok(())
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
    committed: std_mpsc::SyncSender<Committed>,
    broken: &OnceLock<String>,
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
            for done in commit_group(&mut conn, &cache, group) {
                if let Err(std_mpsc::SendError(lost)) = committed.send(done) {
                    // Only when the flusher panicked: nothing can be
                    // answered as durable any more.
                    let reason = break_down(
                        broken,
                        &cache,
                        "the store's flusher thread has stopped".into(),
                    );
                    lost.settle(&cache, Err(reason));
                }
            }
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

/// Writes the group in one transaction. When it fails, each job is written
/// alone, so that one notification's error (a constraint, a value SQLite
/// refuses) fails only its own request; a job that fails is answered at
/// once (nothing of it was committed). Returns the commits, in order.
fn commit_group(
    conn: &mut rusqlite::Connection,
    cache: &StateCache,
    group: Vec<Job>,
) -> Vec<Committed> {
    if group.len() > 1 {
        match write(conn, cache, &group) {
            Ok(written) => {
                return vec![Committed {
                    jobs: group,
                    written,
                }];
            }
            Err(e) => {
                tracing::debug!(error = %e, jobs = group.len(), "group commit failed; writing each notification alone")
            }
        }
    }
    let mut commits = Vec::with_capacity(group.len());
    for job in group {
        match write(conn, cache, std::slice::from_ref(&job)) {
            Ok(written) => commits.push(Committed {
                jobs: vec![job],
                written,
            }),
            Err(e) => {
                let _ = job.answer.send(Err(e));
            }
        }
    }
    commits
}

/// A transaction committed (not yet known to be on disk) with the jobs in
/// it, for the flusher.
struct Committed {
    jobs: Vec<Job>,
    written: Written,
}

/// What a transaction's batches changed or read, in order.
struct Written {
    batches: Vec<(ApplyOutcome, Option<KeyRead>)>,
    /// The cache's epoch when the transaction began.
    read_in: u64,
}

impl Committed {
    /// Updates the cache and answers every job: with its outcomes when the
    /// commit is `durable`, else with the reason it may not be. The keys
    /// written are forgotten either way (the database holds their
    /// changes); what the other batches read is learned only when durable.
    fn settle(self, cache: &StateCache, durable: Result<(), &str>) {
        let Committed {
            jobs,
            written: Written { batches, read_in },
        } = self;
        // In order: a key a later batch wrote is forgotten even if an
        // earlier one read it, and a read after a write is what the key holds.
        for (batch, (_, read)) in jobs.iter().flat_map(|job| &job.batches).zip(&batches) {
            match read {
                None => cache.forget([batch.key.as_str()]),
                Some((latest, known)) if durable.is_ok() => cache.fill(
                    batch,
                    latest.as_ref().map(|c| (c.seq, &c.snapshot)),
                    known,
                    read_in,
                ),
                Some(_) => {}
            }
        }
        let mut outcomes = batches.into_iter().map(|(outcome, _)| outcome);
        for job in jobs {
            let answer = outcomes.by_ref().take(job.batches.len()).collect();
            let answer = durable
                .map(|()| answer)
                .map_err(|reason| StoreError::Unavailable(reason.to_owned()));
            let _ = job.answer.send(answer);
        }
    }
}

/// Marks the writer broken (the first reason stays) and empties the cache,
/// so that nothing is answered from it either: what it learned may be
/// what the disk lost. Returns the reason.
fn break_down<'b>(broken: &'b OnceLock<String>, cache: &StateCache, reason: String) -> &'b str {
    let reason = broken.get_or_init(|| reason);
    cache.forget_all();
    reason
}

/// One transaction: each job's batches decided under the write lock (seeing
/// the batches before it) and written, one after another.
fn write(
    conn: &mut rusqlite::Connection,
    cache: &StateCache,
    jobs: &[Job],
) -> Result<Written, StoreError> {
    let read_in = cache.epoch();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let batches = jobs
        .iter()
        .flat_map(|job| job.batches.iter().map(|batch| (batch, job.now)))
        .map(|(batch, now)| write_batch(&tx, batch, now))
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit()?;
    Ok(Written { batches, read_in })
}

/// The flusher thread: takes every group committed so far, flushes the log
/// once for all of them, and settles them in commit order.
///
/// After a failed flush nothing is answered as durable any more: the
/// kernel may have dropped the pages it could not write (and will not say
/// so again), so commits before the failure, answered or not, may be
/// lost. Every later notification is refused until ackbar restarts and
/// SQLite recovers the database from what is on disk.
fn flush(
    log: Option<PathBuf>,
    cache: Arc<StateCache>,
    queue: std_mpsc::Receiver<Committed>,
    broken: &OnceLock<String>,
) {
    let mut file: Option<File> = None;
    while let Ok(first) = queue.recv() {
        let groups: Vec<Committed> = std::iter::once(first).chain(queue.try_iter()).collect();
        if broken.get().is_none()
            && let Err(e) = flush_log(log.as_ref(), &mut file)
        {
            tracing::error!(error = %e, "cannot flush the SQLite log to disk; refusing notifications until ackbar restarts");
            let reason =
                format!("the database log could not be flushed to disk ({e}); restart ackbar");
            break_down(broken, &cache, reason);
        }
        let durable = broken.get().map_or(Ok(()), |reason| Err(reason.as_str()));
        for group in groups {
            group.settle(&cache, durable);
        }
    }
}

/// `fdatasync` of the log file, opened on first use (it exists once the
/// first commit is written); nothing for an in-memory database.
fn flush_log(log: Option<&PathBuf>, file: &mut Option<File>) -> std::io::Result<()> {
    let Some(path) = log else {
        return Ok(());
    };
    let file = match file {
        Some(file) => file,
        None => file.insert(File::open(path)?),
    };
    file.sync_data()
}
