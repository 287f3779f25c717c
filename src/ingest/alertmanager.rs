//! Alertmanager webhook (payload version 4) decoding and fingerprints.
//!
//! [`decode`] turns the body of an Alertmanager webhook notification into a
//! [`Notification`]. It is the only code that knows the wire format.
//!
//! # How decoding works
//!
//! 1. One pass of serde_json into private borrowed structs: strings borrow
//!    from the body unless they contain escapes, unknown fields are skipped
//!    (newer Alertmanager versions add fields), and the alert list and every
//!    label set stop storing entries past their limit while counting the rest,
//!    so a hostile body cannot make us allocate more than the limits allow.
//! 2. Checks (`version`, limits, statuses, timestamps) and conversion into the
//!    owned model types.
//!
//! Only when step 1 fails does decoding look at the body again: a cheap probe
//! for the `version` field (a version 3 payload should say "wrong version",
//! not "missing field"), then a second parse through `serde_path_to_error` to
//! name the JSON path of the problem (`alerts[3].startsAt`). Path tracking
//! allocates for every object key, so the hot path never pays for it.
//!
//! # Errors
//!
//! [`DecodeError`]'s `Display` is meant for the sender: the HTTP layer answers
//! `400` with it. Messages name the JSON path and say what was expected; they
//! repeat at most [`MAX_ECHO_CHARS`] characters of any input string (serde's
//! own messages, which may quote input, are cut at 300 characters).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::truncate_chars;
use crate::model::{Alert, AlertStatus, Fingerprint, Fnv64, Labels, Notification, Source};

/// The only webhook payload version ackbar accepts; Alertmanager 0.25 and
/// later send it.
pub const SUPPORTED_VERSION: &str = "4";

/// Most alerts in one notification. Alertmanager sends every alert of a
/// group unless the receiver sets `max_alerts`; ten thousand is far more
/// than one Slack card can usefully show.
pub const MAX_ALERTS: usize = 10_000;
/// Most entries in one label or annotation set (an alert's, or the
/// notification's group/common sets).
pub const MAX_LABELS: usize = 256;
/// Longest label or annotation name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 16 * 1024;
/// Longest annotation value, in bytes: descriptions may be long, but a card
/// shows a few thousand characters at most.
pub const MAX_ANNOTATION_VALUE_BYTES: usize = 64 * 1024;
/// Longest `receiver`, `groupKey`, `externalURL` or `generatorURL`, in bytes.
/// `groupKey` holds the values of every `group_by` label, hence the room.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Most characters of the input (or of serde's message about it) that an
/// error message repeats.
pub const MAX_ECHO_CHARS: usize = 64;

/// What Alertmanager writes as `endsAt` of an alert with no known end: Go's
/// zero `time.Time`.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// Seconds since the Unix epoch of Go's zero time, for zero times written
/// with an offset.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;
/// Longest serde message kept in [`DecodeError::Invalid`] / [`DecodeError::Json`]:
/// serde's "invalid type: string ..." quotes the offending string in full.
const MAX_MESSAGE_CHARS: usize = 300;
/// prometheus/common's `model.SeparatorByte`.
const SEPARATOR: u8 = 0xff;

/// Why a webhook body was rejected. Every variant means the payload can never
/// succeed (HTTP 400); none depends on ackbar's own state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all, or cut short.
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    /// Valid JSON of the wrong shape: a required field missing, a wrong type.
    #[error(
        "invalid Alertmanager webhook payload at {path}: {message} (line {line}, column {column})"
    )]
    Invalid {
        /// JSON path such as `alerts[3].startsAt`; `payload` for the top level.
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// `version` missing or other than [`SUPPORTED_VERSION`].
    #[error("{}", version_message(.found.as_deref()))]
    Version {
        /// The `version` value as JSON text (`"3"`, `4`); `None` when absent.
        found: Option<String>,
    },
    /// An alert `status` other than `firing` or `resolved`.
    #[error("{path}: unknown alert status {found:?}: expected \"firing\" or \"resolved\"")]
    Status { path: String, found: String },
    /// A timestamp that is not RFC 3339.
    #[error(
        "{path}: invalid timestamp {found:?} ({reason}): expected RFC 3339 such as \"2026-01-02T15:04:05.123456789Z\""
    )]
    Timestamp {
        path: String,
        found: String,
        reason: String,
    },
    /// The payload exceeds one of the limits (`MAX_*` in this module).
    #[error("{path}: {found} {what}, more than ackbar's limit of {limit}")]
    Limit {
        path: String,
        /// What was counted, e.g. "alerts in one notification".
        what: &'static str,
        found: usize,
        limit: usize,
    },
}

fn version_message(found: Option<&str>) -> String {
    let accepted =
        "ackbar accepts webhook payload version \"4\" (sent by Alertmanager 0.25 and later)";
    match found {
        None => format!("the payload has no \"version\" field: {accepted}"),
        Some(v) => format!("unsupported webhook payload version {v}: {accepted}"),
    }
}

