//! Log records into alerts (see the parent module for the rules).

use chrono::{DateTime, Utc};

use super::alerts::{
    AlertSet, Details, Origin, first_known_time, hex, is_valid_id, string_attribute, text,
    trace_link,
};
use super::proto::{ExportLogsServiceRequest, LogRecord};
use super::{Decoded, GROUP_ATTRIBUTE, LABELS_ATTRIBUTE, MAX_ALERTNAME_CHARS, MAX_SUMMARY_CHARS};
use crate::config::OtlpConfig;
use crate::ingest::alertmanager::fingerprint;
use crate::ingest::truncate_chars;
use crate::model::{Alert, AlertStatus, Fingerprint, Fnv64, Labels, Occurrences, OtlpSignal};

/// Highest `severityNumber` (FATAL4).
const MAX_SEVERITY_NUMBER: i32 = 24;

pub fn record_count(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

pub fn to_alerts(
    request: ExportLogsServiceRequest,
    config: &OtlpConfig,
    now: DateTime<Utc>,
) -> Decoded {
    let mut set = AlertSet::new(OtlpSignal::Logs, record_count(&request) as u64);
    for (i, resource_logs) in request.resource_logs.iter().enumerate() {
        for (j, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            let origin = Origin::new(resource_logs.resource.as_ref(), scope_logs.scope.as_ref());
            for (k, record) in scope_logs.log_records.iter().enumerate() {
                let at = || format!("resourceLogs[{i}].scopeLogs[{j}].logRecords[{k}]");
                match alert(record, origin, config, now) {
                    Ok(Some(alert)) => set.add(alert, at),
                    Ok(None) => {}
                    Err(reason) => set.reject(at, &reason),
                }
            }
        }
    }
    set.finish()
}

/// The record's alert; `None` when it is below the severity threshold;
/// `Err` with the reason when it is rejected.
fn alert(
    record: &LogRecord,
    origin: Origin,
    config: &OtlpConfig,
    now: DateTime<Utc>,
) -> Result<Option<Alert>, String> {
    if !(record.trace_id.is_empty() || record.trace_id.len() == 16) {
        return Err(format!(
            "traceId is {} bytes; trace ids are 16 bytes (or absent)",
            record.trace_id.len()
        ));
    }
    if !(record.span_id.is_empty() || record.span_id.len() == 8) {
        return Err(format!(
            "spanId is {} bytes; span ids are 8 bytes (or absent)",
            record.span_id.len()
        ));
    }
    let number = match record.severity_number {
        0 => severity_number_from_text(&record.severity_text),
        n @ 1..=MAX_SEVERITY_NUMBER => Some(n),
        n => return Err(format!("severityNumber {n} is outside 0-24")),
    };
    let Some(number) = number.filter(|&n| n >= config.logs.min_severity) else {
        return Ok(None);
    };

    let body = record.body.as_ref().map(text).unwrap_or_default();
    let alertname = if record.event_name.is_empty() {
        let first_line = body.lines().map(str::trim).find(|l| !l.is_empty());
        truncate_chars(first_line.unwrap_or_default(), MAX_ALERTNAME_CHARS)
    } else {
        record.event_name.clone()
    };
    if alertname.is_empty() {
        return Err("the record has neither an eventName nor a body to name the alert".to_owned());
    }

    // Attributes the forwarding Layer made labels, besides the configured.
    let mut forwarded_labels: Vec<String> = string_attribute(&record.attributes, LABELS_ATTRIBUTE)
        .map(|names| {
            names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let label_attributes = if forwarded_labels.is_empty() {
        &config.logs.label_attributes
    } else {
        forwarded_labels.extend(config.logs.label_attributes.iter().cloned());
        &forwarded_labels
    };
    let labels = origin.labels(
        &alertname,
        severity_label(number),
        &record.attributes,
        label_attributes,
    );
    let fingerprint = match string_attribute(&record.attributes, GROUP_ATTRIBUTE) {
        Some(group) => group_fingerprint(labels.get("service").map(String::as_str), group),
        None => fingerprint(&labels),
    };

    let mut details = Details::default();
    let severity_text = if record.severity_text.is_empty() {
        String::new()
    } else {
        format!("{} ", record.severity_text)
    };
    details.line("severity", &format!("{severity_text}({number})"));
    details.attributes(&record.attributes, label_attributes);
    if is_valid_id(&record.trace_id) {
        details.line("trace_id", &hex(&record.trace_id));
    }
    if is_valid_id(&record.span_id) {
        details.line("span_id", &hex(&record.span_id));
    }
    origin.details(&mut details, label_attributes);

    let summary = if body.is_empty() { &alertname } else { &body };
    let annotations = Labels::from([
        (
            "summary".to_owned(),
            truncate_chars(summary, MAX_SUMMARY_CHARS),
        ),
        ("details".to_owned(), details.finish()),
    ]);
    let generator_url = config
        .traces
        .trace_url
        .as_deref()
        .filter(|_| is_valid_id(&record.trace_id))
        .map(|template| {
            trace_link(
                template,
                &record.trace_id,
                &record.span_id,
                origin.service(),
            )
        });
    let at = first_known_time(
        &[record.time_unix_nano, record.observed_time_unix_nano],
        now,
    );
    Ok(Some(Alert {
        fingerprint,
        status: AlertStatus::Firing,
        labels,
        annotations,
        starts_at: at,
        ends_at: None,
        generator_url,
        occurrences: Some(Occurrences {
            count: 1,
            last_seen: at,
        }),
    }))
}

/// The fingerprint of explicitly grouped records: FNV-1a over
/// `ackbar.group`, the service name and the group value, each followed by
/// 0xff, so it cannot equal a label-set fingerprint by construction of
/// its input.
fn group_fingerprint(service: Option<&str>, group: &str) -> Fingerprint {
    let mut h = Fnv64::new();
    for part in [GROUP_ATTRIBUTE, service.unwrap_or_default(), group] {
        h.write(part.as_bytes());
        h.write(&[0xff]);
    }
    Fingerprint(h.finish())
}

/// The `severity` label for a severity number.
fn severity_label(number: i32) -> &'static str {
    match number {
        21.. => "critical",
        17..=20 => "error",
        13..=16 => "warning",
        _ => "info",
    }
}

/// A severity name as a severity number: `TRACE` 1, `DEBUG` 5, `INFO` 9,
/// `WARN` 13, `ERROR` 17, `FATAL` 21, case-insensitive, with the usual
/// synonyms (`warning`, `err`, `critical`, ...) and an optional step
/// `2`-`4` (`ERROR2` is 18). `None` for anything else.
pub fn severity_number_from_text(text: &str) -> Option<i32> {
    let text = text.trim().to_ascii_uppercase();
    let (name, step) = match text.as_bytes().last() {
        Some(d @ b'2'..=b'4') => (&text[..text.len() - 1], i32::from(d - b'1')),
        _ => (text.as_str(), 0),
    };
    let base = match name {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" | "INFORMATION" | "NOTICE" => 9,
        "WARN" | "WARNING" => 13,
        "ERROR" | "ERR" => 17,
        "FATAL" | "CRITICAL" | "CRIT" | "PANIC" | "EMERGENCY" | "ALERT" => 21,
        _ => return None,
    };
    Some(base + step)
}
