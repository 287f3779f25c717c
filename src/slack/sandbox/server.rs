//! HTTP side of the emulator: routes, argument decoding, auth, rate limits,
//! fault injection and call recording.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::state::{ApiError, HistoryArgs, MessageArgs, Outcome, parse_ts};
use super::validate::validate_message;
use super::{Faults, Inner, Sandbox};
use crate::slack::api::methods;
use crate::slack::blocks::Metadata;

/// Largest request body the emulator reads, on every route (larger ones
/// get 413).
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;
/// Longest method name or channel id kept in the call log.
const MAX_LOGGED_CHARS: usize = 100;
/// `Retry-After` of a 429 injected by [`Faults::ratelimit_rate`]: Slack's
/// smallest.
pub const INJECTED_RETRY_AFTER_SECS: u64 = 1;

pub(super) fn router(sandbox: Sandbox) -> axum::Router {
    axum::Router::new()
        .route("/api/_faults", post(post_faults))
        .route(
            "/api/_reset",
            post(post_reset).layer(axum::middleware::from_fn(require_json)),
        )
        .route(
            "/api/_act/{kind}",
            post(super::act::post_act).layer(axum::middleware::from_fn(require_json)),
        )
        .route("/api/_response/{id}", post(super::act::post_response_url))
        .route("/api/_hooks/{channel}/{key}", post(incoming_webhook))
        .route(
            "/api/apps.connections.open",
            post(super::socket::connections_open),
        )
        .route("/socket/{ticket}", get(super::socket::socket))
        .route("/oauth/v2/authorize", get(super::oauth::authorize))
        .route("/api/oauth.v2.access", post(super::oauth::access))
        .route("/api/{method}", get(api).post(api))
        // Every route above can change the emulator; the page's live
        // updates follow from here. The read-only routes below do not bump
        // the version (the page reading the state must not wake itself).
        .route_layer(axum::middleware::from_fn_with_state(
            sandbox.clone(),
            super::live::bump_after,
        ))
        .route("/api/state", get(get_state))
        .route("/api/_faults", get(get_faults))
        .route("/api/_events", get(super::live::get_events))
        .route("/page.js", get(super::page::script))
        .route("/page.css", get(super::page::style))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(sandbox)
}

/// The routes that act as a Slack user (and reset) take JSON only. A web
/// page on another origin can send a form or `text/plain` to localhost
/// without asking, but not `application/json` (that needs a CORS preflight,
/// which the sandbox never grants), so no other site open in the browser can
/// click Acknowledge or create a silence through a local sandbox.
async fn require_json(request: Request, next: axum::middleware::Next) -> Response {
    let json = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(json!({
                "ok": false,
                "error": "invalid_content_type",
                "detail": "send the body as application/json"
            })),
        )
            .into_response();
    }
    next.run(request).await
}

async fn get_state(State(sb): State<Sandbox>) -> Response {
    Json(sb.state()).into_response()
}

async fn get_faults(State(sb): State<Sandbox>) -> Response {
    Json(sb.faults()).into_response()
}

async fn post_faults(State(sb): State<Sandbox>, Json(faults): Json<Faults>) -> Response {
    match sb.set_faults(faults.clone()) {
        Ok(()) => Json(json!({"ok": true, "faults": faults})).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"ok": false, "error": "invalid_faults", "detail": e.0})),
        )
            .into_response(),
    }
}

