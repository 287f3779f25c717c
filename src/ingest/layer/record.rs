//! [`EventRecord`]: one captured event, as every sink receives it, and how
//! it becomes an [`Alert`].

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use tracing::Level;

use super::capture::Captured;
use crate::model::{Alert, AlertStatus, Fingerprint, Fnv64, Labels, Occurrences};

/// Chars of the message's first line used as an `alertname`.
const MAX_ALERTNAME_CHARS: usize = 100;
/// The target of records the layer makes itself (drop reports).
pub const LAYER_TARGET: &str = "ackbar::layer";

/// One `tracing` event, copied and capped on the host's thread.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub time: DateTime<Utc>,
    pub level: Level,
    /// `Cow` because events bridged from the `log` crate carry their target
    /// as a field rather than in static metadata.
    pub target: Cow<'static, str>,
    pub file: Option<&'static str>,
    pub line: Option<u32>,
    pub message: String,
    /// Other fields in recording order, capped.
    pub fields: Vec<(&'static str, String)>,
    /// Enclosing spans, root first.
    pub spans: Vec<SpanRecord>,
    /// Labels chosen by the builder (service, selected event and span fields).
    pub labels: Vec<(&'static str, String)>,
    /// Equal keys are the same alert (see [`GroupBy`]).
    pub group_key: u64,
}

/// One enclosing span: its name and the span fields the builder asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    pub name: &'static str,
    pub fields: Vec<(&'static str, String)>,
}

/// Which events are occurrences of the same alert. Every variant also keys
/// on the service and the callsite (level, target, file, line), so two
/// call sites never share an alert.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GroupBy {
    /// Callsite and message text: `error!("payment failed")` and
    /// `error!("refund failed")` on one line of a loop are two alerts.
    #[default]
    CallsiteAndMessage,
    /// Callsite only, for messages that carry variable data (ids, addresses).
    /// The alert is named after the callsite.
    Callsite,
    /// Callsite and the values of these event fields (absent fields count
    /// as absent, not as empty). The alert is named after the callsite.
    Fields(Vec<&'static str>),
}

impl EventRecord {
    /// The alert this event is an occurrence of: firing, one occurrence at
    /// `time`, fingerprint = group key.
    pub fn to_alert(&self) -> Alert {
        let mut labels: Labels = self
            .labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        labels.insert("alertname".to_owned(), self.alertname());
        labels.insert("severity".to_owned(), severity(self.level).to_owned());
        labels.insert("target".to_owned(), self.target.clone().into_owned());

        let mut annotations = Labels::new();
        if !self.message.is_empty() {
            annotations.insert("summary".to_owned(), self.message.clone());
        }
        if let Some(location) = self.location() {
            annotations.insert("location".to_owned(), location);
        }
        let details = self.details();
        if !details.is_empty() {
            annotations.insert("details".to_owned(), details);
        }

        Alert {
            fingerprint: Fingerprint(self.group_key),
            status: AlertStatus::Firing,
            labels,
            annotations,
            starts_at: self.time,
            ends_at: None,
            generator_url: None,
            occurrences: Some(Occurrences {
                count: 1,
                last_seen: self.time,
            }),
        }
    }

    /// `file:line`, when the event knows its file.
    pub fn location(&self) -> Option<String> {
        let file = self.file?;
        Some(match self.line {
            Some(line) => format!("{file}:{line}"),
            None => file.to_owned(),
        })
    }

    /// The `alertname` label: the builder's (the callsite, when messages do
    /// not group), else the message's first line shortened, else the callsite.
    pub fn alertname(&self) -> String {
        if let Some((_, name)) = self.labels.iter().find(|(n, _)| *n == "alertname") {
            return name.clone();
        }
        let first_line = self.message.lines().next().unwrap_or("").trim();
        if first_line.is_empty() {
            return callsite_name(&self.target, self.file, self.line);
        }
        let mut name: String = first_line.chars().take(MAX_ALERTNAME_CHARS).collect();
        if first_line.chars().nth(MAX_ALERTNAME_CHARS).is_some() {
            name.push('…');
        }
        name
    }

    /// The fields, one `name = value` per line, then the span context as
    /// `in span checkout{order=7} > charge`.
    pub fn details(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.fields {
            let _ = writeln!(out, "{name} = {value}");
        }
        if !self.spans.is_empty() {
            let _ = write!(out, "in span {}", self.span_context());
        }
        out.truncate(out.trim_end().len());
        out
    }

    /// The enclosing spans, root first, with their fields:
    /// `checkout{order=7} > charge`.
    pub fn span_context(&self) -> String {
        let mut out = String::new();
        for (i, span) in self.spans.iter().enumerate() {
            if i > 0 {
                out.push_str(" > ");
            }
            out.push_str(span.name);
            if !span.fields.is_empty() {
                out.push('{');
                for (j, (name, value)) in span.fields.iter().enumerate() {
                    if j > 0 {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "{name}={value}");
                }
                out.push('}');
            }
        }
        out
    }
}

/// `ERROR` -> `error`, `WARN` -> `warning`, as the `severity` label.
fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// How a callsite is named where no message names it: `target at file:line`.
fn callsite_name(target: &str, file: Option<&str>, line: Option<u32>) -> String {
    match (file, line) {
        (Some(file), Some(line)) => format!("{target} at {file}:{line}"),
        (Some(file), None) => format!("{target} at {file}"),
        _ => target.to_owned(),
    }
}

/// Turns what the host's thread captured into [`EventRecord`]s: labels and
/// group keys are computed here, on the worker, off the hot path.
#[derive(Debug, Clone)]
pub(super) struct Recorder {
    pub service: Option<String>,
    pub label_fields: Vec<&'static str>,
    pub group_by: GroupBy,
}

impl Recorder {
    pub fn record(&self, c: Captured) -> EventRecord {
        let target = match c.log_target {
            Some(t) => Cow::Owned(t),
            None => Cow::Borrowed(c.meta.target()),
        };
        let mut record = EventRecord {
            time: c.time,
            level: *c.meta.level(),
            target,
            file: c.meta.file(),
            line: c.meta.line(),
            message: c.message,
            fields: c.fields,
            spans: c.spans,
            labels: Vec::new(),
            group_key: 0,
        };
        record.labels = self.labels(&record);
        record.group_key = self.group_key(&record);
        record
    }

    /// Service, then span fields (spans only keep the span label fields;
    /// the nearest span wins), then event label fields (which win over spans).
    fn labels(&self, r: &EventRecord) -> Vec<(&'static str, String)> {
        let mut labels = service_label(self.service.as_deref());
        let mut set =
            |name: &'static str, value: &str| match labels.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = value.to_owned(),
                None => labels.push((name, value.to_owned())),
            };
        for span in &r.spans {
            for (name, value) in &span.fields {
                set(name, value);
            }
        }
        for (name, value) in &r.fields {
            if self.label_fields.contains(name) {
                set(name, value);
            }
        }
        if self.group_by != GroupBy::CallsiteAndMessage {
            set("alertname", &callsite_name(&r.target, r.file, r.line));
        }
        labels
    }

    fn group_key(&self, r: &EventRecord) -> u64 {
        let mut h = identity(self.service.as_deref(), r);
        match &self.group_by {
            GroupBy::CallsiteAndMessage => {
                h.write(&[1]);
                h.write(r.message.as_bytes());
            }
            GroupBy::Callsite => h.write(&[2]),
            GroupBy::Fields(names) => {
                h.write(&[3]);
                for name in names {
                    h.write(name.as_bytes());
                    match r.fields.iter().find(|(n, _)| n == name) {
                        Some((_, value)) => {
                            h.write(&[0xfe]);
                            h.write(value.as_bytes());
                        }
                        None => h.write(&[0xfd]),
                    }
                    h.write(&[0xff]);
                }
            }
        }
        h.finish()
    }
}

