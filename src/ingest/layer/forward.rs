//! Forwarding mode: a [`Sink`] that posts records to a remote
//! `ackbar serve` as OTLP/HTTP logs (`POST {endpoint}/v1/logs`, protobuf,
//! gzip by default), one log record per event.
//!
//! `send` only appends to a bounded buffer and wakes a delivery task on the
//! worker's runtime, so a slow or absent server never stalls the queue.
//! The delivery task sends the oldest records first and:
//! * retries 429, 502, 503, 504 and connection errors, after `Retry-After`
//!   (seconds, at most [`MAX_RETRY_AFTER`]) when the server gives one, else
//!   after an exponential backoff with jitter;
//! * drops a batch the server refuses for good (any other status), counted
//!   in `ackbar_layer_events_dropped_total{reason="rejected"}`;
//! * keeps at most `forward_buffer_capacity` records while the server is
//!   unreachable (plus the one batch in flight): past it the oldest go,
//!   counted, and reported to the server with the next request that gets
//!   through, as the error "N events dropped: ...".
//!
//! How a record is encoded (what `ackbar serve`'s OTLP ingest reads):
//!
//! | OTLP | from the record |
//! |---|---|
//! | resource `service.name` | `service_name` |
//! | scope name | the target |
//! | `timeUnixNano`, `severityNumber`, `severityText` | time, level (ERROR=17, WARN=13, INFO=9, DEBUG=5, TRACE=1) |
//! | `body` (string) | the message |
//! | `eventName` | [`EventRecord::alertname`] |
//! | attributes | the fields, the labels (but `service`, `alertname`), `code.filepath`, `code.lineno`, `ackbar.spans` (the span context), `ackbar.group` (the group key, 16 hex digits), `ackbar.labels` (which attributes are labels, comma-separated) |

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prost::Message as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout_at};
use tracing::Level;

use super::Sink;
use super::record::{DropReason, EventRecord, dropped_report};
use super::worker::MAX_BATCH;
use crate::backoff;
use crate::ingest::otlp::proto::{
    AnyValue, ExportLogsServiceRequest, ExportLogsServiceResponse, InstrumentationScope, KeyValue,
    LogRecord, Resource, ResourceLogs, ScopeLogs, any_value,
};
use crate::ingest::otlp::{GROUP_ATTRIBUTE, LABELS_ATTRIBUTE};
use crate::metrics as m;

/// Default `forward_buffer_capacity`: minutes of a steady error rate, a
/// few megabytes of typical records.
pub const DEFAULT_BUFFER_CAPACITY: usize = 4096;
/// Largest `forward_buffer_capacity` accepted.
pub const MAX_BUFFER_CAPACITY: usize = 1 << 20;
/// Uncompressed bytes of records per request, well under the server's
/// default body limit (4 MiB) even for records at their caps.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// One request, connection included: a server this slow is treated as down.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// First retry delay; doubles per failed attempt up to [`MAX_BACKOFF`].
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A longer `Retry-After` is shortened to this: the buffer evicts while we
/// wait, so a server asking for an hour would silently lose everything.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why forwarding cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("forward endpoint {url:?} is not an http(s) URL: {reason}")]
    InvalidEndpoint { url: String, reason: String },
    #[error("forward_buffer_capacity must be between 1 and {MAX_BUFFER_CAPACITY}, got {0}")]
    BufferCapacity(usize),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// The builder's forwarding options.
#[derive(Debug, Clone)]
pub(super) struct ForwardOptions {
    pub buffer_capacity: usize,
    pub gzip: bool,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        ForwardOptions {
            buffer_capacity: DEFAULT_BUFFER_CAPACITY,
            gzip: true,
        }
    }
}

impl ForwardOptions {
    pub fn validate(&self) -> Result<(), ForwardError> {
        if !(1..=MAX_BUFFER_CAPACITY).contains(&self.buffer_capacity) {
            return Err(ForwardError::BufferCapacity(self.buffer_capacity));
        }
        Ok(())
    }
}

/// The forwarding [`Sink`]; made by [`LayerBuilder::forward`](super::LayerBuilder::forward).
pub struct ForwardSink {
    shared: Arc<Shared>,
    /// Taken when the delivery task starts: it can only be spawned on the
    /// worker's runtime, which `send` and `close` run on.
    delivery: Option<Delivery>,
    task: Option<JoinHandle<()>>,
}

