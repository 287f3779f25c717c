//! Typed configuration, loaded from JSON.
//!
//! Every struct denies unknown fields, so a typo is an error that names the
//! JSON path (`routes[1].matcher: unknown field ...`) instead of a silently
//! ignored key. Secrets are a plain string, `{"env": "NAME"}` or
//! `{"file": "PATH"}` and are resolved once, at load time, so a missing
//! environment variable fails `check-config` rather than the first Slack call.
//! [`Config::load`] parses, resolves and validates; nothing else reads the file.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::pipeline::route::Matcher;

/// Channel of the catch-all route that a config without routes gets.
pub const DEFAULT_CHANNEL: &str = "C0ALERTS01";
/// Alertmanager's largest notification (a few thousand alerts) fits easily;
/// the bench's 100-alert payload is about 100 KB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl ConfigError {
    fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where Slack reaches this ackbar from outside, such as
    /// `https://ackbar.example.com`: the base of the request URLs in the app
    /// manifest and of the OAuth redirect. Unset, ackbar is only reachable
    /// on `listen` (enough for Socket Mode and the sandbox).
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub slack: SlackConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// OTLP/HTTP ingest (`POST /v1/logs`, `POST /v1/traces`): which records
    /// become alerts and which attributes become labels.
    #[serde(default)]
    pub otlp: OtlpConfig,
    /// Ordered; the first route whose matchers all match an alert takes it.
    /// Empty means one catch-all route into [`DEFAULT_CHANNEL`].
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// On-call rotations that escalation steps can notify (`oncall:NAME`).
    #[serde(default)]
    pub oncall: Vec<crate::pipeline::oncall::RotationConfig>,
    /// Scheduled summaries posted to channels (see [`DigestConfig`]).
    #[serde(default)]
    pub digests: Vec<DigestConfig>,
}

impl Default for Config {
    /// What `{}` means: sandbox mode, `sqlite://ackbar.db`, one catch-all
    /// route.
    fn default() -> Self {
        Config {
            listen: default_listen(),
            public_url: None,
            store: StoreConfig::default(),
            slack: SlackConfig::default(),
            ingest: IngestConfig::default(),
            delivery: DeliveryConfig::default(),
            log: LogConfig::default(),
            otlp: OtlpConfig::default(),
            routes: Vec::new(),
            oncall: Vec::new(),
            digests: Vec::new(),
        }
    }
}

/// A digest: every day or week at a local time, a summary of the channel's
/// cards since the previous one (see [`crate::pipeline::digest`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// The Slack channel id whose cards are summarised, and where the digest
    /// is posted.
    pub channel: String,
    pub every: crate::model::DigestEvery,
    /// Local time of day, `HH:MM` (24-hour; `HH:MM:SS` also accepted).
    pub at: String,
    /// Weekly digests only: `mon` ... `sun`.
    #[serde(default)]
    pub weekday: Option<String>,
    /// IANA time zone name of `at`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9094))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (created when missing), `sqlite::memory:`, or
    /// `postgres://USER@HOST[:PORT]/DATABASE` (several replicas may share
    /// one PostgreSQL database).
    #[serde(default = "default_store_url")]
    pub url: String,
    /// Resolved cards (with their alerts, thread and dead letters) are
    /// deleted this long after they resolved, so the tables stay bounded.
    #[serde(default = "default_retention", deserialize_with = "de_duration")]
    pub retention: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: default_store_url(),
            retention: default_retention(),
        }
    }
}

fn default_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

fn default_store_url() -> String {
    "sqlite://ackbar.db".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Web API base. Ignored in sandbox mode, where ackbar talks to its own
    /// emulator under `/sandbox/api`.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// No bot token means sandbox mode.
    #[serde(default)]
    pub bot_token: Option<Secret>,
    #[serde(default)]
    pub signing_secret: Option<Secret>,
    /// Socket Mode app-level token (used by a later release).
    #[serde(default)]
    pub app_token: Option<Secret>,
    /// Per-request timeout for Web API calls.
    #[serde(default = "default_request_timeout", deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// The slash command ackbar answers (as registered in the Slack app).
    #[serde(default = "default_command")]
    pub command: String,
    /// Socket Mode liveness: how often to ping, and how long a connection
    /// may stay silent before it counts as dead and is replaced.
    #[serde(default)]
    pub socket_mode: SocketModeConfig,
    /// OAuth v2 install into several workspaces (`GET /slack/install`);
    /// each installation's bot token is kept in the store.
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
}

/// The Slack app's OAuth credentials and how installs run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The app's Client ID (Basic Information page); not a secret.
    pub client_id: String,
    pub client_secret: Secret,
    /// Bot scopes to ask for; default: what ackbar's calls need
    /// ([`crate::slack::scopes::bot_scopes`]).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Slack's authorize page (tests point it at the sandbox's).
    #[serde(default = "default_authorize_url")]
    pub authorize_url: String,
    /// How long an install may take from `/slack/install` to the callback.
    #[serde(default = "default_state_ttl", deserialize_with = "de_duration")]
    pub state_ttl: Duration,
}