/// Service and callsite, hashed with separators no UTF-8 text contains, so
/// the key is the same in every process and every build that keeps the
/// call where it is.
fn identity(service: Option<&str>, r: &EventRecord) -> Fnv64 {
    let mut h = Fnv64::new();
    for part in [
        service.unwrap_or(""),
        r.level.as_str(),
        &r.target,
        r.file.unwrap_or(""),
    ] {
        h.write(part.as_bytes());
        h.write(&[0xff]);
    }
    h.write(&r.line.unwrap_or(0).to_le_bytes());
    h
}

fn service_label(service: Option<&str>) -> Vec<(&'static str, String)> {
    service
        .iter()
        .map(|s| ("service", (*s).to_owned()))
        .collect()
}

/// The layer's report of events it had to drop, as an error of its own:
/// one alert per reason (a fixed key) that counts up.
pub(super) fn dropped_report(service: Option<&str>, count: u64, reason: DropReason) -> EventRecord {
    let mut record = EventRecord {
        time: Utc::now(),
        level: Level::ERROR,
        target: Cow::Borrowed(LAYER_TARGET),
        file: None,
        line: None,
        message: format!("{count} events dropped: {}", reason.explanation()),
        fields: Vec::new(),
        spans: Vec::new(),
        labels: service_label(service),
        group_key: 0,
    };
    let mut h = identity(service, &record);
    h.write(reason.key().as_bytes());
    record.group_key = h.finish();
    record
}

