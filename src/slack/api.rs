//! Typed Slack Web API client: the only code in ackbar that sends HTTP to
//! Slack.
//!
//! Wire rules (see `PROTOCOLS.md`): POST methods send JSON with
//! `Content-Type: application/json; charset=utf-8`, GET methods send a query
//! string, and the bot token travels only in `Authorization: Bearer`. Every
//! answer carries `ok`; `ok:false` carries `error`; HTTP 429 carries
//! `Retry-After` in seconds.
//!
//! Every failure is a [`SlackError`], and [`SlackError::retry`] is the one
//! place that decides whether a failure is worth retrying.
//! [`SlackError::outcome_unknown`] tells the caller whether the request may
//! have taken effect anyway (so a post must be reconciled through
//! `conversations.history` instead of blindly re-sent).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::slack::blocks::{Message, Metadata};

/// Slack Web API method names, shared with the sandbox emulator.
pub mod methods {
    pub const POST_MESSAGE: &str = "chat.postMessage";
    pub const UPDATE: &str = "chat.update";
    pub const GET_PERMALINK: &str = "chat.getPermalink";
    pub const HISTORY: &str = "conversations.history";
    pub const AUTH_TEST: &str = "auth.test";
    pub const POST_EPHEMERAL: &str = "chat.postEphemeral";
    pub const VIEWS_OPEN: &str = "views.open";
    pub const VIEWS_UPDATE: &str = "views.update";
    pub const VIEWS_PUSH: &str = "views.push";
    pub const CONVERSATIONS_OPEN: &str = "conversations.open";
    pub const USERGROUPS_USERS_LIST: &str = "usergroups.users.list";
    pub const APPS_CONNECTIONS_OPEN: &str = "apps.connections.open";
    /// The OAuth v2 code exchange; authenticated with the app's client id
    /// and secret, not a token.
    pub const OAUTH_V2_ACCESS: &str = "oauth.v2.access";
    /// Not a Web API method: a POST to an interaction's `response_url`,
    /// named so its failures read like the others.
    pub const RESPONSE_URL: &str = "response_url";
    /// Not a Web API method: a POST to a route's incoming webhook URL.
    pub const INCOMING_WEBHOOK: &str = "incoming_webhook";
}

/// Where Slack's `response_url`s live. A `response_url` arrives in a
/// request (signed, or over the Socket Mode connection), so ackbar checks it
/// before posting: anything else would let whoever shaped the payload make
/// ackbar send requests into its own network.
pub const RESPONSE_URL_PREFIX: &str = "https://hooks.slack.com/";

/// Longest a connection attempt may take, whatever the request timeout.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Wait used when a 429 arrives without a readable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Largest `Retry-After` we accept; a bigger value is clamped so a broken
/// header cannot park a delivery queue for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// Most bytes of an answer we read before giving up (Slack answers are small;
/// a history page of 1,000 messages with blocks is the largest).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Everything that can go wrong talking to Slack. Never carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// HTTP 429: Slack asks us to wait `retry_after` before calling again.
    #[error("slack rate limited: retry after {}s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// Slack answered `ok:false` with this error code.
    #[error("slack {method} failed: {error}")]
    Api { method: &'static str, error: String },
    /// A non-2xx status other than 429.
    #[error("slack {method} answered HTTP {status}")]
    Status { method: &'static str, status: u16 },
    /// No complete answer within the request timeout.
    #[error("slack {method} timed out")]
    Timeout { method: &'static str },
    /// The connection failed. `maybe_sent` is false only when the failure
    /// happened while connecting (refused, DNS, connect timeout), i.e. the
    /// request certainly never reached Slack; a reset or an answer cut short
    /// may come after Slack acted on the request.
    #[error("slack {method}: connection failed: {detail}")]
    Connect {
        method: &'static str,
        maybe_sent: bool,
        detail: String,
    },
    /// A 2xx answer that is not the JSON we expect.
    #[error("slack {method}: undecodable answer: {detail}")]
    Decode {
        method: &'static str,
        detail: String,
    },
    /// The client cannot be built from this configuration.
    #[error("invalid slack client configuration: {reason}")]
    InvalidConfig { reason: String },
    /// A URL from a request (a `response_url`) points somewhere ackbar does
    /// not post to: neither Slack's [`RESPONSE_URL_PREFIX`] nor the origin
    /// of the configured `slack.api_url`. The URL itself is not kept.
    #[error(
        "slack {method}: refused to post to a URL outside {RESPONSE_URL_PREFIX} and slack.api_url"
    )]
    ForbiddenUrl { method: &'static str },
}

/// What to do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Rate limited: try again after exactly this long, not sooner.
    After(Duration),
    /// Transient: try again with exponential backoff (bounded by the caller).
    Backoff,
    /// Permanent: retrying the same request cannot succeed.
    Never,
}

/// `ok:false` error codes that say Slack had a transient problem.
const TRANSIENT_API_ERRORS: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "ratelimited",
    "rate_limited",
];

/// `ok:false` error codes after which Slack may have applied the request
/// anyway (Slack documents `fatal_error` as "some aspect of the operation
/// may have succeeded").
const MAYBE_APPLIED_API_ERRORS: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

impl SlackError {
    /// The retry policy, in one place. `ok:false` codes not known to be
    /// transient are permanent (`channel_not_found`, `invalid_blocks`,
    /// `invalid_auth`, `message_not_found`, ... and codes we have never
    /// seen): re-sending a request Slack rejected on its merits only burns
    /// rate limit.
    pub fn retry(&self) -> Retry {
        match self {
            SlackError::RateLimited { retry_after } => Retry::After(*retry_after),
            SlackError::Api { error, .. } => {
                if TRANSIENT_API_ERRORS.contains(&error.as_str()) {
                    Retry::Backoff
                } else {
                    Retry::Never
                }
            }
            SlackError::Status { status, .. } => {
                if *status >= 500 || *status == 408 {
                    Retry::Backoff
                } else {
                    Retry::Never
                }
            }
            SlackError::Timeout { .. } | SlackError::Connect { .. } => Retry::Backoff,
            // A 2xx we could not read: Slack or a proxy misbehaved; the next
            // answer may be fine.
            SlackError::Decode { .. } => Retry::Backoff,
            SlackError::InvalidConfig { .. } | SlackError::ForbiddenUrl { .. } => Retry::Never,
        }
    }

