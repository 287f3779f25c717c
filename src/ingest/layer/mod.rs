//! The `tracing` Layer: a service's own errors become alerts.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! # fn main() -> Result<(), ackbar::LayerError> {
//! let (ackbar_layer, _guard) = ackbar::layer()
//!     .service_name("checkout")
//!     .forward("http://127.0.0.1:9094")?;
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(ackbar_layer)
//!     .init();
//! tracing::error!(order = 7, "payment failed");
//! # Ok(())
//! # }
//! ```
//!
//! How an event travels:
//!
//! | step | where | module |
//! |---|---|---|
//! | per-layer filter: level and target, cached per callsite | host thread | `filter` |
//! | capped copy of fields and span context, `try_reserve` on a bounded queue, drops counted | host thread | `capture` |
//! | labels, group key, batches, drop reports, flush on guard drop | worker thread | `worker`, `record` |
//! | a [`Sink`]: the embedded Bridge, or OTLP/HTTP to `ackbar serve` | worker runtime | [`forward`] |
//!
//! The host's thread never blocks, never does I/O and never logs through
//! `tracing` on ackbar's behalf; everything else happens on the worker.

mod capture;
mod filter;
#[cfg(feature = "forward")]
pub mod forward;
mod record;
mod worker;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::registry::LookupSpan;

pub use capture::{
    EventLayer, MAX_FIELDS, MAX_MESSAGE_BYTES, MAX_SPANS, MAX_VALUE_BYTES, mark_worker_thread,
};
pub use filter::EventFilter;
#[cfg(feature = "forward")]
pub use forward::ForwardError;
pub use record::{EventRecord, GroupBy, LAYER_TARGET, SpanRecord};
pub use worker::{LayerGuard, MAX_BATCH};

use record::Recorder;

/// The layer as installed in a subscriber: [`EventLayer`] behind its own
/// per-layer [`EventFilter`].
pub type AckbarLayer<S> = Filtered<EventLayer, EventFilter, S>;

/// Default [`LayerBuilder::queue_capacity`]: a burst of a thousand errors is
/// absorbed while the worker catches up; at the value caps that is at most
/// a few tens of megabytes, typically well under one.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Largest [`LayerBuilder::queue_capacity`] accepted: past this a queue is
/// no longer a bound on memory anyone would choose.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;
/// Default [`LayerBuilder::flush_deadline`]: long enough for one request to
/// a nearby server, short enough not to stall a deploy's restart.
pub const DEFAULT_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// Labels every alert has; an event field cannot take their name.
const RESERVED_LABELS: [&str; 4] = ["alertname", "severity", "target", "service"];

/// Where the worker hands records. Implemented by the embedded Bridge
/// (`ackbar::Bridge`) and by [`forward::ForwardSink`].
#[async_trait::async_trait]
pub trait Sink: Send + 'static {
    /// Called on the layer's worker runtime with records in arrival order
    /// (batches of up to [`MAX_BATCH`]); returns when they are handed on
    /// (durable or given up).
    async fn send(&mut self, batch: Vec<EventRecord>);
    /// Called once when the guard drops, after the last `send`; must finish
    /// by `deadline`.
    async fn close(&mut self, deadline: tokio::time::Instant);
}