impl OAuthConfig {
    /// The scopes an install asks for.
    pub fn effective_scopes(&self) -> Vec<String> {
        match &self.scopes {
            Some(scopes) => scopes.clone(),
            None => crate::slack::scopes::bot_scopes()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }
}

fn default_authorize_url() -> String {
    "https://slack.com/oauth/v2/authorize".to_owned()
}

fn default_state_ttl() -> Duration {
    Duration::from_secs(10 * 60)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketModeConfig {
    #[serde(default = "default_ping_interval", deserialize_with = "de_duration")]
    pub ping_interval: Duration,
    #[serde(default = "default_dead_after", deserialize_with = "de_duration")]
    pub dead_after: Duration,
}

impl Default for SocketModeConfig {
    fn default() -> Self {
        SocketModeConfig {
            ping_interval: default_ping_interval(),
            dead_after: default_dead_after(),
        }
    }
}

fn default_ping_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_dead_after() -> Duration {
    Duration::from_secs(20)
}

fn default_command() -> String {
    "/ackbar".to_owned()
}

impl Default for SlackConfig {
    fn default() -> Self {
        SlackConfig {
            api_url: default_api_url(),
            bot_token: None,
            signing_secret: None,
            app_token: None,
            request_timeout: default_request_timeout(),
            command: default_command(),
            socket_mode: SocketModeConfig::default(),
            oauth: None,
        }
    }
}

fn default_api_url() -> String {
    "https://slack.com/api".to_owned()
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest accepted request body; larger ones get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Optional authentication for `POST /webhook/alertmanager`.
    #[serde(default)]
    pub auth: Option<IngestAuth>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: default_max_body_bytes(),
            auth: None,
        }
    }
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// What Alertmanager's `http_config` sends: `authorization` (Bearer) or
/// `basic_auth`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum IngestAuth {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Minimum spacing of `chat.postMessage` calls (cards and replies) per
    /// channel. Slack allows about one per second per channel.
    #[serde(default = "default_post_interval", deserialize_with = "de_duration")]
    pub post_interval: Duration,
    /// Posts a channel may send back to back before pacing applies.
    #[serde(default = "default_post_burst")]
    pub post_burst: u32,
    /// Minimum spacing of `chat.update` calls across the workspace (tier 3:
    /// about 50 per minute).
    #[serde(default = "default_update_interval", deserialize_with = "de_duration")]
    pub update_interval: Duration,
    #[serde(default = "default_update_burst")]
    pub update_burst: u32,
    /// Thread replies for one card, and card updates caused by alerts,
    /// wait this long so that a storm of changes becomes one reply and one
    /// `chat.update` (what people do updates the card at once).
    #[serde(
        default = "default_reply_batch_window",
        deserialize_with = "de_duration"
    )]
    pub reply_batch_window: Duration,
    /// Attempts before a retryable failure becomes a dead letter.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff_base", deserialize_with = "de_duration")]
    pub backoff_base: Duration,
    #[serde(default = "default_backoff_max", deserialize_with = "de_duration")]
    pub backoff_max: Duration,
    /// On shutdown, keep delivering for at most this long; what is left stays
    /// in the store for the next start. Not in sandbox mode, whose emulated
    /// Slack stops with the listener.
    #[serde(
        default = "default_shutdown_deadline",
        deserialize_with = "de_duration"
    )]
    pub shutdown_deadline: Duration,
    /// How long a replica's hold on a channel's outbox lasts without being
    /// renewed. Only the holder sends to the channel; when it dies, another
    /// replica takes the channel over after at most this long.
    #[serde(default = "default_lease_ttl", deserialize_with = "de_duration")]
    pub lease_ttl: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            post_interval: default_post_interval(),
            post_burst: default_post_burst(),
            update_interval: default_update_interval(),
            update_burst: default_update_burst(),
            reply_batch_window: default_reply_batch_window(),
            max_attempts: default_max_attempts(),
            backoff_base: default_backoff_base(),
            backoff_max: default_backoff_max(),
            shutdown_deadline: default_shutdown_deadline(),
            lease_ttl: default_lease_ttl(),
        }
    }
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(15)
}
fn default_post_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_post_burst() -> u32 {
    3
}
fn default_update_interval() -> Duration {
    Duration::from_millis(1200)
}
fn default_update_burst() -> u32 {
    5
}
fn default_reply_batch_window() -> Duration {
    Duration::from_secs(2)
}
fn default_max_attempts() -> u32 {
    12
}
fn default_backoff_base() -> Duration {
    Duration::from_millis(500)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(60)
}
fn default_shutdown_deadline() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    #[serde(default)]
    pub logs: OtlpLogsConfig,
    #[serde(default)]
    pub traces: OtlpTracesConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpLogsConfig {
    /// Lowest `severityNumber` that becomes an alert: a number 1-24 or a
    /// name (`"WARN"`, `"ERROR"`, `"FATAL"`, `"ERROR3"`, ...); default ERROR.
    #[serde(
        default = "default_min_severity",
        deserialize_with = "de_severity_number"
    )]
    pub min_severity: i32,
    /// Attributes (of the record, its scope or its resource) copied into
    /// labels, e.g. `deployment.environment`.
    #[serde(default)]
    pub label_attributes: Vec<String>,
}

impl Default for OtlpLogsConfig {
    fn default() -> Self {
        OtlpLogsConfig {
            min_severity: default_min_severity(),
            label_attributes: Vec::new(),
        }
    }
}

/// SEVERITY_NUMBER_ERROR.
fn default_min_severity() -> i32 {
    17
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpTracesConfig {
    /// Link from an alert to its trace, e.g.
    /// `https://jaeger.example/trace/{trace_id}`; `{span_id}` and
    /// `{service}` are filled in too.
    #[serde(default)]
    pub trace_url: Option<String>,
    /// Attributes (of the span, its scope or its resource) copied into
    /// labels.
    #[serde(default)]
    pub label_attributes: Vec<String>,
}

/// Placeholders `otlp.traces.trace_url` may contain.
const TRACE_URL_PLACEHOLDERS: [&str; 3] = ["{trace_id}", "{span_id}", "{service}"];
/// Labels every OTLP alert gets; a configured attribute may not take their
/// names.
const OTLP_LABELS: [&str; 4] = ["alertname", "service", "scope", "severity"];

fn de_severity_number<'de, D: Deserializer<'de>>(de: D) -> Result<i32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(i64),
        Name(String),
    }
    let expected = "a severity number 1-24 or a name such as \"WARN\", \"ERROR\", \"FATAL\"";
    match Raw::deserialize(de)? {
        Raw::Number(n @ 1..=24) => Ok(n as i32),
        Raw::Number(n) => Err(serde::de::Error::custom(format!("{n} is not {expected}"))),
        Raw::Name(name) => crate::ingest::otlp::severity_number_from_text(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("{name:?} is not {expected}"))),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `ackbar=debug`; `RUST_LOG` wins.
    #[serde(default)]
    pub level: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    /// Alertmanager matcher syntax: `name=value`, `!=`, `=~`, `!~`.
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    /// Slack channel id (`C...`). For a route with a `webhook_url`: the
    /// channel that webhook posts into (Slack binds each webhook to one);
    /// ackbar cannot check it, but keys the route's outbox and pacing by it.
    pub channel: String,
    /// Deliver through this Slack incoming webhook instead of the bot
    /// token: one message per card change, no thread, no buttons. A secret
    /// (the URL is the credential): never printed.
    #[serde(default)]
    pub webhook_url: Option<Secret>,
    /// The workspace (`T...`) whose installation posts this route's cards
    /// (see `slack.oauth`). Unset: `slack.bot_token`, or else the only
    /// installed workspace.
    #[serde(default)]
    pub team: Option<String>,
    /// Labels whose values make the card key. Empty (default): the
    /// Alertmanager notification's receiver + groupKey, so Alertmanager's own
    /// grouping decides the cards.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// A resolved card that fires again within this window reopens (same
    /// card, same thread); later, a new card starts.
    #[serde(default = "default_reopen_window", deserialize_with = "de_duration")]
    pub reopen_window: Duration,
    /// Alerts from event sources (the tracing Layer, OTLP logs and spans)
    /// report occurrences, never their own end: one resolves once it has not
    /// occurred for this long.
    #[serde(default = "default_quiet_period", deserialize_with = "de_duration")]
    pub quiet_period: Duration,
    #[serde(default)]
    pub replies: ReplyConfig,
    #[serde(default)]
    pub card: CardConfig,
    /// Escalation policy: ordered steps; an unacknowledged card climbs to
    /// step N once `after` has passed since it opened.
    #[serde(default)]
    pub escalation: Vec<EscalationStep>,
    /// Who may act on this route's cards. An absent list means anyone.
    #[serde(default)]
    pub allowed: Permissions,
    /// Alertmanager to create silences on (`POST /api/v2/silences`).
    #[serde(default)]
    pub alertmanager_url: Option<String>,
    /// Templates replacing the default card and replies
    /// ([`crate::slack::template`]).
    #[serde(default)]
    pub template: Option<TemplateConfig>,
}