    /// True when the request may have reached Slack and taken effect even
    /// though we saw a failure. Conservative: only a failure to connect and
    /// a definite answer from Slack rule it out.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            SlackError::RateLimited { .. } => false,
            SlackError::Api { error, .. } => MAYBE_APPLIED_API_ERRORS.contains(&error.as_str()),
            SlackError::Status { status, .. } => *status >= 500 || *status == 408,
            SlackError::Timeout { .. } => true,
            SlackError::Connect { maybe_sent, .. } => *maybe_sent,
            SlackError::Decode { .. } => true,
            SlackError::InvalidConfig { .. } | SlackError::ForbiddenUrl { .. } => false,
        }
    }

    /// The Slack error code of an `ok:false` answer, if this is one.
    pub fn api_error(&self) -> Option<&str> {
        match self {
            SlackError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    fn from_reqwest(method: &'static str, err: reqwest::Error) -> SlackError {
        // `without_url`: URLs carry no token, but keep errors short anyway.
        let err = err.without_url();
        if err.is_connect() {
            // Connect errors include connect timeouts: definitely not sent.
            SlackError::Connect {
                method,
                maybe_sent: false,
                detail: error_chain(&err),
            }
        } else if err.is_timeout() {
            SlackError::Timeout { method }
        } else if err.is_builder() {
            SlackError::InvalidConfig {
                reason: format!("{method}: {}", error_chain(&err)),
            }
        } else {
            SlackError::Connect {
                method,
                maybe_sent: true,
                detail: error_chain(&err),
            }
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Where a `chat.postMessage` landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostedMessage {
    pub channel: String,
    pub ts: String,
}

/// Arguments of `conversations.history`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryRequest {
    pub channel: String,
    /// Only messages strictly after this ts.
    pub oldest: Option<String>,
    /// Page size (Slack: default 100, at most 1,000). 0 means Slack's default.
    pub limit: u32,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of `conversations.history`, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub messages: Vec<HistoryMessage>,
    /// Present when more (older) messages remain.
    pub next_cursor: Option<String>,
}

/// A top-level message as `conversations.history` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryMessage {
    pub ts: String,
    pub text: String,
    pub thread_ts: Option<String>,
    /// Present when the message carries metadata in the expected shape.
    pub metadata: Option<Metadata>,
}

/// Answer of `auth.test`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuthTest {
    pub team_id: String,
    pub user_id: String,
    #[serde(default)]
    pub bot_id: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// A modal as `views.open`/`views.update`/`views.push` answer it: the id
/// to update it by, and the hash that guards against lost updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewInfo {
    pub id: String,
    pub hash: String,
}

/// What `oauth.v2.access` answers for a bot install. `Debug` never shows
/// the token.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct OAuthAccess {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    /// Granted scopes, comma-separated.
    #[serde(default)]
    pub scope: String,
    pub bot_user_id: String,
    pub team: OAuthTeam,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OAuthTeam {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

impl fmt::Debug for OAuthAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthAccess")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("scope", &self.scope)
            .field("bot_user_id", &self.bot_user_id)
            .field("team", &self.team)
            .finish()
    }
}

/// Slack Web API client. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    /// Base URL without trailing slash, e.g. `https://slack.com/api`.
    base: Arc<str>,
    /// `Bearer <token>`, marked sensitive so it is never printed. `None`
    /// for a client that only serves as a template for per-workspace
    /// clients ([`SlackClient::with_token`]): its token calls fail.
    auth: Option<HeaderValue>,
    /// How long a call may take before the client gives up on it.
    timeout: Duration,
}

impl fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackClient")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// `Message` is flattened in, so this client depends only on it serializing
/// as `{text, blocks, metadata?}`.
#[derive(Serialize)]
struct PostMessageBody<'a> {
    channel: &'a str,
    #[serde(flatten)]
    message: &'a Message,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<&'a str>,
    unfurl_links: bool,
    unfurl_media: bool,
}

/// `metadata` is only present when the message has some: omitting it keeps
/// the metadata already on the message.
#[derive(Serialize)]
struct UpdateBody<'a> {
    channel: &'a str,
    ts: &'a str,
    #[serde(flatten)]
    message: &'a Message,
}

/// `chat.postEphemeral`: only text and blocks (ephemeral messages carry no
/// metadata).
#[derive(Serialize)]
struct PostEphemeralBody<'a> {
    channel: &'a str,
    user: &'a str,
    text: &'a str,
    blocks: &'a [crate::slack::blocks::Block],
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<&'a str>,
}

#[derive(Serialize)]
struct ViewsOpenBody<'a> {
    trigger_id: &'a str,
    view: &'a serde_json::Value,
}

#[derive(Serialize)]
struct ViewsUpdateBody<'a> {
    view_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<&'a str>,
    view: &'a serde_json::Value,
}

#[derive(Serialize)]
struct ConversationsOpenBody {
    /// Comma-separated user ids, as Slack expects.
    users: String,
}

#[derive(Deserialize)]
struct ViewAnswer {
    view: ViewInfo,
}

#[derive(Deserialize)]
struct ConversationsOpenAnswer {
    channel: ChannelId,
}

#[derive(Deserialize)]
struct ChannelId {
    id: String,
}

#[derive(Deserialize)]
struct ConnectionsOpenAnswer {
    url: String,
}

#[derive(Deserialize)]
struct UsergroupUsersAnswer {
    users: Vec<String>,
}

#[derive(Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warning: Option<String>,
}

#[derive(Deserialize)]
struct PostMessageAnswer {
    channel: String,
    ts: String,
}

#[derive(Deserialize)]
struct PermalinkAnswer {
    permalink: String,
}

#[derive(Deserialize)]
struct HistoryAnswer {
    #[serde(default)]
    messages: Vec<WireHistoryMessage>,
    #[serde(default)]
    response_metadata: Option<ResponseMetadata>,
}