/// An option the builder cannot accept, or a worker it could not start.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("queue_capacity must be between 1 and {MAX_QUEUE_CAPACITY}, got {0}")]
    QueueCapacity(usize),
    #[error("flush_deadline must be more than zero")]
    ZeroFlushDeadline,
    #[error("service_name must not be empty")]
    EmptyServiceName,
    #[error("{option}: target prefixes must not be empty (an empty prefix matches every target)")]
    EmptyTargetPrefix { option: &'static str },
    #[error("{option}: {field:?} cannot be a label field: every alert sets that label itself")]
    ReservedLabel {
        option: &'static str,
        field: &'static str,
    },
    #[error("{option}: field names must not be empty")]
    EmptyFieldName { option: &'static str },
    #[error("group_by: GroupBy::Fields needs at least one field")]
    NoGroupByFields,
    #[cfg(feature = "forward")]
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error("cannot start the layer's worker thread: {0}")]
    Worker(#[from] std::io::Error),
}

/// Starts building the layer; see [`LayerBuilder`] for the options.
pub fn layer() -> LayerBuilder {
    LayerBuilder::default()
}

/// Options of the layer. Everything has a default; `build_with` and
/// `forward` check them all.
#[derive(Debug, Clone)]
pub struct LayerBuilder {
    min_level: Level,
    include_targets: Vec<String>,
    exclude_targets: Vec<String>,
    label_fields: Vec<&'static str>,
    span_label_fields: Vec<&'static str>,
    group_by: GroupBy,
    queue_capacity: usize,
    flush_deadline: Duration,
    service_name: Option<String>,
    #[cfg(feature = "forward")]
    forward: forward::ForwardOptions,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        LayerBuilder {
            min_level: Level::ERROR,
            include_targets: Vec::new(),
            exclude_targets: Vec::new(),
            label_fields: Vec::new(),
            span_label_fields: Vec::new(),
            group_by: GroupBy::default(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            flush_deadline: DEFAULT_FLUSH_DEADLINE,
            service_name: None,
            #[cfg(feature = "forward")]
            forward: forward::ForwardOptions::default(),
        }
    }
}

impl LayerBuilder {
    /// Least severe level captured (default `ERROR`; `WARN` adds warnings).
    pub fn min_level(mut self, level: Level) -> Self {
        self.min_level = level;
        self
    }

    /// Capture only events whose target starts with one of these prefixes
    /// (plain string prefixes, as in `EnvFilter`). Repeatable; none means all.
    pub fn include_target(mut self, prefix: impl Into<String>) -> Self {
        self.include_targets.push(prefix.into());
        self
    }

    /// Never capture events whose target starts with this prefix; wins over
    /// `include_target`. Repeatable.
    pub fn exclude_target(mut self, prefix: impl Into<String>) -> Self {
        self.exclude_targets.push(prefix.into());
        self
    }

    /// Event fields that become labels (routes can match and group on them).
    pub fn label_fields(mut self, fields: impl IntoIterator<Item = &'static str>) -> Self {
        self.label_fields.extend(fields);
        self
    }

    /// Fields of enclosing spans that become labels, and show in the span
    /// context; the nearest span wins, an event field of the same name wins
    /// over spans. Without any, spans cost the layer nothing but their name.
    pub fn span_label_fields(mut self, fields: impl IntoIterator<Item = &'static str>) -> Self {
        self.span_label_fields.extend(fields);
        self
    }

    /// Which events are the same alert (default: callsite and message).
    pub fn group_by(mut self, group_by: GroupBy) -> Self {
        self.group_by = group_by;
        self
    }

    /// Events waiting for the worker (default [`DEFAULT_QUEUE_CAPACITY`]).
    /// When full, events are dropped, counted and reported.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// How long dropping the guard may wait for the last events to be
    /// handed on (default [`DEFAULT_FLUSH_DEADLINE`]).
    pub fn flush_deadline(mut self, deadline: Duration) -> Self {
        self.flush_deadline = deadline;
        self
    }

    /// The `service` label of every alert (and `service.name` when forwarding).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Forwarding mode: records buffered while the server is unreachable
    /// (default [`forward::DEFAULT_BUFFER_CAPACITY`]); past it the oldest
    /// are dropped, counted and reported.
    #[cfg(feature = "forward")]
    pub fn forward_buffer_capacity(mut self, records: usize) -> Self {
        self.forward.buffer_capacity = records;
        self
    }

    /// Forwarding mode: gzip request bodies (default on).
    #[cfg(feature = "forward")]
    pub fn forward_gzip(mut self, gzip: bool) -> Self {
        self.forward.gzip = gzip;
        self
    }

    /// Builds the layer and starts its worker, which hands records to `sink`.
    pub fn build_with<S, K>(self, sink: K) -> Result<(AckbarLayer<S>, LayerGuard), LayerError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        K: Sink,
    {
        self.validate()?;
        let (queue_tx, queue_rx) = mpsc::channel(self.queue_capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let recorder = Recorder {
            service: self.service_name,
            label_fields: self.label_fields,
            group_by: self.group_by,
        };
        let guard = worker::start(
            sink,
            queue_rx,
            Arc::clone(&dropped),
            recorder,
            self.flush_deadline,
        )?;
        let layer = EventLayer::new(queue_tx, dropped, self.span_label_fields.into());
        let filter = EventFilter::new(self.min_level, self.include_targets, self.exclude_targets);
        Ok((layer.with_filter(filter), guard))
    }

    /// Forwarding mode: builds the layer with a [`forward::ForwardSink`]
    /// that posts records as OTLP/HTTP logs to `{endpoint}/v1/logs` of a
    /// running `ackbar serve` (for example `http://127.0.0.1:9094`).
    #[cfg(feature = "forward")]
    pub fn forward<S>(self, endpoint: &str) -> Result<(AckbarLayer<S>, LayerGuard), LayerError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.validate()?;
        let sink = forward::ForwardSink::new(endpoint, self.service_name.clone(), &self.forward)?;
        self.build_with(sink)
    }

    fn validate(&self) -> Result<(), LayerError> {
        if !(1..=MAX_QUEUE_CAPACITY).contains(&self.queue_capacity) {
            return Err(LayerError::QueueCapacity(self.queue_capacity));
        }
        if self.flush_deadline.is_zero() {
            return Err(LayerError::ZeroFlushDeadline);
        }
        if self.service_name.as_deref().is_some_and(str::is_empty) {
            return Err(LayerError::EmptyServiceName);
        }
        for (option, prefixes) in [
            ("include_target", &self.include_targets),
            ("exclude_target", &self.exclude_targets),
        ] {
            if prefixes.iter().any(String::is_empty) {
                return Err(LayerError::EmptyTargetPrefix { option });
            }
        }
        let group_fields = match &self.group_by {
            GroupBy::Fields(fields) if fields.is_empty() => {
                return Err(LayerError::NoGroupByFields);
            }
            GroupBy::Fields(fields) => fields.as_slice(),
            _ => &[],
        };
        for (option, fields) in [
            ("label_fields", self.label_fields.as_slice()),
            ("span_label_fields", self.span_label_fields.as_slice()),
            ("group_by", group_fields),
        ] {
            if fields.iter().any(|f| f.is_empty()) {
                return Err(LayerError::EmptyFieldName { option });
            }
            if option != "group_by"
                && let Some(field) = fields.iter().find(|f| RESERVED_LABELS.contains(f))
            {
                return Err(LayerError::ReservedLabel { option, field });
            }
        }
        #[cfg(feature = "forward")]
        self.forward.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(builder: LayerBuilder) -> String {
        builder.validate().unwrap_err().to_string()
    }

    #[test]
    fn builder_rejects_options_it_cannot_honour() {
        assert_eq!(
            error_of(layer().queue_capacity(0)),
            "queue_capacity must be between 1 and 1048576, got 0"
        );
        assert!(
            error_of(layer().queue_capacity(MAX_QUEUE_CAPACITY + 1)).contains("queue_capacity")
        );
        assert_eq!(
            error_of(layer().flush_deadline(Duration::ZERO)),
            "flush_deadline must be more than zero"
        );
        assert_eq!(
            error_of(layer().service_name("")),
            "service_name must not be empty"
        );
        assert!(error_of(layer().exclude_target("")).starts_with("exclude_target:"));
        assert_eq!(
            error_of(layer().label_fields(["user", "severity"])),
            "label_fields: \"severity\" cannot be a label field: every alert sets that label itself"
        );
        assert!(error_of(layer().span_label_fields([""])).starts_with("span_label_fields:"));
        assert!(error_of(layer().group_by(GroupBy::Fields(vec![]))).contains("at least one"));
    }

    #[cfg(feature = "forward")]
    #[test]
    fn builder_rejects_an_empty_forward_buffer() {
        assert!(error_of(layer().forward_buffer_capacity(0)).contains("forward_buffer_capacity"));
    }

    #[test]
    fn defaults_are_valid() {
        layer().validate().unwrap();
        layer()
            .group_by(GroupBy::Fields(vec!["severity"]))
            .validate()
            .unwrap();
    }
}
