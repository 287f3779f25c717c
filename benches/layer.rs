//! The `tracing` Layer's per-event cost on the host's thread, next to a bare
//! registry and to `tracing_subscriber::fmt`, in one run.
//!
//! `cargo bench --bench layer -- --warm-up-time 1 --measurement-time 3`
//!
//! Every case emits the same event, a message and two fields, at INFO (an
//! event the layer does not capture at its default level, ERROR) or at
//! ERROR. Cases come in pairs, the ackbar layer next to what it should
//! cost, so a ratio within a pair is the layer's cost; compare within one
//! run.
//!
//! An event the layer filters takes one of two paths, depending on the
//! host's other layers:
//!
//! * Nobody wants the callsite: its interest is cached as `never` and the
//!   event macro skips it after one atomic load.
//!   * `bare_registry/info`: a `Registry` and nothing else, the issue's
//!     baseline. A `Registry` has no filter of its own, so it enables every
//!     callsite: the event is built and dispatched to a subscriber that
//!     drops it. Installing the layer *removes* that work (its per-layer
//!     filter tells the registry nobody wants the callsite), so a filtered
//!     event is cheaper than this, not 10 % dearer.
//!   * `registry_callsite_never/info`: the same registry with a plain layer
//!     that disables every callsite (and, like the ackbar layer, gives no
//!     max-level hint, so the macro reaches the callsite's interest): the
//!     floor of an event nobody wants, without ackbar.
//!   * `ackbar_filtered/info`: the registry with the ackbar layer. Its fair
//!     comparison is the floor above.
//! * Another layer wants the callsite: its interest is `sometimes`, and the
//!   layer's filter runs per event.
//!   * `host_noop/info` and `host_noop_and_ackbar/info`: a host layer that
//!     takes every event and does nothing with it, without and with the
//!     ackbar layer: the per-event filter's cost, not hidden under `fmt`'s.
//!   * `fmt_to_sink/info` and `fmt_and_ackbar/info`: the same with the
//!     host's `fmt` layer writing to `io::sink`, the usual setup.
//!
//! An event the layer captures:
//! * `ackbar_captured/error`: copied and queued; the worker drains into a
//!   sink that does nothing. Timed in chunks that fit the queue, waiting
//!   (untimed) for the worker between chunks, so no event is dropped and
//!   only the host's side is measured.
//! * `ackbar_queue_full/error`: the same error while the worker is stuck:
//!   counted as dropped, nothing copied.
//! * `fmt_to_sink/error`: the same error through `fmt` into `io::sink`, as
//!   the cost a host already pays per logged event.
//!
//! Every case installs its subscriber with `dispatcher::with_default` (a
//! scoped default: each dispatched event looks it up in a thread-local; a
//! host's global default makes every dispatched event slightly cheaper). Only
//! one subscriber is alive per case, because callsite interest is computed
//! over every live dispatcher, and every case has its own callsites.
//! `tests/layer_alloc.rs` proves both filtered paths allocate nothing.
//!
//! Last run (2026-11-29, the command above, medians; the README's
//! "Benchmarks" section has every row): filtered 0.706 ns, 1.00x the
//! `never` floor and 0.08x a bare registry (9.14 ns); the per-event filter
//! next to a host layer +4.2 ns (8.90 -> 13.1 ns), next to `fmt` 752 ->
//! 781 ns (noise; callgrind: +0.9 % instructions); captured 421 ns against
//! `fmt`'s 887 ns for the same error.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ackbar::{EventRecord, Sink};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Metadata, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

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

/// A host layer that disables every callsite, without a max-level hint.
struct CallsitesOff;

impl<S: Subscriber> Layer<S> for CallsitesOff {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::never()
    }
    fn enabled(&self, _: &Metadata<'_>, _: Context<'_, S>) -> bool {
        false
    }
}

/// A host layer that wants every event and does nothing with it.
struct HostNoop;