/// A route's templates (`routes[].template`): each one replaces the default
/// card or reply; an absent one keeps the default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    #[serde(default)]
    pub card: Option<TemplateSource>,
    #[serde(default)]
    pub reply: Option<TemplateSource>,
    /// Both compiled, set when the config is loaded.
    #[serde(skip)]
    pub compiled: Option<std::sync::Arc<crate::slack::template::RouteTemplates>>,
}

/// Where a template's text is: `{"file": "card.json.j2"}` (relative to the
/// config file's directory) or `{"inline": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateSource {
    File(PathBuf),
    Inline(String),
}

impl RouteConfig {
    /// The route of a config without routes: everything, into
    /// [`DEFAULT_CHANNEL`], with every setting at its default.
    pub fn catch_all() -> RouteConfig {
        RouteConfig {
            name: "default".to_owned(),
            matchers: Vec::new(),
            channel: DEFAULT_CHANNEL.to_owned(),
            team: None,
            group_by: Vec::new(),
            reopen_window: default_reopen_window(),
            quiet_period: default_quiet_period(),
            replies: ReplyConfig::default(),
            card: CardConfig::default(),
            escalation: Vec::new(),
            allowed: Permissions::default(),
            alertmanager_url: None,
            template: None,
            webhook_url: None,
        }
    }
}

/// One step of an escalation policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    /// Delay since the card opened.
    #[serde(deserialize_with = "de_duration")]
    pub after: Duration,
    /// Who to notify: `U…` (user), `S…` (user group) or `oncall:NAME`.
    pub notify: Vec<Target>,
    /// Also send each notified user a direct message with the card's link.
    #[serde(default)]
    pub dm: bool,
}

/// Someone to notify or to allow: a user, a user group, or whoever is on
/// call in a rotation. Written `U0123ABCD`, `S0123ABCD` or `oncall:NAME`
/// (Slack's `<@U…>` and `<!subteam^S…>` forms are accepted too).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    User(String),
    Group(String),
    Rotation(String),
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(name) = s.strip_prefix("oncall:") {
            if name.is_empty() {
                return Err("oncall: needs a rotation name, e.g. oncall:primary".to_owned());
            }
            return Ok(Target::Rotation(name.to_owned()));
        }
        let id = s
            .strip_prefix("<@")
            .or_else(|| s.strip_prefix("<!subteam^"))
            .and_then(|rest| rest.strip_suffix('>'))
            .map(|inner| inner.split('|').next().unwrap_or(inner))
            .unwrap_or(s);
        let valid = id.len() >= 3
            && id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        match id.as_bytes().first() {
            Some(b'U' | b'W') if valid => Ok(Target::User(id.to_owned())),
            Some(b'S') if valid => Ok(Target::Group(id.to_owned())),
            _ => Err(format!(
                "{s:?} is not a Slack user id (U…), user group id (S…) or oncall:NAME"
            )),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::User(id) | Target::Group(id) => f.write_str(id),
            Target::Rotation(name) => write!(f, "oncall:{name}"),
        }
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let s = String::deserialize(de)?;
        Target::from_str(&s).map_err(serde::de::Error::custom)
    }
}

/// Per action, who may take it; `None` means anyone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    #[serde(default)]
    pub acknowledge: Option<Vec<Target>>,
    #[serde(default)]
    pub escalate: Option<Vec<Target>>,
    #[serde(default)]
    pub silence: Option<Vec<Target>>,
    #[serde(default)]
    pub resolve: Option<Vec<Target>>,
}

fn default_reopen_window() -> Duration {
    Duration::from_secs(3600)
}

fn default_quiet_period() -> Duration {
    Duration::from_secs(30 * 60)
}

/// Which changes post a thread reply under the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyConfig {
    #[serde(default = "yes")]
    pub alert_firing: bool,
    #[serde(default = "yes")]
    pub alert_resolved: bool,
    #[serde(default = "yes")]
    pub card_resolved: bool,
    #[serde(default = "yes")]
    pub card_reopened: bool,
}

impl Default for ReplyConfig {
    fn default() -> Self {
        ReplyConfig {
            alert_firing: true,
            alert_resolved: true,
            card_resolved: true,
            card_reopened: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardConfig {
    /// Labels shown as fields on the card, in this order, when present.
    #[serde(default = "default_key_labels")]
    pub key_labels: Vec<String>,
    /// Alerts listed on the card; the rest are counted ("and N more").
    #[serde(default = "default_max_alerts")]
    pub max_alerts: u32,
}

impl Default for CardConfig {
    fn default() -> Self {
        CardConfig {
            key_labels: default_key_labels(),
            max_alerts: default_max_alerts(),
        }
    }
}

fn default_key_labels() -> Vec<String> {
    [
        "severity",
        "cluster",
        "namespace",
        "service",
        "job",
        "instance",
    ]
    .map(String::from)
    .to_vec()
}

fn default_max_alerts() -> u32 {
    10
}

/// A secret: given inline, or read from an environment variable or a file
/// when the config is loaded. `Debug` never prints the value.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    Inline(String),
    Env {
        env: String,
    },
    File {
        file: PathBuf,
    },
    /// Produced by [`Config::load`]; not written by users.
    #[serde(skip)]
    Resolved(String),
}

impl Secret {
    /// The value. Only meaningful after [`Config::load`] resolved it.
    pub fn expose(&self) -> &str {
        match self {
            Secret::Inline(v) | Secret::Resolved(v) => v,
            Secret::Env { .. } | Secret::File { .. } => "",
        }
    }

    /// Compares a presented credential with this secret in constant time
    /// (time depends only on the lengths).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_eq(self.expose().as_bytes(), candidate)
    }

    fn resolve(&mut self, path: &str) -> Result<(), ConfigError> {
        let value = match self {
            Secret::Inline(v) | Secret::Resolved(v) => v.clone(),
            Secret::Env { env } => std::env::var(env.as_str()).map_err(|_| {
                ConfigError::invalid(
                    path,
                    format!(
                        "environment variable {env} is not set (set it, or give the secret inline)"
                    ),
                )
            })?,
            Secret::File { file } => std::fs::read_to_string(&*file)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| {
                    ConfigError::invalid(
                        path,
                        format!("cannot read secret file {}: {e}", file.display()),
                    )
                })?,
        };
        if value.is_empty() {
            return Err(ConfigError::invalid(path, "secret is empty"));
        }
        *self = Secret::Resolved(value);
        Ok(())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env { env } => write!(f, "Secret(env {env})"),
            Secret::File { file } => write!(f, "Secret(file {})", file.display()),
            Secret::Inline(_) | Secret::Resolved(_) => f.write_str("Secret(***)"),
        }
    }
}