async fn post_reset(State(sb): State<Sandbox>) -> Response {
    sb.reset();
    Json(json!({"ok": true})).into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiMethod {
    PostMessage,
    Update,
    Permalink,
    History,
    AuthTest,
    PostEphemeral,
    ViewsOpen,
    ViewsUpdate,
    ViewsPush,
    ConversationsOpen,
    UsergroupUsers,
}

impl ApiMethod {
    fn parse(name: &str) -> Option<ApiMethod> {
        match name {
            methods::POST_MESSAGE => Some(ApiMethod::PostMessage),
            methods::UPDATE => Some(ApiMethod::Update),
            methods::GET_PERMALINK => Some(ApiMethod::Permalink),
            methods::HISTORY => Some(ApiMethod::History),
            methods::AUTH_TEST => Some(ApiMethod::AuthTest),
            methods::POST_EPHEMERAL => Some(ApiMethod::PostEphemeral),
            methods::VIEWS_OPEN => Some(ApiMethod::ViewsOpen),
            methods::VIEWS_UPDATE => Some(ApiMethod::ViewsUpdate),
            methods::VIEWS_PUSH => Some(ApiMethod::ViewsPush),
            methods::CONVERSATIONS_OPEN => Some(ApiMethod::ConversationsOpen),
            methods::USERGROUPS_USERS_LIST => Some(ApiMethod::UsergroupUsers),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ApiMethod::PostMessage => methods::POST_MESSAGE,
            ApiMethod::Update => methods::UPDATE,
            ApiMethod::Permalink => methods::GET_PERMALINK,
            ApiMethod::History => methods::HISTORY,
            ApiMethod::AuthTest => methods::AUTH_TEST,
            ApiMethod::PostEphemeral => methods::POST_EPHEMERAL,
            ApiMethod::ViewsOpen => methods::VIEWS_OPEN,
            ApiMethod::ViewsUpdate => methods::VIEWS_UPDATE,
            ApiMethod::ViewsPush => methods::VIEWS_PUSH,
            ApiMethod::ConversationsOpen => methods::CONVERSATIONS_OPEN,
            ApiMethod::UsergroupUsers => methods::USERGROUPS_USERS_LIST,
        }
    }

    /// Methods that act on one `channel`.
    fn needs_channel(self) -> bool {
        matches!(
            self,
            ApiMethod::PostMessage
                | ApiMethod::Update
                | ApiMethod::Permalink
                | ApiMethod::History
                | ApiMethod::PostEphemeral
        )
    }
}

/// Decoded arguments, whatever their encoding (JSON body, form, query).
struct Params {
    map: Map<String, Value>,
    /// Form bodies may carry `token` (Slack allows it there only).
    from_form: bool,
}

impl Params {
    fn from_pairs(pairs: HashMap<String, String>, from_form: bool) -> Params {
        Params {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
            from_form,
        }
    }

    fn str(&self, key: &str) -> Option<String> {
        match self.map.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn bool(&self, key: &str) -> bool {
        match self.map.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => matches!(s.as_str(), "true" | "1"),
            Some(Value::Number(n)) => n.as_u64().is_some_and(|n| n != 0),
            _ => false,
        }
    }

    /// A JSON-valued argument; in forms and queries it is a JSON string.
    fn json(&self, key: &str) -> Result<Option<Value>, ()> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s).map(Some).map_err(|_| ()),
            Some(v) => Ok(Some(v.clone())),
        }
    }

    fn message_args(&self) -> Result<MessageArgs, ApiError> {
        let text = self.str("text");
        let blocks = self
            .json("blocks")
            .map_err(|()| ApiError::new("invalid_blocks_format"))?;
        let metadata = match self
            .json("metadata")
            .map_err(|()| ApiError::new("invalid_metadata_format"))?
        {
            None => None,
            Some(v) => Some(
                serde_json::from_value::<Metadata>(v)
                    .ok()
                    .filter(|m| !m.event_type.is_empty() && m.event_payload.is_object())
                    .ok_or_else(|| ApiError::new("invalid_metadata_format"))?,
            ),
        };
        validate_message(text.as_deref(), blocks.as_ref()).map_err(|r| ApiError {
            error: r.error.to_owned(),
            details: r.details,
        })?;
        Ok(MessageArgs {
            text,
            blocks,
            metadata,
            team: None,
        })
    }
}

