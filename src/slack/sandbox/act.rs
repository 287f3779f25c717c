//! The sandbox acting as Slack toward the app: it builds the payloads Slack
//! builds when a user clicks a button, submits a modal, runs a slash command
//! or triggers an event, signs them with the signing secret
//! ([`crate::slack::verify::sign`]) and sends them to the app; and it serves
//! the response_urls it minted.
//!
//! Routes (relative to the mount point), JSON in, JSON out:
//! - `POST /api/_act/click` `{channel, message_ts, action_id, user}`
//! - `POST /api/_act/submit_view` `{view_id, user, values}`
//! - `POST /api/_act/close_view` `{view_id, user}` (answers
//!   `{ok:true, app}`: the app's [`ActResponse`] to `view_closed`, or null
//!   when the view did not ask for `notify_on_close`)
//! - `POST /api/_act/slash_command` `{command, text, channel, user}`
//! - `POST /api/_act/event` `{event, event_id?, retry_num?}`
//! - `POST /api/_act/url_verification` `{challenge}`
//! - `POST /api/_act/raw` `{path, content_type?, body, signing?}`
//! - `POST /api/_act/app_url` `{url}` (null forgets it)
//!
//! answer an [`ActResponse`] (the app's status and body) or
//! `{ok:false, error, detail}` with the status of [`ActError::status`].
//! - `POST /api/_response/{id}`: a minted response_url.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::interact::{APP_ID, ActRecord, EphemeralState, ResponsePostState, api_view};
use super::server::known_user;
use super::state::{MessageArgs, TEAM_ID, USER_ID, format_ts};
use super::validate::validate_message;
use super::{Inner, Sandbox};
use crate::slack::verify;

/// Where the app receives interactions, commands and events.
pub use crate::slack::paths::{
    COMMANDS as COMMANDS_PATH, EVENTS as EVENTS_PATH, INTERACTIONS as INTERACTIONS_PATH,
};
/// Most bytes of an app answer the sandbox reads.
pub const MAX_APP_ANSWER_BYTES: usize = 1024 * 1024;
/// Most bytes of a response_url post.
pub const MAX_RESPONSE_URL_BYTES: usize = 256 * 1024;
/// The deprecated verification token Slack still puts in payloads.
pub const VERIFICATION_TOKEN: &str = "sandbox-verification-token";
const TEAM_DOMAIN: &str = "sandbox";
const FORM: &str = "application/x-www-form-urlencoded";
const JSON_CT: &str = "application/json";
/// Host of response_urls minted before the sandbox knows its own address
/// (see [`Sandbox::set_base_url`]): deliberately unreachable.
const UNKNOWN_BASE: &str = "http://sandbox.invalid";

/// How a request to the app is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signing {
    /// As Slack does: now, with the signing secret.
    #[default]
    Valid,
    /// Neither `X-Slack-Signature` nor `X-Slack-Request-Timestamp`.
    None,
    /// Now, with a secret that is not the signing secret.
    WrongSecret,
    /// Correctly signed, 2 × [`verify::MAX_SKEW`] in the past.
    Stale,
    /// Correctly signed, 2 × [`verify::MAX_SKEW`] in the future.
    Future,
}

/// What the app answered to a request the sandbox sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActResponse {
    pub status: u16,
    /// The body as text (lossy UTF-8).
    pub body: String,
    /// The body, when it is JSON.
    pub json: Option<Value>,
    pub elapsed_ms: u64,
    /// What was sent: the payload (interactions), the envelope (events),
    /// the form fields (commands), or the raw body as a string.
    pub sent: Value,
}

/// Why the sandbox could not act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    #[error("no app_url set: the sandbox does not know where the app listens")]
    NoAppUrl,
    #[error("no signing_secret configured: cannot sign")]
    NoSigningSecret,
    #[error("unknown user {0}")]
    UnknownUser(String),
    #[error("no message {ts} in channel {channel}")]
    MessageNotFound { channel: String, ts: String },
    #[error("no element with action_id {0} in the message")]
    ActionNotFound(String),
    #[error("element {action_id} is a {kind}; only buttons can be clicked")]
    NotAButton { action_id: String, kind: String },
    #[error("no view {0}")]
    ViewNotFound(String),
    #[error("view {0} is closed")]
    ViewClosed(String),
    #[error("view {0} is open for another user")]
    NotViewOwner(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("the app did not answer within {after_ms}ms")]
    Timeout { after_ms: u64 },
    #[error("cannot reach the app: {0}")]
    Transport(String),
    /// Socket Mode: no ack for the envelope in time (it is redelivered).
    #[error("the app did not ack envelope {envelope_id} within {after_ms}ms")]
    NotAcked { envelope_id: String, after_ms: u64 },
}