/// What `send` and the delivery task share. The lock is held only to push
/// or take records, never across an `.await`.
struct Shared {
    buffer: Mutex<Buffer>,
    wake: Notify,
}

struct Buffer {
    records: VecDeque<EventRecord>,
    capacity: usize,
    /// Evicted records not yet reported to the server.
    evicted: u64,
    /// Set by `close`: deliver what is left until then, then stop.
    closing: Option<Instant>,
}

impl Buffer {
    /// Appends, evicting the oldest records past the capacity.
    fn push(&mut self, records: impl IntoIterator<Item = EventRecord>) {
        self.records.extend(records);
        self.evict_oldest();
    }

    /// Puts a batch that could not be sent back in front of newer records,
    /// so it is retried first, and evicts what no longer fits.
    fn requeue(&mut self, batch: Vec<EventRecord>) {
        for record in batch.into_iter().rev() {
            self.records.push_front(record);
        }
        self.evict_oldest();
    }

    fn evict_oldest(&mut self) {
        let excess = self.records.len().saturating_sub(self.capacity);
        if excess > 0 {
            self.records.drain(..excess);
            self.evicted += excess as u64;
            m::layer_events_dropped(DropReason::ForwardBufferFull.metric_label(), excess as u64);
        }
    }

    /// The oldest records up to [`MAX_BATCH`] and [`MAX_REQUEST_BYTES`]
    /// (at least one).
    fn take_batch(&mut self) -> Vec<EventRecord> {
        let mut bytes = 0;
        let mut n = 0;
        for record in self.records.iter().take(MAX_BATCH) {
            bytes += approx_size(record);
            if n > 0 && bytes > MAX_REQUEST_BYTES {
                break;
            }
            n += 1;
        }
        self.records.drain(..n).collect()
    }
}

impl Shared {
    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        // A panic elsewhere while holding the lock leaves a consistent
        // buffer (every mutation is a single call), so keep going.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The delivery task's own state.
struct Delivery {
    shared: Arc<Shared>,
    client: reqwest::Client,
    url: reqwest::Url,
    service: Option<String>,
    gzip: bool,
}

impl ForwardSink {
    /// A sink posting to `{endpoint}/v1/logs`.
    pub(super) fn new(
        endpoint: &str,
        service: Option<String>,
        options: &ForwardOptions,
    ) -> Result<Self, ForwardError> {
        let url = logs_url(endpoint)?;
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ackbar-layer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ForwardError::Client)?;
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer {
                records: VecDeque::new(),
                capacity: options.buffer_capacity,
                evicted: 0,
                closing: None,
            }),
            wake: Notify::new(),
        });
        Ok(ForwardSink {
            delivery: Some(Delivery {
                shared: Arc::clone(&shared),
                client,
                url,
                service,
                gzip: options.gzip,
            }),
            shared,
            task: None,
        })
    }

    fn start_delivery(&mut self) {
        if let Some(delivery) = self.delivery.take() {
            self.task = Some(tokio::spawn(delivery.run()));
        }
    }
}

#[async_trait::async_trait]
impl Sink for ForwardSink {
    async fn send(&mut self, batch: Vec<EventRecord>) {
        self.start_delivery();
        self.shared.buffer().push(batch);
        self.shared.wake.notify_one();
    }

    async fn close(&mut self, deadline: Instant) {
        let Some(task) = self.task.take() else {
            return;
        };
        self.shared.buffer().closing = Some(deadline);
        self.shared.wake.notify_one();
        let abort = task.abort_handle();
        if timeout_at(deadline, task).await.is_err() {
            abort.abort();
        }
        let buffer = self.shared.buffer();
        if !buffer.records.is_empty() {
            m::layer_events_dropped("shutdown", buffer.records.len() as u64);
        }
    }
}

/// What one request came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Try again after this long (`Retry-After`), or after a backoff.
    Retry(Option<Duration>),
    /// Refused for good: drop the batch.
    Rejected(StatusCode),
}

