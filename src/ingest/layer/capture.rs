//! What `on_event` does on the host's thread: the least possible. Check the
//! re-entry flag, reserve a queue slot (no slot: count a drop, copy
//! nothing), copy the event's fields into a capped [`Captured`], hand it to
//! the worker. No locks, no I/O, no `tracing` calls; every allocation is
//! bounded by the limits below.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::SpanRecord;

/// Fields kept per event (and per span). Events rarely carry more; a runaway
/// `?big_struct` expansion is cut here rather than growing the queue.
pub const MAX_FIELDS: usize = 32;
/// Bytes kept of one field value: enough for an id, a path or an error chain,
/// small enough that a full queue stays in the low megabytes.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Bytes kept of the message: a card shows far less, but the details and a
/// forwarded log record may want a whole multi-line error.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Enclosing spans kept, nearest first: deeper stacks are recursion, and the
/// innermost spans say most about where the error happened.
pub const MAX_SPANS: usize = 16;

/// Appended to a value cut at its cap.
const ELLIPSIS: char = '…';

thread_local! {
    /// Set on the worker's threads for their whole life, and on any thread
    /// while it is inside `on_event`: events from there (the sink's HTTP
    /// client, a `Debug` impl that logs) must not come back into the queue.
    static INSIDE_ACKBAR: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one of the layer's own for the rest of its
/// life: its events are never captured. For threads that sinks start (the
/// embedded Bridge's), as the worker does for its own.
pub fn mark_worker_thread() {
    INSIDE_ACKBAR.with(|f| f.set(true));
}

/// Holds the re-entry flag while `on_event` runs; `None` when it is held already.
struct Reentry;

impl Reentry {
    fn enter() -> Option<Reentry> {
        // `then`, not `then_some`: an eagerly built `Reentry` would be
        // dropped on refusal and clear the flag of the one holding it.
        INSIDE_ACKBAR.with(|f| (!f.replace(true)).then(|| Reentry))
    }
}

impl Drop for Reentry {
    fn drop(&mut self) {
        INSIDE_ACKBAR.with(|f| f.set(false));
    }
}

/// An event as copied on the host's thread; the worker turns it into an
/// [`EventRecord`](super::EventRecord) (labels, group key) off the hot path.
#[derive(Debug)]
pub(super) struct Captured {
    pub time: DateTime<Utc>,
    pub meta: &'static Metadata<'static>,
    /// Set for events bridged from the `log` crate, whose metadata names the
    /// bridge rather than the logger.
    pub log_target: Option<String>,
    pub message: String,
    pub fields: Vec<(&'static str, String)>,
    pub spans: Vec<SpanRecord>,
}

/// The layer inside the per-layer filter. Users name it through
/// [`AckbarLayer`](super::AckbarLayer).
pub struct EventLayer {
    queue: mpsc::Sender<Captured>,
    /// Events refused because the queue was full, not yet reported.
    dropped: Arc<AtomicU64>,
    /// Span fields to keep; empty means spans cost nothing beyond their name.
    span_fields: Arc<[&'static str]>,
}

impl fmt::Debug for EventLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLayer")
            .field("span_fields", &self.span_fields)
            .finish_non_exhaustive()
    }
}

impl EventLayer {
    pub(super) fn new(
        queue: mpsc::Sender<Captured>,
        dropped: Arc<AtomicU64>,
        span_fields: Arc<[&'static str]>,
    ) -> Self {
        EventLayer {
            queue,
            dropped,
            span_fields,
        }
    }

    fn span_context<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>) -> Vec<SpanRecord>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(scope) = ctx.event_scope(event) else {
            return Vec::new();
        };
        let mut spans: Vec<SpanRecord> = scope
            .take(MAX_SPANS)
            .map(|span| SpanRecord {
                name: span.name(),
                fields: span
                    .extensions()
                    .get::<SpanFields>()
                    .map(|f| f.0.clone())
                    .unwrap_or_default(),
            })
            .collect();
        spans.reverse();
        spans
    }
}

impl<S> Layer<S> for EventLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.span_fields.is_empty() {
            return;
        }
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        let mut visitor = SpanFieldVisitor {
            wanted: &self.span_fields,
            fields: SpanFields(Vec::new()),
        };
        attrs.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(visitor.fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if self.span_fields.is_empty() {
            return;
        }
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        let existing = extensions.remove::<SpanFields>();
        let mut visitor = SpanFieldVisitor {
            wanted: &self.span_fields,
            fields: existing.unwrap_or(SpanFields(Vec::new())),
        };
        values.record(&mut visitor);
        extensions.insert(visitor.fields);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(_reentry) = Reentry::enter() else {
            return;
        };
        // Reserve first: when the worker is behind, the event is counted
        // and nothing is copied, so overload makes the layer cheaper.
        let permit = match self.queue.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // The guard was dropped: the layer has stopped.
            Err(mpsc::error::TrySendError::Closed(())) => return,
        };
        let mut fields = EventFields::default();
        event.record(&mut fields);
        permit.send(Captured {
            time: Utc::now(),
            meta: event.metadata(),
            log_target: fields.log_target,
            message: fields.message,
            fields: fields.fields,
            spans: self.span_context(event, &ctx),
        });
    }
}

/// The configured span fields of one span, kept in its extensions.
#[derive(Debug, Clone)]
struct SpanFields(Vec<(&'static str, String)>);

struct SpanFieldVisitor<'a> {
    wanted: &'a [&'static str],
    fields: SpanFields,
}

