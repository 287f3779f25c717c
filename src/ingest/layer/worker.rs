//! The layer's worker: a thread of its own with a current-thread tokio
//! runtime, so the host needs no runtime (and a host runtime is never
//! borrowed or blocked). It waits on the queue without polling, turns
//! captured events into records, hands batches to the [`Sink`], and reports
//! drops. [`LayerGuard`] stops it: on drop, everything queued before reaches
//! the sink, then the sink closes, all within the flush deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

use super::Sink;
use super::capture::{Captured, mark_worker_thread};
use super::record::{DropReason, EventRecord, Recorder, dropped_report};
use crate::metrics as m;

/// Records per [`Sink::send`]: large enough to amortise a request per
/// batch, small enough that one batch stays a modest request body.
pub const MAX_BATCH: usize = 512;

/// Why the worker woke up.
enum Wake {
    /// This many events are in the buffer; zero when every sender is gone
    /// (the layer itself was dropped).
    Received(usize),
    /// The guard dropped: flush until this deadline.
    Shutdown(Instant),
}

struct Worker {
    queue: mpsc::Receiver<Captured>,
    dropped: Arc<AtomicU64>,
    recorder: Recorder,
    flush_deadline: Duration,
}

/// Starts the worker thread. The runtime is built here, on the caller's
/// thread, so that failing to build it is an error for the builder rather
/// than a dead thread.
pub(super) fn start<K: Sink>(
    sink: K,
    queue: mpsc::Receiver<Captured>,
    dropped: Arc<AtomicU64>,
    recorder: Recorder,
    flush_deadline: Duration,
) -> io::Result<LayerGuard> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("ackbar-layer-blocking")
        // The runtime's blocking threads (DNS lookups of the HTTP client)
        // are the worker's too: their events must not re-enter.
        .on_thread_start(mark_worker_thread)
        .build()?;
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = Worker {
        queue,
        dropped,
        recorder,
        flush_deadline,
    };
    let thread = std::thread::Builder::new()
        .name("ackbar-layer".to_owned())
        .spawn(move || {
            mark_worker_thread();
            runtime.block_on(worker.run(sink, shutdown_rx));
            let _ = done_tx.send(());
            // The sink is closed; leftover tasks (idle connections) and
            // blocking threads must not hold the host's exit up.
            runtime.shutdown_background();
        })?;
    Ok(LayerGuard {
        shutdown: Some(shutdown_tx),
        done: done_rx,
        thread: Some(thread),
        flush_deadline,
    })
}

impl Worker {
    async fn run<K: Sink>(mut self, mut sink: K, mut shutdown: oneshot::Receiver<Instant>) {
        let mut buf = Vec::with_capacity(MAX_BATCH);
        let deadline = loop {
            match self.next_wake(&mut shutdown, &mut buf).await {
                Wake::Received(0) => break Instant::now() + self.flush_deadline,
                Wake::Received(_) => self.deliver(&mut sink, &mut buf).await,
                Wake::Shutdown(deadline) => break deadline,
            }
        };
        // Closing refuses new events but keeps what is queued: exactly the
        // events emitted before the guard dropped.
        self.queue.close();
        let _ = timeout_at(deadline, async {
            while self.queue.recv_many(&mut buf, MAX_BATCH).await > 0 {
                self.deliver(&mut sink, &mut buf).await;
            }
            self.deliver(&mut sink, &mut buf).await;
        })
        .await;
        let _ = timeout_at(deadline, sink.close(deadline)).await;
    }

    /// Waits for events or the guard's shutdown, whichever comes first;
    /// both are cancel-safe to poll.
    async fn next_wake(
        &mut self,
        shutdown: &mut oneshot::Receiver<Instant>,
        buf: &mut Vec<Captured>,
    ) -> Wake {
        std::future::poll_fn(|cx| {
            if let Poll::Ready(deadline) = Pin::new(&mut *shutdown).poll(cx) {
                // The guard is gone without a word only if it was leaked.
                let deadline = deadline.unwrap_or_else(|_| Instant::now() + self.flush_deadline);
                return Poll::Ready(Wake::Shutdown(deadline));
            }
            self.queue
                .poll_recv_many(cx, buf, MAX_BATCH)
                .map(Wake::Received)
        })
        .await
    }

    /// Sends what is in `buf`, plus a report of events dropped since the
    /// last one. Drops that race with an empty queue are reported with the
    /// next batch (or at shutdown).
    async fn deliver<K: Sink>(&self, sink: &mut K, buf: &mut Vec<Captured>) {
        let mut batch: Vec<EventRecord> = buf.drain(..).map(|c| self.recorder.record(c)).collect();
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            m::layer_events_dropped(DropReason::QueueFull.metric_label(), dropped);
            batch.push(dropped_report(
                self.recorder.service.as_deref(),
                dropped,
                DropReason::QueueFull,
            ));
        }
        if !batch.is_empty() {
            sink.send(batch).await;
        }
    }
}

/// Keeps the layer's worker alive; dropping it flushes. Hold it in `main`
/// for the life of the program (`let _guard = ...`; not `let _ = ...`,
/// which drops it at once).
#[must_use = "dropping the guard stops the layer; hold it until the program ends"]
pub struct LayerGuard {
    shutdown: Option<oneshot::Sender<Instant>>,
    done: std::sync::mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
    flush_deadline: Duration,
}

impl std::fmt::Debug for LayerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerGuard")
            .field("flush_deadline", &self.flush_deadline)
            .finish_non_exhaustive()
    }
}

impl Drop for LayerGuard {
    /// Flushes: waits until everything queued before this call has been
    /// handed to the sink and the sink has closed, or until the flush
    /// deadline, whichever comes first. Never longer: a stuck sink is left
    /// behind on its thread rather than hanging the host's exit.
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + self.flush_deadline;
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(Instant::from_std(deadline));
        }
        let waited = self
            .done
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
        if waited.is_err() {
            // Timed out, or the worker panicked: either way, do not join.
            return;
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
