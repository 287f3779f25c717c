//! What log records and spans have in common on their way to alerts:
//! attribute values as text, labels from configured attributes, the
//! `details` annotation, timestamps, and merging records into alerts.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::proto::{AnyValue, InstrumentationScope, KeyValue, Resource, any_value::Value};
use super::{Decoded, MAX_ALERTS, MAX_DETAILS_CHARS, MAX_LABEL_VALUE_CHARS};
use crate::ingest::truncate_chars;
use crate::model::{Alert, Fingerprint, Labels, Notification, OtlpSignal, Source};

/// The resource attribute that names the service.
pub const SERVICE_NAME: &str = "service.name";

/// Collects the alerts of one request, merging records with the same
/// fingerprint, and counts what was rejected.
pub struct AlertSet {
    signal: OtlpSignal,
    alerts: Vec<Alert>,
    index: HashMap<Fingerprint, usize>,
    records: u64,
    rejected: u64,
    first_rejection: Option<String>,
}

impl AlertSet {
    pub fn new(signal: OtlpSignal, records: u64) -> AlertSet {
        AlertSet {
            signal,
            alerts: Vec::new(),
            index: HashMap::new(),
            records,
            rejected: 0,
            first_rejection: None,
        }
    }

    /// Rejects one record; `at` gives its path in the request (only asked
    /// for the first rejection).
    pub fn reject(&mut self, at: impl FnOnce() -> String, reason: &str) {
        self.rejected += 1;
        if self.first_rejection.is_none() {
            self.first_rejection = Some(format!("{}: {reason}", at()));
        }
    }

    /// Adds one record's alert, or merges it into the alert with its
    /// fingerprint: one more occurrence, the earliest start, the latest
    /// sighting; the first record's labels and annotations stay.
    pub fn add(&mut self, alert: Alert, at: impl FnOnce() -> String) {
        if let Some(&i) = self.index.get(&alert.fingerprint) {
            let existing = &mut self.alerts[i];
            existing.starts_at = existing.starts_at.min(alert.starts_at);
            if let (Some(have), Some(new)) = (&mut existing.occurrences, alert.occurrences) {
                have.count += new.count;
                have.last_seen = have.last_seen.max(new.last_seen);
            }
            return;
        }
        if self.alerts.len() >= MAX_ALERTS {
            self.reject(
                at,
                &format!("more than {MAX_ALERTS} distinct alerts in one request"),
            );
            return;
        }
        self.index.insert(alert.fingerprint, self.alerts.len());
        self.alerts.push(alert);
    }

    pub fn finish(self) -> Decoded {
        let what = match self.signal {
            OtlpSignal::Logs => "log records",
            OtlpSignal::Traces => "spans",
        };
        let rejection = self.first_rejection.map(|first| {
            format!(
                "rejected {} of {} {what}; the first: {first}",
                self.rejected, self.records
            )
        });
        Decoded {
            signal: self.signal,
            notification: Notification {
                source: Source::Otlp {
                    signal: self.signal,
                },
                group_labels: Labels::new(),
                common_labels: Labels::new(),
                common_annotations: Labels::new(),
                alerts: self.alerts,
                truncated_alerts: 0,
            },
            records: self.records,
            rejected: self.rejected,
            rejection,
        }
    }
}

/// Where a record came from: its resource and scope.
#[derive(Clone, Copy)]
pub struct Origin<'a> {
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
}

impl<'a> Origin<'a> {
    pub fn new(resource: Option<&'a Resource>, scope: Option<&'a InstrumentationScope>) -> Self {
        Origin {
            resource: resource.map_or(&[], |r| r.attributes.as_slice()),
            scope,
        }
    }

