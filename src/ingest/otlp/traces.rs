//! Spans into alerts (see the parent module for the rules).

use chrono::{DateTime, Utc};

use super::alerts::{
    AlertSet, Details, Origin, find_attribute, first_known_time, hex, is_valid_id, text, trace_link,
};
use super::proto::{ExportTraceServiceRequest, Span, span::SpanKind, status::StatusCode};
use super::{Decoded, MAX_SUMMARY_CHARS};
use crate::config::OtlpConfig;
use crate::ingest::alertmanager::fingerprint;
use crate::ingest::truncate_chars;
use crate::model::{Alert, AlertStatus, Labels, Occurrences, OtlpSignal};

/// The span event name under which the semantic conventions record
/// exceptions (`exception.type`, `exception.message`, ...).
const EXCEPTION_EVENT: &str = "exception";

pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

pub fn to_alerts(
    request: ExportTraceServiceRequest,
    config: &OtlpConfig,
    now: DateTime<Utc>,
) -> Decoded {
    let mut set = AlertSet::new(OtlpSignal::Traces, span_count(&request) as u64);
    for (i, resource_spans) in request.resource_spans.iter().enumerate() {
        for (j, scope_spans) in resource_spans.scope_spans.iter().enumerate() {
            let origin = Origin::new(resource_spans.resource.as_ref(), scope_spans.scope.as_ref());
            for (k, span) in scope_spans.spans.iter().enumerate() {
                let at = || format!("resourceSpans[{i}].scopeSpans[{j}].spans[{k}]");
                match alert(span, origin, config, now) {
                    Ok(Some(alert)) => set.add(alert, at),
                    Ok(None) => {}
                    Err(reason) => set.reject(at, &reason),
                }
            }
        }
    }
    set.finish()
}

/// The span's alert; `None` unless its status is ERROR; `Err` with the
/// reason when it is rejected.
fn alert(
    span: &Span,
    origin: Origin,
    config: &OtlpConfig,
    now: DateTime<Utc>,
) -> Result<Option<Alert>, String> {
    if span.trace_id.len() != 16 || !is_valid_id(&span.trace_id) {
        return Err(format!(
            "traceId is {} bytes{}; span trace ids are 16 bytes, not all zero",
            span.trace_id.len(),
            if span.trace_id.len() == 16 {
                " of zeros"
            } else {
                ""
            }
        ));
    }
    if span.span_id.len() != 8 || !is_valid_id(&span.span_id) {
        return Err(format!(
            "spanId is {} bytes{}; span ids are 8 bytes, not all zero",
            span.span_id.len(),
            if span.span_id.len() == 8 {
                " of zeros"
            } else {
                ""
            }
        ));
    }
    if !(span.parent_span_id.is_empty() || span.parent_span_id.len() == 8) {
        return Err(format!(
            "parentSpanId is {} bytes; span ids are 8 bytes (or absent for a root span)",
            span.parent_span_id.len()
        ));
    }
    let (code, status_message) = span
        .status
        .as_ref()
        .map_or((0, ""), |s| (s.code, s.message.as_str()));
    if code != StatusCode::Error as i32 {
        return Ok(None);
    }
    if span.name.is_empty() {
        return Err("the span has status ERROR but no name to name the alert".to_owned());
    }

    let label_attributes = &config.traces.label_attributes;
    let labels = origin.labels(&span.name, "error", &span.attributes, label_attributes);
    let exception = span.events.iter().find(|e| e.name == EXCEPTION_EVENT);
    let exception_text = |key: &str| {
        exception
            .and_then(|e| find_attribute(&e.attributes, key))
            .map(text)
            .filter(|t| !t.is_empty())
    };

    let summary = if !status_message.is_empty() {
        status_message.to_owned()
    } else {
        match (
            exception_text("exception.type"),
            exception_text("exception.message"),
        ) {
            (Some(kind), Some(message)) => format!("{kind}: {message}"),
            (None, Some(message)) => message,
            _ => format!("span {} failed", span.name),
        }
    };

    let mut details = Details::default();
    details.line("kind", kind_name(span.kind));
    if span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0 {
        let micros = (span.end_time_unix_nano - span.start_time_unix_nano) / 1_000;
        details.line("duration", &format!("{:.3} ms", micros as f64 / 1_000.0));
    }
    details.attributes(&span.attributes, label_attributes);
    if let Some(exception) = exception {
        details.attributes(&exception.attributes, &[]);
    }
    details.line("trace_id", &hex(&span.trace_id));
    details.line("span_id", &hex(&span.span_id));
    if is_valid_id(&span.parent_span_id) {
        details.line("parent_span_id", &hex(&span.parent_span_id));
    }
    origin.details(&mut details, label_attributes);

    let at = first_known_time(&[span.end_time_unix_nano, span.start_time_unix_nano], now);
    Ok(Some(Alert {
        fingerprint: fingerprint(&labels),
        status: AlertStatus::Firing,
        labels,
        annotations: Labels::from([
            (
                "summary".to_owned(),
                truncate_chars(&summary, MAX_SUMMARY_CHARS),
            ),
            ("details".to_owned(), details.finish()),
        ]),
        starts_at: at,
        ends_at: None,
        generator_url: config
            .traces
            .trace_url
            .as_deref()
            .map(|template| trace_link(template, &span.trace_id, &span.span_id, origin.service())),
        occurrences: Some(Occurrences {
            count: 1,
            last_seen: at,
        }),
    }))
}

fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Internal) => "internal",
        Ok(SpanKind::Server) => "server",
        Ok(SpanKind::Client) => "client",
        Ok(SpanKind::Producer) => "producer",
        Ok(SpanKind::Consumer) => "consumer",
        Ok(SpanKind::Unspecified) | Err(_) => "unspecified",
    }
}