/// Why the layer dropped events; each reason is one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DropReason {
    QueueFull,
    #[cfg(feature = "forward")]
    ForwardBufferFull,
}

impl DropReason {
    fn key(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            #[cfg(feature = "forward")]
            DropReason::ForwardBufferFull => "forward_buffer_full",
        }
    }

    fn explanation(self) -> &'static str {
        match self {
            DropReason::QueueFull => "the ackbar queue was full",
            #[cfg(feature = "forward")]
            DropReason::ForwardBufferFull => {
                "the ackbar forwarding buffer was full (server unreachable)"
            }
        }
    }

    /// The `reason` label of [`crate::metrics::LAYER_EVENTS_DROPPED`].
    pub fn metric_label(self) -> &'static str {
        self.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> EventRecord {
        EventRecord {
            time: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            level: Level::ERROR,
            target: Cow::Borrowed("shop::payment"),
            file: Some("src/payment.rs"),
            line: Some(42),
            message: "payment failed\nbacktrace follows".to_owned(),
            fields: vec![("user_id", "42".to_owned()), ("card", "visa".to_owned())],
            spans: vec![
                SpanRecord {
                    name: "checkout",
                    fields: vec![("order", "7".to_owned())],
                },
                SpanRecord {
                    name: "charge",
                    fields: vec![],
                },
            ],
            labels: vec![("service", "shop".to_owned()), ("order", "7".to_owned())],
            group_key: 0xabcd,
        }
    }

    fn recorder(group_by: GroupBy) -> Recorder {
        Recorder {
            service: Some("shop".to_owned()),
            label_fields: vec!["card"],
            group_by,
        }
    }

    #[test]
    fn to_alert_names_the_alert_after_the_first_line_and_fills_annotations() {
        let r = record();
        let alert = r.to_alert();
        assert_eq!(alert.fingerprint, Fingerprint(0xabcd));
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(alert.labels["alertname"], "payment failed");
        assert_eq!(alert.labels["severity"], "error");
        assert_eq!(alert.labels["target"], "shop::payment");
        assert_eq!(alert.labels["service"], "shop");
        assert_eq!(alert.labels["order"], "7");
        assert_eq!(alert.annotations["summary"], r.message);
        assert_eq!(alert.annotations["location"], "src/payment.rs:42");
        assert_eq!(
            alert.annotations["details"],
            "user_id = 42\ncard = visa\nin span checkout{order=7} > charge"
        );
        assert_eq!(alert.starts_at, r.time);
        assert_eq!(
            alert.occurrences,
            Some(Occurrences {
                count: 1,
                last_seen: r.time
            })
        );
        assert_eq!(alert.severity(), crate::model::Severity::Error);
    }

    #[test]
    fn long_first_lines_are_shortened_for_the_alertname() {
        let mut r = record();
        r.message = "x".repeat(300);
        let name = &r.to_alert().labels["alertname"];
        assert_eq!(name.chars().count(), MAX_ALERTNAME_CHARS + 1);
        assert!(name.ends_with('…'));
    }

    #[test]
    fn events_without_a_message_are_named_after_their_callsite() {
        let mut r = record();
        r.message.clear();
        let alert = r.to_alert();
        assert_eq!(
            alert.labels["alertname"],
            "shop::payment at src/payment.rs:42"
        );
        assert!(!alert.annotations.contains_key("summary"));
    }

    fn captured_like(r: &EventRecord, recorder: &Recorder) -> EventRecord {
        let mut out = r.clone();
        out.labels = recorder.labels(&out);
        out.group_key = recorder.group_key(&out);
        out
    }

    #[test]
    fn group_key_is_stable_across_processes_and_versions() {
        // Keys are fingerprints on the server: changing them splits every
        // running alert in two. Update this value only on purpose. It is
        // FNV-1a 64 of "shop\xffERROR\xffshop::payment\xffsrc/payment.rs\xff",
        // 42u32 little-endian, 0x01, then the message, computed outside Rust.
        let r = captured_like(&record(), &recorder(GroupBy::CallsiteAndMessage));
        assert_eq!(format!("{:016x}", r.group_key), "c720ebcead98ebef");
    }

    #[test]
    fn message_grouping_splits_on_message_and_callsite_grouping_does_not() {
        let by_message = recorder(GroupBy::CallsiteAndMessage);
        let by_callsite = recorder(GroupBy::Callsite);
        let a = record();
        let mut b = record();
        b.message = "refund failed".to_owned();
        assert_ne!(
            captured_like(&a, &by_message).group_key,
            captured_like(&b, &by_message).group_key
        );
        assert_eq!(
            captured_like(&a, &by_callsite).group_key,
            captured_like(&b, &by_callsite).group_key
        );
        let mut elsewhere = record();
        elsewhere.line = Some(43);
        assert_ne!(
            captured_like(&a, &by_callsite).group_key,
            captured_like(&elsewhere, &by_callsite).group_key
        );
    }

    #[test]
    fn field_grouping_keys_on_the_values_and_tells_absent_from_empty() {
        let by_user = recorder(GroupBy::Fields(vec!["user_id"]));
        let a = record();
        let mut other_user = record();
        other_user.fields[0].1 = "43".to_owned();
        let mut other_message = record();
        other_message.message = "something else".to_owned();
        let mut empty = record();
        empty.fields[0].1 = String::new();
        let mut absent = record();
        absent.fields.remove(0);
        let key = |r: &EventRecord| captured_like(r, &by_user).group_key;
        assert_ne!(key(&a), key(&other_user));
        assert_eq!(key(&a), key(&other_message));
        assert_ne!(key(&empty), key(&absent));
        assert_eq!(
            captured_like(&a, &by_user).to_alert().labels["alertname"],
            "shop::payment at src/payment.rs:42"
        );
    }

    #[test]
    fn event_label_fields_win_over_span_fields() {
        let rec = Recorder {
            label_fields: vec!["order"],
            ..recorder(GroupBy::CallsiteAndMessage)
        };
        let mut r = record();
        r.fields.push(("order", "8".to_owned()));
        assert_eq!(
            rec.labels(&r),
            vec![("service", "shop".to_owned()), ("order", "8".to_owned())]
        );
    }

    #[test]
    fn drop_reports_share_one_key_per_reason() {
        let a = dropped_report(Some("shop"), 3, DropReason::QueueFull);
        let b = dropped_report(Some("shop"), 7, DropReason::QueueFull);
        assert_eq!(a.group_key, b.group_key);
        #[cfg(feature = "forward")]
        assert_ne!(
            a.group_key,
            dropped_report(Some("shop"), 3, DropReason::ForwardBufferFull).group_key
        );
        assert_eq!(a.message, "3 events dropped: the ackbar queue was full");
        assert_eq!(a.target, LAYER_TARGET);
        assert_eq!(a.level, Level::ERROR);
        assert_eq!(a.labels, vec![("service", "shop".to_owned())]);
    }
}