async fn read_params(req: Request) -> Result<Params, &'static str> {
    if req.method() != Method::POST {
        return Query::<HashMap<String, String>>::try_from_uri(req.uri())
            .map(|Query(q)| Params::from_pairs(q, false))
            .map_err(|_| "invalid_arguments");
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let query = Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|Query(q)| q)
        .unwrap_or_default();
    let body = axum::body::to_bytes(req.into_body(), MAX_REQUEST_BYTES)
        .await
        .map_err(|_| "request_too_large")?;
    if body.is_empty() {
        return Ok(Params::from_pairs(query, false));
    }
    if content_type.starts_with("application/json") {
        serde_json::from_slice::<Map<String, Value>>(&body)
            .map(|map| Params {
                map,
                from_form: false,
            })
            .map_err(|_| "invalid_json")
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let form_req = Request::builder()
            .method(Method::POST)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .map_err(|_| "invalid_form_data")?;
        axum::Form::<HashMap<String, String>>::from_request(form_req, &())
            .await
            .map(|axum::Form(f)| Params::from_pairs(f, true))
            .map_err(|_| "invalid_form_data")
    } else {
        Err("invalid_form_data")
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Where a dropped connection happens relative to applying the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drop {
    Before,
    After,
}

/// The faults drawn for one call.
#[derive(Debug, Default)]
struct Plan {
    delay: Option<Duration>,
    error_status: Option<StatusCode>,
    drop: Option<Drop>,
    /// Answer 429 for this rate-limit scope (see [`Faults::ratelimit_rate`]).
    ratelimit: Option<String>,
}

/// What the emulator answers, before faults.
struct Reply {
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
    outcome: Outcome,
    applied: bool,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            body,
            retry_after: None,
            outcome: Outcome::Ok,
            applied: false,
        }
    }

    fn err(e: ApiError) -> Reply {
        let mut body = json!({"ok": false, "error": e.error});
        if !e.details.is_empty()
            && let Some(o) = body.as_object_mut()
        {
            o.insert("errors".into(), json!(e.details));
            o.insert(
                    "response_metadata".into(),
                    json!({"messages": e.details.iter().map(|d| format!("[ERROR] {d}")).collect::<Vec<_>>()}),
                );
        }
        Reply {
            status: StatusCode::OK,
            body,
            retry_after: None,
            outcome: Outcome::Error(e.error),
            applied: false,
        }
    }

    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_LOGGED_CHARS).collect()
}

/// What the call log keeps about a call beyond its method, channel and
/// outcome (see [`super::CallRecord`]).
#[derive(Debug, Default)]
pub(super) struct CallDetail {
    /// When the call arrived; `None`: when it is logged.
    received: Option<Instant>,
    applied: bool,
    ts: Option<String>,
    thread_ts: Option<String>,
    retry_after: Option<u64>,
}

impl CallDetail {
    /// A call that arrived at `received` and changed nothing.
    fn received(received: Instant) -> CallDetail {
        CallDetail {
            received: Some(received),
            ..CallDetail::default()
        }
    }

    /// The detail of a Web API call that arrived at `received` and got
    /// `reply`.
    fn of(
        received: Instant,
        method: ApiMethod,
        params: &Params,
        reply: &Reply,
        applied: bool,
    ) -> CallDetail {
        let ts = match method {
            ApiMethod::PostMessage => reply.body["ts"].as_str().map(str::to_owned),
            ApiMethod::Update => params.str("ts"),
            _ => None,
        };
        let thread_ts = match method {
            ApiMethod::PostMessage => params.str("thread_ts").filter(|t| !t.is_empty()),
            _ => None,
        };
        CallDetail {
            received: Some(received),
            applied,
            ts: ts.map(|t| truncate(&t)),
            thread_ts: thread_ts.map(|t| truncate(&t)),
            retry_after: reply.retry_after,
        }
    }
}