impl Config {
    /// Reads, parses, resolves secrets and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_json_in(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses, resolves and validates a config whose template files are
    /// relative to the working directory.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        Config::from_json_in(text, Path::new("."))
    }

    /// Like [`Config::from_json`], with template files relative to `dir`.
    pub fn from_json_in(text: &str, dir: &Path) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "config".to_owned()
            } else {
                path
            };
            ConfigError::invalid(path, e.into_inner().to_string())
        })?;
        config.resolve_secrets()?;
        config.validate()?;
        config.compile_templates(dir)?;
        Ok(config)
    }

    /// Reads and compiles every route's templates; a syntax error names the
    /// route, the file and the line.
    fn compile_templates(&mut self, dir: &Path) -> Result<(), ConfigError> {
        for (i, route) in self.routes.iter_mut().enumerate() {
            if let Some(template) = &mut route.template {
                let compiled =
                    crate::slack::template::RouteTemplates::compile(&route.name, template, dir)
                        .map_err(|e| {
                            ConfigError::invalid(
                                format!("routes[{i}].template.{}", e.kind),
                                e.to_string(),
                            )
                        })?;
                template.compiled = Some(std::sync::Arc::new(compiled));
            }
        }
        Ok(())
    }

    /// Sandbox mode: no bot token and no OAuth installs, so ackbar serves
    /// its own Slack emulator.
    pub fn sandbox_mode(&self) -> bool {
        self.slack.bot_token.is_none() && self.slack.oauth.is_none()
    }

    /// The routes in force: the configured ones, or the catch-all default.
    pub fn effective_routes(&self) -> Vec<RouteConfig> {
        if !self.routes.is_empty() {
            return self.routes.clone();
        }
        vec![RouteConfig::catch_all()]
    }

    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        let slack = &mut self.slack;
        for (name, secret) in [
            ("slack.bot_token", &mut slack.bot_token),
            ("slack.signing_secret", &mut slack.signing_secret),
            ("slack.app_token", &mut slack.app_token),
        ] {
            if let Some(s) = secret {
                s.resolve(name)?;
            }
        }
        for (i, route) in self.routes.iter_mut().enumerate() {
            if let Some(url) = &mut route.webhook_url {
                url.resolve(&format!("routes[{i}].webhook_url"))?;
            }
        }
        if let Some(oauth) = &mut slack.oauth {
            oauth.client_secret.resolve("slack.oauth.client_secret")?;
        }
        match &mut self.ingest.auth {
            Some(IngestAuth::Bearer(s)) => s.resolve("ingest.auth.bearer")?,
            Some(IngestAuth::Basic { password, .. }) => {
                password.resolve("ingest.auth.basic.password")?
            }
            None => {}
        }
        Ok(())
    }

    /// Checks what the types cannot: store URL, routes, escalation steps.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.store.url;
        if !crate::store::supported_url(url) {
            return Err(ConfigError::invalid(
                "store.url",
                format!(
                    "unsupported store {:?}: use {}",
                    redact_url(url),
                    crate::store::SUPPORTED_SCHEMES
                ),
            ));
        }
        // A pruned card cannot reopen: its key's next alert starts a new one.
        if let Some(route) = self
            .effective_routes()
            .into_iter()
            .find(|r| r.reopen_window > self.store.retention)
        {
            return Err(ConfigError::invalid(
                "store.retention",
                format!(
                    "must be at least route {:?}'s reopen_window, or its resolved cards are pruned while they could still reopen",
                    route.name
                ),
            ));
        }
        if !(self.slack.api_url.starts_with("http://")
            || self.slack.api_url.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                "slack.api_url",
                "must be an http:// or https:// URL such as https://slack.com/api",
            ));
        }
        if let Some(url) = &self.public_url
            && (!(url.starts_with("http://") || url.starts_with("https://"))
                || url.ends_with('/')
                || redact_url(url) != *url)
        {
            return Err(ConfigError::invalid(
                "public_url",
                "must be an http:// or https:// base URL without credentials or a trailing slash, such as https://ackbar.example.com",
            ));
        }
        if redact_url(&self.slack.api_url) != self.slack.api_url {
            return Err(ConfigError::invalid(
                "slack.api_url",
                "must not carry credentials: the token goes in slack.bot_token",
            ));
        }
        if let Some(token) = &self.slack.bot_token
            && !token.expose().starts_with("xox")
        {
            return Err(ConfigError::invalid(
                "slack.bot_token",
                "does not look like a Slack token (bot tokens start with xoxb-)",
            ));
        }
        self.validate_oauth()?;
        let socket = &self.slack.socket_mode;
        if socket.ping_interval.is_zero() || socket.dead_after <= socket.ping_interval {
            return Err(ConfigError::invalid(
                "slack.socket_mode",
                "ping_interval must be positive and dead_after longer than it",
            ));
        }
        if self.ingest.max_body_bytes < 1024 {
            return Err(ConfigError::invalid(
                "ingest.max_body_bytes",
                "must be at least 1024",
            ));
        }
        let d = &self.delivery;
        if d.post_burst == 0 || d.update_burst == 0 {
            return Err(ConfigError::invalid(
                "delivery",
                "post_burst and update_burst must be at least 1",
            ));
        }
        // A holder renews its lease right before each send; the lease must
        // outlast that Slack call, or a live holder could lose its channel
        // mid-call to another replica.
        if d.lease_ttl <= self.slack.request_timeout {
            return Err(ConfigError::invalid(
                "delivery.lease_ttl",
                "must be longer than slack.request_timeout",
            ));
        }
        if d.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "delivery.max_attempts",
                "must be at least 1",
            ));
        }
        crate::pipeline::oncall::Rotations::new(&self.oncall).map_err(|message| {
            // Rotations::new prefixes its messages with `oncall[i].field`.
            let (path, message) = message
                .split_once(": ")
                .unwrap_or(("oncall", message.as_str()));
            ConfigError::invalid(path, message)
        })?;
        self.validate_otlp()?;
        self.validate_digests()?;
        self.validate_webhook_routes()?;
        let mut names = std::collections::HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = |field: &str| format!("routes[{i}].{field}");
            if route.name.is_empty() {
                return Err(ConfigError::invalid(at("name"), "must not be empty"));
            }
            if !names.insert(route.name.as_str()) {
                return Err(ConfigError::invalid(
                    at("name"),
                    format!(
                        "route name {:?} is used twice; names must be unique",
                        route.name
                    ),
                ));
            }
            check_channel_id(&route.channel, &at("channel"))?;
            if let Some(team) = &route.team {
                if !is_team_id(team) {
                    return Err(ConfigError::invalid(
                        at("team"),
                        format!(
                            "{team:?} is not a Slack team id (T0123ABCD, shown on the install page)"
                        ),
                    ));
                }
                if self.slack.oauth.is_none() {
                    return Err(ConfigError::invalid(
                        at("team"),
                        "needs slack.oauth: workspaces are installed through OAuth",
                    ));
                }
            }
            let mut previous = Duration::ZERO;
            for (j, step) in route.escalation.iter().enumerate() {
                if step.after < previous {
                    return Err(ConfigError::invalid(
                        at(&format!("escalation[{j}].after")),
                        "steps must be in order: each `after` at least the previous one",
                    ));
                }
                previous = step.after;
                if step.notify.is_empty() {
                    return Err(ConfigError::invalid(
                        at(&format!("escalation[{j}].notify")),
                        "must not be empty",
                    ));
                }
            }
            let permissions = &route.allowed;
            let referenced = route.escalation.iter().flat_map(|s| s.notify.iter()).chain(
                [
                    &permissions.acknowledge,
                    &permissions.escalate,
                    &permissions.silence,
                    &permissions.resolve,
                ]
                .into_iter()
                .flatten()
                .flatten(),
            );
            for target in referenced {
                if let Target::Rotation(name) = target
                    && !self.oncall.iter().any(|r| &r.name == name)
                {
                    return Err(ConfigError::invalid(
                        at("escalation"),
                        format!("oncall:{name} names no rotation in `oncall`"),
                    ));
                }
            }
            if let Some(url) = &route.alertmanager_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(ConfigError::invalid(
                    at("alertmanager_url"),
                    "must be an http:// or https:// URL",
                ));
            }
            if route.card.max_alerts == 0 || route.card.max_alerts > 30 {
                return Err(ConfigError::invalid(
                    at("card.max_alerts"),
                    "must be between 1 and 30 (a card has at most 50 blocks)",
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Routes delivering through incoming webhooks: a URL on Slack's hooks
    /// host (or the origin of `slack.api_url`, where the sandbox serves
    /// its own), no direct messages (they need the bot token), and one
    /// webhook per channel: a webhook channel is not shared with bot-token
    /// routes or another webhook, so pacing the channel paces its webhook.
    /// Errors name the route, never the URL.
    fn validate_webhook_routes(&self) -> Result<(), ConfigError> {
        let mut hooks: HashMap<&str, &str> = HashMap::new();
        let mut channels: HashMap<&str, &str> = HashMap::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = |field: &str| format!("routes[{i}].{field}");
            let Some(url) = &route.webhook_url else {
                continue;
            };
            let url = url.expose();
            // An unresolved secret (`Config::from_json`) is checked at load.
            if !url.is_empty() && !crate::slack::api::is_hook_url(url, &self.slack.api_url) {
                return Err(ConfigError::invalid(
                    at("webhook_url"),
                    format!(
                        "must be a Slack incoming webhook URL ({}services/...) or on the origin of slack.api_url",
                        crate::slack::api::RESPONSE_URL_PREFIX
                    ),
                ));
            }
            if route.escalation.iter().any(|s| s.dm) {
                return Err(ConfigError::invalid(
                    at("escalation"),
                    "`dm` needs the bot token; a route delivering through webhook_url cannot send direct messages",
                ));
            }
            if !url.is_empty() && *channels.entry(url).or_insert(&route.channel) != route.channel {
                return Err(ConfigError::invalid(
                    at("channel"),
                    "this webhook_url is used with another channel too; a webhook posts into one channel",
                ));
            }
            if *hooks.entry(route.channel.as_str()).or_insert(url) != url {
                return Err(ConfigError::invalid(
                    at("webhook_url"),
                    format!(
                        "channel {} already has another webhook_url; one webhook per channel",
                        route.channel
                    ),
                ));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if route.webhook_url.is_none() && hooks.contains_key(route.channel.as_str()) {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].channel"),
                    format!(
                        "channel {} is delivered through a webhook_url by another route; give this route the same webhook_url or another channel",
                        route.channel
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_oauth(&self) -> Result<(), ConfigError> {
        let Some(oauth) = &self.slack.oauth else {
            return Ok(());
        };
        if self.public_url.is_none() {
            return Err(ConfigError::invalid(
                "public_url",
                "is needed with slack.oauth: Slack redirects browsers to {public_url}/slack/oauth/callback",
            ));
        }
        if oauth.client_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                "slack.oauth.client_id",
                "must not be empty",
            ));
        }
        let url = &oauth.authorize_url;
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.contains(['?', '#'])
            || redact_url(url) != *url
        {
            return Err(ConfigError::invalid(
                "slack.oauth.authorize_url",
                "must be an http:// or https:// URL without query or credentials, such as https://slack.com/oauth/v2/authorize",
            ));
        }
        let scopes = oauth.effective_scopes();
        if scopes.is_empty()
            || scopes
                .iter()
                .any(|s| s.is_empty() || s.contains([',', ' ']))
        {
            return Err(ConfigError::invalid(
                "slack.oauth.scopes",
                "must list at least one scope, each without commas or spaces (such as \"chat:write\")",
            ));
        }
        if oauth.state_ttl.is_zero() {
            return Err(ConfigError::invalid(
                "slack.oauth.state_ttl",
                "must be positive",
            ));
        }
        Ok(())
    }

    /// Each digest: a channel id, a schedule that parses, no schedule twice,
    /// and a retention that keeps every card its period counts.
    fn validate_digests(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, digest) in self.digests.iter().enumerate() {
            let at = |field: &str| format!("digests[{i}].{field}");
            check_channel_id(&digest.channel, &at("channel"))?;
            let scheduled = crate::pipeline::digest::ScheduledDigest::new(digest)
                .map_err(|e| ConfigError::invalid(at(e.field), e.message))?;
            if !seen.insert(scheduled.key.clone()) {
                return Err(ConfigError::invalid(
                    format!("digests[{i}]"),
                    format!("the digest {:?} is configured twice", scheduled.key),
                ));
            }
            let (period, name) = match scheduled.schedule.every() {
                crate::model::DigestEvery::Day => (Duration::from_secs(86_400), "1d"),
                crate::model::DigestEvery::Week => (Duration::from_secs(7 * 86_400), "7d"),
            };
            if self.store.retention < period {
                return Err(ConfigError::invalid(
                    "store.retention",
                    format!(
                        "must be at least {name} for digests[{i}]: resolved cards are pruned after store.retention, so a shorter one would drop cards from the period the digest reports on"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_otlp(&self) -> Result<(), ConfigError> {
        let otlp = &self.otlp;
        for (path, keys) in [
            ("otlp.logs.label_attributes", &otlp.logs.label_attributes),
            (
                "otlp.traces.label_attributes",
                &otlp.traces.label_attributes,
            ),
        ] {
            for (i, key) in keys.iter().enumerate() {
                let label = crate::ingest::otlp::label_name(key);
                if key.is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{path}[{i}]"),
                        "must not be empty",
                    ));
                }
                if OTLP_LABELS.contains(&label.as_str()) {
                    return Err(ConfigError::invalid(
                        format!("{path}[{i}]"),
                        format!(
                            "{key:?} would become the label {label:?}, which OTLP alerts already set"
                        ),
                    ));
                }
            }
        }
        if let Some(url) = &otlp.traces.trace_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "otlp.traces.trace_url",
                    "must be an http:// or https:// URL",
                ));
            }
            let mut rest = url.as_str();
            while let Some(start) = rest.find('{') {
                let placeholder = rest[start..]
                    .find('}')
                    .map(|end| &rest[start..=start + end])
                    .unwrap_or(&rest[start..]);
                if !TRACE_URL_PLACEHOLDERS.contains(&placeholder) {
                    return Err(ConfigError::invalid(
                        "otlp.traces.trace_url",
                        format!(
                            "unknown placeholder {placeholder:?}: use {{trace_id}}, {{span_id}} or {{service}}"
                        ),
                    ));
                }
                rest = &rest[start + placeholder.len()..];
            }
        }
        Ok(())
    }
}

