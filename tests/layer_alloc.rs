//! An event the `tracing` Layer does not capture costs the host's thread no
//! heap allocation: neither when nobody wants its callsite (interest
//! `never`, the macro skips it) nor when another layer wants it and the
//! layer's filter runs per event (interest `sometimes`).
//!
//! A test binary of its own because `allocation-counter` replaces the
//! global allocator with one that counts; it counts per thread, so the
//! layer's worker and the test harness do not disturb the count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ackbar::{EventRecord, LayerGuard, Sink};
use allocation_counter::AllocationInfo;
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Events emitted per measurement: enough that one allocation per event,
/// or an occasional one (a buffer growing), cannot hide.
const EVENTS: u64 = 10_000;

/// Callsite interest is computed over every live dispatcher: while another
/// test's subscriber is alive, a callsite that should be `never` here
/// could become `sometimes`. One subscriber at a time keeps each test on
/// the path it names (under `cargo test`; nextest runs one per process).
static ONE_SUBSCRIBER: Mutex<()> = Mutex::new(());

/// Counts the records it is handed.
struct CountingSink(Arc<AtomicU64>);

#[async_trait::async_trait]
impl Sink for CountingSink {
    async fn send(&mut self, batch: Vec<EventRecord>) {
        self.0.fetch_add(batch.len() as u64, Ordering::SeqCst);
    }
    async fn close(&mut self, _deadline: tokio::time::Instant) {}
}

/// The ackbar layer as a user installs it (capturing ERROR and above, its
/// default), with a queue that holds every event of a test, and the count
/// of records it handed on.
fn ackbar_layer<S>() -> (ackbar::AckbarLayer<S>, LayerGuard, Arc<AtomicU64>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let handed_on = Arc::new(AtomicU64::new(0));
    let (layer, guard) = ackbar::layer()
        .service_name("checkout")
        .queue_capacity(EVENTS as usize + 1)
        .build_with(CountingSink(Arc::clone(&handed_on)))
        .expect("valid options");
    (layer, guard, handed_on)
}

/// A host layer that wants every event and only counts it: it puts the
/// callsite at `sometimes` without allocating itself.
#[derive(Clone, Default)]
struct HostCounter(Arc<AtomicU64>);

impl<S: Subscriber> Layer<S> for HostCounter {
    fn on_event(&self, _: &Event<'_>, _: Context<'_, S>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn request_served(user_id: u64) {
    tracing::info!(user_id, order = "A-7", "request served");
}

fn payment_failed(user_id: u64) {
    tracing::error!(user_id, order = "A-7", "payment failed");
}

/// Emits `EVENTS` events through `emit` under `subscriber` and returns the
/// allocations made on this thread meanwhile. The first event is emitted
/// before counting: it registers the callsite (tracing's one-off work).
fn allocations_of(subscriber: &Dispatch, emit: fn(u64)) -> AllocationInfo {
    tracing::dispatcher::with_default(subscriber, || {
        emit(0);
        allocation_counter::measure(|| {
            for i in 1..=EVENTS {
                emit(i);
            }
        })
    })
}

#[test]
fn filtered_events_allocate_nothing_when_no_layer_wants_them() {
    let _one = ONE_SUBSCRIBER.lock().unwrap_or_else(|e| e.into_inner());
    let (layer, guard, handed_on) = ackbar_layer();
    let subscriber = Dispatch::new(Registry::default().with(layer));

    let info = allocations_of(&subscriber, request_served);

    assert_eq!(info.count_total, 0, "filtered events allocated: {info:?}");
    drop(subscriber);
    drop(guard);
    assert_eq!(handed_on.load(Ordering::SeqCst), 0);
}

#[test]
fn filtered_events_allocate_nothing_when_the_host_wants_them() {
    let _one = ONE_SUBSCRIBER.lock().unwrap_or_else(|e| e.into_inner());
    let host = HostCounter::default();
    let (layer, guard, handed_on) = ackbar_layer();
    let subscriber = Dispatch::new(Registry::default().with(host.clone()).with(layer));

    let info = allocations_of(&subscriber, request_served);

    assert_eq!(info.count_total, 0, "filtered events allocated: {info:?}");
    // The events really went through the subscriber, past the layer's
    // per-event filter, rather than being skipped at the callsite.
    assert_eq!(host.0.load(Ordering::Relaxed), EVENTS + 1);
    drop(subscriber);
    drop(guard);
    assert_eq!(handed_on.load(Ordering::SeqCst), 0);
}

#[test]
fn filtered_events_add_no_allocation_to_a_host_fmt_that_logs_them() {
    let _one = ONE_SUBSCRIBER.lock().unwrap_or_else(|e| e.into_inner());
    let fmt = || tracing_subscriber::fmt::layer().with_writer(std::io::sink);
    // What `fmt` allocates is tracing-subscriber's business (today: nothing
    // once its buffer has grown); the layer must add nothing to it.
    let fmt_alone = allocations_of(
        &Dispatch::new(Registry::default().with(fmt())),
        request_served,
    );
    let (layer, guard, handed_on) = ackbar_layer();
    let subscriber = Dispatch::new(Registry::default().with(fmt()).with(layer));

    let with_ackbar = allocations_of(&subscriber, request_served);

    assert_eq!(
        with_ackbar.count_total, fmt_alone.count_total,
        "with the layer: {with_ackbar:?}, fmt alone: {fmt_alone:?}"
    );
    drop(subscriber);
    drop(guard);
    assert_eq!(handed_on.load(Ordering::SeqCst), 0);
}

#[test]
fn filtered_events_allocate_nothing_next_to_a_host_fmt_that_filters_per_event() {
    let _one = ONE_SUBSCRIBER.lock().unwrap_or_else(|e| e.into_inner());
    // A filter that depends on the context (as `EnvFilter` with span
    // directives does) cannot be decided per callsite, so both filters run
    // per event. Neither wants this one, so `fmt` never writes (which
    // would allocate).
    let fmt_filter_runs = Arc::new(AtomicU64::new(0));
    let runs = Arc::clone(&fmt_filter_runs);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::sink)
        .with_filter(dynamic_filter_fn(move |meta, _| {
            runs.fetch_add(1, Ordering::Relaxed);
            *meta.level() <= Level::WARN
        }));
    let (layer, guard, handed_on) = ackbar_layer();
    let subscriber = Dispatch::new(Registry::default().with(fmt).with(layer));

    let info = allocations_of(&subscriber, request_served);

    assert_eq!(info.count_total, 0, "filtered events allocated: {info:?}");
    assert_eq!(fmt_filter_runs.load(Ordering::Relaxed), EVENTS + 1);
    drop(subscriber);
    drop(guard);
    assert_eq!(handed_on.load(Ordering::SeqCst), 0);
}

/// The control: a counter that is not installed, or that missed this
/// thread's allocations, would pass every test above.
#[test]
fn captured_events_allocate_and_are_counted() {
    let _one = ONE_SUBSCRIBER.lock().unwrap_or_else(|e| e.into_inner());
    let (layer, guard, handed_on) = ackbar_layer();
    let subscriber = Dispatch::new(Registry::default().with(layer));

    let info = allocations_of(&subscriber, payment_failed);

    // A captured event copies its message and fields on this thread.
    assert!(info.count_total >= EVENTS, "captured events: {info:?}");
    drop(subscriber);
    drop(guard);
    assert_eq!(handed_on.load(Ordering::SeqCst), EVENTS + 1);
}