impl Sandbox {
    pub(super) fn record(
        &self,
        method: &str,
        counts_key: &str,
        channel: Option<&str>,
        outcome: Outcome,
        applied: bool,
    ) {
        let detail = CallDetail {
            applied,
            ..CallDetail::default()
        };
        self.record_call(method, counts_key, channel, outcome, detail);
    }

    fn record_call(
        &self,
        method: &str,
        counts_key: &str,
        channel: Option<&str>,
        outcome: Outcome,
        detail: CallDetail,
    ) {
        let mut inner = self.lock();
        let at = detail.received.unwrap_or_else(Instant::now);
        let elapsed = at.saturating_duration_since(inner.started);
        let at_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let at_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let counts = inner.counts.entry(counts_key.to_owned()).or_default();
        match &outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::Error(_) => counts.error += 1,
            Outcome::RateLimited => counts.ratelimited += 1,
            Outcome::FaultStatus(_) | Outcome::FaultDrop => counts.fault += 1,
        }
        if inner.calls.len() >= super::state::MAX_CALL_LOG {
            inner.calls.pop_front();
        }
        inner.calls.push_back(super::CallRecord {
            method: truncate(method),
            channel: channel.map(truncate),
            outcome,
            applied: detail.applied,
            at_ms,
            at_us,
            ts: detail.ts,
            thread_ts: detail.thread_ts,
            retry_after: detail.retry_after,
        });
    }

    /// Note Retry-After violations and draw this call's faults.
    fn plan(&self, method: ApiMethod, channel: Option<&str>) -> Plan {
        let mut inner = self.lock();
        let now = Instant::now();
        if let Some(scope) = scope(method, channel)
            && inner.limiter.violates_retry_after(&scope, now)
        {
            inner.retry_after_violations += 1;
            tracing::warn!(scope, "sandbox: call before Retry-After elapsed");
        }
        let faults = inner.faults.clone();
        let rng = &mut inner.rng;
        let mut plan = Plan::default();
        if faults.delay_rate > 0.0 && !faults.delay.is_zero() && rng.f64() < faults.delay_rate {
            plan.delay = Some(faults.delay);
        }
        if faults.error_rate > 0.0 && rng.f64() < faults.error_rate {
            plan.error_status = Some(if rng.bool() {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            });
        } else if faults.drop_rate > 0.0 && rng.f64() < faults.drop_rate {
            plan.drop = Some(if rng.bool() {
                Drop::Before
            } else {
                Drop::After
            });
        } else if faults.ratelimit_rate > 0.0 && rng.f64() < faults.ratelimit_rate {
            plan.ratelimit = scope(method, channel);
        }
        plan
    }

    /// An injected 429: the scope is refused for
    /// [`INJECTED_RETRY_AFTER_SECS`] as if its window were full.
    fn inject_ratelimit(&self, scope: &str) -> Reply {
        let secs = INJECTED_RETRY_AFTER_SECS;
        self.lock().limiter.block(scope, secs, Instant::now());
        Reply {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({"ok": false, "error": "ratelimited"}),
            retry_after: Some(secs),
            outcome: Outcome::RateLimited,
            applied: false,
        }
    }

    /// Authenticate, rate-limit and apply one call.
    fn apply(&self, method: ApiMethod, params: &Params, bearer: Option<&str>) -> Reply {
        let mut guard = self.lock();
        let inner: &mut Inner = &mut guard;
        let form_token = if params.from_form {
            params.str("token")
        } else {
            None
        };
        let presented = bearer
            .map(str::to_owned)
            .or(form_token)
            .filter(|t| !t.is_empty());
        // A token an OAuth install issued acts for its team.
        let team = match presented.as_deref().map(|p| inner.installs.team_of(p)) {
            Some(Err(e)) => return Reply::err(e),
            Some(Ok(team)) => team,
            None => None,
        };
        match (&presented, &inner.token) {
            (None, _) => return Reply::err(ApiError::new("not_authed")),
            (Some(p), Some(expected))
                if team.is_none()
                    && !crate::config::constant_time_eq(p.as_bytes(), expected.as_bytes()) =>
            {
                return Reply::err(ApiError::new("invalid_auth"));
            }
            _ => {}
        }
        let channel = params.str("channel").unwrap_or_default();
        if method.needs_channel() && !inner.workspace.channel_exists_or_creatable(&channel) {
            return Reply::err(ApiError::new("channel_not_found"));
        }
        let limit = match method {
            ApiMethod::PostMessage => Some(inner.post_per_channel),
            ApiMethod::Update => Some(inner.update_limit),
            _ => None,
        };
        if let (Some(limit), Some(scope)) = (limit, scope(method, Some(&channel)))
            && let Err(secs) = inner.limiter.admit(&scope, limit, Instant::now())
        {
            return Reply {
                status: StatusCode::TOO_MANY_REQUESTS,
                body: json!({"ok": false, "error": "ratelimited"}),
                retry_after: Some(secs),
                outcome: Outcome::RateLimited,
                applied: false,
            };
        }
        let result = match method {
            ApiMethod::AuthTest => Ok(json!({
                "ok": true,
                "url": super::state::WORKSPACE_URL,
                "team": "ackbar sandbox",
                "user": "ackbar",
                "team_id": team.as_deref().unwrap_or(super::state::TEAM_ID),
                "user_id": super::state::USER_ID,
                "bot_id": super::state::BOT_ID,
            })),
            ApiMethod::PostMessage => params.message_args().and_then(|mut args| {
                args.team = team.clone();
                let thread_ts = params.str("thread_ts");
                inner.workspace.post(&channel, args, thread_ts.as_deref())
            }),
            ApiMethod::Update => params.message_args().and_then(|mut args| {
                args.team = team.clone();
                let ts = params.str("ts").unwrap_or_default();
                inner.workspace.update(&channel, &ts, args)
            }),
            ApiMethod::Permalink => {
                let ts = params.str("message_ts").unwrap_or_default();
                inner.workspace.permalink(&channel, &ts)
            }
            ApiMethod::History => {
                history_args(params).and_then(|args| inner.workspace.history(&channel, &args))
            }
            ApiMethod::PostEphemeral => post_ephemeral(inner, params, &channel),
            ApiMethod::ViewsOpen | ApiMethod::ViewsPush => {
                let view = params
                    .json("view")
                    .map_err(|()| ApiError::new("invalid_arguments"))
                    .and_then(|v| super::interact::validate_view(v.as_ref()).map(|()| v));
                view.and_then(|view| {
                    // Triggers come from this sandbox's own workspace; another
                    // team's token cannot use them.
                    if team.as_deref().is_some_and(|t| t != super::state::TEAM_ID) {
                        return Err(ApiError::new("invalid_trigger_id"));
                    }
                    let trigger = params.str("trigger_id").unwrap_or_default();
                    let trigger = inner.interact.take_trigger(&trigger)?;
                    let view = view.unwrap_or_default();
                    if method == ApiMethod::ViewsOpen {
                        Ok(inner.interact.open(&mut inner.rng, &trigger, view))
                    } else {
                        let user = trigger.user.clone();
                        inner
                            .interact
                            .push(&mut inner.rng, trigger.view_id.as_deref(), &user, view)
                    }
                })
            }
            ApiMethod::ViewsUpdate => params
                .json("view")
                .map_err(|()| ApiError::new("invalid_arguments"))
                .and_then(|v| super::interact::validate_view(v.as_ref()).map(|()| v))
                .and_then(|view| {
                    let id = params.str("view_id").unwrap_or_default();
                    let hash = params.str("hash");
                    inner.interact.update(
                        &mut inner.rng,
                        &id,
                        hash.as_deref(),
                        view.unwrap_or_default(),
                    )
                }),
            ApiMethod::ConversationsOpen => conversations_open(inner, params),
            ApiMethod::UsergroupUsers => {
                let group = params.str("usergroup").unwrap_or_default();
                match inner.user_groups.get(&group) {
                    Some(users) => Ok(json!({"ok": true, "users": users})),
                    None => Err(ApiError::new("no_such_subteam")),
                }
            }
        };
        match result {
            Ok(body) => Reply {
                applied: matches!(
                    method,
                    ApiMethod::PostMessage
                        | ApiMethod::Update
                        | ApiMethod::PostEphemeral
                        | ApiMethod::ViewsOpen
                        | ApiMethod::ViewsPush
                        | ApiMethod::ViewsUpdate
                ),
                ..Reply::ok(body)
            },
            Err(e) => Reply::err(e),
        }
    }
}

