//! Types that cross stages: ingest produces [`Alert`]s inside a
//! [`Notification`], the pipeline turns them into card transitions, the store
//! keeps [`CardView`]s and outbox operations, delivery renders them for Slack.
//!
//! Nothing in here knows about HTTP, SQL or Slack's wire format.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hasher;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A sorted label (or annotation) set. Sorted so that fingerprints, card keys
/// and rendering are deterministic.
pub type Labels = BTreeMap<String, String>;

/// The 64-bit identity of one alert: Alertmanager's own fingerprint when the
/// payload carries one, else [`crate::ingest::alertmanager::fingerprint`] of
/// the label set (the same FNV-1a algorithm Alertmanager uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    /// 16 lowercase hex digits, as Alertmanager prints fingerprints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Fingerprint {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(Fingerprint)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

impl FromStr for AlertStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "firing" => Ok(AlertStatus::Firing),
            "resolved" => Ok(AlertStatus::Resolved),
            other => Err(format!(
                "unknown alert status {other:?} (expected firing or resolved)"
            )),
        }
    }
}

/// Severity, read from the `severity` label. Ordered from least to most severe
/// so that a card shows the worst severity among its alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// No `severity` label, or a value we do not know.
    Unknown,
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    /// Maps common spellings (`page`, `crit`, `warn`, ...) case-insensitively.
    pub fn from_label(value: Option<&str>) -> Severity {
        let Some(v) = value else {
            return Severity::Unknown;
        };
        match v.to_ascii_lowercase().as_str() {
            "critical" | "crit" | "page" | "fatal" | "emergency" | "alert" | "p1" => {
                Severity::Critical
            }
            "error" | "err" | "high" | "major" | "p2" => Severity::Error,
            "warning" | "warn" | "medium" | "minor" | "p3" => Severity::Warning,
            "info" | "informational" | "low" | "notice" | "p4" | "p5" => Severity::Info,
            _ => Severity::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

/// One alert, decoded at the edge. Every source produces these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub fingerprint: Fingerprint,
    pub status: AlertStatus,
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at: DateTime<Utc>,
    /// `None` for Alertmanager's zero time (`0001-01-01T00:00:00Z`): a firing
    /// alert with no known end.
    pub ends_at: Option<DateTime<Utc>>,
    pub generator_url: Option<String>,
    /// How often and until when the alert happened, for sources that report
    /// occurrences rather than state (the `tracing` Layer, OTLP logs and
    /// spans). `None` for Alertmanager, whose alerts carry their own status.
    pub occurrences: Option<Occurrences>,
}

/// Occurrences of an event-sourced alert in one notification. The first one
/// is the alert's `starts_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrences {
    /// At least 1.
    pub count: u64,
    pub last_seen: DateTime<Utc>,
}

impl Alert {
    pub fn severity(&self) -> Severity {
        Severity::from_label(self.labels.get("severity").map(String::as_str))
    }

    /// A digest of everything about the alert that a card shows. Two
    /// notifications whose alerts have equal digests change nothing, so the
    /// second one is deduped. `ends_at` of a firing alert is left out on
    /// purpose: Alertmanager moves it forward on every re-send
    /// (`resolve_timeout`), which is not a change anyone needs to see.
    pub fn digest(&self) -> u64 {
        let mut h = digest_hasher();
        h.write(self.status.as_str().as_bytes());
        for labels in [&self.labels, &self.annotations] {
            write_labels(&mut h, labels);
        }
        h.write_u8(0xfe);
        h.write(&self.starts_at.timestamp_millis().to_le_bytes());
        if self.status == AlertStatus::Resolved
            && let Some(end) = self.ends_at
        {
            h.write(&end.timestamp_millis().to_le_bytes());
        }
        if let Some(url) = &self.generator_url {
            h.write(url.as_bytes());
        }
        h.finish()
    }
}

/// The hasher of the digests the store keeps to tell whether anything a card
/// shows changed ([`Alert::digest`], a card batch's group digest).
///
/// XXH3-64 with the default secret: a specified algorithm, so digests
/// stored by one build match the next, and the fastest such hash over the
/// kilobyte of labels and annotations an alert carries (the digests are
/// computed for every alert of every re-send: SipHash-1-3 took a tenth of
/// the re-send path at 100 alerts per request, FNV byte at a time more).
/// Not a defence against crafted collisions: a source that can send alerts
/// can change them anyway. Digests stored by a build with another hasher
/// cost one rewrite of each alert's row on its first re-send.
pub fn digest_hasher() -> impl Hasher {
    xxhash_rust::xxh3::Xxh3::new()
}