/// Decodes an Alertmanager webhook notification (payload version 4).
///
/// Fingerprints: an alert's `fingerprint` field is used when it is 16 hex
/// digits (Alertmanager's own); otherwise [`fingerprint`] of its labels.
/// `endsAt` missing, empty or Go's zero time becomes `None`; an empty
/// `generatorURL` or `externalURL` becomes `None`. A missing `receiver` or
/// `groupKey` decodes as the empty string (hand-written test payloads often
/// leave them out; Alertmanager always sends them).
pub fn decode(body: &[u8]) -> Result<Notification, DecodeError> {
    // serde's derived structs also accept a JSON array of field values; a
    // notification is an object, and anything else deserves its own message.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(not_an_object(body));
    }
    let raw: RawMessage<'_> = match serde_json::from_slice(body) {
        Ok(raw) => raw,
        Err(err) => return Err(explain(body, err)),
    };
    match raw.version.as_ref().map(Text::as_str) {
        Some(SUPPORTED_VERSION) => {}
        other => {
            return Err(DecodeError::Version {
                found: other.map(|v| format!("{:?}", snippet(v))),
            });
        }
    }
    raw.into_notification()
}

/// Alertmanager's fingerprint of a label set (prometheus/common
/// `model.LabelSet.Fingerprint`), the identity of an alert.
///
/// The algorithm, a stable contract (stored fingerprints depend on it):
/// 64-bit FNV-1a (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`)
/// over, for each label in ascending byte order of names, the name's UTF-8
/// bytes, the byte `0xff`, the value's UTF-8 bytes and the byte `0xff`.
/// The empty label set hashes to the offset basis. Printed as 16 lowercase
/// hex digits it equals the `fingerprint` Alertmanager puts in webhooks.
pub fn fingerprint(labels: &Labels) -> Fingerprint {
    let mut h = Fnv64::new();
    // `Labels` is a BTreeMap<String, _>: iteration is already in byte order.
    for (name, value) in labels {
        h.write(name.as_bytes());
        h.write(&[SEPARATOR]);
        h.write(value.as_bytes());
        h.write(&[SEPARATOR]);
    }
    Fingerprint(h.finish())
}

// ---------------------------------------------------------------------------
// Wire types: borrowed, private, converted right away.

/// A JSON string borrowed from the body unless it contains escapes. A
/// newtype because serde only borrows a `Cow<str>` that is a field itself,
/// not one inside an `Option` or a map.
#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl Text<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }

    fn into_string(self) -> String {
        self.0.into_owned()
    }
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "an Alertmanager webhook notification (a JSON object)"
)]
struct RawMessage<'a> {
    #[serde(borrow, default)]
    version: Option<Text<'a>>,
    #[serde(borrow, default)]
    group_key: Option<Text<'a>>,
    #[serde(default)]
    truncated_alerts: u64,
    #[serde(borrow, default)]
    receiver: Option<Text<'a>>,
    #[serde(borrow, default)]
    group_labels: Option<RawLabels<'a>>,
    #[serde(borrow, default)]
    common_labels: Option<RawLabels<'a>>,
    #[serde(borrow, default)]
    common_annotations: Option<RawLabels<'a>>,
    #[serde(rename = "externalURL", borrow, default)]
    external_url: Option<Text<'a>>,
    #[serde(borrow)]
    alerts: RawAlerts<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "an alert (a JSON object)")]
struct RawAlert<'a> {
    #[serde(borrow)]
    status: Text<'a>,
    #[serde(borrow)]
    labels: RawLabels<'a>,
    #[serde(borrow, default)]
    annotations: Option<RawLabels<'a>>,
    #[serde(borrow)]
    starts_at: Text<'a>,
    #[serde(borrow, default)]
    ends_at: Option<Text<'a>>,
    #[serde(rename = "generatorURL", borrow, default)]
    generator_url: Option<Text<'a>>,
    #[serde(borrow, default)]
    fingerprint: Option<Text<'a>>,
}

/// The alert list: at most [`MAX_ALERTS`] stored, the rest only counted.
struct RawAlerts<'a> {
    alerts: Vec<RawAlert<'a>>,
    total: usize,
}

/// A label or annotation set in JSON order: at most [`MAX_LABELS`] pairs
/// stored, the rest only counted.
struct RawLabels<'a> {
    pairs: Vec<(Text<'a>, Text<'a>)>,
    total: usize,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawAlerts<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<RawAlerts<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawAlerts<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array of alerts")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut alerts = Vec::new();
                let mut total = 0;
                loop {
                    if alerts.len() < MAX_ALERTS {
                        match seq.next_element::<RawAlert<'a>>()? {
                            Some(a) => alerts.push(a),
                            None => break,
                        }
                    } else if seq.next_element::<IgnoredAny>()?.is_none() {
                        break;
                    }
                    total += 1;
                }
                Ok(RawAlerts { alerts, total })
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawLabels<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<RawLabels<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawLabels<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of names to string values")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                // Typical alerts carry a handful of labels.
                let mut pairs = Vec::with_capacity(8);
                let mut total = 0;
                loop {
                    if pairs.len() < MAX_LABELS {
                        match map.next_entry::<Text<'a>, Text<'a>>()? {
                            Some(pair) => pairs.push(pair),
                            None => break,
                        }
                    } else if map.next_entry::<IgnoredAny, IgnoredAny>()?.is_none() {
                        break;
                    }
                    total += 1;
                }
                Ok(RawLabels { pairs, total })
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

// ---------------------------------------------------------------------------
// Conversion into model types.