/// Whether `user` is a user of the workspace.
pub(super) fn known_user(inner: &Inner, user: &str) -> bool {
    if inner.users.is_empty() {
        super::interact::is_user_id(user)
    } else {
        inner.users.iter().any(|u| u == user)
    }
}

fn post_ephemeral(inner: &mut Inner, params: &Params, channel: &str) -> Result<Value, ApiError> {
    let user = params.str("user").unwrap_or_default();
    if !known_user(inner, &user) {
        return Err(ApiError::new("user_not_found"));
    }
    let args = params.message_args()?;
    let thread_ts = params.str("thread_ts").filter(|t| !t.is_empty());
    // Accepts no metadata and never shows up in history.
    inner.workspace.ensure_channel(channel)?;
    inner
        .interact
        .record_ephemeral(super::interact::EphemeralState {
            channel: channel.to_owned(),
            user,
            text: args.text.unwrap_or_default(),
            blocks: args.blocks.unwrap_or_else(|| json!([])),
            thread_ts,
            source: methods::POST_EPHEMERAL.to_owned(),
        });
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Ok(json!({"ok": true, "message_ts": super::state::format_ts(micros)}))
}

/// Most users in one `conversations.open` (Slack: a group DM has at most 8
/// other members).
const MAX_DM_USERS: usize = 8;