#[derive(Deserialize)]
struct ResponseMetadata {
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct WireHistoryMessage {
    ts: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thread_ts: Option<String>,
    /// Decoded leniently: one message with odd metadata must not hide the
    /// rest of the page from reconciliation.
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

impl SlackClient {
    /// Build a client for `api_url` (e.g. `https://slack.com/api`, or the
    /// sandbox's `http://127.0.0.1:PORT/sandbox/api`). `timeout` bounds each
    /// whole request; connecting is bounded by the smaller of `timeout` and
    /// [`MAX_CONNECT_TIMEOUT`]. Redirects are never followed.
    pub fn new(
        api_url: &str,
        bot_token: &str,
        timeout: Duration,
    ) -> Result<SlackClient, SlackError> {
        SlackClient::without_token(api_url, timeout)?.with_token(bot_token)
    }

    /// A client without a bot token: for calls that need none (the OAuth
    /// code exchange, `response_url`s, Socket Mode) and as the template of
    /// per-workspace clients. Calls that need a token fail with
    /// [`SlackError::InvalidConfig`], before anything is sent.
    pub fn without_token(api_url: &str, timeout: Duration) -> Result<SlackClient, SlackError> {
        // Shown in errors without any credentials it (wrongly) carries.
        let shown = crate::config::redact_url(api_url);
        let url = reqwest::Url::parse(api_url).map_err(|e| SlackError::InvalidConfig {
            reason: format!("api_url {shown:?}: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(SlackError::InvalidConfig {
                reason: format!("api_url {shown:?}: must be an http(s) URL"),
            });
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(SlackError::InvalidConfig {
                reason: format!(
                    "api_url {shown:?}: must not carry a query, fragment or credentials"
                ),
            });
        }
        if timeout.is_zero() {
            return Err(SlackError::InvalidConfig {
                reason: "request timeout must be positive".to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ackbar/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SlackError::InvalidConfig {
                reason: format!("http client: {}", error_chain(&e.without_url())),
            })?;
        let base: Arc<str> = Arc::from(url.as_str().trim_end_matches('/'));
        Ok(SlackClient {
            http,
            base,
            auth: None,
            timeout,
        })
    }

    /// This client (same API base, same connection pool) with `bot_token`
    /// instead of its own: one per installed workspace.
    pub fn with_token(&self, bot_token: &str) -> Result<SlackClient, SlackError> {
        let token = bot_token.trim();
        if token.is_empty() {
            return Err(SlackError::InvalidConfig {
                reason: "bot token is empty".to_owned(),
            });
        }
        Ok(SlackClient {
            http: self.http.clone(),
            base: self.base.clone(),
            auth: Some(bearer("bot", token)?),
            timeout: self.timeout,
        })
    }

    /// Whether both clients send the same token (or both none).
    pub fn same_token(&self, other: &SlackClient) -> bool {
        self.auth == other.auth
    }

    /// How long a call may take before this client gives up on it (and its
    /// outcome is unknown).
    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// The API base URL this client talks to.
    pub fn api_url(&self) -> &str {
        &self.base
    }

    /// Whether ackbar may post to `url` as a `response_url`: it is under
    /// [`RESPONSE_URL_PREFIX`] (default port, no credentials), or on the
    /// origin (scheme, host and port) of the configured API base, which is
    /// where the sandbox and test doubles mint theirs. Compared after
    /// parsing, so `https://hooks.slack.com.evil/`,
    /// `https://hooks.slack.com@evil/` and the like do not pass.
    pub fn is_response_url(&self, url: &str) -> bool {
        is_hook_url(url, &self.base)
    }

    /// `chat.postMessage`: post `msg` (with its metadata) to `channel`, as a
    /// thread reply when `thread_ts` is given. Link unfurling is off.
    pub async fn post_message(
        &self,
        channel: &str,
        msg: &Message,
        thread_ts: Option<&str>,
    ) -> Result<PostedMessage, SlackError> {
        let body = PostMessageBody {
            channel,
            message: msg,
            thread_ts,
            unfurl_links: false,
            unfurl_media: false,
        };
        let answer: PostMessageAnswer = self.post_json(methods::POST_MESSAGE, &body).await?;
        Ok(PostedMessage {
            channel: answer.channel,
            ts: answer.ts,
        })
    }

    /// `chat.update`: replace text and blocks of the message at `ts`; the
    /// metadata is replaced when `msg` has some and kept otherwise.
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        msg: &Message,
    ) -> Result<(), SlackError> {
        let body = UpdateBody {
            channel,
            ts,
            message: msg,
        };
        let _: serde::de::IgnoredAny = self.post_json(methods::UPDATE, &body).await?;
        Ok(())
    }

    /// `chat.getPermalink`.
    pub async fn get_permalink(
        &self,
        channel: &str,
        message_ts: &str,
    ) -> Result<String, SlackError> {
        let answer: PermalinkAnswer = self
            .get(
                methods::GET_PERMALINK,
                &[("channel", channel), ("message_ts", message_ts)],
            )
            .await?;
        Ok(answer.permalink)
    }

    /// `conversations.history` with `include_all_metadata=true`.
    pub async fn conversations_history(
        &self,
        req: &HistoryRequest,
    ) -> Result<HistoryPage, SlackError> {
        let limit = req.limit.to_string();
        let mut query: Vec<(&str, &str)> =
            vec![("channel", &req.channel), ("include_all_metadata", "true")];
        if req.limit > 0 {
            query.push(("limit", &limit));
        }
        if let Some(oldest) = &req.oldest {
            query.push(("oldest", oldest));
        }
        if let Some(cursor) = &req.cursor {
            query.push(("cursor", cursor));
        }
        let answer: HistoryAnswer = self.get(methods::HISTORY, &query).await?;
        let messages = answer
            .messages
            .into_iter()
            .map(|m| HistoryMessage {
                metadata: m.metadata.and_then(|v| match serde_json::from_value::<Metadata>(v) {
                    Ok(md) => Some(md),
                    Err(e) => {
                        tracing::debug!(ts = %m.ts, error = %e, "ignoring message metadata of unexpected shape");
                        None
                    }
                }),
                ts: m.ts,
                text: m.text.unwrap_or_default(),
                thread_ts: m.thread_ts,
            })
            .collect();
        let next_cursor = answer
            .response_metadata
            .and_then(|r| r.next_cursor)
            .filter(|c| !c.is_empty());
        Ok(HistoryPage {
            messages,
            next_cursor,
        })
    }

    /// `chat.postEphemeral`: show `msg` (text and blocks; metadata is not
    /// sent) to `user` only, in `channel` or one of its threads.
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        msg: &Message,
        thread_ts: Option<&str>,
    ) -> Result<(), SlackError> {
        let body = PostEphemeralBody {
            channel,
            user,
            text: &msg.text,
            blocks: &msg.blocks,
            thread_ts,
        };
        let _: serde::de::IgnoredAny = self.post_json(methods::POST_EPHEMERAL, &body).await?;
        Ok(())
    }

    /// `views.open`: open the modal `view` for the interaction that minted
    /// `trigger_id` (valid 3 seconds, single use).
    pub async fn views_open(
        &self,
        trigger_id: &str,
        view: &serde_json::Value,
    ) -> Result<ViewInfo, SlackError> {
        let body = ViewsOpenBody { trigger_id, view };
        let answer: ViewAnswer = self.post_json(methods::VIEWS_OPEN, &body).await?;
        Ok(answer.view)
    }

    /// `views.update`: replace the modal `view_id`. With `hash`, Slack
    /// refuses (`hash_conflict`) when the view changed since that hash.
    pub async fn views_update(
        &self,
        view_id: &str,
        hash: Option<&str>,
        view: &serde_json::Value,
    ) -> Result<ViewInfo, SlackError> {
        let body = ViewsUpdateBody {
            view_id,
            hash,
            view,
        };
        let answer: ViewAnswer = self.post_json(methods::VIEWS_UPDATE, &body).await?;
        Ok(answer.view)
    }

    /// `views.push`: push `view` on top of the open modal stack (at most 3
    /// deep) of the interaction that minted `trigger_id`.
    pub async fn views_push(
        &self,
        trigger_id: &str,
        view: &serde_json::Value,
    ) -> Result<ViewInfo, SlackError> {
        let body = ViewsOpenBody { trigger_id, view };
        let answer: ViewAnswer = self.post_json(methods::VIEWS_PUSH, &body).await?;
        Ok(answer.view)
    }

    /// `conversations.open`: the id of the DM (one user) or group DM
    /// (several) with `users`, opening it if needed.
    pub async fn conversations_open(&self, users: &[&str]) -> Result<String, SlackError> {
        if users.is_empty() {
            return Err(SlackError::InvalidConfig {
                reason: format!("{}: no users given", methods::CONVERSATIONS_OPEN),
            });
        }
        let body = ConversationsOpenBody {
            users: users.join(","),
        };
        let answer: ConversationsOpenAnswer =
            self.post_json(methods::CONVERSATIONS_OPEN, &body).await?;
        Ok(answer.channel.id)
    }

    /// `usergroups.users.list`: the member user ids of a user group
    /// (`S...`).
    pub async fn usergroups_users_list(&self, usergroup: &str) -> Result<Vec<String>, SlackError> {
        let answer: UsergroupUsersAnswer = self
            .get(methods::USERGROUPS_USERS_LIST, &[("usergroup", usergroup)])
            .await?;
        Ok(answer.users)
    }

    /// POST `body` as JSON to an interaction's `response_url` (valid 30
    /// minutes, at most 5 uses). No `Authorization` header: the URL is the
    /// credential, so it is never logged or put in an error. Only URLs
    /// [`Self::is_response_url`] accepts are posted to. Slack answers
    /// a plain `ok` or `{"ok":true}`; `{"ok":false,"error":..}` and non-2xx
    /// statuses are failures.
    pub async fn post_response_url(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<(), SlackError> {
        self.post_to_hook(methods::RESPONSE_URL, url, body).await
    }

    /// POST `msg` to a route's incoming webhook: one new top-level message
    /// (webhooks cannot thread, update or carry metadata). The URL is the
    /// credential: never logged or put in an error. Slack answers 200 `ok`,
    /// or a 4xx whose body names the reason (`invalid_payload`, `no_text`,
    /// `action_prohibited`, `channel_not_found`, `channel_is_archived`),
    /// which becomes [`SlackError::Api`] (permanent).
    pub async fn post_incoming_webhook(&self, url: &str, msg: &Message) -> Result<(), SlackError> {
        let method = methods::INCOMING_WEBHOOK;
        let body = serde_json::to_value(msg).map_err(|e| SlackError::InvalidConfig {
            reason: format!("{method}: cannot encode request: {e}"),
        })?;
        self.post_to_hook(method, url, &body).await
    }

    /// POST `body` as JSON to a Slack hook URL (`response_url`, incoming
    /// webhook) that [`is_hook_url`] accepts, without the bot token.
    async fn post_to_hook(
        &self,
        method: &'static str,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<(), SlackError> {
        if !self.is_response_url(url) {
            return Err(SlackError::ForbiddenUrl { method });
        }
        let bytes = serde_json::to_vec(body).map_err(|e| SlackError::InvalidConfig {
            reason: format!("{method}: cannot encode request: {e}"),
        })?;
        let sent = self
            .http
            .post(url)
            .header(CONTENT_TYPE, JSON_UTF8)
            .body(bytes)
            .send()
            .await
            .map_err(|e| SlackError::from_reqwest(method, e))?;
        let status = sent.status().as_u16();
        let named_4xx = (400..500).contains(&status) && status != 408 && status != 429;
        // An incoming webhook names the reason in the body of a 4xx; a
        // `response_url`'s callers tell an expired URL by its status.
        if named_4xx && method == methods::INCOMING_WEBHOOK {
            let answer = read_body(method, sent).await.unwrap_or_default();
            return Err(match hook_error_code(&answer) {
                Some(error) => SlackError::Api { method, error },
                None => SlackError::Status { method, status },
            });
        }
        let resp = check_status(method, Ok(sent))?;
        let answer = read_body(method, resp).await?;
        match serde_json::from_slice::<Envelope>(&answer) {
            Ok(Envelope {
                ok: false, error, ..
            }) => Err(SlackError::Api {
                method,
                error: error.unwrap_or_else(|| "unknown_error".to_owned()),
            }),
            // `{"ok":true}`, the plain-text `ok`, or an empty body.
            _ => Ok(()),
        }
    }

    /// `apps.connections.open`: a fresh Socket Mode WebSocket URL. Takes
    /// the app-level token (`xapp-...`), not the bot token this client
    /// carries; like the bot token it goes only in the `Authorization`
    /// header, marked sensitive. The URL is single use and short lived.
    pub async fn apps_connections_open(&self, app_token: &str) -> Result<String, SlackError> {
        let method = methods::APPS_CONNECTIONS_OPEN;
        let token = app_token.trim();
        if token.is_empty() {
            return Err(SlackError::InvalidConfig {
                reason: "app token is empty".to_owned(),
            });
        }
        let auth = bearer("app", token)?;
        let sent = self
            .http
            .post(self.url(method))
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, JSON_UTF8)
            .body("{}")
            .send()
            .await;
        let answer: ConnectionsOpenAnswer = finish(method, sent).await?;
        Ok(answer.url)
    }

    /// `oauth.v2.access`: exchanges the `code` Slack handed the browser at
    /// `redirect_uri` for the workspace's bot token. The client id and
    /// secret travel as HTTP Basic credentials (marked sensitive), the rest
    /// as a form; the answer's token is never logged.
    pub async fn oauth_v2_access(
        &self,
        client_id: &str,
        client_secret: &str,
        code: &str,
        redirect_uri: &str,
    ) -> Result<OAuthAccess, SlackError> {
        let method = methods::OAUTH_V2_ACCESS;
        let form = serde_urlencoded::to_string([("code", code), ("redirect_uri", redirect_uri)])
            .map_err(|e| SlackError::InvalidConfig {
                reason: format!("{method}: cannot encode request: {e}"),
            })?;
        let sent = self
            .http
            .post(self.url(method))
            // reqwest marks the Basic credentials header sensitive.
            .basic_auth(client_id, Some(client_secret))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await;
        finish(method, sent).await
    }

    /// `auth.test`: who the token belongs to.
    pub async fn auth_test(&self) -> Result<AuthTest, SlackError> {
        self.post_json(methods::AUTH_TEST, &serde_json::Map::new())
            .await
    }

    /// The bot token header, or why there is none.
    fn auth(&self, method: &'static str) -> Result<HeaderValue, SlackError> {
        self.auth.clone().ok_or_else(|| SlackError::InvalidConfig {
            reason: format!("{method}: no bot token for this workspace"),
        })
    }

    fn url(&self, method: &str) -> String {
        format!("{}/{method}", self.base)
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &'static str,
        body: &B,
    ) -> Result<T, SlackError> {
        let auth = self.auth(method)?;
        let bytes = serde_json::to_vec(body).map_err(|e| SlackError::InvalidConfig {
            reason: format!("{method}: cannot encode request: {e}"),
        })?;
        let sent = self
            .http
            .post(self.url(method))
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, JSON_UTF8)
            .body(bytes)
            .send()
            .await;
        finish(method, sent).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        method: &'static str,
        query: &[(&str, &str)],
    ) -> Result<T, SlackError> {
        let auth = self.auth(method)?;
        let sent = self
            .http
            .get(self.url(method))
            .header(AUTHORIZATION, auth)
            .query(query)
            .send()
            .await;
        finish(method, sent).await
    }
}

/// `Bearer <token>` as a header value marked sensitive. `kind` names the
/// token in the error; the token itself is never echoed.
fn bearer(kind: &str, token: &str) -> Result<HeaderValue, SlackError> {
    let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        SlackError::InvalidConfig {
            reason: format!("{kind} token contains characters not allowed in an HTTP header"),
        }
    })?;
    auth.set_sensitive(true);
    Ok(auth)
}

