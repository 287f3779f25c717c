//! OTLP/HTTP logs and traces (`POST /v1/logs`, `POST /v1/traces`) into
//! alerts.
//!
//! # The request
//!
//! Bodies are `application/x-protobuf` or `application/json` (OTLP/JSON: see
//! [`proto`] for the mapping), gzip-compressed or not. The body limit
//! (`ingest.max_body_bytes`) applies to the body as sent and again to the
//! decompressed body ([`decompress`] stops at the limit). A body that cannot
//! be read at all is refused whole ([`OtlpError`]); nothing of it is stored.
//! So is an OTLP/JSON body that holds no records because its keys are
//! snake_case (`resource_logs`): receivers must ignore unknown keys, which
//! would otherwise turn a sender's bug into a silent success.
//!
//! # What becomes an alert
//!
//! * A log record whose `severityNumber` is at least `otlp.logs.min_severity`
//!   (default 17, ERROR). A record without a severity number is judged by its
//!   `severityText` (`ERROR`, `warn`, `Fatal2`, ...); with neither it is
//!   skipped.
//! * A span whose status code is 2 (ERROR).
//!
//! Everything else is skipped: accepted, counted, not an alert.
//!
//! Each alert is `firing` with [`Occurrences`](crate::model::Occurrences)
//! and carries the labels
//!
//! | label | logs | spans |
//! |---|---|---|
//! | `alertname` | `eventName`, else the body's first line (at most [`MAX_ALERTNAME_CHARS`]) | the span name |
//! | `service` | resource attribute `service.name` | same |
//! | `scope` | instrumentation scope name | same |
//! | `severity` | `info`/`warning`/`error`/`critical` from the severity number | `error` |
//! | configured | `otlp.logs.label_attributes` | `otlp.traces.label_attributes` |
//!
//! A configured attribute is looked up on the record (or span), then its
//! scope, then its resource; its label name is the key with every character
//! other than `[A-Za-z0-9_]` replaced by `_` (`deployment.environment` ->
//! `deployment_environment`), so route matchers can name it. Labels missing
//! from the record are left out, never empty.
//!
//! Annotations: `summary` is the log body (spans: the status message, else
//! the message of an `exception` event, else "span NAME failed"); `details`
//! lists everything else as `key: value` lines (record attributes, trace and
//! span id, exception details, scope and resource attributes), capped at
//! [`MAX_DETAILS_CHARS`]. With `otlp.traces.trace_url` set, spans and log
//! records that carry a trace id link to the trace (`generatorURL`).
//!
//! # Fingerprints and merging
//!
//! An alert's fingerprint is the label-set hash of Alertmanager alerts
//! ([`fingerprint`](crate::ingest::alertmanager::fingerprint)), so the same
//! error from the same service is the same alert across requests. Records of
//! one request with the same fingerprint become one alert: its count is the
//! number of records, `starts_at` the earliest time and `last_seen` the
//! latest; the first record's annotations are kept.
//!
//! Explicit grouping: a log record with a string attribute `ackbar.group`
//! (what the ackbar `tracing` Layer's forwarding mode sends when the host
//! groups events itself) gets its fingerprint from its `service` label and
//! that value alone. Records with the same service and group are then one
//! alert whatever their other labels; the first record's labels are kept.
//! Its string attribute `ackbar.labels` (comma-separated attribute names)
//! says which of its attributes the host made labels: they become labels
//! here too, as if `label_attributes` named them, so routes match forwarded
//! events as they match embedded ones.
//!
//! # Partial success
//!
//! Records that can be read but not accepted are rejected one by one and
//! reported in `partialSuccess` (`rejectedLogRecords` / `rejectedSpans`,
//! with the first reason in `errorMessage`); the rest of the request is
//! applied. Rejected are: a trace id that is not 16 bytes (empty allowed on
//! log records), a span id that is not 8 bytes (likewise), a severity number
//! outside 0-24, an alert-worthy log record with neither `eventName` nor a
//! body (nothing to name the alert), an ERROR span without a name, and
//! records past [`MAX_ALERTS`] distinct alerts in one request.
//!
//! # Features
//!
//! [`proto`] (the wire types, which also encode) is compiled with `forward`
//! too, for the `tracing` Layer's forwarding mode; the receiving side needs
//! `embedded`.

pub mod proto;

/// The attributes by which the Layer's forwarding mode carries what an
/// embedded bridge would know directly: the group key, and which attributes
/// are labels.
pub const GROUP_ATTRIBUTE: &str = "ackbar.group";
pub const LABELS_ATTRIBUTE: &str = "ackbar.labels";

// Serde helpers the wire types' derives name, so they come with them.
mod json;

#[cfg(feature = "embedded")]
mod alerts;
#[cfg(feature = "embedded")]
mod body;
#[cfg(feature = "embedded")]
mod logs;
#[cfg(feature = "embedded")]
mod receiver;
#[cfg(feature = "embedded")]
mod traces;

#[cfg(feature = "embedded")]
pub use alerts::label_name;
#[cfg(feature = "embedded")]
pub use body::{Encoding, decompress};
#[cfg(feature = "embedded")]
pub use logs::severity_number_from_text;
#[cfg(feature = "embedded")]
pub use receiver::{
    Decoded, MAX_ALERTNAME_CHARS, MAX_ALERTS, MAX_DETAILS_CHARS, MAX_ECHO_CHARS,
    MAX_LABEL_VALUE_CHARS, MAX_SUMMARY_CHARS, OtlpError, decode, error_body, unauthenticated_body,
    unavailable_body,
};

#[cfg(all(test, feature = "embedded"))]
mod tests;