fn conversations_open(inner: &mut Inner, params: &Params) -> Result<Value, ApiError> {
    let users: Vec<String> = match params.map.get("users") {
        Some(Value::String(s)) => s
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    if users.is_empty() {
        return Err(ApiError::new("users_list_not_supplied"));
    }
    if users.len() > MAX_DM_USERS {
        return Err(ApiError::new("too_many_users"));
    }
    if let Some(bad) = users.iter().find(|u| !known_user(inner, u)) {
        return Err(ApiError {
            error: "user_not_found".into(),
            details: vec![format!("unknown user {}", truncate(bad))],
        });
    }
    let id = super::interact::dm_channel_id(&users);
    let already_open = inner.workspace.has_channel(&id);
    inner.workspace.ensure_channel(&id)?;
    let is_im = users.len() == 1;
    Ok(json!({
        "ok": true,
        "no_op": already_open,
        "already_open": already_open,
        "channel": {"id": id, "is_im": is_im, "is_mpim": !is_im},
    }))
}

fn history_args(params: &Params) -> Result<HistoryArgs, ApiError> {
    let ts_arg = |key: &str, error: &str| -> Result<Option<u64>, ApiError> {
        match params.str(key).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => parse_ts(&s).map(Some).ok_or_else(|| ApiError::new(error)),
        }
    };
    let limit = match params.str("limit").filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| ApiError::new("invalid_limit"))?,
    };
    Ok(HistoryArgs {
        oldest: ts_arg("oldest", "invalid_ts_oldest")?,
        latest: ts_arg("latest", "invalid_ts_latest")?,
        inclusive: params.bool("inclusive"),
        limit,
        cursor: params.str("cursor"),
        include_metadata: params.bool("include_all_metadata"),
    })
}