impl ActError {
    /// HTTP status of the control route answer, in one place.
    pub fn status(&self) -> StatusCode {
        match self {
            ActError::NoAppUrl | ActError::NoSigningSecret | ActError::ViewClosed(_) => {
                StatusCode::CONFLICT
            }
            ActError::UnknownUser(_)
            | ActError::NotAButton { .. }
            | ActError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ActError::MessageNotFound { .. }
            | ActError::ActionNotFound(_)
            | ActError::ViewNotFound(_) => StatusCode::NOT_FOUND,
            ActError::NotViewOwner(_) => StatusCode::FORBIDDEN,
            ActError::Timeout { .. } | ActError::NotAcked { .. } => StatusCode::GATEWAY_TIMEOUT,
            ActError::Transport(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ActError::NoAppUrl => "no_app_url",
            ActError::NoSigningSecret => "no_signing_secret",
            ActError::UnknownUser(_) => "user_not_found",
            ActError::MessageNotFound { .. } => "message_not_found",
            ActError::ActionNotFound(_) => "action_not_found",
            ActError::NotAButton { .. } => "not_a_button",
            ActError::ViewNotFound(_) => "view_not_found",
            ActError::ViewClosed(_) => "view_closed",
            ActError::NotViewOwner(_) => "not_view_owner",
            ActError::InvalidRequest(_) => "invalid_request",
            ActError::Timeout { .. } => "app_timeout",
            ActError::Transport(_) => "app_unreachable",
            ActError::NotAcked { .. } => "not_acked",
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `secs.micros` of now, as Slack writes `action_ts`.
fn now_ts() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    format_ts(micros)
}

/// `application/x-www-form-urlencoded`, as browsers and Slack encode it.
pub(super) fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn enc(out: &mut String, s: &str) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                    out.push(char::from(b));
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(&mut out, k);
        out.push('=');
        enc(&mut out, v);
    }
    out
}

/// The signature headers for `body` under `signing`.
pub(super) fn signature_headers(
    secret: Option<&str>,
    signing: Signing,
    body: &[u8],
    now: i64,
) -> Result<Vec<(&'static str, String)>, ActError> {
    let skew = i64::try_from(2 * verify::MAX_SKEW.as_secs()).unwrap_or(600);
    let secret = secret.filter(|s| !s.is_empty());
    let (ts, key) = match signing {
        Signing::None => return Ok(Vec::new()),
        Signing::Valid => (now, secret.ok_or(ActError::NoSigningSecret)?.to_owned()),
        Signing::Stale => (
            now - skew,
            secret.ok_or(ActError::NoSigningSecret)?.to_owned(),
        ),
        Signing::Future => (
            now + skew,
            secret.ok_or(ActError::NoSigningSecret)?.to_owned(),
        ),
        Signing::WrongSecret => (
            now,
            format!("{}-but-not-the-signing-secret", secret.unwrap_or("any")),
        ),
    };
    Ok(vec![
        (verify::TIMESTAMP_HEADER, ts.to_string()),
        (
            verify::SIGNATURE_HEADER,
            verify::sign(key.as_bytes(), ts, body),
        ),
    ])
}

fn transport_error(e: reqwest::Error, timeout: Duration) -> ActError {
    if e.is_timeout() {
        ActError::Timeout {
            after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }
    } else {
        let e = e.without_url();
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        ActError::Transport(detail)
    }
}

fn user_json(user: &str) -> Value {
    let name = user.to_ascii_lowercase();
    json!({"id": user, "username": name, "name": name, "team_id": TEAM_ID})
}

fn response_url(inner: &Inner, id: &str) -> String {
    let base = inner.base_url.as_deref().unwrap_or(UNKNOWN_BASE);
    format!("{base}/api/_response/{id}")
}

/// The element with `action_id` in a message's blocks, and its block's id.
fn find_action(blocks: &Value, action_id: &str) -> Option<(String, Value)> {
    let list = blocks.as_array()?;
    for (i, block) in list.iter().enumerate() {
        let block_id = block
            .get("block_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            // Slack assigns ids to blocks posted without one.
            .unwrap_or_else(|| format!("sandbox-block-{i}"));
        let mut candidates: Vec<&Value> = Vec::new();
        if let Some(els) = block.get("elements").and_then(Value::as_array) {
            candidates.extend(els);
        }
        for key in ["accessory", "element"] {
            if let Some(el) = block.get(key) {
                candidates.push(el);
            }
        }
        if let Some(el) = candidates
            .into_iter()
            .find(|el| el.get("action_id").and_then(Value::as_str) == Some(action_id))
        {
            return Some((block_id, el.clone()));
        }
    }
    None
}

fn parse_body(body: &str) -> Option<Value> {
    serde_json::from_str(body).ok()
}

/// Text and blocks of an app answer, validated as Slack validates messages.
fn message_args(v: &Value) -> Result<MessageArgs, String> {
    let text = v.get("text").and_then(Value::as_str).map(str::to_owned);
    let blocks = v.get("blocks").filter(|b| !b.is_null()).cloned();
    validate_message(text.as_deref(), blocks.as_ref()).map_err(|r| r.error.to_owned())?;
    Ok(MessageArgs {
        text,
        blocks,
        metadata: None,
        team: None,
    })
}

impl Sandbox {
    fn check_user(inner: &Inner, user: &str) -> Result<(), ActError> {
        if known_user(inner, user) {
            Ok(())
        } else {
            Err(ActError::UnknownUser(user.chars().take(64).collect()))
        }
    }

    /// The open modal `view_id`, when `user` is a known user who owns it:
    /// only its owner can submit or close a modal.
    fn owned_open_view<'a>(
        inner: &'a Inner,
        view_id: &str,
        user: &str,
    ) -> Result<&'a super::ViewState, ActError> {
        Self::check_user(inner, user)?;
        let view = inner
            .interact
            .view(view_id)
            .ok_or_else(|| ActError::ViewNotFound(view_id.chars().take(64).collect()))?;
        if view.closed {
            return Err(ActError::ViewClosed(view.id.clone()));
        }
        if view.user != user {
            return Err(ActError::NotViewOwner(view.id.clone()));
        }
        Ok(view)
    }