impl SpanFieldVisitor<'_> {
    fn keep(&mut self, field: &Field, write: impl FnOnce(&mut String)) {
        if !self.wanted.contains(&field.name()) {
            return;
        }
        let mut value = String::new();
        write(&mut value);
        let fields = &mut self.fields.0;
        // A field recorded again later (`span.record`) replaces its value.
        if let Some(slot) = fields.iter_mut().find(|(name, _)| *name == field.name()) {
            slot.1 = value;
        } else if fields.len() < MAX_FIELDS {
            fields.push((field.name(), value));
        }
    }
}

impl Visit for SpanFieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.keep(field, |out| {
            capped_write(out, MAX_VALUE_BYTES, format_args!("{value}"))
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.keep(field, |out| write_error_chain(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.keep(field, |out| {
            capped_write(out, MAX_VALUE_BYTES, format_args!("{value:?}"))
        });
    }
}

/// The fields of one event: the message apart, the rest in recording order.
#[derive(Default)]
struct EventFields {
    message: String,
    log_target: Option<String>,
    fields: Vec<(&'static str, String)>,
}

impl EventFields {
    fn push(&mut self, field: &Field, write: impl FnOnce(&mut String)) {
        if self.fields.len() < MAX_FIELDS {
            let mut value = String::new();
            write(&mut value);
            self.fields.push((field.name(), value));
        }
    }
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => capped_write(
                &mut self.message,
                MAX_MESSAGE_BYTES,
                format_args!("{value}"),
            ),
            // `tracing-log` puts the logger's target in a field; its
            // module path only repeats it.
            "log.target" => {
                let mut target = String::new();
                capped_write(&mut target, MAX_VALUE_BYTES, format_args!("{value}"));
                self.log_target = Some(target);
            }
            "log.module_path" => {}
            _ => self.push(field, |out| {
                capped_write(out, MAX_VALUE_BYTES, format_args!("{value}"))
            }),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, |out| write_error_chain(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            // `error!("x {y}")` records its message as `fmt::Arguments`,
            // whose `Debug` is its `Display`.
            "message" => capped_write(
                &mut self.message,
                MAX_MESSAGE_BYTES,
                format_args!("{value:?}"),
            ),
            "log.module_path" => {}
            _ => self.push(field, |out| {
                capped_write(out, MAX_VALUE_BYTES, format_args!("{value:?}"))
            }),
        }
    }
}

/// `error: source: source's source`, capped as one value.
fn write_error_chain(out: &mut String, error: &(dyn std::error::Error + 'static)) {
    capped_write(out, MAX_VALUE_BYTES, format_args!("{error}"));
    let mut source = error.source();
    while let Some(e) = source {
        if out.len() >= MAX_VALUE_BYTES {
            break;
        }
        capped_write(out, MAX_VALUE_BYTES, format_args!(": {e}"));
        source = e.source();
    }
}

/// Formats `args` onto `out` without letting `out` grow past `limit` bytes;
/// a cut value ends with an ellipsis (so may end up to 3 bytes longer).
pub(super) fn capped_write(out: &mut String, limit: usize, args: fmt::Arguments<'_>) {
    let mut writer = CappedWriter { out, limit };
    // An error here is our own "full" signal, which stops a long `Debug`
    // from formatting the rest of itself.
    if writer.write_fmt(args).is_err() {
        out.push(ELLIPSIS);
    }
}

struct CappedWriter<'a> {
    out: &'a mut String,
    limit: usize,
}

impl fmt::Write for CappedWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.limit.saturating_sub(self.out.len());
        if s.len() <= room {
            self.out.push_str(s);
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.out.push_str(&s[..cut]);
        Err(fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_write_cuts_at_a_char_boundary_and_marks_the_cut() {
        let mut out = String::new();
        capped_write(&mut out, 5, format_args!("{}", "abcdé€xyz"));
        // 'é' is 2 bytes at offsets 4..6: it does not fit into 5 bytes.
        assert_eq!(out, "abcd…");

        let mut out = String::new();
        capped_write(&mut out, 10, format_args!("{}", "short"));
        assert_eq!(out, "short");
    }

    #[test]
    fn capped_write_stops_a_long_debug_early() {
        let big: Vec<u32> = (0..100_000).collect();
        let mut out = String::new();
        capped_write(&mut out, MAX_VALUE_BYTES, format_args!("{big:?}"));
        assert!(out.len() <= MAX_VALUE_BYTES + ELLIPSIS.len_utf8());
        assert!(out.ends_with(ELLIPSIS));
    }

    #[test]
    fn error_chains_are_joined_with_colons() {
        #[derive(Debug, thiserror::Error)]
        #[error("connect failed")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("refused"));
        let mut out = String::new();
        write_error_chain(&mut out, &e);
        assert_eq!(out, "connect failed: refused");
    }

    #[test]
    fn reentry_is_refused_while_inside() {
        let outer = Reentry::enter();
        assert!(outer.is_some());
        assert!(Reentry::enter().is_none());
        assert!(Reentry::enter().is_none(), "a refusal leaves the flag set");
        drop(outer);
        assert!(Reentry::enter().is_some());
    }

    #[test]
    fn worker_threads_stay_marked() {
        std::thread::spawn(|| {
            mark_worker_thread();
            assert!(Reentry::enter().is_none());
            assert!(Reentry::enter().is_none());
        })
        .join()
        .unwrap();
    }
}