/// Rate-limit scope of a call: per channel for posts, workspace for updates.
fn scope(method: ApiMethod, channel: Option<&str>) -> Option<String> {
    match method {
        ApiMethod::PostMessage => Some(format!("{}:{}", methods::POST_MESSAGE, channel?)),
        ApiMethod::Update => Some(methods::UPDATE.to_owned()),
        _ => None,
    }
}

/// A response that promises more body than it sends: hyper sends the head,
/// then aborts the connection, and the client sees a transport error with
/// no complete answer.
fn dropped_connection() -> Response {
    let partial = Body::from_stream(Body::from("{\"ok\":").into_data_stream());
    let mut resp = Response::new(partial);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("4096"));
    resp
}

async fn api(State(sb): State<Sandbox>, Path(name): Path<String>, req: Request) -> Response {
    let received = Instant::now();
    let Some(method) = ApiMethod::parse(&name) else {
        sb.record_call(
            &name,
            "unknown",
            None,
            Outcome::Error("unknown_method".into()),
            CallDetail::received(received),
        );
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"ok": false, "error": "unknown_method"})),
        )
            .into_response();
    };
    let token = bearer(req.headers());
    let params = match read_params(req).await {
        Ok(p) => p,
        Err(code) => {
            sb.record_call(
                method.name(),
                method.name(),
                None,
                Outcome::Error(code.into()),
                CallDetail::received(received),
            );
            return Reply::err(ApiError::new(code)).into_response();
        }
    };
    let channel = params.str("channel");
    let plan = sb.plan(method, channel.as_deref());
    if let Some(delay) = plan.delay {
        // Like Slack, a slow call still happens when its caller gave up
        // waiting: it runs apart from the connection, which the client's
        // timeout closes (and with it this handler).
        let call = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            answer(&sb, received, method, &params, token, channel, &plan)
        });
        return call.await.unwrap_or_else(|_| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"ok": false, "error": "internal_error"})),
            )
                .into_response()
        });
    }
    answer(&sb, received, method, &params, token, channel, &plan)
}

/// A call's answer after its planned delay: an injected failure, or the
/// call applied.
fn answer(
    sb: &Sandbox,
    received: Instant,
    method: ApiMethod,
    params: &Params,
    token: Option<String>,
    channel: Option<String>,
    plan: &Plan,
) -> Response {
    if let Some(status) = plan.error_status {
        sb.record_call(
            method.name(),
            method.name(),
            channel.as_deref(),
            Outcome::FaultStatus(status.as_u16()),
            CallDetail::received(received),
        );
        let error = if status == StatusCode::SERVICE_UNAVAILABLE {
            "service_unavailable"
        } else {
            "internal_error"
        };
        return (status, Json(json!({"ok": false, "error": error}))).into_response();
    }
    if plan.drop == Some(Drop::Before) {
        sb.record_call(
            method.name(),
            method.name(),
            channel.as_deref(),
            Outcome::FaultDrop,
            CallDetail::received(received),
        );
        return dropped_connection();
    }
    let reply = match &plan.ratelimit {
        Some(scope) => sb.inject_ratelimit(scope),
        None => sb.apply(method, params, token.as_deref()),
    };
    if plan.drop == Some(Drop::After) {
        let detail = CallDetail::of(received, method, params, &reply, reply.applied);
        sb.record_call(
            method.name(),
            method.name(),
            channel.as_deref(),
            Outcome::FaultDrop,
            detail,
        );
        return dropped_connection();
    }
    let detail = CallDetail::of(received, method, params, &reply, reply.applied);
    sb.record_call(
        method.name(),
        method.name(),
        channel.as_deref(),
        reply.outcome.clone(),
        detail,
    );
    reply.into_response()
}