/// Equality for secrets (ingest credentials, tokens the sandbox checks):
/// its running time reveals neither where the inputs differ nor, beyond
/// what hashing the attacker's own input costs, the secret's length. Both
/// sides are hashed to fixed-size digests, which `subtle` compares without
/// branching on the bytes. The one place ackbar compares secrets; Slack
/// signatures use `hmac`'s `verify_slice`, constant-time in the same way.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

/// `url` with the credentials of its authority (`user:password@`) replaced
/// by `***`, for messages and `check-config`: a store or Alertmanager URL
/// may carry a password. Works on any scheme and on text that is not a
/// valid URL; text without `://` is returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    match url[authority_start..authority_end].rfind('@') {
        Some(at) => format!(
            "{}***{}",
            &url[..authority_start],
            &url[authority_start + at..]
        ),
        None => url.to_owned(),
    }
}

/// A configured channel must be an id; names are the usual mistake.
fn check_channel_id(channel: &str, path: &str) -> Result<(), ConfigError> {
    if is_channel_id(channel) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        path,
        format!(
            "{channel:?} is not a Slack channel id: use the id (C0123ABCD, from the channel's details), not its name"
        ),
    ))
}

/// Slack conversation ids: `C...` (channel), `G...` (private), `D...` (DM),
/// upper-case alphanumerics.
pub fn is_channel_id(s: &str) -> bool {
    s.len() >= 9
        && s.len() <= 24
        && matches!(s.as_bytes()[0], b'C' | b'G' | b'D')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Slack team (workspace) ids: `T...`, upper-case alphanumerics.
pub fn is_team_id(s: &str) -> bool {
    s.len() >= 9
        && s.len() <= 24
        && s.starts_with('T')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Durations are written as `"30s"`, `"5m"`, `"1h30m"`, `"250ms"`, `"2d"`, or
/// as a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration {s:?}: expected a number in {rest:?}"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
        let too_large = || format!("invalid duration {s:?}: too large");
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(too_large)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(too_large)?),
            "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(too_large)?),
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit after {n} (use ms, s, m, h or d)"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {other:?} (use ms, s, m, h or d)"
                ));
            }
        };
        total = total.checked_add(part).ok_or_else(too_large)?;
    }
    Ok(total)
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(de)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let s = String::deserialize(de)?;
        Matcher::from_str(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_is_valid_and_in_sandbox_mode() {
        let c = Config::from_json(
            r#"{"listen": "127.0.0.1:9094", "store": {"url": "sqlite://ackbar.db"}}"#,
        )
        .unwrap();
        assert!(c.sandbox_mode());
        assert_eq!(c.effective_routes().len(), 1);
        assert_eq!(c.effective_routes()[0].channel, DEFAULT_CHANNEL);
    }

    #[test]
    fn unknown_field_error_names_its_path() {
        let err = Config::from_json(
            r#"{"routes": [{"name": "a", "channel": "C0123ABCD", "chanel": "x"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("routes[0]"), "{err}");
        assert!(err.contains("unknown field `chanel`"), "{err}");
    }

    #[test]
    fn retention_shorter_than_a_reopen_window_is_refused() {
        let err = Config::from_json(
            r#"{"store": {"retention": "1h"},
                "routes": [{"name": "db", "channel": "C0123ABCD", "reopen_window": "2h"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("store.retention"), "{err}");
        assert!(err.contains("\"db\""), "{err}");
        let ok = Config::from_json(r#"{"store": {"retention": "30d"}}"#).unwrap();
        assert_eq!(ok.store.retention, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn digests_are_validated_with_the_path_of_what_is_wrong() {
        let err = |digests: &str, retention: &str| {
            Config::from_json(&format!(
                r#"{{"store": {{"retention": "{retention}"}}, "digests": {digests}}}"#
            ))
            .unwrap_err()
            .to_string()
        };
        let daily = r#"{"channel": "C0123ABCD", "every": "day", "at": "09:00"}"#;
        for (digests, path) in [
            (
                r#"[{"channel": "ops", "every": "day", "at": "09:00"}]"#,
                "digests[0].channel",
            ),
            (
                r#"[{"channel": "C0123ABCD", "every": "day", "at": "9am"}]"#,
                "digests[0].at",
            ),
            (
                r#"[{"channel": "C0123ABCD", "every": "day", "at": "09:00", "time_zone": "Europe/Berlinn"}]"#,
                "digests[0].time_zone",
            ),
            (
                r#"[{"channel": "C0123ABCD", "every": "day", "at": "09:00", "weekday": "mon"}]"#,
                "digests[0].weekday",
            ),
            (
                r#"[{"channel": "C0123ABCD", "every": "week", "at": "09:00"}]"#,
                "digests[0].weekday",
            ),
            (
                r#"[{"channel": "C0123ABCD", "every": "hour", "at": "09:00"}]"#,
                "digests[0].every",
            ),
            (&format!("[{daily}, {daily}]"), "digests[1]"),
            (
                r#"[{"channel": "C0123ABCD", "every": "week", "weekday": "mon", "at": "09:00"},
                    {"channel": "C0123ABCD", "every": "week", "weekday": "Monday", "at": "09:00:00"}]"#,
                "digests[1]",
            ),
        ] {
            let e = err(digests, "30d");
            assert!(e.starts_with(&format!("{path}:")), "{digests} -> {e}");
        }
        let weekly =
            r#"[{"channel": "C0123ABCD", "every": "week", "weekday": "mon", "at": "09:00"}]"#;
        let e = err(weekly, "3d");
        assert!(
            e.starts_with("store.retention: must be at least 7d for digests[0]"),
            "{e}"
        );
        let e = err(&format!("[{daily}]"), "12h");
        assert!(e.starts_with("store.retention: must be at least 1d"), "{e}");

        let ok = Config::from_json(&format!(
            r#"{{"digests": [{daily}, {}]}}"#,
            &weekly[1..weekly.len() - 1]
        ))
        .unwrap();
        assert_eq!(ok.digests.len(), 2);
        assert_eq!(ok.digests[0].time_zone, "UTC", "the default zone");
    }

    #[test]
    fn public_url_must_be_a_bare_http_base() {
        let ok = Config::from_json(r#"{"public_url": "https://ackbar.example.com"}"#).unwrap();
        assert_eq!(ok.public_url.as_deref(), Some("https://ackbar.example.com"));
        for bad in [
            "ackbar.example.com",
            "https://ackbar.example.com/",
            "https://user:pw@ackbar.example.com",
        ] {
            let err = Config::from_json(&format!(r#"{{"public_url": "{bad}"}}"#))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("public_url"), "{bad}: {err}");
        }
    }

    #[test]
    fn webhook_routes_are_checked_without_echoing_the_url() {
        let hook = |key: &str| format!("https://hooks.slack.com/services/T0/B0/{key}");
        let config = |routes: serde_json::Value| {
            Config::from_json(&serde_json::json!({ "routes": routes }).to_string())
        };
        let ok = config(serde_json::json!([
            {"name": "a", "channel": "C0HOOK0001", "webhook_url": hook("k1")},
            {"name": "b", "channel": "C0HOOK0001", "webhook_url": hook("k1")},
            {"name": "c", "channel": "C0BOT00001"},
        ]));
        assert!(ok.is_ok(), "{ok:?}");
        let refused = [
            (
                serde_json::json!([{"name": "a", "channel": "C0HOOK0001",
                    "webhook_url": "https://hooks.slack.com.evil/k-secret"}]),
                "routes[0].webhook_url",
                "incoming webhook URL",
            ),
            (
                serde_json::json!([{"name": "a", "channel": "C0HOOK0001",
                    "webhook_url": "http://hooks.slack.com/services/k-secret"}]),
                "routes[0].webhook_url",
                "incoming webhook URL",
            ),
            (
                serde_json::json!([{"name": "a", "channel": "C0HOOK0001", "webhook_url": hook("k-secret"),
                    "escalation": [{"after": "5m", "notify": ["U0ALICE01"], "dm": true}]}]),
                "routes[0].escalation",
                "bot token",
            ),
            (
                serde_json::json!([
                    {"name": "a", "channel": "C0HOOK0001", "webhook_url": hook("k-secret")},
                    {"name": "b", "channel": "C0HOOK0001", "webhook_url": hook("k-secret-2")}]),
                "routes[1].webhook_url",
                "one webhook per channel",
            ),
            (
                serde_json::json!([
                    {"name": "a", "channel": "C0HOOK0001", "webhook_url": hook("k-secret")},
                    {"name": "b", "channel": "C0HOOK0002", "webhook_url": hook("k-secret")}]),
                "routes[1].channel",
                "one channel",
            ),
            (
                serde_json::json!([
                    {"name": "a", "channel": "C0HOOK0001"},
                    {"name": "b", "channel": "C0HOOK0001", "webhook_url": hook("k-secret")}]),
                "routes[0].channel",
                "delivered through a webhook_url",
            ),
        ];
        for (routes, path, says) in refused {
            let err = config(routes.clone()).expect_err("refused").to_string();
            assert!(err.contains(path) && err.contains(says), "{routes}: {err}");
            assert!(!err.contains("k-secret"), "{err}");
        }
        // The sandbox's hooks live on the origin of slack.api_url.
        let sandbox = Config::from_json(
            r#"{"slack": {"api_url": "http://127.0.0.1:9094/api"},
                "routes": [{"name": "a", "channel": "C0HOOK0001",
                            "webhook_url": "http://127.0.0.1:9094/api/_hooks/C0HOOK0001/k"}]}"#,
        );
        assert!(sandbox.is_ok(), "{sandbox:?}");
    }

    #[test]
    fn channel_name_instead_of_id_is_explained() {
        let err = Config::from_json(r##"{"routes": [{"name": "a", "channel": "#alerts"}]}"##)
            .unwrap_err()
            .to_string();
        assert!(err.contains("routes[0].channel"), "{err}");
        assert!(err.contains("not a Slack channel id"), "{err}");
    }

    #[test]
    fn secrets_resolve_from_env_and_file_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "xoxb-from-file\n").unwrap();
        let json = format!(
            r#"{{"slack": {{"bot_token": {{"file": {:?}}}, "signing_secret": {{"env": "PATH"}}}}}}"#,
            file.display().to_string()
        );
        let c = Config::from_json(&json).unwrap();
        assert_eq!(
            c.slack.bot_token.as_ref().unwrap().expose(),
            "xoxb-from-file"
        );
        assert!(!format!("{c:?}").contains("xoxb-from-file"));
        assert!(!c.sandbox_mode());
    }

    #[test]
    fn secret_debug_never_shows_an_inline_or_resolved_value() {
        let c = Config::from_json(
            r#"{"slack": {"bot_token": "xoxb-inline-9f3c", "signing_secret": "sig-inline-9f3c",
                "app_token": "xapp-inline-9f3c"},
                "ingest": {"auth": {"basic": {"username": "am", "password": "pw-inline-9f3c"}}}}"#,
        )
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("9f3c"), "{shown}");
        assert!(shown.contains("Secret(***)"), "{shown}");
        let raw = Secret::Inline("inline-9f3c".into());
        assert_eq!(format!("{raw:?}"), "Secret(***)");
        assert_eq!(
            format!(
                "{:?}",
                Secret::Env {
                    env: "TOKEN_VAR".into()
                }
            ),
            "Secret(env TOKEN_VAR)"
        );
    }

    #[test]
    fn redact_url_hides_credentials_only() {
        for (url, shown) in [
            (
                "postgres://ackbar:pw@db.example:5432/ackbar?sslmode=require",
                "postgres://***@db.example:5432/ackbar?sslmode=require",
            ),
            ("http://u:p@am:9093", "http://***@am:9093"),
            ("http://token@am:9093/x@y", "http://***@am:9093/x@y"),
            ("http://a@b:p@w@am:9093#f", "http://***@am:9093#f"),
            ("http://am:9093/path?q=a@b", "http://am:9093/path?q=a@b"),
            ("sqlite://ackbar.db", "sqlite://ackbar.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn api_url_with_credentials_is_refused_without_echoing_them() {
        let err =
            Config::from_json(r#"{"slack": {"api_url": "https://u:hunter2@slack.example/api"}}"#)
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("slack.api_url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn constant_time_eq_is_plain_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"S3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret\0"));
        assert!(!constant_time_eq(b"", b"x"));
        let secret = Secret::Resolved("token-1".into());
        assert!(secret.matches(b"token-1"));
        assert!(!secret.matches(b"token-2"));
        assert!(!secret.matches(b""));
    }

    #[test]
    fn missing_env_secret_is_an_error_naming_the_variable() {
        let err =
            Config::from_json(r#"{"slack": {"bot_token": {"env": "ACKBAR_SURELY_UNSET_VAR"}}}"#)
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("slack.bot_token") && err.contains("ACKBAR_SURELY_UNSET_VAR"),
            "{err}"
        );
    }

    #[test]
    fn otlp_section_defaults_and_severity_names() {
        let c = Config::from_json("{}").unwrap();
        assert_eq!(c.otlp.logs.min_severity, 17);
        assert!(c.otlp.traces.trace_url.is_none());
        for (given, number) in [
            ("\"WARN\"", 13),
            ("\"fatal\"", 21),
            ("\"ERROR3\"", 19),
            ("9", 9),
        ] {
            let c = Config::from_json(&format!(
                r#"{{"otlp": {{"logs": {{"min_severity": {given}}}}}}}"#
            ))
            .unwrap();
            assert_eq!(c.otlp.logs.min_severity, number, "{given}");
        }
    }

    #[test]
    fn otlp_mistakes_name_their_path() {
        for (json, path, words) in [
            (
                r#"{"otlp": {"logs": {"min_severity": "LOUD"}}}"#,
                "otlp.logs.min_severity",
                "not a severity number",
            ),
            (
                r#"{"otlp": {"logs": {"min_severity": 25}}}"#,
                "otlp.logs.min_severity",
                "not a severity number",
            ),
            (
                r#"{"otlp": {"logs": {"label_attributes": ["ok", "severity"]}}}"#,
                "otlp.logs.label_attributes[1]",
                "already set",
            ),
            (
                r#"{"otlp": {"traces": {"trace_url": "https://j/{traceid}"}}}"#,
                "otlp.traces.trace_url",
                "unknown placeholder \"{traceid}\"",
            ),
            (
                r#"{"otlp": {"traces": {"trace_url": "jaeger/{trace_id}"}}}"#,
                "otlp.traces.trace_url",
                "http",
            ),
            (
                r#"{"otlp": {"trace": {}}}"#,
                "otlp",
                "unknown field `trace`",
            ),
        ] {
            let err = Config::from_json(json).unwrap_err().to_string();
            assert!(
                err.starts_with(path) && err.contains(words),
                "{json}: {err}"
            );
        }
        let ok = Config::from_json(
            r#"{"otlp": {"traces": {"trace_url": "https://j/{trace_id}/{span_id}?s={service}"}}}"#,
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn oauth_section_defaults_and_mistakes() {
        let ok = Config::from_json(
            r#"{"public_url": "https://ackbar.example.com",
                "slack": {"oauth": {"client_id": "123.456", "client_secret": "cs-inline-7d1e"}},
                "routes": [{"name": "a", "channel": "C0123ABCD", "team": "T0123ABCD"}]}"#,
        )
        .unwrap();
        assert!(!ok.sandbox_mode(), "OAuth installs are not the sandbox");
        let oauth = ok.slack.oauth.as_ref().unwrap();
        assert_eq!(oauth.state_ttl, Duration::from_secs(600));
        assert_eq!(oauth.authorize_url, "https://slack.com/oauth/v2/authorize");
        assert!(oauth.effective_scopes().contains(&"chat:write".to_owned()));
        assert!(
            !format!("{ok:?}").contains("7d1e"),
            "the client secret never prints"
        );
        for (json, path, words) in [
            (
                r#"{"slack": {"oauth": {"client_id": "1", "client_secret": "s"}}}"#,
                "public_url",
                "slack/oauth/callback",
            ),
            (
                r#"{"public_url": "https://a.example", "slack": {"oauth": {"client_id": "1", "client_secret": "s", "scopes": []}}}"#,
                "slack.oauth.scopes",
                "at least one",
            ),
            (
                r#"{"public_url": "https://a.example", "slack": {"oauth": {"client_id": "1", "client_secret": "s", "authorize_url": "slack.com"}}}"#,
                "slack.oauth.authorize_url",
                "http",
            ),
            (
                r#"{"public_url": "https://a.example", "slack": {"oauth": {"client_id": "1", "client_secret": {"env": "ACKBAR_SURELY_UNSET_VAR"}}}}"#,
                "slack.oauth.client_secret",
                "ACKBAR_SURELY_UNSET_VAR",
            ),
            (
                r#"{"public_url": "https://a.example", "slack": {"oauth": {"client_id": "1", "client_secret": "s"}},
                    "routes": [{"name": "a", "channel": "C0123ABCD", "team": "acme"}]}"#,
                "routes[0].team",
                "not a Slack team id",
            ),
            (
                r#"{"slack": {"bot_token": "xoxb-1"}, "routes": [{"name": "a", "channel": "C0123ABCD", "team": "T0123ABCD"}]}"#,
                "routes[0].team",
                "needs slack.oauth",
            ),
        ] {
            let err = Config::from_json(json).unwrap_err().to_string();
            assert!(
                err.starts_with(path) && err.contains(words),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn durations_parse_in_every_form() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }
}