/// Turn a sent request into a typed answer or a classified error.
async fn finish<T: DeserializeOwned>(
    method: &'static str,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, SlackError> {
    let resp = check_status(method, sent)?;
    let body = read_body(method, resp).await?;
    let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| SlackError::Decode {
        method,
        detail: e.to_string(),
    })?;
    if !envelope.ok {
        return Err(SlackError::Api {
            method,
            error: envelope.error.unwrap_or_else(|| "unknown_error".to_owned()),
        });
    }
    if let Some(warning) = envelope.warning {
        tracing::debug!(method, warning, "slack answered with a warning");
    }
    serde_json::from_slice(&body).map_err(|e| SlackError::Decode {
        method,
        detail: e.to_string(),
    })
}

/// Whether ackbar may post to `url` as a Slack hook (an interaction's
/// `response_url` or an incoming webhook): under [`RESPONSE_URL_PREFIX`]
/// (default port, no credentials), or on the origin (scheme, host and port)
/// of `api_base`, where the sandbox and test doubles serve theirs. Compared
/// after parsing, so `https://hooks.slack.com.evil/`,
/// `https://hooks.slack.com@evil/` and the like do not pass.
pub fn is_hook_url(url: &str, api_base: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    let is_slack = url.scheme() == "https"
        && url.host_str() == Some("hooks.slack.com")
        && url.port().is_none();
    let same_origin_as_api =
        reqwest::Url::parse(api_base).is_ok_and(|base| base.origin() == url.origin());
    is_slack || same_origin_as_api
}

