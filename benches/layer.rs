//! The `tracing` Layer's per-event cost on the host's thread, next to a bare
//! registry and to `tracing_subscriber::fmt`, in one run.
//!
//! `cargo bench --bench layer`
//!
//! * `bare_registry/info`: an event nobody captures, no layer at all.
//! * `ackbar_filtered/info`: the same event with the layer installed (at its
//!   default level, ERROR): the callsite's interest is cached as `never`.
//! * `ackbar_captured/error`: an error with two fields, copied and queued;
//!   the worker drains into a sink that does nothing. Timed in chunks that
//!   fit the queue, waiting (untimed) for the worker between chunks, so no
//!   event is dropped and only the host's side is measured.
//! * `ackbar_queue_full/error`: the same error while the worker is stuck:
//!   counted as dropped, nothing copied.
//! * `fmt_to_sink/error`: the same error through `fmt` into `io::sink`, as
//!   the cost a host already pays per logged event.
//! * `fmt_to_sink/info` and `fmt_and_ackbar/info`: an event the host's `fmt`
//!   logs and the layer filters, without and with the layer. Here the
//!   callsite is wanted by one layer, so its interest is `sometimes` and the
//!   layer's filter runs per event.
//!
//! Only one subscriber is alive per case: callsite interest is computed over
//! every live dispatcher.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ackbar::{EventRecord, Sink};
use criterion::{Criterion, criterion_group, criterion_main};
use tracing::Dispatch;
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt;

/// Events per timed chunk of the captured case: what the queue holds.
const CHUNK: u64 = ackbar::ingest::layer::DEFAULT_QUEUE_CAPACITY as u64;

/// Counts what it is given, keeps nothing.
struct CountingSink(Arc<AtomicU64>);

#[async_trait::async_trait]
impl Sink for CountingSink {
    async fn send(&mut self, batch: Vec<EventRecord>) {
        self.0
            .fetch_add(black_box(batch).len() as u64, Ordering::Release);
    }
    async fn close(&mut self, _deadline: tokio::time::Instant) {}
}

/// Never returns from its first `send` until released.
struct StuckSink(Option<tokio::sync::oneshot::Receiver<()>>);

#[async_trait::async_trait]
impl Sink for StuckSink {
    async fn send(&mut self, _batch: Vec<EventRecord>) {
        if let Some(release) = self.0.take() {
            let _ = release.await;
        }
    }
    async fn close(&mut self, _deadline: tokio::time::Instant) {}
}

fn per_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer_per_event");

    {
        let dispatch = Dispatch::new(Registry::default());
        tracing::dispatcher::with_default(&dispatch, || {
            group.bench_function("bare_registry/info", |b| {
                b.iter(|| tracing::info!(user_id = 42, order = "A-7", "request served"))
            });
        });
    }

    {
        let (layer, guard) = ackbar::layer()
            .build_with(CountingSink(Arc::default()))
            .unwrap();
        let dispatch = Dispatch::new(Registry::default().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            group.bench_function("ackbar_filtered/info", |b| {
                b.iter(|| tracing::info!(user_id = 42, order = "A-7", "request served"))
            });
        });
        drop(dispatch);
        drop(guard);
    }

    {
        let received = Arc::new(AtomicU64::new(0));
        let (layer, guard) = ackbar::layer()
            .build_with(CountingSink(Arc::clone(&received)))
            .unwrap();
        let dispatch = Dispatch::new(Registry::default().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            let mut sent = 0u64;
            group.bench_function("ackbar_captured/error", |b| {
                b.iter_custom(|iters| {
                    let mut elapsed = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(CHUNK);
                        let start = Instant::now();
                        for _ in 0..n {
                            tracing::error!(user_id = 42, order = "A-7", "payment failed");
                        }
                        elapsed += start.elapsed();
                        sent += n;
                        left -= n;
                        while received.load(Ordering::Acquire) < sent {
                            std::thread::yield_now();
                        }
                    }
                    elapsed
                })
            });
        });
        drop(dispatch);
        drop(guard);
    }

    {
        let (release, stuck) = tokio::sync::oneshot::channel();
        let (layer, guard) = ackbar::layer()
            .queue_capacity(16)
            .build_with(StuckSink(Some(stuck)))
            .unwrap();
        let dispatch = Dispatch::new(Registry::default().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            // One event for the stuck sink, sixteen to fill the queue.
            for _ in 0..17 {
                tracing::error!(user_id = 42, order = "A-7", "filling the queue");
            }
            group.bench_function("ackbar_queue_full/error", |b| {
                b.iter(|| tracing::error!(user_id = 42, order = "A-7", "payment failed"))
            });
        });
        let _ = release.send(());
        drop(dispatch);
        drop(guard);
    }

    {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .finish();
        let dispatch = Dispatch::new(subscriber);
        tracing::dispatcher::with_default(&dispatch, || {
            group.bench_function("fmt_to_sink/error", |b| {
                b.iter(|| tracing::error!(user_id = 42, order = "A-7", "payment failed"))
            });
        });
    }

    {
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::sink);
        let dispatch = Dispatch::new(Registry::default().with(fmt));
        tracing::dispatcher::with_default(&dispatch, || {
            group.bench_function("fmt_to_sink/info", |b| {
                b.iter(|| tracing::info!(user_id = 42, order = "A-7", "request served"))
            });
        });
    }

    {
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::sink);
        let (layer, guard) = ackbar::layer()
            .build_with(CountingSink(Arc::default()))
            .unwrap();
        let dispatch = Dispatch::new(Registry::default().with(fmt).with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            group.bench_function("fmt_and_ackbar/info", |b| {
                b.iter(|| tracing::info!(user_id = 42, order = "A-7", "request served"))
            });
        });
        drop(dispatch);
        drop(guard);
    }

    group.finish();
}

criterion_group!(benches, per_event);
criterion_main!(benches);