/// An incoming webhook: `POST /api/_hooks/{channel}/{key}` posts a new
/// top-level message into `channel` (the key stands in for the secret part
/// of a real hook URL and is not checked). Answers like Slack's: 200 `ok`,
/// 400 `invalid_payload` / `no_text`, 404 `channel_not_found`, 429 with
/// `Retry-After` under the channel's posting limit (shared with
/// `chat.postMessage`); the injected faults apply as to Web API calls.
async fn incoming_webhook(
    State(sb): State<Sandbox>,
    Path((channel, _key)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let received = Instant::now();
    let plan = sb.plan(ApiMethod::PostMessage, Some(&channel));
    if let Some(delay) = plan.delay {
        // Applied even when the caller gave up waiting, as in `api`.
        let call = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            hook_answer(&sb, received, &channel, &body, &plan)
        });
        return call
            .await
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    hook_answer(&sb, received, &channel, &body, &plan)
}

/// A webhook call's answer after its planned delay.
fn hook_answer(
    sb: &Sandbox,
    received: Instant,
    channel: &str,
    body: &[u8],
    plan: &Plan,
) -> Response {
    let method = methods::INCOMING_WEBHOOK;
    let record = |outcome, applied| {
        let detail = CallDetail {
            applied,
            ..CallDetail::received(received)
        };
        sb.record_call(method, method, Some(channel), outcome, detail);
    };
    if let Some(status) = plan.error_status {
        record(Outcome::FaultStatus(status.as_u16()), false);
        return (status, "internal_error").into_response();
    }
    if plan.drop == Some(Drop::Before) {
        record(Outcome::FaultDrop, false);
        return dropped_connection();
    }
    let (status, answer, retry_after) = match &plan.ratelimit {
        Some(scope) => {
            let reply = sb.inject_ratelimit(scope);
            (reply.status, "ratelimited", reply.retry_after)
        }
        None => sb.apply_hook(channel, body),
    };
    let applied = status == StatusCode::OK;
    if plan.drop == Some(Drop::After) {
        record(Outcome::FaultDrop, applied);
        return dropped_connection();
    }
    sb.record_call(
        method,
        method,
        Some(channel),
        match (status, answer) {
            (StatusCode::OK, _) => Outcome::Ok,
            (StatusCode::TOO_MANY_REQUESTS, _) => Outcome::RateLimited,
            (_, code) => Outcome::Error(code.to_owned()),
        },
        CallDetail {
            applied,
            retry_after,
            ..CallDetail::received(received)
        },
    );
    let mut resp = (status, answer).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

impl Sandbox {
    /// Rate-limits and applies one webhook post: its status, plain-text
    /// answer and `Retry-After`.
    fn apply_hook(&self, channel: &str, body: &[u8]) -> (StatusCode, &'static str, Option<u64>) {
        let mut guard = self.lock();
        let inner: &mut Inner = &mut guard;
        if !inner.workspace.channel_exists_or_creatable(channel) {
            return (StatusCode::NOT_FOUND, "channel_not_found", None);
        }
        let Ok(map) = serde_json::from_slice::<Map<String, Value>>(body) else {
            return (StatusCode::BAD_REQUEST, "invalid_payload", None);
        };
        if let Some(scope) = scope(ApiMethod::PostMessage, Some(channel))
            && let Err(secs) = inner
                .limiter
                .admit(&scope, inner.post_per_channel, Instant::now())
        {
            return (StatusCode::TOO_MANY_REQUESTS, "rate_limited", Some(secs));
        }
        let params = Params {
            map,
            from_form: false,
        };
        let args = match params.message_args() {
            // Webhook messages carry no metadata.
            Ok(args) => MessageArgs {
                metadata: None,
                ..args
            },
            Err(e) if e.error == "no_text" => {
                return (StatusCode::BAD_REQUEST, "no_text", None);
            }
            Err(_) => return (StatusCode::BAD_REQUEST, "invalid_payload", None),
        };
        match inner.workspace.post(channel, args, None) {
            Ok(_) => (StatusCode::OK, "ok", None),
            Err(_) => (StatusCode::NOT_FOUND, "channel_not_found", None),
        }
    }
}