/// The error code in a hook's 4xx answer: `{"ok":false,"error":CODE}` or a
/// plain-text code such as `channel_not_found`. Anything else (an HTML
/// page from a proxy) is not echoed.
fn hook_error_code(body: &[u8]) -> Option<String> {
    if let Ok(Envelope { error: Some(e), .. }) = serde_json::from_slice::<Envelope>(body) {
        return Some(e);
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    let plain = !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    plain.then(|| text.to_owned())
}

/// A sent request's transport error, 429 or non-2xx status as an error.
fn check_status(
    method: &'static str,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<reqwest::Response, SlackError> {
    let resp = sent.map_err(|e| SlackError::from_reqwest(method, e))?;
    let status = resp.status();
    if status.as_u16() == 429 {
        let retry_after = parse_retry_after(resp.headers().get(RETRY_AFTER));
        return Err(SlackError::RateLimited { retry_after });
    }
    if !status.is_success() {
        return Err(SlackError::Status {
            method,
            status: status.as_u16(),
        });
    }
    Ok(resp)
}

/// The whole body of an answer, at most [`MAX_RESPONSE_BYTES`].
async fn read_body(
    method: &'static str,
    mut resp: reqwest::Response,
) -> Result<Vec<u8>, SlackError> {
    // Read the body in chunks so a runaway answer cannot exhaust memory.
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(SlackError::Decode {
                        method,
                        detail: format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            // The status line arrived, so the request certainly reached the
            // server: whatever breaks now leaves the outcome unknown.
            Err(e) => {
                let e = e.without_url();
                return Err(if e.is_timeout() {
                    SlackError::Timeout { method }
                } else {
                    SlackError::Connect {
                        method,
                        maybe_sent: true,
                        detail: error_chain(&e),
                    }
                });
            }
        }
    }
    Ok(body)
}

fn parse_retry_after(value: Option<&HeaderValue>) -> Duration {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER))
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(error: &str) -> SlackError {
        SlackError::Api {
            method: methods::POST_MESSAGE,
            error: error.to_owned(),
        }
    }

    fn status(status: u16) -> SlackError {
        SlackError::Status {
            method: methods::POST_MESSAGE,
            status,
        }
    }

    #[test]
    fn hook_error_codes_are_read_from_plain_text_or_json_only() {
        assert_eq!(
            hook_error_code(b"channel_not_found\n").as_deref(),
            Some("channel_not_found")
        );
        assert_eq!(
            hook_error_code(br#"{"ok":false,"error":"no_text"}"#).as_deref(),
            Some("no_text")
        );
        assert_eq!(hook_error_code(b"<html>Not Found</html>"), None);
        assert_eq!(hook_error_code(b""), None);
    }

    #[test]
    fn response_urls_are_only_slack_hooks_or_the_api_origin() {
        let slack = SlackClient::new("https://slack.com/api", "xoxb-1", Duration::from_secs(1))
            .expect("client");
        let local = SlackClient::new(
            "http://127.0.0.1:9094/sandbox/api",
            "xoxb-1",
            Duration::from_secs(1),
        )
        .expect("client");
        for url in [
            "https://hooks.slack.com/commands/T1/2/abc",
            "https://hooks.slack.com/actions/T1/2/abc",
            "https://HOOKS.slack.com/actions/T1/2/abc",
            "https://slack.com/anything",
        ] {
            assert!(slack.is_response_url(url), "{url}");
        }
        for url in [
            "http://hooks.slack.com/commands/T1/2/abc",
            "https://hooks.slack.com:8443/commands/T1/2/abc",
            "https://hooks.slack.com.evil.example/commands",
            "https://hooks.slack.com@evil.example/commands",
            "https://user:pass@hooks.slack.com/commands",
            "https://evil.example/?https://hooks.slack.com/",
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:9094/sandbox/_response/1",
            "https://api.slack.com/x",
            "file:///etc/passwd",
            "hooks.slack.com/commands",
            "",
        ] {
            assert!(!slack.is_response_url(url), "{url}");
        }
        assert!(local.is_response_url("http://127.0.0.1:9094/sandbox/api/_response/1"));
        assert!(local.is_response_url("https://hooks.slack.com/commands/T1/2/abc"));
        assert!(!local.is_response_url("http://127.0.0.1:9095/sandbox/api/_response/1"));
        assert!(!local.is_response_url("http://localhost:9094/sandbox/api/_response/1"));
        assert!(!local.is_response_url("https://127.0.0.1:9094/sandbox/api/_response/1"));
    }

    #[tokio::test]
    async fn foreign_response_url_is_refused_without_a_request() {
        // Nothing listens here; a refusal, not a connection error, shows no
        // request was attempted.
        let c = SlackClient::new("https://slack.com/api", "xoxb-1", Duration::from_secs(1))
            .expect("client");
        let err = c
            .post_response_url("http://127.0.0.1:9/x", &serde_json::json!({"text": "hi"}))
            .await
            .expect_err("refused");
        assert_eq!(
            err,
            SlackError::ForbiddenUrl {
                method: methods::RESPONSE_URL
            }
        );
        assert_eq!(err.retry(), Retry::Never);
        assert!(!err.outcome_unknown());
        assert!(!err.to_string().contains("127.0.0.1"), "{err}");
    }

    #[test]
    fn retry_classification_table() {
        let table: Vec<(SlackError, Retry, bool)> = vec![
            (
                SlackError::RateLimited {
                    retry_after: Duration::from_secs(3),
                },
                Retry::After(Duration::from_secs(3)),
                false,
            ),
            (api("internal_error"), Retry::Backoff, true),
            (api("fatal_error"), Retry::Backoff, true),
            (api("service_unavailable"), Retry::Backoff, true),
            (api("request_timeout"), Retry::Backoff, true),
            (api("ratelimited"), Retry::Backoff, false),
            (api("channel_not_found"), Retry::Never, false),
            (api("not_in_channel"), Retry::Never, false),
            (api("is_archived"), Retry::Never, false),
            (api("invalid_blocks"), Retry::Never, false),
            (api("msg_blocks_too_long"), Retry::Never, false),
            (api("no_text"), Retry::Never, false),
            (api("invalid_auth"), Retry::Never, false),
            (api("not_authed"), Retry::Never, false),
            (api("token_revoked"), Retry::Never, false),
            (api("missing_scope"), Retry::Never, false),
            (api("message_not_found"), Retry::Never, false),
            (api("cant_update_message"), Retry::Never, false),
            (api("edit_window_closed"), Retry::Never, false),
            (api("msg_too_long"), Retry::Never, false),
            (api("some_code_we_never_saw"), Retry::Never, false),
            (status(500), Retry::Backoff, true),
            (status(502), Retry::Backoff, true),
            (status(503), Retry::Backoff, true),
            (status(504), Retry::Backoff, true),
            (status(408), Retry::Backoff, true),
            (status(400), Retry::Never, false),
            (status(403), Retry::Never, false),
            (status(404), Retry::Never, false),
            (status(410), Retry::Never, false),
            (status(302), Retry::Never, false),
            (SlackError::Timeout { method: "x" }, Retry::Backoff, true),
            (
                SlackError::Connect {
                    method: "x",
                    maybe_sent: false,
                    detail: "refused".into(),
                },
                Retry::Backoff,
                false,
            ),
            (
                SlackError::Connect {
                    method: "x",
                    maybe_sent: true,
                    detail: "reset".into(),
                },
                Retry::Backoff,
                true,
            ),
            (
                SlackError::Decode {
                    method: "x",
                    detail: "eof".into(),
                },
                Retry::Backoff,
                true,
            ),
            (
                SlackError::InvalidConfig { reason: "x".into() },
                Retry::Never,
                false,
            ),
        ];
        for (err, retry, unknown) in table {
            assert_eq!(err.retry(), retry, "retry of {err:?}");
            assert_eq!(err.outcome_unknown(), unknown, "outcome_unknown of {err:?}");
        }
    }

    #[test]
    fn retry_after_header_is_parsed_and_bounded() {
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("7"))),
            Duration::from_secs(7)
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static(" 0 "))),
            Duration::ZERO
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("soon"))),
            DEFAULT_RETRY_AFTER
        );
        assert_eq!(parse_retry_after(None), DEFAULT_RETRY_AFTER);
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("999999999"))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn bad_configuration_is_rejected_without_echoing_the_token() {
        let t = Duration::from_secs(1);
        assert!(matches!(
            SlackClient::new("not a url", "xoxb-1", t),
            Err(SlackError::InvalidConfig { .. })
        ));
        assert!(matches!(
            SlackClient::new("ftp://x/api", "xoxb-1", t),
            Err(SlackError::InvalidConfig { .. })
        ));
        assert!(matches!(
            SlackClient::new("https://slack.com/api", "  ", t),
            Err(SlackError::InvalidConfig { .. })
        ));
        assert!(matches!(
            SlackClient::new("https://slack.com/api", "xoxb-1", Duration::ZERO),
            Err(SlackError::InvalidConfig { .. })
        ));
        let err = SlackClient::new("https://slack.com/api", "xoxb-secret\nvalue", t)
            .err()
            .map(|e| format!("{e} {e:?}"))
            .unwrap_or_default();
        assert!(err.contains("bot token"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn client_debug_never_shows_the_token() {
        let c = SlackClient::new(
            "https://slack.com/api/",
            "xoxb-very-secret",
            Duration::from_secs(1),
        );
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("client: {e}"),
        };
        assert_eq!(c.api_url(), "https://slack.com/api");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("very-secret"), "{dbg}");
    }

    #[tokio::test]
    async fn connection_refused_is_definitely_not_sent() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string());
            match l.and_then(|l| l.local_addr().map_err(|e| e.to_string())) {
                Ok(a) => a.port(),
                Err(e) => panic!("bind: {e}"),
            }
        };
        let c = match SlackClient::new(
            &format!("http://127.0.0.1:{port}/api"),
            "xoxb-refused-token",
            Duration::from_secs(2),
        ) {
            Ok(c) => c,
            Err(e) => panic!("client: {e}"),
        };
        let err = match c.auth_test().await {
            Ok(a) => panic!("unexpected answer {a:?}"),
            Err(e) => e,
        };
        assert!(
            matches!(
                err,
                SlackError::Connect {
                    maybe_sent: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.retry(), Retry::Backoff);
        assert!(!err.outcome_unknown());
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("refused-token"), "{shown}");
    }

    /// What a fake Slack saw of one request.
    #[derive(Debug, Default, Clone)]
    struct Seen {
        method: String,
        uri: String,
        content_type: Option<String>,
        authorization: Option<String>,
        body: String,
    }

    /// Serve a fake Slack that records requests and answers `answer`.
    async fn recorder(
        answer: serde_json::Value,
    ) -> (
        String,
        Arc<std::sync::Mutex<Vec<Seen>>>,
        tokio::task::JoinHandle<()>,
    ) {
        use axum::extract::{Request, State};
        type Log = Arc<std::sync::Mutex<Vec<Seen>>>;
        let log: Log = Arc::default();
        async fn handle(
            State((log, answer)): State<(Log, serde_json::Value)>,
            req: Request,
        ) -> axum::Json<serde_json::Value> {
            // Scoped: `&Request` is not Send and must not live across the await.
            let mut seen = {
                let header = |n: &str| {
                    req.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                Seen {
                    method: req.method().to_string(),
                    uri: req.uri().to_string(),
                    content_type: header("content-type"),
                    authorization: header("authorization"),
                    body: String::new(),
                }
            };
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            seen.body = String::from_utf8_lossy(&body).into_owned();
            log.lock().unwrap_or_else(|p| p.into_inner()).push(seen);
            axum::Json(answer)
        }
        let app = axum::Router::new()
            .fallback(handle)
            .with_state((log.clone(), answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/api"), log, task)
    }

    #[tokio::test]
    async fn post_message_sends_json_with_bearer_token_only_in_the_header() {
        let answer = serde_json::json!({"ok": true, "channel": "C1", "ts": "1.000001",
            "permalink": "p", "messages": [], "team_id": "T", "user_id": "U"});
        let (base, log, task) = recorder(answer).await;
        let token = "xoxb-wire-check-token";
        let c = SlackClient::new(&base, token, Duration::from_secs(5)).expect("client");
        let msg = Message {
            text: "fallback".into(),
            blocks: Vec::new(),
            metadata: Some(Metadata {
                event_type: "ackbar_card".into(),
                event_payload: serde_json::json!({"k": 1}),
            }),
        };
        let posted = c
            .post_message("C1", &msg, Some("0.000001"))
            .await
            .expect("post");
        assert_eq!(
            posted,
            PostedMessage {
                channel: "C1".into(),
                ts: "1.000001".into()
            }
        );
        c.update_message(
            "C1",
            "1.000001",
            &Message {
                metadata: None,
                ..msg.clone()
            },
        )
        .await
        .expect("update");
        c.get_permalink("C1", "1.000001").await.expect("permalink");
        c.conversations_history(&HistoryRequest {
            channel: "C1".into(),
            oldest: Some("1.5".into()),
            limit: 5,
            cursor: Some("abc=".into()),
        })
        .await
        .expect("history");
        task.abort();

        let seen = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(seen.len(), 4);
        for s in &seen {
            assert_eq!(
                s.authorization.as_deref(),
                Some("Bearer xoxb-wire-check-token")
            );
            assert!(!s.uri.contains(token) && !s.body.contains(token), "{s:?}");
        }
        let post = &seen[0];
        assert_eq!(post.method, "POST");
        assert_eq!(post.uri, "/api/chat.postMessage");
        assert_eq!(
            post.content_type.as_deref(),
            Some("application/json; charset=utf-8")
        );
        let body: serde_json::Value = serde_json::from_str(&post.body).expect("json body");
        assert_eq!(
            body,
            serde_json::json!({"channel": "C1", "text": "fallback", "blocks": [],
                "metadata": {"event_type": "ackbar_card", "event_payload": {"k": 1}},
                "thread_ts": "0.000001", "unfurl_links": false, "unfurl_media": false})
        );
        let update: serde_json::Value = serde_json::from_str(&seen[1].body).expect("json body");
        assert_eq!(
            update,
            serde_json::json!({"channel": "C1", "ts": "1.000001", "text": "fallback", "blocks": []})
        );
        assert_eq!(seen[2].method, "GET");
        assert_eq!(
            seen[2].uri,
            "/api/chat.getPermalink?channel=C1&message_ts=1.000001"
        );
        assert_eq!(seen[3].method, "GET");
        assert_eq!(
            seen[3].uri,
            "/api/conversations.history?channel=C1&include_all_metadata=true&limit=5&oldest=1.5&cursor=abc%3D"
        );
    }

    #[tokio::test]
    async fn interactivity_calls_send_slack_shaped_json_and_response_url_has_no_token() {
        let answer = serde_json::json!({"ok": true, "view": {"id": "V1", "hash": "h1"},
            "channel": {"id": "D0USER0001"}, "users": ["U1", "U2"], "message_ts": "1.2"});
        let (base, log, task) = recorder(answer).await;
        let token = "xoxb-interactive-token";
        let c = SlackClient::new(&base, token, Duration::from_secs(5)).expect("client");
        let msg = Message {
            text: "only you".into(),
            blocks: Vec::new(),
            metadata: Some(Metadata {
                event_type: "ackbar_card".into(),
                event_payload: serde_json::json!({}),
            }),
        };
        c.post_ephemeral("C1", "U1", &msg, Some("1.000001"))
            .await
            .expect("ephemeral");
        let view =
            serde_json::json!({"type": "modal", "title": {"type": "plain_text", "text": "Ack"}});
        let info = c.views_open("trig.1", &view).await.expect("open");
        assert_eq!(
            info,
            ViewInfo {
                id: "V1".into(),
                hash: "h1".into()
            }
        );
        c.views_update("V1", Some("h1"), &view)
            .await
            .expect("update");
        c.views_update("V1", None, &view).await.expect("update");
        c.views_push("trig.2", &view).await.expect("push");
        assert_eq!(
            c.conversations_open(&["U1", "U2"]).await.expect("open dm"),
            "D0USER0001"
        );
        assert!(matches!(
            c.conversations_open(&[]).await,
            Err(SlackError::InvalidConfig { .. })
        ));
        assert_eq!(
            c.usergroups_users_list("S1").await.expect("group"),
            vec!["U1".to_owned(), "U2".to_owned()]
        );
        let response_url = format!("{}/response/abc", base.trim_end_matches("/api"));
        c.post_response_url(&response_url, &serde_json::json!({"text": "done"}))
            .await
            .expect("response_url");
        task.abort();

        let seen = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "/api/chat.postEphemeral",
                "/api/views.open",
                "/api/views.update",
                "/api/views.update",
                "/api/views.push",
                "/api/conversations.open",
                "/api/usergroups.users.list?usergroup=S1",
                "/response/abc",
            ]
        );
        let body = |i: usize| -> serde_json::Value {
            serde_json::from_str(&seen[i].body).expect("json body")
        };
        assert_eq!(
            body(0),
            serde_json::json!({"channel": "C1", "user": "U1", "text": "only you",
                "blocks": [], "thread_ts": "1.000001"})
        );
        assert_eq!(
            body(1),
            serde_json::json!({"trigger_id": "trig.1", "view": view})
        );
        assert_eq!(
            body(2),
            serde_json::json!({"view_id": "V1", "hash": "h1", "view": view})
        );
        assert_eq!(body(3), serde_json::json!({"view_id": "V1", "view": view}));
        assert_eq!(body(5), serde_json::json!({"users": "U1,U2"}));
        assert_eq!(body(7), serde_json::json!({"text": "done"}));
        for s in &seen[..7] {
            assert_eq!(
                s.authorization.as_deref(),
                Some("Bearer xoxb-interactive-token")
            );
        }
        let last = &seen[7];
        assert_eq!(last.method, "POST");
        assert_eq!(last.authorization, None);
        assert!(!last.body.contains(token));
        assert_eq!(
            last.content_type.as_deref(),
            Some("application/json; charset=utf-8")
        );
    }

    #[tokio::test]
    async fn response_url_refusals_are_errors_without_the_url() {
        let (base, _log, task) =
            recorder(serde_json::json!({"ok": false, "error": "used_url"})).await;
        let c = SlackClient::new(&base, "xoxb-1", Duration::from_secs(5)).expect("client");
        let url = format!("{base}/secret-response-path");
        let err = c
            .post_response_url(&url, &serde_json::json!({"text": "x"}))
            .await
            .expect_err("ok:false");
        assert_eq!(err.api_error(), Some("used_url"));
        assert_eq!(err.retry(), Retry::Never);
        task.abort();
        // Nothing listens any more: a connect error that does not show the URL.
        let err = c
            .post_response_url(&url, &serde_json::json!({"text": "x"}))
            .await
            .expect_err("refused");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("secret-response-path"), "{shown}");
    }

    #[tokio::test]
    async fn ok_false_and_undecodable_answers_are_classified() {
        let (base, _log, task) =
            recorder(serde_json::json!({"ok": false, "error": "is_archived"})).await;
        let c = SlackClient::new(&base, "xoxb-1", Duration::from_secs(5)).expect("client");
        let err = c.auth_test().await.expect_err("ok:false");
        assert_eq!(
            err,
            SlackError::Api {
                method: methods::AUTH_TEST,
                error: "is_archived".into()
            }
        );
        task.abort();

        let (base, _log, task) = recorder(serde_json::json!({"ok": true})).await;
        let c = SlackClient::new(&base, "xoxb-1", Duration::from_secs(5)).expect("client");
        let err = c
            .post_message(
                "C1",
                &Message {
                    text: "t".into(),
                    blocks: Vec::new(),
                    metadata: None,
                },
                None,
            )
            .await
            .expect_err("missing ts");
        assert!(matches!(err, SlackError::Decode { .. }), "{err:?}");
        assert_eq!(err.retry(), Retry::Backoff);
        assert!(err.outcome_unknown());
        task.abort();
    }
}