impl Delivery {
    async fn run(self) {
        let mut attempt = 0u32;
        loop {
            let Some((batch, evicted, closing)) = self.next_batch().await else {
                return;
            };
            let body = self.encode(&batch, evicted);
            match self.post(body).await {
                Outcome::Delivered => {
                    attempt = 0;
                    m::layer_forward_request("delivered");
                    self.shared.buffer().evicted -= evicted;
                }
                Outcome::Rejected(_) => {
                    attempt = 0;
                    m::layer_forward_request("rejected");
                    m::layer_events_dropped("rejected", batch.len() as u64);
                }
                Outcome::Retry(retry_after) => {
                    attempt = attempt.saturating_add(1);
                    m::layer_forward_request("retried");
                    self.shared.buffer().requeue(batch);
                    let delay = retry_after
                        .unwrap_or_else(|| backoff::jittered(BACKOFF_BASE, MAX_BACKOFF, attempt));
                    let wake_at = Instant::now() + delay;
                    match closing {
                        // No retry fits before the deadline: stop; `close`
                        // counts what is left.
                        Some(deadline) if wake_at >= deadline => return,
                        _ => sleep(delay).await,
                    }
                }
            }
        }
    }

    /// Waits for records (or an eviction to report); `None` once closing
    /// with nothing left.
    async fn next_batch(&self) -> Option<(Vec<EventRecord>, u64, Option<Instant>)> {
        loop {
            // Register for a wake-up before looking, so a `send` between
            // the look and the wait is not missed.
            let woken = self.shared.wake.notified();
            {
                let mut buffer = self.shared.buffer();
                if !buffer.records.is_empty() || buffer.evicted > 0 {
                    let batch = buffer.take_batch();
                    return Some((batch, buffer.evicted, buffer.closing));
                }
                if buffer.closing.is_some() {
                    return None;
                }
            }
            woken.await;
        }
    }

    fn encode(&self, batch: &[EventRecord], evicted: u64) -> Vec<u8> {
        let report = (evicted > 0).then(|| {
            dropped_report(
                self.service.as_deref(),
                evicted,
                DropReason::ForwardBufferFull,
            )
        });
        let request = export_request(self.service.as_deref(), batch.iter().chain(&report));
        let body = request.encode_to_vec();
        if !self.gzip {
            return body;
        }
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        // Writing into a Vec cannot fail.
        match encoder.write_all(&body).and_then(|()| encoder.finish()) {
            Ok(gzipped) => gzipped,
            Err(_) => body,
        }
    }

    async fn post(&self, body: Vec<u8>) -> Outcome {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/x-protobuf");
        if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            // Connection refused, reset, timed out: the server is not there yet.
            Err(_) => return Outcome::Retry(None),
        };
        let outcome = classify(response.status(), response.headers());
        if outcome == Outcome::Delivered {
            // Records the server read but would not take are gone for good.
            if let Ok(bytes) = response.bytes().await
                && let Ok(answer) = ExportLogsServiceResponse::decode(bytes)
                && let Some(partial) = answer.partial_success
            {
                let rejected = u64::try_from(partial.rejected_log_records).unwrap_or(0);
                if rejected > 0 {
                    m::layer_events_dropped("rejected", rejected);
                }
            }
        }
        outcome
    }
}

/// The one place that decides what an answer means (OTLP/HTTP: clients
/// retry only 429, 502, 503 and 504).
fn classify(status: StatusCode, headers: &HeaderMap) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered;
    }
    match status {
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Outcome::Retry(retry_after(headers)),
        other => Outcome::Rejected(other),
    }
}

/// `Retry-After` in seconds, capped; the HTTP-date form falls back to the
/// backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