    pub fn service(&self) -> Option<&'a str> {
        string_attribute(self.resource, SERVICE_NAME).filter(|s| !s.is_empty())
    }

    fn scope_attributes(&self) -> &'a [KeyValue] {
        self.scope.map_or(&[], |s| s.attributes.as_slice())
    }

    /// Labels every alert gets: `alertname`, `severity`, `service` and
    /// `scope` when known, and the configured attributes found on the
    /// record, its scope or its resource (in that order).
    pub fn labels(
        &self,
        alertname: &str,
        severity: &str,
        record: &[KeyValue],
        label_attributes: &[String],
    ) -> Labels {
        let mut labels = Labels::new();
        for key in label_attributes {
            let value = [record, self.scope_attributes(), self.resource]
                .into_iter()
                .find_map(|attributes| find_attribute(attributes, key));
            if let Some(value) = value.map(text).filter(|v| !v.is_empty()) {
                labels.insert(
                    label_name(key),
                    truncate_chars(&value, MAX_LABEL_VALUE_CHARS),
                );
            }
        }
        let mut set = |name: &str, value: &str| {
            labels.insert(
                name.to_owned(),
                truncate_chars(value, MAX_LABEL_VALUE_CHARS),
            );
        };
        set("alertname", alertname);
        set("severity", severity);
        if let Some(service) = self.service() {
            set("service", service);
        }
        if let Some(scope) = self.scope.filter(|s| !s.name.is_empty()) {
            set("scope", &scope.name);
        }
        labels
    }

    /// Appends the scope's and resource's attributes to `details`, except
    /// `service.name` (a label) and those copied into labels.
    pub fn details(&self, details: &mut Details, label_attributes: &[String]) {
        details.attributes(self.scope_attributes(), label_attributes);
        for kv in self.resource.iter().filter(|kv| kv.key != SERVICE_NAME) {
            details.attribute(kv, label_attributes);
        }
    }
}

/// The `details` annotation: `key: value` lines, cut at
/// [`MAX_DETAILS_CHARS`].
#[derive(Default)]
pub struct Details {
    text: String,
    chars: usize,
    full: bool,
}

impl Details {
    pub fn line(&mut self, key: &str, value: &str) {
        if self.full {
            return;
        }
        let line = format!("{key}: {value}\n");
        let len = line.chars().count();
        if self.chars + len > MAX_DETAILS_CHARS {
            // What fits, with one character left for the `…` marking the cut.
            if let Some(room) = (MAX_DETAILS_CHARS - self.chars).checked_sub(1) {
                self.text.push_str(&truncate_chars(&line, room));
            }
            self.full = true;
            return;
        }
        self.chars += len;
        self.text.push_str(&line);
    }

    /// One line per attribute, except those copied into labels and the
    /// forwarding Layer's own (`ackbar.group`, `ackbar.labels`).
    pub fn attributes(&mut self, attributes: &[KeyValue], label_attributes: &[String]) {
        for kv in attributes {
            self.attribute(kv, label_attributes);
        }
    }

    fn attribute(&mut self, kv: &KeyValue, label_attributes: &[String]) {
        if [super::GROUP_ATTRIBUTE, super::LABELS_ATTRIBUTE].contains(&kv.key.as_str())
            || label_attributes.contains(&kv.key)
        {
            return;
        }
        let value = kv.value.as_ref().map(text).unwrap_or_default();
        self.line(&kv.key, &value);
    }

    pub fn finish(self) -> String {
        self.text.trim_end().to_owned()
    }
}

/// The attribute `key`, if present.
pub fn find_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// The attribute `key` if it is a string.
pub fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match find_attribute(attributes, key)?.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// A value as text: strings as they are, numbers and booleans as written,
/// bytes as hex, lists and maps in a JSON-like form.
pub fn text(value: &AnyValue) -> String {
    let mut out = String::new();
    write_text(value, &mut out, false);
    out
}

fn write_text(value: &AnyValue, out: &mut String, nested: bool) {
    // `write!` into a String cannot fail.
    let _ = match &value.value {
        None => Ok(()),
        Some(Value::StringValue(s)) if nested => write!(out, "{s:?}"),
        Some(Value::StringValue(s)) => {
            out.push_str(s);
            Ok(())
        }
        Some(Value::BoolValue(b)) => write!(out, "{b}"),
        Some(Value::IntValue(i)) => write!(out, "{i}"),
        Some(Value::DoubleValue(d)) => write!(out, "{d}"),
        Some(Value::BytesValue(b)) => {
            out.push_str(&hex(b));
            Ok(())
        }
        Some(Value::ArrayValue(array)) => {
            out.push('[');
            for (i, item) in array.values.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_text(item, out, true);
            }
            out.push(']');
            Ok(())
        }
        Some(Value::KvlistValue(list)) => {
            out.push('{');
            for (i, kv) in list.values.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{:?}: ", kv.key);
                if let Some(v) = &kv.value {
                    write_text(v, out, true);
                }
            }
            out.push('}');
            Ok(())
        }
    };
}