    /// Send `body` to `{app_url}{path}` the way Slack does, record the
    /// round trip, and return the app's status and body.
    async fn deliver(
        &self,
        kind: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        signing: Signing,
        extra: &[(&'static str, String)],
    ) -> Result<(u16, String, u64), ActError> {
        if let Some(result) = self.socket_deliver(kind, path, &body, signing, extra).await {
            return result;
        }
        let (url, http, timeout, headers, started) = {
            let inner = self.lock();
            let app = inner.app_url.clone().ok_or(ActError::NoAppUrl)?;
            let headers =
                signature_headers(inner.signing_secret.as_deref(), signing, &body, unix_now())?;
            (
                format!("{app}{path}"),
                inner.http.clone(),
                inner.app_timeout,
                headers,
                inner.started,
            )
        };
        let t0 = Instant::now();
        let mut req = http
            .post(url)
            .timeout(timeout)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        for (k, v) in headers.iter().chain(extra) {
            req = req.header(*k, v.as_str());
        }
        let result = match req.send().await {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let mut buf = Vec::new();
                let mut failed = None;
                loop {
                    match resp.chunk().await {
                        Ok(Some(c)) => {
                            let room = MAX_APP_ANSWER_BYTES.saturating_sub(buf.len());
                            buf.extend_from_slice(&c[..c.len().min(room)]);
                            if room < c.len() {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                match failed {
                    Some(e) => Err(transport_error(e, timeout)),
                    None => Ok((status, String::from_utf8_lossy(&buf).into_owned())),
                }
            }
            Err(e) => Err(transport_error(e, timeout)),
        };
        let elapsed_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        let at_ms = u64::try_from(t0.duration_since(started).as_millis()).unwrap_or(u64::MAX);
        self.lock().interact.record_act(ActRecord {
            kind: kind.to_owned(),
            path: path.to_owned(),
            status: result.as_ref().ok().map(|(s, _)| *s),
            elapsed_ms,
            at_ms,
            error: result.as_ref().err().map(ToString::to_string),
        });
        result.map(|(status, body)| (status, body, elapsed_ms))
    }

    /// A user clicks the button `action_id` of the message `message_ts` in
    /// `channel`: a signed `block_actions` payload goes to
    /// `{app_url}/slack/interactions`, with a fresh trigger id and
    /// response_url.
    pub async fn click(
        &self,
        channel: &str,
        message_ts: &str,
        action_id: &str,
        user: &str,
    ) -> Result<ActResponse, ActError> {
        let payload = {
            let mut guard = self.lock();
            let inner: &mut Inner = &mut guard;
            Self::check_user(inner, user)?;
            let message = inner
                .workspace
                .message_api(channel, message_ts)
                .ok_or_else(|| ActError::MessageNotFound {
                    channel: channel.chars().take(64).collect(),
                    ts: message_ts.chars().take(64).collect(),
                })?;
            let (block_id, element) = find_action(&message["blocks"], action_id)
                .ok_or_else(|| ActError::ActionNotFound(action_id.chars().take(255).collect()))?;
            let kind = element.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "button" {
                return Err(ActError::NotAButton {
                    action_id: action_id.to_owned(),
                    kind: kind.chars().take(64).collect(),
                });
            }
            let trigger_id =
                inner
                    .interact
                    .mint_trigger(&mut inner.rng, user, None, inner.trigger_ttl);
            let url_id = inner.interact.mint_response_url(
                &mut inner.rng,
                channel,
                user,
                Some(message_ts),
                inner.response_url_ttl,
            );
            let mut action = json!({
                "action_id": action_id,
                "block_id": block_id,
                "text": element.get("text").cloned().unwrap_or(Value::Null),
                "type": "button",
                "action_ts": now_ts(),
            });
            for key in ["value", "style"] {
                if let (Some(v), Some(obj)) = (element.get(key), action.as_object_mut()) {
                    obj.insert(key.to_owned(), v.clone());
                }
            }
            let mut container = json!({
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": false,
            });
            if let (Some(t), Some(obj)) = (message.get("thread_ts"), container.as_object_mut()) {
                obj.insert("thread_ts".into(), t.clone());
            }
            json!({
                "type": "block_actions",
                "user": user_json(user),
                "api_app_id": APP_ID,
                "token": VERIFICATION_TOKEN,
                "container": container,
                "trigger_id": trigger_id,
                "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
                "enterprise": null,
                "is_enterprise_install": false,
                "channel": {"id": channel, "name": channel},
                "message": message,
                "state": {"values": {}},
                "response_url": response_url(inner, &url_id),
                "actions": [action],
            })
        };
        let body = form_encode(&[("payload", &payload.to_string())]);
        let (status, body, elapsed_ms) = self
            .deliver(
                "block_actions",
                INTERACTIONS_PATH,
                FORM,
                body.into_bytes(),
                Signing::Valid,
                &[],
            )
            .await?;
        Ok(ActResponse {
            status,
            json: parse_body(&body),
            body,
            elapsed_ms,
            sent: payload,
        })
    }

    /// `user` submits the open modal `view_id` with `values` as
    /// `state.values` (`{block_id: {action_id: {type, value}}}`). The app's
    /// answer is applied as Slack does: empty 200 closes the view,
    /// `response_action` `errors` keeps it open with the errors recorded,
    /// `update`/`push`/`clear` change the stack; anything else keeps it open.
    pub async fn submit_view(
        &self,
        view_id: &str,
        user: &str,
        values: Value,
    ) -> Result<ActResponse, ActError> {
        let payload = {
            let mut guard = self.lock();
            let inner: &mut Inner = &mut guard;
            let view = Self::owned_open_view(inner, view_id, user)?;
            let values = if values.is_null() { json!({}) } else { values };
            let api = api_view(view, &values);
            let trigger_id =
                inner
                    .interact
                    .mint_trigger(&mut inner.rng, user, Some(view_id), inner.trigger_ttl);
            json!({
                "type": "view_submission",
                "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
                "user": user_json(user),
                "api_app_id": APP_ID,
                "token": VERIFICATION_TOKEN,
                "trigger_id": trigger_id,
                "view": api,
                "response_urls": [],
                "enterprise": null,
                "is_enterprise_install": false,
            })
        };
        let body = form_encode(&[("payload", &payload.to_string())]);
        let (status, body, elapsed_ms) = self
            .deliver(
                "view_submission",
                INTERACTIONS_PATH,
                FORM,
                body.into_bytes(),
                Signing::Valid,
                &[],
            )
            .await?;
        let answer = parse_body(&body);
        if status == 200 {
            self.apply_submission_answer(view_id, user, body.trim().is_empty(), answer.as_ref());
        }
        Ok(ActResponse {
            status,
            json: answer,
            body,
            elapsed_ms,
            sent: payload,
        })
    }

    /// `user` closes the open modal `view_id` (its Cancel button or ×):
    /// it and the views pushed above it close. Like Slack, the app hears
    /// of it (a signed `view_closed`) only when the view asked for it with
    /// `notify_on_close`; `None` when nothing was sent.
    pub async fn close_view(
        &self,
        view_id: &str,
        user: &str,
    ) -> Result<Option<ActResponse>, ActError> {
        let payload = {
            let mut guard = self.lock();
            let inner: &mut Inner = &mut guard;
            let view = Self::owned_open_view(inner, view_id, user)?;
            let notify = view.view.get("notify_on_close").and_then(Value::as_bool) == Some(true);
            let payload = notify.then(|| {
                json!({
                    "type": "view_closed",
                    "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
                    "user": user_json(user),
                    "api_app_id": APP_ID,
                    "token": VERIFICATION_TOKEN,
                    "view": api_view(view, &json!({})),
                    "is_cleared": false,
                    "enterprise": null,
                    "is_enterprise_install": false,
                })
            });
            inner.interact.close(view_id);
            payload
        };
        let Some(payload) = payload else {
            return Ok(None);
        };
        let body = form_encode(&[("payload", &payload.to_string())]);
        let (status, body, elapsed_ms) = self
            .deliver(
                "view_closed",
                INTERACTIONS_PATH,
                FORM,
                body.into_bytes(),
                Signing::Valid,
                &[],
            )
            .await?;
        Ok(Some(ActResponse {
            status,
            json: parse_body(&body),
            body,
            elapsed_ms,
            sent: payload,
        }))
    }

    fn apply_submission_answer(
        &self,
        view_id: &str,
        user: &str,
        empty: bool,
        answer: Option<&Value>,
    ) {
        let mut guard = self.lock();
        let inner: &mut Inner = &mut guard;
        if empty {
            inner.interact.close(view_id);
            return;
        }
        let Some(answer) = answer else { return };
        let new_view = answer.get("view").cloned();
        let invalid = |inner: &mut Inner, e: super::state::ApiError| {
            inner.interact.set_errors(
                view_id,
                json!({"response_action": e.error, "details": e.details}),
            );
        };
        match answer.get("response_action").and_then(Value::as_str) {
            Some("errors") => {
                let errors = answer.get("errors").cloned().unwrap_or_else(|| json!({}));
                inner.interact.set_errors(view_id, errors);
            }
            Some("update") => {
                match super::interact::validate_view(new_view.as_ref()).and_then(|()| {
                    inner.interact.update(
                        &mut inner.rng,
                        view_id,
                        None,
                        new_view.unwrap_or_default(),
                    )
                }) {
                    Ok(_) => {}
                    Err(e) => invalid(inner, e),
                }
            }
            Some("push") => {
                match super::interact::validate_view(new_view.as_ref()).and_then(|()| {
                    inner.interact.push(
                        &mut inner.rng,
                        Some(view_id),
                        user,
                        new_view.unwrap_or_default(),
                    )
                }) {
                    Ok(_) => {}
                    Err(e) => invalid(inner, e),
                }
            }
            Some("clear") => inner.interact.clear_stack(view_id),
            // Slack shows the user an error and keeps the view open.
            _ => {}
        }
    }

    /// `user` runs `command text` in `channel`: a signed form goes to
    /// `{app_url}/slack/commands`. A non-empty 200 answer is shown as
    /// Slack shows it: ephemeral to the user, or posted when
    /// `response_type` is `in_channel`.
    pub async fn slash_command(
        &self,
        command: &str,
        text: &str,
        channel: &str,
        user: &str,
    ) -> Result<ActResponse, ActError> {
        let fields: Vec<(&'static str, String)> = {
            let mut guard = self.lock();
            let inner: &mut Inner = &mut guard;
            Self::check_user(inner, user)?;
            if !inner.workspace.channel_exists_or_creatable(channel) {
                return Err(ActError::InvalidRequest(format!(
                    "unknown channel {}",
                    channel.chars().take(64).collect::<String>()
                )));
            }
            if !command.starts_with('/') {
                return Err(ActError::InvalidRequest("command must start with /".into()));
            }
            let trigger_id =
                inner
                    .interact
                    .mint_trigger(&mut inner.rng, user, None, inner.trigger_ttl);
            let url_id = inner.interact.mint_response_url(
                &mut inner.rng,
                channel,
                user,
                None,
                inner.response_url_ttl,
            );
            vec![
                ("token", VERIFICATION_TOKEN.to_owned()),
                ("team_id", TEAM_ID.to_owned()),
                ("team_domain", TEAM_DOMAIN.to_owned()),
                ("channel_id", channel.to_owned()),
                ("channel_name", channel.to_ascii_lowercase()),
                ("user_id", user.to_owned()),
                ("user_name", user.to_ascii_lowercase()),
                ("command", command.to_owned()),
                ("text", text.to_owned()),
                ("api_app_id", APP_ID.to_owned()),
                ("is_enterprise_install", "false".to_owned()),
                ("response_url", response_url(inner, &url_id)),
                ("trigger_id", trigger_id),
            ]
        };
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = form_encode(&pairs);
        let (status, body, elapsed_ms) = self
            .deliver(
                "slash_command",
                COMMANDS_PATH,
                FORM,
                body.into_bytes(),
                Signing::Valid,
                &[],
            )
            .await?;
        let answer = parse_body(&body);
        if status == 200 && !body.trim().is_empty() {
            let mut guard = self.lock();
            let inner: &mut Inner = &mut guard;
            let reply = answer.clone().unwrap_or_else(|| json!({"text": body}));
            let in_channel =
                reply.get("response_type").and_then(Value::as_str) == Some("in_channel");
            if let Ok(args) = message_args(&reply) {
                if in_channel {
                    if let Err(e) = inner.workspace.post(channel, args, None) {
                        tracing::debug!(error = e.error, "sandbox: in_channel answer refused");
                    }
                } else {
                    inner.interact.record_ephemeral(EphemeralState {
                        channel: channel.to_owned(),
                        user: user.to_owned(),
                        text: args.text.unwrap_or_default(),
                        blocks: args.blocks.unwrap_or_else(|| json!([])),
                        thread_ts: None,
                        source: "slash_command".to_owned(),
                    });
                }
            }
        }
        let sent: Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        Ok(ActResponse {
            status,
            json: answer,
            body,
            elapsed_ms,
            sent: Value::Object(sent),
        })
    }

    /// Deliver `event` in an `event_callback` envelope to
    /// `{app_url}/slack/events`. `event_id` is minted unless given (resend
    /// an id to model Slack's retry); `retry_num` adds `X-Slack-Retry-Num`
    /// and `X-Slack-Retry-Reason: http_timeout`.
    pub async fn send_event(
        &self,
        event: Value,
        event_id: Option<&str>,
        retry_num: Option<u32>,
    ) -> Result<ActResponse, ActError> {
        self.send_team_event(TEAM_ID, event, event_id, retry_num)
            .await
    }

    /// [`Sandbox::send_event`] from workspace `team` (the envelope's
    /// `team_id`), such as another workspace that installed the app
    /// through [`super::oauth`].
    pub async fn send_team_event(
        &self,
        team: &str,
        event: Value,
        event_id: Option<&str>,
        retry_num: Option<u32>,
    ) -> Result<ActResponse, ActError> {
        let event_id = match event_id {
            Some(id) => id.to_owned(),
            None => {
                let mut inner = self.lock();
                let rng = &mut inner.rng;
                let suffix: String = (0..10)
                    .map(|_| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rng.usize(..36)]))
                    .collect();
                format!("Ev{suffix}")
            }
        };
        let envelope = json!({
            "token": VERIFICATION_TOKEN,
            "team_id": team,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": unix_now(),
            "authorizations": [{"enterprise_id": null, "team_id": team,
                "user_id": USER_ID, "is_bot": true, "is_enterprise_install": false}],
            "is_ext_shared_channel": false,
        });
        let extra: Vec<(&'static str, String)> = match retry_num {
            Some(n) => vec![
                (verify::RETRY_NUM_HEADER, n.to_string()),
                (verify::RETRY_REASON_HEADER, "http_timeout".to_owned()),
            ],
            None => Vec::new(),
        };
        let (status, body, elapsed_ms) = self
            .deliver(
                "event_callback",
                EVENTS_PATH,
                JSON_CT,
                envelope.to_string().into_bytes(),
                Signing::Valid,
                &extra,
            )
            .await?;
        Ok(ActResponse {
            status,
            json: parse_body(&body),
            body,
            elapsed_ms,
            sent: envelope,
        })
    }

    /// Slack's Events API handshake: the app must echo `challenge`.
    pub async fn url_verification(&self, challenge: &str) -> Result<ActResponse, ActError> {
        let payload = json!({
            "token": VERIFICATION_TOKEN,
            "challenge": challenge,
            "type": "url_verification",
        });
        let (status, body, elapsed_ms) = self
            .deliver(
                "url_verification",
                EVENTS_PATH,
                JSON_CT,
                payload.to_string().into_bytes(),
                Signing::Valid,
                &[],
            )
            .await?;
        Ok(ActResponse {
            status,
            json: parse_body(&body),
            body,
            elapsed_ms,
            sent: payload,
        })
    }

    /// POST `body` to `{app_url}{path}` signed (or mis-signed) as `signing`
    /// says: for testing how the app treats bad requests.
    pub async fn send_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        signing: Signing,
    ) -> Result<ActResponse, ActError> {
        if !path.starts_with('/') {
            return Err(ActError::InvalidRequest("path must start with /".into()));
        }
        let (status, answer, elapsed_ms) = self
            .deliver("raw", path, content_type, body.to_vec(), signing, &[])
            .await?;
        Ok(ActResponse {
            status,
            json: parse_body(&answer),
            body: answer,
            elapsed_ms,
            sent: Value::String(String::from_utf8_lossy(body).into_owned()),
        })
    }

    /// Apply one post to the response_url `id`.
    fn response_post(&self, id: &str, body: &[u8]) -> (StatusCode, Value) {
        let mut guard = self.lock();
        let inner: &mut Inner = &mut guard;
        let at_ms = u64::try_from(inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let parsed: Option<Value> = serde_json::from_slice(body).ok().filter(Value::is_object);
        let outcome = match inner.interact.use_response_url(id) {
            Err(refusal) => Err((
                StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::NOT_FOUND),
                refusal.error.to_owned(),
            )),
            Ok(url) => match &parsed {
                None => Err((StatusCode::BAD_REQUEST, "invalid_payload".to_owned())),
                Some(p) => apply_response(inner, &url, p),
            },
        };
        let (status, error) = match &outcome {
            Ok(()) => (StatusCode::OK, None),
            Err((s, e)) => (*s, Some(e.clone())),
        };
        inner.interact.record_response_post(ResponsePostState {
            url_id: id.chars().take(64).collect(),
            status: status.as_u16(),
            outcome: error.clone().unwrap_or_else(|| "ok".to_owned()),
            body: parsed.unwrap_or(Value::Null),
            at_ms,
        });
        match error {
            None => (status, json!({"ok": true})),
            Some(e) => (status, json!({"ok": false, "error": e})),
        }
    }
}

fn apply_response(
    inner: &mut Inner,
    url: &super::interact::ResponseUrl,
    p: &Value,
) -> Result<(), (StatusCode, String)> {
    let flag = |k: &str| p.get(k).and_then(Value::as_bool).unwrap_or(false);
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let original = || {
        url.message_ts
            .clone()
            .ok_or_else(|| bad("no_original_message".to_owned()))
    };
    let api = |e: super::state::ApiError| (StatusCode::NOT_FOUND, e.error);
    if flag("delete_original") {
        let ts = original()?;
        return inner.workspace.delete(&url.channel, &ts).map_err(api);
    }
    let args = message_args(p).map_err(bad)?;
    let thread_ts = p.get("thread_ts").and_then(Value::as_str);
    if flag("replace_original") {
        let ts = original()?;
        return inner
            .workspace
            .update(&url.channel, &ts, args)
            .map(|_| ())
            .map_err(api);
    }
    if p.get("response_type").and_then(Value::as_str) == Some("in_channel") {
        return inner
            .workspace
            .post(&url.channel, args, thread_ts)
            .map(|_| ())
            .map_err(api);
    }
    inner.interact.record_ephemeral(EphemeralState {
        channel: url.channel.clone(),
        user: url.user.clone(),
        text: args.text.unwrap_or_default(),
        blocks: args.blocks.unwrap_or_else(|| json!([])),
        thread_ts: thread_ts.map(str::to_owned),
        source: "response_url".to_owned(),
    });
    Ok(())
}

/// `POST /api/_response/{id}`.
pub(super) async fn post_response_url(
    State(sb): State<Sandbox>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if body.len() > MAX_RESPONSE_URL_BYTES {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({"ok": false, "error": "request_too_large"})),
        )
            .into_response();
    }
    let (status, answer) = sb.response_post(&id, &body);
    (status, Json(answer)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClickReq {
    channel: String,
    message_ts: String,
    action_id: String,
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitReq {
    view_id: String,
    user: String,
    #[serde(default)]
    values: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseViewReq {
    view_id: String,
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandReq {
    command: String,
    #[serde(default)]
    text: String,
    channel: String,
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventReq {
    event: Value,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    retry_num: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeReq {
    challenge: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReq {
    path: String,
    #[serde(default = "default_raw_content_type")]
    content_type: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    signing: Signing,
}

fn default_raw_content_type() -> String {
    FORM.to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppUrlReq {
    url: Option<String>,
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ActError> {
    serde_json::from_slice(body).map_err(|e| ActError::InvalidRequest(e.to_string()))
}

/// Longest the control route waits for an act (the app timeout is the real
/// bound; this only guards against a stuck connection pool).
const MAX_ACT_WAIT: Duration = Duration::from_secs(30);

/// `POST /api/_act/{kind}`.
pub(super) async fn post_act(
    State(sb): State<Sandbox>,
    Path(kind): Path<String>,
    body: Bytes,
) -> Response {
    let act = async {
        match kind.as_str() {
            "click" => {
                let r: ClickReq = decode(&body)?;
                sb.click(&r.channel, &r.message_ts, &r.action_id, &r.user)
                    .await
            }
            "submit_view" => {
                let r: SubmitReq = decode(&body)?;
                sb.submit_view(&r.view_id, &r.user, r.values).await
            }
            "slash_command" => {
                let r: CommandReq = decode(&body)?;
                sb.slash_command(&r.command, &r.text, &r.channel, &r.user)
                    .await
            }
            "event" => {
                let r: EventReq = decode(&body)?;
                sb.send_event(r.event, r.event_id.as_deref(), r.retry_num)
                    .await
            }
            "url_verification" => {
                let r: ChallengeReq = decode(&body)?;
                sb.url_verification(&r.challenge).await
            }
            "raw" => {
                let r: RawReq = decode(&body)?;
                sb.send_raw(&r.path, &r.content_type, r.body.as_bytes(), r.signing)
                    .await
            }
            _ => Err(ActError::InvalidRequest(format!(
                "unknown act {}",
                kind.chars().take(64).collect::<String>()
            ))),
        }
    };
    if kind == "close_view" {
        // Nothing may be sent to the app, so no ActResponse to answer.
        let closed = async {
            let r: CloseViewReq = decode(&body)?;
            sb.close_view(&r.view_id, &r.user).await
        };
        return bounded(async { closed.await.map(|sent| json!({"ok": true, "app": sent})) }).await;
    }
    if kind == "app_url" {
        return match decode::<AppUrlReq>(&body) {
            Ok(r) => {
                sb.set_app_url(r.url);
                Json(json!({"ok": true, "app_url": sb.app_url()})).into_response()
            }
            Err(e) => act_error(&e),
        };
    }
    bounded(act).await
}

/// Answer an act within [`MAX_ACT_WAIT`].
async fn bounded<T: Serialize>(act: impl Future<Output = Result<T, ActError>>) -> Response {
    match tokio::time::timeout(MAX_ACT_WAIT, act).await {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err(e)) => act_error(&e),
        Err(_) => act_error(&ActError::Timeout {
            after_ms: u64::try_from(MAX_ACT_WAIT.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

fn act_error(e: &ActError) -> Response {
    (
        e.status(),
        Json(json!({"ok": false, "error": e.code(), "detail": e.to_string()})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_matches_browsers() {
        assert_eq!(
            form_encode(&[("payload", r#"{"a":"b c&d=é"}"#), ("x", "")]),
            "payload=%7B%22a%22%3A%22b+c%26d%3D%C3%A9%22%7D&x="
        );
    }

    #[test]
    fn unknown_act_is_a_bad_request() {
        assert_eq!(
            ActError::InvalidRequest("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ActError::Timeout { after_ms: 1 }.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
    }
}