impl<S: Subscriber> Layer<S> for HostNoop {}

/// The ackbar layer at its defaults, handing records to `sink`.
fn ackbar_layer<S>(sink: impl Sink) -> (ackbar::AckbarLayer<S>, ackbar::LayerGuard)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ackbar::layer()
        .build_with(sink)
        .expect("the default options are valid")
}

/// The host's `fmt` layer, writing to `io::sink`.
fn fmt_to_sink<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer().with_writer(std::io::sink)
}

/// The event every INFO case emits. A macro, so that each case has a
/// callsite of its own: interest is cached per callsite.
macro_rules! info_event {
    () => {
        tracing::info!(user_id = 42, order = "A-7", "request served")
    };
}

/// The event every ERROR case emits, one callsite per case.
macro_rules! error_event {
    () => {
        tracing::error!(user_id = 42, order = "A-7", "payment failed")
    };
}

/// Times `emit` (one event from the case's own callsite) under `subscriber`.
fn bench_event(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    subscriber: Dispatch,
    emit: impl Fn(),
) {
    tracing::dispatcher::with_default(&subscriber, || {
        group.bench_function(name, |b| b.iter(&emit));
    });
}

fn per_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer_per_event");
    let nothing_received = || CountingSink(Arc::default());

    // Filtered, nobody else wants the callsite: `never`.
    bench_event(
        &mut group,
        "bare_registry/info",
        Dispatch::new(Registry::default()),
        || info_event!(),
    );
    bench_event(
        &mut group,
        "registry_callsite_never/info",
        Dispatch::new(Registry::default().with(CallsitesOff)),
        || info_event!(),
    );
    {
        let (layer, _guard) = ackbar_layer(nothing_received());
        bench_event(
            &mut group,
            "ackbar_filtered/info",
            Dispatch::new(Registry::default().with(layer)),
            || info_event!(),
        );
    }

    // Filtered, the host wants the callsite: `sometimes`.
    bench_event(
        &mut group,
        "host_noop/info",
        Dispatch::new(Registry::default().with(HostNoop)),
        || info_event!(),
    );
    {
        let (layer, _guard) = ackbar_layer(nothing_received());
        bench_event(
            &mut group,
            "host_noop_and_ackbar/info",
            Dispatch::new(Registry::default().with(HostNoop).with(layer)),
            || info_event!(),
        );
    }
    bench_event(
        &mut group,
        "fmt_to_sink/info",
        Dispatch::new(Registry::default().with(fmt_to_sink())),
        || info_event!(),
    );
    {
        let (layer, _guard) = ackbar_layer(nothing_received());
        bench_event(
            &mut group,
            "fmt_and_ackbar/info",
            Dispatch::new(Registry::default().with(fmt_to_sink()).with(layer)),
            || info_event!(),
        );
    }

    // Captured.
    {
        let received = Arc::new(AtomicU64::new(0));
        let (layer, _guard) = ackbar_layer(CountingSink(Arc::clone(&received)));
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
                            error_event!();
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
    }
    {
        let (release, stuck) = tokio::sync::oneshot::channel();
        let (layer, _guard) = ackbar::layer()
            .queue_capacity(16)
            .build_with(StuckSink(Some(stuck)))
            .expect("the options are valid");
        let dispatch = Dispatch::new(Registry::default().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            // One event for the stuck sink, sixteen to fill the queue.
            for _ in 0..17 {
                tracing::error!(user_id = 42, order = "A-7", "filling the queue");
            }
            group.bench_function("ackbar_queue_full/error", |b| b.iter(|| error_event!()));
        });
        let _ = release.send(());
    }
    bench_event(
        &mut group,
        "fmt_to_sink/error",
        Dispatch::new(Registry::default().with(fmt_to_sink())),
        || error_event!(),
    );

    group.finish();
}

criterion_group!(benches, per_event);
criterion_main!(benches);