fn logs_url(endpoint: &str) -> Result<reqwest::Url, ForwardError> {
    let invalid = |reason: String| ForwardError::InvalidEndpoint {
        url: endpoint.to_owned(),
        reason,
    };
    let base = reqwest::Url::parse(endpoint).map_err(|e| invalid(e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(invalid(format!("scheme {:?}", base.scheme())));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(invalid(
            "a query or fragment has no place in an endpoint".to_owned(),
        ));
    }
    let path = format!("{}/v1/logs", base.path().trim_end_matches('/'));
    let mut url = base;
    url.set_path(&path);
    Ok(url)
}

/// Bytes a record adds to a request, roughly: its texts plus a per-field overhead.
fn approx_size(r: &EventRecord) -> usize {
    const PER_FIELD: usize = 16;
    let pairs = r.fields.iter().chain(&r.labels);
    r.message.len()
        + r.target.len()
        + pairs
            .map(|(k, v)| k.len() + v.len() + PER_FIELD)
            .sum::<usize>()
        + r.spans
            .iter()
            .map(|s| s.name.len() + PER_FIELD)
            .sum::<usize>()
        + 64
}

/// OTLP severity number of a level: the first of its four steps.
fn severity_number(level: Level) -> i32 {
    match level {
        Level::ERROR => 17,
        Level::WARN => 13,
        Level::INFO => 9,
        Level::DEBUG => 5,
        Level::TRACE => 1,
    }
}

fn string_value(s: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn attribute(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: string_value(value),
    }
}

/// One `ExportLogsServiceRequest`: one resource (the service), one scope
/// per target, records in batch order within each scope.
fn export_request<'a>(
    service: Option<&str>,
    records: impl Iterator<Item = &'a EventRecord>,
) -> ExportLogsServiceRequest {
    let mut scopes: Vec<ScopeLogs> = Vec::new();
    for record in records {
        let log = log_record(record);
        match scopes.iter_mut().find(|s| {
            s.scope
                .as_ref()
                .is_some_and(|scope| scope.name == record.target)
        }) {
            Some(scope) => scope.log_records.push(log),
            None => scopes.push(ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: record.target.clone().into_owned(),
                    ..InstrumentationScope::default()
                }),
                log_records: vec![log],
                ..ScopeLogs::default()
            }),
        }
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: service
                    .map(|s| attribute("service.name", s))
                    .into_iter()
                    .collect(),
                ..Resource::default()
            }),
            scope_logs: scopes,
            ..ResourceLogs::default()
        }],
    }
}