impl RawMessage<'_> {
    fn into_notification(self) -> Result<Notification, DecodeError> {
        if self.alerts.total > MAX_ALERTS {
            return Err(DecodeError::Limit {
                path: "alerts".to_owned(),
                what: "alerts in one notification",
                found: self.alerts.total,
                limit: MAX_ALERTS,
            });
        }
        let receiver = field(self.receiver, "receiver")?.unwrap_or_default();
        let group_key = field(self.group_key, "groupKey")?.unwrap_or_default();
        let external_url = field(self.external_url, "externalURL")?.filter(|u| !u.is_empty());
        let group_labels = label_set(self.group_labels, "groupLabels", MAX_LABEL_VALUE_BYTES)?;
        let common_labels = label_set(self.common_labels, "commonLabels", MAX_LABEL_VALUE_BYTES)?;
        let common_annotations = label_set(
            self.common_annotations,
            "commonAnnotations",
            MAX_ANNOTATION_VALUE_BYTES,
        )?;
        let alerts = self
            .alerts
            .alerts
            .into_iter()
            .enumerate()
            .map(|(i, a)| a.into_alert(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Notification {
            source: Source::Alertmanager {
                receiver,
                group_key,
                external_url,
            },
            group_labels,
            common_labels,
            common_annotations,
            alerts,
            truncated_alerts: self.truncated_alerts,
        })
    }
}

impl RawAlert<'_> {
    fn into_alert(self, i: usize) -> Result<Alert, DecodeError> {
        let at = |field: &str| format!("alerts[{i}].{field}");
        let status = match self.status.as_str() {
            "firing" => AlertStatus::Firing,
            "resolved" => AlertStatus::Resolved,
            other => {
                return Err(DecodeError::Status {
                    path: at("status"),
                    found: snippet(other),
                });
            }
        };
        let labels = convert_labels(self.labels, &|| at("labels"), MAX_LABEL_VALUE_BYTES)?;
        let annotations = match self.annotations {
            Some(raw) => convert_labels(raw, &|| at("annotations"), MAX_ANNOTATION_VALUE_BYTES)?,
            None => Labels::new(),
        };
        let starts_at = timestamp(self.starts_at.as_str(), &|| at("startsAt"))?;
        let ends_at = match &self.ends_at {
            None => None,
            Some(t) if t.as_str().is_empty() || t.as_str() == GO_ZERO_TIME => None,
            Some(t) => Some(timestamp(t.as_str(), &|| at("endsAt"))?)
                .filter(|t| t.timestamp() != GO_ZERO_TIME_UNIX),
        };
        let generator_url = match self.generator_url {
            Some(url) => {
                check_len(url.as_str(), MAX_FIELD_BYTES, "bytes", &|| {
                    at("generatorURL")
                })?;
                Some(url.into_string()).filter(|u| !u.is_empty())
            }
            None => None,
        };
        let fingerprint = match self
            .fingerprint
            .as_ref()
            .and_then(|f| parse_fingerprint(f.as_str()))
        {
            Some(fp) => fp,
            None => fingerprint(&labels),
        };
        Ok(Alert {
            fingerprint,
            status,
            labels,
            annotations,
            starts_at,
            ends_at,
            generator_url,
            occurrences: None,
        })
    }
}

/// Converts a label or annotation set, enforcing the limits. Duplicate names
/// (never sent by Alertmanager, accepted by serde): the last one wins.
fn convert_labels(
    raw: RawLabels<'_>,
    path: &dyn Fn() -> String,
    max_value: usize,
) -> Result<Labels, DecodeError> {
    if raw.total > MAX_LABELS {
        return Err(DecodeError::Limit {
            path: path(),
            what: "entries",
            found: raw.total,
            limit: MAX_LABELS,
        });
    }
    let mut pairs = Vec::with_capacity(raw.pairs.len());
    for (name, value) in raw.pairs {
        let name = name.as_str();
        if name.len() > MAX_NAME_BYTES {
            return Err(DecodeError::Limit {
                path: format!("{}[{:?}]", path(), snippet(name)),
                what: "bytes in the name",
                found: name.len(),
                limit: MAX_NAME_BYTES,
            });
        }
        check_len(value.as_str(), max_value, "bytes in the value", &|| {
            format!("{}.{}", path(), snippet(name))
        })?;
        pairs.push((name.to_owned(), value.into_string()));
    }
    // Bulk-builds the tree after one (stable) sort, cheaper than inserting
    // one by one; of duplicate names the last wins, as with inserts.
    Ok(Labels::from_iter(pairs))
}

fn label_set(
    raw: Option<RawLabels<'_>>,
    path: &'static str,
    max_value: usize,
) -> Result<Labels, DecodeError> {
    match raw {
        Some(raw) => convert_labels(raw, &|| path.to_owned(), max_value),
        None => Ok(Labels::new()),
    }
}

fn field(raw: Option<Text<'_>>, path: &'static str) -> Result<Option<String>, DecodeError> {
    match raw {
        Some(t) => {
            check_len(t.as_str(), MAX_FIELD_BYTES, "bytes", &|| path.to_owned())?;
            Ok(Some(t.into_string()))
        }
        None => Ok(None),
    }
}