/// An attribute key as a label name route matchers accept: every character
/// other than `[A-Za-z0-9_]` becomes `_`, and a leading digit gets a `_`
/// in front.
pub fn label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The first of `times` (Unix nanoseconds, 0 = unknown) that is known,
/// else `now`.
pub fn first_known_time(times: &[u64], now: DateTime<Utc>) -> DateTime<Utc> {
    times
        .iter()
        .filter(|&&t| t != 0)
        .find_map(|&t| i64::try_from(t).ok())
        .map_or(now, DateTime::from_timestamp_nanos)
}

/// `otlp.traces.trace_url` with `{trace_id}`, `{span_id}` and `{service}`
/// filled in (ids as hex, the service percent-encoded).
pub fn trace_link(
    template: &str,
    trace_id: &[u8],
    span_id: &[u8],
    service: Option<&str>,
) -> String {
    template
        .replace("{trace_id}", &hex(trace_id))
        .replace("{span_id}", &hex(span_id))
        .replace("{service}", &percent_encode(service.unwrap_or_default()))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Whether an id is present and not all zeros (OTLP's invalid id).
pub fn is_valid_id(id: &[u8]) -> bool {
    id.iter().any(|&b| b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::otlp::proto::{ArrayValue, KeyValueList};

    fn string(s: &str) -> AnyValue {
        AnyValue {
            value: Some(Value::StringValue(s.to_owned())),
        }
    }

    #[test]
    fn values_render_as_readable_text() {
        let list = AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "tags".into(),
                    value: Some(AnyValue {
                        value: Some(Value::ArrayValue(ArrayValue {
                            values: vec![
                                string("a"),
                                AnyValue {
                                    value: Some(Value::IntValue(-3)),
                                },
                            ],
                        })),
                    }),
                }],
            })),
        };
        assert_eq!(text(&list), r#"{"tags": ["a", -3]}"#);
        assert_eq!(text(&string("plain")), "plain");
        let bytes = AnyValue {
            value: Some(Value::BytesValue(vec![0xde, 0xad])),
        };
        assert_eq!(text(&bytes), "dead");
    }

    #[test]
    fn attribute_keys_become_matchable_label_names() {
        assert_eq!(
            label_name("deployment.environment"),
            "deployment_environment"
        );
        assert_eq!(label_name("k8s.pod-name"), "k8s_pod_name");
        assert_eq!(label_name("1st"), "_1st");
    }

    #[test]
    fn trace_links_fill_every_placeholder() {
        let url = trace_link(
            "https://jaeger.example/trace/{trace_id}?span={span_id}&svc={service}",
            &[0xab; 16],
            &[0x01; 8],
            Some("check out"),
        );
        assert_eq!(
            url,
            format!(
                "https://jaeger.example/trace/{}?span=0101010101010101&svc=check%20out",
                "ab".repeat(16)
            )
        );
    }

    #[test]
    fn details_stop_at_the_cap() {
        let mut details = Details::default();
        for i in 0..1000 {
            details.line(&format!("key{i}"), "some value that takes room");
        }
        let text = details.finish();
        assert!(text.chars().count() <= MAX_DETAILS_CHARS, "{}", text.len());
        assert!(text.ends_with('…'), "{text}");
        assert!(text.starts_with("key0: some value"), "{text}");
    }

    #[test]
    fn unknown_times_fall_back_in_order() {
        let now = Utc::now();
        assert_eq!(first_known_time(&[0, 0], now), now);
        assert_eq!(
            first_known_time(&[0, 1_700_000_000_000_000_000], now).timestamp(),
            1_700_000_000
        );
    }
}