fn log_record(r: &EventRecord) -> LogRecord {
    let mut attributes: Vec<KeyValue> = r.fields.iter().map(|(k, v)| attribute(k, v)).collect();
    for (name, value) in &r.labels {
        // `service` travels as the resource, `alertname` as the event name,
        // and a label taken from an event field is already there.
        let known = matches!(*name, "service" | "alertname")
            || r.fields.iter().any(|(field, _)| field == name);
        if !known {
            attributes.push(attribute(name, value));
        }
    }
    if let Some(file) = r.file {
        attributes.push(attribute("code.filepath", file));
    }
    if let Some(line) = r.line {
        attributes.push(KeyValue {
            key: "code.lineno".to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(i64::from(line))),
            }),
        });
    }
    if !r.spans.is_empty() {
        attributes.push(attribute("ackbar.spans", r.span_context()));
    }
    attributes.push(attribute(GROUP_ATTRIBUTE, format!("{:016x}", r.group_key)));
    // Which attributes are labels, so the server's routes see what an
    // embedded bridge would.
    let labels: Vec<&str> = r
        .labels
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !matches!(*name, "service" | "alertname"))
        .collect();
    if !labels.is_empty() {
        attributes.push(attribute(LABELS_ATTRIBUTE, labels.join(",")));
    }
    LogRecord {
        time_unix_nano: r
            .time
            .timestamp_nanos_opt()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        severity_number: severity_number(r.level),
        severity_text: r.level.as_str().to_owned(),
        body: (!r.message.is_empty())
            .then(|| string_value(r.message.as_str()))
            .flatten(),
        attributes,
        event_name: r.alertname(),
        ..LogRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::ingest::layer::SpanRecord;

    fn record(message: &str) -> EventRecord {
        EventRecord {
            time: chrono::DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
            level: Level::ERROR,
            target: Cow::Borrowed("shop::payment"),
            file: Some("src/payment.rs"),
            line: Some(42),
            message: message.to_owned(),
            fields: vec![("user_id", "42".to_owned())],
            spans: vec![SpanRecord {
                name: "checkout",
                fields: vec![("order", "7".to_owned())],
            }],
            labels: vec![
                ("service", "shop".to_owned()),
                ("order", "7".to_owned()),
                ("user_id", "42".to_owned()),
            ],
            group_key: 0xabcdef,
        }
    }

    fn buffer(capacity: usize) -> Buffer {
        Buffer {
            records: VecDeque::new(),
            capacity,
            evicted: 0,
            closing: None,
        }
    }

    fn messages(b: &Buffer) -> Vec<&str> {
        b.records.iter().map(|r| r.message.as_str()).collect()
    }

    #[test]
    fn log_record_carries_the_record_as_ackbar_serve_reads_it() {
        let log = log_record(&record("payment failed"));
        assert_eq!(log.severity_number, 17);
        assert_eq!(log.severity_text, "ERROR");
        assert_eq!(log.time_unix_nano, 1_700_000_000_000_000_005);
        assert_eq!(log.body, string_value("payment failed"));
        assert_eq!(log.event_name, "payment failed");
        let attrs: Vec<(&str, Option<&any_value::Value>)> = log
            .attributes
            .iter()
            .map(|kv| {
                (
                    kv.key.as_str(),
                    kv.value.as_ref().and_then(|v| v.value.as_ref()),
                )
            })
            .collect();
        let s = |v: &str| Some(any_value::Value::StringValue(v.to_owned()));
        assert_eq!(
            attrs,
            vec![
                ("user_id", s("42").as_ref()),
                ("order", s("7").as_ref()),
                ("code.filepath", s("src/payment.rs").as_ref()),
                ("code.lineno", Some(&any_value::Value::IntValue(42))),
                ("ackbar.spans", s("checkout{order=7}").as_ref()),
                ("ackbar.group", s("0000000000abcdef").as_ref()),
                ("ackbar.labels", s("order,user_id").as_ref()),
            ]
        );
    }

    #[test]
    fn severity_numbers_are_the_first_step_of_each_level() {
        let numbers: Vec<i32> = [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ]
        .into_iter()
        .map(severity_number)
        .collect();
        assert_eq!(numbers, vec![17, 13, 9, 5, 1]);
    }

    #[test]
    fn export_request_has_the_service_as_resource_and_a_scope_per_target() {
        let a = record("a");
        let mut b = record("b");
        b.target = Cow::Borrowed("shop::db");
        let c = record("c");
        let request = export_request(Some("shop"), [&a, &b, &c].into_iter());
        let resource = &request.resource_logs[0];
        assert_eq!(
            resource.resource.as_ref().unwrap().attributes,
            vec![attribute("service.name", "shop")]
        );
        let scopes: Vec<(&str, usize)> = resource
            .scope_logs
            .iter()
            .map(|s| (s.scope.as_ref().unwrap().name.as_str(), s.log_records.len()))
            .collect();
        assert_eq!(scopes, vec![("shop::payment", 2), ("shop::db", 1)]);
        let decoded = ExportLogsServiceRequest::decode(request.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, request);
    }

    #[test]
    fn retries_only_429_502_503_504_and_honours_retry_after() {
        let mut headers = HeaderMap::new();
        assert_eq!(classify(StatusCode::OK, &headers), Outcome::Delivered);
        for status in [400, 401, 404, 413, 500] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(classify(status, &headers), Outcome::Rejected(status));
        }
        for status in [429, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(classify(status, &headers), Outcome::Retry(None));
        }
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers),
            Outcome::Retry(Some(Duration::from_secs(3)))
        );
        headers.insert(RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn buffer_evicts_the_oldest_past_its_capacity_and_retries_in_order() {
        let mut b = buffer(3);
        b.push(["a", "b"].map(record));
        let in_flight = b.take_batch();
        b.push(["c", "d", "e"].map(record));
        assert_eq!(messages(&b), vec!["c", "d", "e"]);
        // The failed batch is older than everything buffered: it goes first.
        b.requeue(in_flight);
        assert_eq!(messages(&b), vec!["c", "d", "e"]);
        assert_eq!(b.evicted, 2);
        b.push(["f"].map(record));
        assert_eq!(messages(&b), vec!["d", "e", "f"]);
        assert_eq!(b.evicted, 3);

        let mut b = buffer(10);
        b.push(["a", "b"].map(record));
        let in_flight = b.take_batch();
        b.push(["c"].map(record));
        b.requeue(in_flight);
        assert_eq!(messages(&b), vec!["a", "b", "c"]);
    }

    #[test]
    fn batches_stop_at_the_request_size() {
        let mut b = buffer(100);
        let big = "x".repeat(MAX_REQUEST_BYTES / 3);
        b.push((0..5).map(|_| record(&big)));
        assert_eq!(b.take_batch().len(), 2);
        assert_eq!(b.records.len(), 3);
    }

    #[test]
    fn endpoints_become_their_logs_url() {
        let url = |e: &str| logs_url(e).map(|u| u.to_string());
        assert_eq!(
            url("http://127.0.0.1:9094").unwrap(),
            "http://127.0.0.1:9094/v1/logs"
        );
        assert_eq!(
            url("https://a.example/ackbar/").unwrap(),
            "https://a.example/ackbar/v1/logs"
        );
        assert!(url("127.0.0.1:9094").is_err());
        assert!(url("ftp://a.example").is_err());
        assert!(url("http://a.example/?x=1").is_err());
    }
}