/// Feeds a label set to a digest unambiguously: a 0xfe marker, then each
/// name and value followed by the separator 0xff (which UTF-8 never
/// contains).
pub fn write_labels(h: &mut impl Hasher, labels: &Labels) {
    h.write_u8(0xfe);
    for (k, v) in labels {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
}

/// 64-bit FNV-1a, the hash Alertmanager uses for fingerprints. Kept tiny and
/// dependency-free; its output is part of our stable contract.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Fnv64 {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;

    pub fn new() -> Self {
        Fnv64(Self::OFFSET)
    }

    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a notification came from, with what that source says about grouping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    Alertmanager {
        receiver: String,
        group_key: String,
        external_url: Option<String>,
    },
    /// OTLP/HTTP log records or spans (`POST /v1/logs`, `POST /v1/traces`).
    Otlp { signal: OtlpSignal },
    /// `tracing` events from the Layer, in embedded mode.
    Tracing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpSignal {
    Logs,
    Traces,
}

impl Source {
    /// [`Source::kind`] of Alertmanager notifications.
    pub const ALERTMANAGER_KIND: &'static str = "alertmanager";

    /// Whether the source says when its alerts resolve. Alertmanager does;
    /// sources that only report occurrences (a service's errors) do not:
    /// their cards get a Resolve button and resolve after a quiet period.
    pub fn resolves_itself(&self) -> bool {
        match self {
            Source::Alertmanager { .. } => true,
            Source::Otlp { .. } | Source::Tracing => false,
        }
    }

    /// The `source` label of ingest metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Alertmanager { .. } => Self::ALERTMANAGER_KIND,
            Source::Otlp {
                signal: OtlpSignal::Logs,
            } => "otlp_logs",
            Source::Otlp {
                signal: OtlpSignal::Traces,
            } => "otlp_traces",
            Source::Tracing => "tracing",
        }
    }

    /// Link to the source itself (Alertmanager's externalURL).
    pub fn external_url(&self) -> Option<&str> {
        match self {
            Source::Alertmanager { external_url, .. } => external_url.as_deref(),
            Source::Otlp { .. } | Source::Tracing => None,
        }
    }
}

/// One delivery from a source: a group of alerts plus what they have in common.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub source: Source,
    pub group_labels: Labels,
    pub common_labels: Labels,
    pub common_annotations: Labels,
    pub alerts: Vec<Alert>,
    /// Alerts Alertmanager left out of the payload (`max_alerts`).
    pub truncated_alerts: u64,
}

/// The store's identity of a card: random, so that a card posted by one
/// database can never be mistaken for another's when reconciling against a
/// channel's history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CardId(pub String);

impl CardId {
    /// 128 random bits as 32 hex digits.
    pub fn random() -> CardId {
        CardId(format!(
            "{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        ))
    }
}

impl fmt::Display for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CardState {
    Firing,
    Resolved,
}

impl CardState {
    pub fn as_str(self) -> &'static str {
        match self {
            CardState::Firing => "firing",
            CardState::Resolved => "resolved",
        }
    }
}

impl FromStr for CardState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "firing" => Ok(CardState::Firing),
            "resolved" => Ok(CardState::Resolved),
            other => Err(format!("unknown card state {other:?}")),
        }
    }
}

/// A change worth one line in the card's thread. Batched: one reply lists
/// every event that happened in the batching window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ThreadEvent {
    /// An alert joined the card (or fired again after resolving).
    AlertFiring {
        fingerprint: String,
        name: String,
        summary: Option<String>,
        /// What an event source knows beyond the summary (fields, span
        /// context), shown under the line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<String>,
        at: DateTime<Utc>,
    },
    AlertResolved {
        fingerprint: String,
        name: String,
        at: DateTime<Utc>,
    },
    /// Every alert of the card has resolved.
    CardResolved {
        at: DateTime<Utc>,
        /// Seconds since the card opened (or reopened).
        duration_secs: i64,
    },
    /// A resolved card fired again inside the route's reopen window.
    CardReopened { at: DateTime<Utc> },
    /// Someone acknowledged the card (`by` is a Slack user id).
    Acknowledged { by: String, at: DateTime<Utc> },
    /// Someone took the acknowledgement back.
    Unacknowledged { by: String, at: DateTime<Utc> },
    /// The card climbed to escalation step `level` (1-based), notifying
    /// `notify` (Slack user or user-group ids); `by` is set when someone
    /// pressed Escalate, absent when the policy's timer fired.
    Escalated {
        level: u32,
        notify: Vec<String>,
        by: Option<String>,
        at: DateTime<Utc>,
    },
    /// Someone asked for the card's status (an @-mention in its thread); the
    /// reply shows the card's state when it is sent.
    StatusAsked { by: String, at: DateTime<Utc> },
    /// Someone resolved the card by hand (sources that cannot resolve).
    ResolvedBy {
        by: String,
        at: DateTime<Utc>,
        /// Seconds since the card opened.
        duration_secs: i64,
    },
    /// Someone silenced the card's alerts in Alertmanager.
    Silenced {
        by: String,
        until: DateTime<Utc>,
        silence_id: String,
        comment: Option<String>,
        at: DateTime<Utc>,
    },
}

/// One alert as a card shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardAlert {
    pub fingerprint: Fingerprint,
    pub status: AlertStatus,
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub generator_url: Option<String>,
    /// Accumulated occurrences (event sources only).
    pub occurrences: Option<Occurrences>,
}