fn check_len(
    s: &str,
    limit: usize,
    what: &'static str,
    path: &dyn Fn() -> String,
) -> Result<(), DecodeError> {
    if s.len() > limit {
        return Err(DecodeError::Limit {
            path: path(),
            what,
            found: s.len(),
            limit,
        });
    }
    Ok(())
}

fn timestamp(s: &str, path: &dyn Fn() -> String) -> Result<DateTime<Utc>, DecodeError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| DecodeError::Timestamp {
            path: path(),
            found: snippet(s),
            reason: e.to_string(),
        })
}

/// Alertmanager's fingerprint text: exactly 16 hex digits.
fn parse_fingerprint(s: &str) -> Option<Fingerprint> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok().map(Fingerprint)
}

/// At most [`MAX_ECHO_CHARS`] characters of `s`, "…" marking a cut.
fn snippet(s: &str) -> String {
    truncate_chars(s, MAX_ECHO_CHARS)
}

// ---------------------------------------------------------------------------
// The cold path: say what is wrong with a body that did not parse.

/// Just the `version` field; everything else is skipped.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(default)]
    version: Option<serde_json::Value>,
}

fn not_an_object(body: &[u8]) -> DecodeError {
    if let Err(err) = serde_json::from_slice::<IgnoredAny>(body) {
        return json_error(&err);
    }
    let found = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => "an array (a body for Alertmanager's own /api/v2/alerts API?)",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    };
    DecodeError::Invalid {
        path: "payload".to_owned(),
        line: 1,
        column: 1,
        message: format!(
            "expected an Alertmanager webhook notification (a JSON object), found {found}"
        ),
    }
}

fn json_error(err: &serde_json::Error) -> DecodeError {
    DecodeError::Json {
        line: err.line(),
        column: err.column(),
        message: bare_message(err),
    }
}

fn explain(body: &[u8], err: serde_json::Error) -> DecodeError {
    // A payload of another version has another shape: say so first.
    if let Ok(probe) = serde_json::from_slice::<VersionProbe>(body) {
        match probe.version {
            Some(serde_json::Value::String(v)) if v == SUPPORTED_VERSION => {}
            Some(v) => {
                return DecodeError::Version {
                    found: Some(snippet(&v.to_string())),
                };
            }
            None => return DecodeError::Version { found: None },
        }
    }
    match err.classify() {
        serde_json::error::Category::Data => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let (path, err) = match serde_path_to_error::deserialize::<_, RawMessage<'_>>(&mut de) {
                Err(e) => (echo_path(e.path()), e.into_inner()),
                // Cannot happen (same input, same parser); keep the first error.
                Ok(_) => (".".to_owned(), err),
            };
            DecodeError::Invalid {
                path: if path == "." {
                    "payload".to_owned()
                } else {
                    path
                },
                line: err.line(),
                column: err.column(),
                message: bare_message(&err),
            }
        }
        _ => json_error(&err),
    }
}

/// A JSON path as `serde_path_to_error` prints it (`alerts[3].labels.job`),
/// but with every object key cut to [`MAX_ECHO_CHARS`]: keys are input
/// (label names can be long), and the message repeats the path.
fn echo_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for (i, segment) in path.iter().enumerate() {
        if i > 0 && !matches!(segment, Segment::Seq { .. }) {
            out.push('.');
        }
        match segment {
            Segment::Map { key } => out.push_str(&snippet(key)),
            Segment::Enum { variant } => out.push_str(&snippet(variant)),
            other => out.push_str(&other.to_string()),
        }
    }
    if out.is_empty() { ".".to_owned() } else { out }
}

/// serde_json's message without its " at line L column C" suffix (our
/// variants print the position themselves), capped in length.
fn bare_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let bare = full.strip_suffix(&suffix).unwrap_or(&full);
    truncate_chars(bare, MAX_MESSAGE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// `gen_payloads.py --sizes 10`'s `webhook-10.json`: byte for byte what
    /// Alertmanager 0.25 sends, fingerprints computed as Alertmanager does.
    const FIXTURE_10: &[u8] = include_bytes!("../../tests/fixtures/alertmanager-webhook-10.json");

    fn minimal_alert() -> Value {
        json!({
            "status": "firing",
            "labels": {"alertname": "HighLatency", "job": "api"},
            "annotations": {"summary": "p99 above 1s"},
            "startsAt": "2026-01-02T15:04:05.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "0123456789abcdef"
        })
    }

    fn payload(alerts: Vec<Value>) -> Value {
        json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"HighLatency\"}",
            "truncatedAlerts": 2,
            "status": "firing",
            "receiver": "slack",
            "groupLabels": {"alertname": "HighLatency"},
            "commonLabels": {"alertname": "HighLatency", "job": "api"},
            "commonAnnotations": {"summary": "p99 above 1s"},
            "externalURL": "http://alertmanager:9093",
            "alerts": alerts
        })
    }

    fn decode_value(v: &Value) -> Result<Notification, DecodeError> {
        decode(&serde_json::to_vec(v).unwrap())
    }

    fn err_of(v: &Value) -> DecodeError {
        decode_value(v).unwrap_err()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decodes_every_field_of_a_v4_payload() {
        let n = decode_value(&payload(vec![minimal_alert()])).unwrap();
        assert_eq!(
            n.source,
            Source::Alertmanager {
                receiver: "slack".into(),
                group_key: "{}:{alertname=\"HighLatency\"}".into(),
                external_url: Some("http://alertmanager:9093".into()),
            }
        );
        assert_eq!(n.truncated_alerts, 2);
        assert_eq!(n.group_labels, labels(&[("alertname", "HighLatency")]));
        assert_eq!(
            n.common_labels,
            labels(&[("alertname", "HighLatency"), ("job", "api")])
        );
        assert_eq!(n.common_annotations, labels(&[("summary", "p99 above 1s")]));
        let a = &n.alerts[0];
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.fingerprint, Fingerprint(0x0123456789abcdef));
        assert_eq!(
            a.labels,
            labels(&[("alertname", "HighLatency"), ("job", "api")])
        );
        assert_eq!(a.annotations, labels(&[("summary", "p99 above 1s")]));
        let want = Utc.with_ymd_and_hms(2026, 1, 2, 15, 4, 5).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        assert_eq!(a.starts_at, want);
        assert_eq!(a.ends_at, None);
        assert_eq!(
            a.generator_url.as_deref(),
            Some("http://prometheus:9090/graph")
        );
    }

    #[test]
    fn fixture_fingerprints_equal_alertmanagers() {
        let n = decode(FIXTURE_10).unwrap();
        assert_eq!(n.alerts.len(), 10);
        for a in &n.alerts {
            assert_eq!(fingerprint(&a.labels), a.fingerprint, "{:?}", a.labels);
        }
    }

    #[test]
    fn fingerprint_is_computed_when_the_payload_has_none() {
        let with: Value = serde_json::from_slice(FIXTURE_10).unwrap();
        let mut without = with.clone();
        for a in without["alerts"].as_array_mut().unwrap() {
            a.as_object_mut().unwrap().remove("fingerprint");
        }
        let mut invalid = with.clone();
        for a in invalid["alerts"].as_array_mut().unwrap() {
            a["fingerprint"] = json!("not-a-fingerprint");
        }
        let want: Vec<_> = decode_value(&with)
            .unwrap()
            .alerts
            .iter()
            .map(|a| a.fingerprint)
            .collect();
        for v in [without, invalid] {
            let got: Vec<_> = decode_value(&v)
                .unwrap()
                .alerts
                .iter()
                .map(|a| a.fingerprint)
                .collect();
            assert_eq!(got, want);
        }
        // The first fixture alert, spelled out so that a broken fixture cannot hide a bug.
        assert_eq!(
            want[0].to_string(),
            with["alerts"][0]["fingerprint"].as_str().unwrap()
        );
    }

    #[test]
    fn fingerprint_is_stable() {
        // Independent reference: gen_payloads.py's fingerprint() (Python).
        let fp = fingerprint(&labels(&[
            ("severity", "critical"),
            ("alertname", "HighLatency"),
            ("job", "api"),
        ]));
        assert_eq!(fp, Fingerprint(0x8dd3b726a1f3a0fb));
        assert_eq!(
            fingerprint(&labels(&[("a", "")])),
            Fingerprint(0xe57e2e1903df23e2)
        );
        assert_eq!(
            fingerprint(&labels(&[("ünïcode", "välue \"q\"")])),
            Fingerprint(0x323085cb7a772d09)
        );
    }

    #[test]
    fn empty_label_set_fingerprint_is_the_fnv_offset_basis() {
        assert_eq!(fingerprint(&Labels::new()), Fingerprint(0xcbf29ce484222325));
    }

    #[test]
    fn name_value_boundaries_matter_to_the_fingerprint() {
        assert_ne!(
            fingerprint(&labels(&[("ab", "c")])),
            fingerprint(&labels(&[("a", "bc")]))
        );
        assert_ne!(
            fingerprint(&labels(&[("a", "1"), ("b", "2")])),
            fingerprint(&labels(&[("a", "2"), ("b", "1")]))
        );
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let body = br#"{"a":"plain","b":"esc\"aped"}"#;
        let raw: RawLabels<'_> = serde_json::from_slice(body).unwrap();
        assert!(matches!(raw.pairs[0].1.0, Cow::Borrowed("plain")));
        assert!(matches!(raw.pairs[1].1.0, Cow::Owned(_)));
        assert_eq!(raw.pairs[1].1.as_str(), "esc\"aped");
    }

    #[test]
    fn duplicate_label_names_keep_the_last_value() {
        let body =
            br#"{"version":"4","alerts":[{"status":"firing","startsAt":"2026-01-02T15:04:05Z",
            "labels":{"b":"1","a":"x","b":"2","a":"y","c":"z"}}]}"#;
        let n = decode(body).unwrap();
        assert_eq!(
            n.alerts[0].labels,
            labels(&[("a", "y"), ("b", "2"), ("c", "z")])
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v = payload(vec![minimal_alert()]);
        v["someFutureField"] = json!({"nested": [1, 2, 3]});
        v["alerts"][0]["silencedBy"] = json!(["x"]);
        assert_eq!(decode_value(&v).unwrap().alerts.len(), 1);
    }

    #[test]
    fn optional_fields_may_be_missing_or_empty() {
        let v = json!({
            "version": "4",
            "alerts": [{"status": "resolved", "labels": {"a": "b"}, "startsAt": "2026-01-02T15:04:05Z",
                        "endsAt": "2026-01-02T16:00:00+01:00", "generatorURL": ""}],
            "externalURL": "",
            "groupLabels": null
        });
        let n = decode_value(&v).unwrap();
        assert_eq!(
            n.source,
            Source::Alertmanager {
                receiver: String::new(),
                group_key: String::new(),
                external_url: None
            }
        );
        let a = &n.alerts[0];
        assert_eq!(a.status, AlertStatus::Resolved);
        assert_eq!(
            a.ends_at,
            Some(Utc.with_ymd_and_hms(2026, 1, 2, 15, 0, 0).unwrap())
        );
        assert_eq!(a.generator_url, None);
        assert!(a.annotations.is_empty());
        assert_eq!(a.fingerprint, fingerprint(&a.labels));
    }

    #[test]
    fn zero_end_time_in_any_spelling_is_none() {
        for end in [
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00.000Z",
            "0001-01-01T01:00:00+01:00",
            "",
        ] {
            let mut a = minimal_alert();
            a["endsAt"] = json!(end);
            assert_eq!(
                decode_value(&payload(vec![a])).unwrap().alerts[0].ends_at,
                None,
                "{end}"
            );
        }
    }

    #[test]
    fn wrong_or_missing_version_is_explained() {
        let mut v = payload(vec![minimal_alert()]);
        v["version"] = json!("3");
        let err = err_of(&v);
        assert_eq!(
            err,
            DecodeError::Version {
                found: Some("\"3\"".into())
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("version \"3\"") && msg.contains("\"4\"") && msg.contains("0.25"),
            "{msg}"
        );

        v.as_object_mut().unwrap().remove("version");
        assert_eq!(err_of(&v), DecodeError::Version { found: None });
        assert!(err_of(&v).to_string().contains("no \"version\""));

        // Another version with another shape: the version is what is wrong.
        let v = json!({"version": 4, "alerts": "nope"});
        assert_eq!(
            err_of(&v),
            DecodeError::Version {
                found: Some("4".into())
            }
        );
    }

    #[test]
    fn malformed_json_says_where_and_what() {
        let err = decode(b"{\"version\": \"4\",\n \"alerts\": [}").unwrap_err();
        let DecodeError::Json { line, column, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*line, *column), (2, 13));
        let msg = err.to_string();
        assert!(
            msg.starts_with("malformed JSON at line 2, column 13: expected value"),
            "{msg}"
        );

        let err = decode(b"{\"version\": \"4\", \"alerts\": [").unwrap_err();
        assert!(err.to_string().contains("EOF"), "{err}");
        assert!(matches!(decode(b"").unwrap_err(), DecodeError::Json { .. }));
        assert!(matches!(
            decode(b"{\"version\":\"4\",\"alerts\":[]} x").unwrap_err(),
            DecodeError::Json { .. }
        ));
    }

    #[test]
    fn missing_required_fields_are_named_with_their_path() {
        for (field, path) in [
            ("startsAt", "alerts[1]"),
            ("labels", "alerts[1]"),
            ("status", "alerts[1]"),
        ] {
            let mut bad = minimal_alert();
            bad.as_object_mut().unwrap().remove(field);
            let err = err_of(&payload(vec![minimal_alert(), bad]));
            let msg = err.to_string();
            assert!(matches!(err, DecodeError::Invalid { .. }), "{err:?}");
            assert!(
                msg.contains(&format!("at {path}: missing field `{field}`")),
                "{msg}"
            );
        }
        let mut v = payload(vec![]);
        v.as_object_mut().unwrap().remove("alerts");
        let msg = err_of(&v).to_string();
        assert!(msg.contains("at payload: missing field `alerts`"), "{msg}");
    }

    #[test]
    fn wrong_types_are_named_with_their_path() {
        let mut a = minimal_alert();
        a["labels"]["job"] = json!(5);
        let msg = err_of(&payload(vec![minimal_alert(), minimal_alert(), a])).to_string();
        assert!(
            msg.contains("alerts[2].labels.job") && msg.contains("invalid type: integer `5`"),
            "{msg}"
        );

        let msg = decode(b" [{\"labels\":{}}]").unwrap_err().to_string();
        assert!(msg.contains("(a JSON object), found an array"), "{msg}");
        // A v4 payload spelled as an array of field values, which serde's
        // derived structs would accept.
        let msg = decode(b"[\"4\"]").unwrap_err().to_string();
        assert!(msg.contains("found an array"), "{msg}");
        assert!(matches!(
            decode(b"[1,").unwrap_err(),
            DecodeError::Json { .. }
        ));
    }

    #[test]
    fn long_input_is_not_echoed() {
        let huge = "x".repeat(100_000);
        let mut a = minimal_alert();
        a["labels"] = json!(huge.clone());
        let msg = err_of(&payload(vec![a])).to_string();
        assert!(msg.len() < 600, "{} bytes", msg.len());
        let mut a = minimal_alert();
        a["status"] = json!(huge.clone());
        let msg = err_of(&payload(vec![a])).to_string();
        assert!(
            msg.len() < 300 && msg.contains("unknown alert status"),
            "{msg}"
        );
        let mut a = minimal_alert();
        a["startsAt"] = json!(huge);
        let msg = err_of(&payload(vec![a])).to_string();
        assert!(
            msg.len() < 400 && msg.contains("alerts[0].startsAt"),
            "{msg}"
        );
    }

    /// Found by the `alertmanager_webhook` fuzz target's bound on refusals:
    /// the JSON path of a wrong-typed label repeated its name in full.
    #[test]
    fn long_label_names_are_not_echoed_in_the_path() {
        let name = "n".repeat(100_000);
        let mut a = minimal_alert();
        a["labels"] = json!({ name.clone(): 5 });
        let msg = err_of(&payload(vec![a])).to_string();
        assert!(msg.len() < 600, "{} bytes", msg.len());
        let cut = format!("alerts[0].labels.{}…", "n".repeat(MAX_ECHO_CHARS));
        assert!(msg.contains(&cut), "{msg}");
        // Short names still print as before.
        let mut a = minimal_alert();
        a["annotations"] = json!({ "summary": [] });
        let msg = err_of(&payload(vec![minimal_alert(), a])).to_string();
        assert!(msg.contains("at alerts[1].annotations.summary:"), "{msg}");
    }

    #[test]
    fn unknown_alert_status_is_rejected() {
        let mut a = minimal_alert();
        a["status"] = json!("pending");
        let err = err_of(&payload(vec![minimal_alert(), a]));
        assert_eq!(
            err,
            DecodeError::Status {
                path: "alerts[1].status".into(),
                found: "pending".into()
            }
        );
        assert!(
            err.to_string()
                .contains("expected \"firing\" or \"resolved\"")
        );
    }

    #[test]
    fn bad_timestamps_are_rejected_with_their_path() {
        for (field, value) in [
            ("startsAt", "yesterday"),
            ("endsAt", "2026-13-01T00:00:00Z"),
            ("startsAt", "2026-01-02 15:04"),
        ] {
            let mut a = minimal_alert();
            a[field] = json!(value);
            let err = err_of(&payload(vec![a]));
            let DecodeError::Timestamp { path, found, .. } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(
                (path.as_str(), found.as_str()),
                (format!("alerts[0].{field}").as_str(), value)
            );
            assert!(err.to_string().contains("RFC 3339"));
        }
    }

    #[test]
    fn max_alerts_is_enforced() {
        let alert = serde_json::to_string(&minimal_alert()).unwrap();
        let body = |n: usize| {
            format!(
                r#"{{"version":"4","alerts":[{}]}}"#,
                vec![alert.as_str(); n].join(",")
            )
            .into_bytes()
        };
        assert_eq!(decode(&body(MAX_ALERTS)).unwrap().alerts.len(), MAX_ALERTS);
        let err = decode(&body(MAX_ALERTS + 1)).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Limit {
                path: "alerts".into(),
                what: "alerts in one notification",
                found: MAX_ALERTS + 1,
                limit: MAX_ALERTS
            }
        );
        assert_eq!(
            err.to_string(),
            "alerts: 10001 alerts in one notification, more than ackbar's limit of 10000"
        );
    }

    #[test]
    fn max_labels_is_enforced_for_labels_and_annotations() {
        let many =
            |n: usize| Value::Object((0..n).map(|i| (format!("l{i}"), json!("v"))).collect());
        let mut a = minimal_alert();
        a["labels"] = many(MAX_LABELS);
        a["annotations"] = many(MAX_LABELS);
        assert_eq!(
            decode_value(&payload(vec![a.clone()])).unwrap().alerts[0]
                .labels
                .len(),
            MAX_LABELS
        );
        for field in ["labels", "annotations"] {
            let mut b = a.clone();
            b[field] = many(MAX_LABELS + 1);
            let err = err_of(&payload(vec![b]));
            assert!(
                matches!(&err, DecodeError::Limit { path, found, limit: MAX_LABELS, .. } if *path == format!("alerts[0].{field}") && *found == MAX_LABELS + 1),
                "{err:?}"
            );
        }
        let mut v = payload(vec![minimal_alert()]);
        v["commonLabels"] = many(MAX_LABELS + 1);
        assert!(matches!(err_of(&v), DecodeError::Limit { path, .. } if path == "commonLabels"));
    }

    #[test]
    fn max_name_bytes_is_enforced() {
        let mut a = minimal_alert();
        a["labels"] = json!({ "n".repeat(MAX_NAME_BYTES): "v" });
        assert!(decode_value(&payload(vec![a])).is_ok());
        let mut a = minimal_alert();
        a["annotations"] = json!({ "n".repeat(MAX_NAME_BYTES + 1): "v" });
        let err = err_of(&payload(vec![a]));
        assert!(
            matches!(&err, DecodeError::Limit { limit: MAX_NAME_BYTES, found, path, .. } if *found == MAX_NAME_BYTES + 1 && path.starts_with("alerts[0].annotations[")),
            "{err:?}"
        );
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn max_label_value_bytes_is_enforced() {
        let mut a = minimal_alert();
        a["labels"]["pod"] = json!("v".repeat(MAX_LABEL_VALUE_BYTES));
        assert!(decode_value(&payload(vec![a.clone()])).is_ok());
        a["labels"]["pod"] = json!("v".repeat(MAX_LABEL_VALUE_BYTES + 1));
        let err = err_of(&payload(vec![a]));
        assert_eq!(
            err,
            DecodeError::Limit {
                path: "alerts[0].labels.pod".into(),
                what: "bytes in the value",
                found: MAX_LABEL_VALUE_BYTES + 1,
                limit: MAX_LABEL_VALUE_BYTES
            }
        );
    }

    #[test]
    fn max_annotation_value_bytes_is_enforced() {
        let mut a = minimal_alert();
        // Longer than a label value may be, within the annotation limit.
        a["annotations"]["description"] = json!("d".repeat(MAX_ANNOTATION_VALUE_BYTES));
        assert!(decode_value(&payload(vec![a.clone()])).is_ok());
        a["annotations"]["description"] = json!("d".repeat(MAX_ANNOTATION_VALUE_BYTES + 1));
        assert!(matches!(
            err_of(&payload(vec![a])),
            DecodeError::Limit { limit: MAX_ANNOTATION_VALUE_BYTES, path, .. } if path == "alerts[0].annotations.description"
        ));
    }

    #[test]
    fn max_field_bytes_is_enforced() {
        for field in ["groupKey", "receiver", "externalURL"] {
            let mut v = payload(vec![minimal_alert()]);
            v[field] = json!("k".repeat(MAX_FIELD_BYTES));
            assert!(decode_value(&v).is_ok());
            v[field] = json!("k".repeat(MAX_FIELD_BYTES + 1));
            assert!(
                matches!(err_of(&v), DecodeError::Limit { path, limit: MAX_FIELD_BYTES, .. } if path == field)
            );
        }
        let mut a = minimal_alert();
        a["generatorURL"] = json!("u".repeat(MAX_FIELD_BYTES + 1));
        assert!(
            matches!(err_of(&payload(vec![a])), DecodeError::Limit { path, .. } if path == "alerts[0].generatorURL")
        );
    }

    #[test]
    fn max_echo_chars_bounds_echoed_input() {
        assert_eq!(
            snippet(&"é".repeat(MAX_ECHO_CHARS)),
            "é".repeat(MAX_ECHO_CHARS)
        );
        assert_eq!(
            snippet(&"é".repeat(MAX_ECHO_CHARS + 1)),
            format!("{}…", "é".repeat(MAX_ECHO_CHARS))
        );
    }

    // --- properties -------------------------------------------------------

    fn label_set() -> impl Strategy<Value = Labels> {
        prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,12}", ".{0,16}", 0..10)
    }

    fn time() -> impl Strategy<Value = DateTime<Utc>> {
        // 1970..2100, any nanosecond.
        (0i64..4_102_444_800, 0u32..1_000_000_000)
            .prop_map(|(s, ns)| DateTime::from_timestamp(s, ns).unwrap_or_default())
    }

    prop_compose! {
        fn alert()(
            firing in any::<bool>(),
            labels in label_set(),
            annotations in label_set(),
            starts_at in time(),
            ends_at in prop::option::of(time()),
            generator_url in prop::option::of("[a-z:/.?=&%]{1,30}"),
            send_fingerprint in any::<bool>(),
        ) -> (Alert, bool) {
            let fingerprint = fingerprint(&labels);
            let status = if firing { AlertStatus::Firing } else { AlertStatus::Resolved };
            (Alert { fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, occurrences: None }, send_fingerprint)
        }
    }

    fn to_wire(a: &Alert, send_fingerprint: bool) -> Value {
        let mut v = json!({
            "status": a.status.as_str(),
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": a.starts_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            "endsAt": a.ends_at.map_or(GO_ZERO_TIME.to_owned(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
            "generatorURL": a.generator_url.clone().unwrap_or_default(),
        });
        if send_fingerprint {
            v["fingerprint"] = json!(a.fingerprint.to_string());
        }
        v
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&body);
        }

        #[test]
        fn decode_never_panics_on_mutated_payloads(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)
        ) {
            let mut body = FIXTURE_10.to_vec();
            for (at, byte, kind) in edits {
                let len = body.len();
                match kind {
                    0 if len > 0 => body[at.index(len)] = byte,
                    1 => body.insert(at.index(len + 1), byte),
                    _ if len > 0 => {
                        body.remove(at.index(len));
                    }
                    _ => {}
                }
            }
            if let Err(e) = decode(&body) {
                prop_assert!(e.to_string().len() < 1024);
            }
        }

        #[test]
        fn fingerprint_ignores_insertion_order(pairs in prop::collection::vec((".{0,8}", ".{0,8}"), 0..12)) {
            let forward: Labels = pairs.iter().cloned().collect();
            // Reversed insertion: the last duplicate must win in both, so dedupe first.
            let mut backward = Labels::new();
            for (k, v) in forward.iter().rev() {
                backward.insert(k.clone(), v.clone());
            }
            prop_assert_eq!(fingerprint(&forward), fingerprint(&backward));
        }

        #[test]
        fn encoded_alerts_decode_to_themselves(alerts in prop::collection::vec(alert(), 0..6)) {
            let wire: Vec<Value> = alerts.iter().map(|(a, fp)| to_wire(a, *fp)).collect();
            let n = decode_value(&payload(wire)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let want: Vec<Alert> = alerts.into_iter().map(|(a, _)| a).collect();
            prop_assert_eq!(n.alerts, want);
        }
    }
}