/// Everything needed to render a card, read from the store at send time so
/// that a coalesced `chat.update` always shows the latest state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardView {
    pub id: CardId,
    pub key: String,
    pub route: String,
    pub channel: String,
    pub state: CardState,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub group_labels: Labels,
    pub common_labels: Labels,
    pub common_annotations: Labels,
    /// Link to the source (Alertmanager's externalURL).
    pub external_url: Option<String>,
    /// Labels the route asks to show as fields, in that order.
    pub key_labels: Vec<String>,
    /// Alerts to list: firing ones first, then the most recently resolved;
    /// at most the route's `max_alerts`.
    pub alerts: Vec<CardAlert>,
    pub firing_count: u64,
    pub resolved_count: u64,
    /// Who acknowledged the card and when, while it is acknowledged.
    pub acknowledged: Option<Acknowledgement>,
    /// Escalation steps taken so far (0 = none).
    pub escalation_level: u32,
    /// The source cannot resolve the card itself, so it offers Resolve.
    pub manual_resolve: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    /// Slack user id.
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Whether a string is shaped like a Slack id (`U…`, `S…`, `C…`, `T…`):
/// upper-case letters and digits only. Ids from Slack payloads are checked
/// with this before they are stored or rendered into `<@…>` mentions.
pub fn is_slack_id(s: &str) -> bool {
    (2..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

impl CardView {
    /// Alerts the card knows but does not list ("and N more").
    pub fn hidden_alerts(&self) -> u64 {
        (self.firing_count + self.resolved_count).saturating_sub(self.alerts.len() as u64)
    }

    /// The worst severity among the listed alerts, falling back to the
    /// common labels.
    pub fn severity(&self) -> Severity {
        self.alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing || self.state == CardState::Resolved)
            .map(|a| Severity::from_label(a.labels.get("severity").map(String::as_str)))
            .max()
            .unwrap_or_else(|| {
                Severity::from_label(self.common_labels.get("severity").map(String::as_str))
            })
    }

    /// The alert name most cards are about.
    pub fn title(&self) -> String {
        self.common_labels
            .get("alertname")
            .or_else(|| self.group_labels.get("alertname"))
            .or_else(|| self.alerts.first().and_then(|a| a.labels.get("alertname")))
            .cloned()
            .unwrap_or_else(|| "Alert".to_owned())
    }
}

/// How often a digest is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestEvery {
    Day,
    Week,
}

/// What a channel's digest reports about one period, as the store counts it
/// ([`crate::store::Store::digest_figures`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestFigures {
    /// Cards opened in the period.
    pub fired: u64,
    /// Cards resolved in the period.
    pub resolved: u64,
    /// Cards acknowledged in the period.
    pub acknowledged: u64,
    /// Mean of opened -> acknowledged over the cards acknowledged in the
    /// period; `None` when there were none.
    pub mean_time_to_acknowledge: Option<std::time::Duration>,
    /// Mean of opened -> resolved over the cards resolved in the period.
    pub mean_time_to_resolve: Option<std::time::Duration>,
    /// Alert names with the most alerts that started in the period, most
    /// first (an empty name: alerts without an `alertname` label).
    pub noisiest: Vec<NoisyAlert>,
    /// Cards firing when the digest was made.
    pub firing_now: u64,
    /// The oldest of those, oldest first.
    pub oldest_firing: Vec<FiringCard>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoisyAlert {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiringCard {
    pub id: CardId,
    pub title: String,
    /// The card's message, once posted: the digest links to it.
    pub ts: Option<String>,
    pub opened_at: DateTime<Utc>,
}

/// A digest as it waits in the outbox: the figures are counted when the
/// digest is claimed, so a delivery retried later still reports its period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The digest's durable identity ([`crate::pipeline::digest::key`]);
    /// with `period_end`, it finds a posted digest in the channel's history.
    pub key: String,
    pub channel: String,
    pub every: DigestEvery,
    /// IANA name the period's local times are shown in.
    pub time_zone: String,
    /// The period covered: `period_start <= t < period_end`, where
    /// `period_end` is the scheduled instant this digest is for.
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// When the figures were counted ("firing now" is as of this instant;
    /// later than `period_end` after downtime).
    pub as_of: DateTime<Utc>,
    pub figures: DigestFigures,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_prints_as_sixteen_hex_digits() {
        assert_eq!(Fingerprint(0xab).to_string(), "00000000000000ab");
        assert_eq!(
            "00000000000000ab".parse::<Fingerprint>().unwrap(),
            Fingerprint(0xab)
        );
    }

    #[test]
    fn severity_maps_common_spellings() {
        assert_eq!(Severity::from_label(Some("PAGE")), Severity::Critical);
        assert_eq!(Severity::from_label(Some("warn")), Severity::Warning);
        assert_eq!(Severity::from_label(Some("bogus")), Severity::Unknown);
        assert!(Severity::Critical > Severity::Warning);
    }

    #[test]
    fn fnv64_matches_reference_vectors() {
        // Reference values of 64-bit FNV-1a.
        let mut h = Fnv64::new();
        assert_eq!(h.finish(), 0xcbf29ce484222325);
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63dc4c8601ec8c);
    }
}
