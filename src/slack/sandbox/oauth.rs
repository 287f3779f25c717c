//! OAuth v2 installs, as Slack runs them, so the install flow
//! ([`crate::slack::oauth`]) can be tested end to end.
//!
//! - `GET /oauth/v2/authorize?client_id&scope&state&redirect_uri[&team][&deny=1]`:
//!   Slack's authorize page, approved at once by a fixed sandbox user. It
//!   redirects the browser to `redirect_uri` with `code` and `state`, or
//!   with `error=access_denied` when `deny=1` is given. `team` (a `T...`
//!   id) picks the workspace that installs; default [`TEAM_ID`]. An unknown
//!   `client_id` or a missing `redirect_uri` gets a 400 page, as on Slack.
//! - `POST /api/oauth.v2.access` (form `code`, `redirect_uri`; client id
//!   and secret as HTTP Basic): checks the credentials
//!   (`invalid_client_id`, `bad_client_secret`), the code (single use,
//!   valid [`CODE_TTL`]: `invalid_code`) and that `redirect_uri` is the one
//!   the code was issued for (`bad_redirect_uri`); answers a bot token
//!   `xoxb-TEAM-...`, `team {id, name}`, `bot_user_id` and `scope`.
//!
//! Every token issued here belongs to its team: the Web API accepts it
//! (also when [`SandboxOptions::token`](super::SandboxOptions::token) is
//! set), `auth.test` answers its team, messages it posts carry
//! [`MessageState::team`](super::MessageState::team), and it cannot edit
//! another team's messages. [`Sandbox::revoke_team`] revokes a team's
//! tokens (calls then fail with `token_revoked`); [`Sandbox::uninstall`]
//! does that and sends the app `app_uninstalled`, as Slack does.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use tokio::time::Instant;

use super::state::{ApiError, TEAM_ID};
use super::{ActError, ActResponse, Sandbox};
use crate::slack::api::methods;

/// How long an authorization code may wait for its exchange.
pub const CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// Codes and tokens kept at most (oldest codes go first).
const MAX_CODES: usize = 1_000;
const MAX_TOKENS: usize = 1_000;

/// The Slack app the sandbox knows: what `oauth.v2.access` checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
}

struct Code {
    redirect_uri: String,
    team: String,
    scope: String,
    expires: Instant,
}

/// Codes waiting for their exchange and the tokens issued.
#[derive(Default)]
pub(super) struct Installs {
    codes: HashMap<String, Code>,
    /// Token -> its team.
    tokens: HashMap<String, String>,
    revoked: HashSet<String>,
}

impl Installs {
    /// The team of a token issued here: `Ok(None)` for any other token,
    /// `token_revoked` for a revoked one.
    pub(super) fn team_of(&self, token: &str) -> Result<Option<String>, ApiError> {
        if self.revoked.contains(token) {
            return Err(ApiError::new("token_revoked"));
        }
        Ok(self.tokens.get(token).cloned())
    }

    pub(super) fn clear(&mut self) {
        *self = Installs::default();
    }
}

/// The name the sandbox gives a workspace.
fn team_name(team: &str) -> String {
    if team == TEAM_ID {
        "ackbar sandbox".to_owned()
    } else {
        format!("ackbar sandbox {team}")
    }
}

fn random_hex(rng: &mut fastrand::Rng) -> String {
    format!("{:016x}{:016x}", rng.u64(..), rng.u64(..))
}

fn refuse_page(error: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("Slack sandbox: this install link is broken ({error})\n"),
    )
        .into_response()
}

/// `redirect_uri` with `params` added to its query.
fn redirect(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = format!("{redirect_uri}{sep}{query}").parse() {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// `GET /oauth/v2/authorize`.
pub(super) async fn authorize(
    State(sb): State<Sandbox>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let mut inner = sb.lock();
    let known = inner
        .oauth
        .as_ref()
        .is_some_and(|app| app.client_id == get("client_id"));
    if !known {
        return refuse_page("invalid_client_id");
    }
    let redirect_uri = get("redirect_uri");
    if !(redirect_uri.starts_with("http://") || redirect_uri.starts_with("https://")) {
        return refuse_page("bad_redirect_uri");
    }
    let state = get("state");
    if matches!(get("deny"), "1" | "true") {
        return redirect(
            redirect_uri,
            &[("error", "access_denied"), ("state", state)],
        );
    }
    let team = Some(get("team"))
        .filter(|t| crate::config::is_team_id(t))
        .unwrap_or(TEAM_ID)
        .to_owned();
    let code = format!("sbc-{}", random_hex(&mut inner.rng));
    let installs = &mut inner.installs;
    if installs.codes.len() >= MAX_CODES {
        let oldest = installs
            .codes
            .iter()
            .min_by_key(|(_, c)| c.expires)
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            installs.codes.remove(&oldest);
        }
    }
    installs.codes.insert(
        code.clone(),
        Code {
            redirect_uri: redirect_uri.to_owned(),
            team,
            scope: get("scope").to_owned(),
            expires: Instant::now() + CODE_TTL,
        },
    );
    redirect(redirect_uri, &[("code", &code), ("state", state)])
}

/// Client id and secret from `Authorization: Basic`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// `POST /api/oauth.v2.access`.
pub(super) async fn access(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let answer = sb.exchange(&headers, &form);
    let outcome = match &answer {
        Ok(_) => super::Outcome::Ok,
        Err(e) => super::Outcome::Error(e.error.clone()),
    };
    let applied = answer.is_ok();
    sb.record(
        methods::OAUTH_V2_ACCESS,
        methods::OAUTH_V2_ACCESS,
        None,
        outcome,
        applied,
    );
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(e) => Json(json!({"ok": false, "error": e.error})).into_response(),
    }
}

impl Sandbox {
    fn exchange(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<serde_json::Value, ApiError> {
        let mut inner = self.lock();
        let app = inner
            .oauth
            .clone()
            .ok_or_else(|| ApiError::new("invalid_client_id"))?;
        let (id, secret) =
            basic_credentials(headers).ok_or_else(|| ApiError::new("invalid_client_id"))?;
        if id != app.client_id {
            return Err(ApiError::new("invalid_client_id"));
        }
        if !crate::config::constant_time_eq(secret.as_bytes(), app.client_secret.as_bytes()) {
            return Err(ApiError::new("bad_client_secret"));
        }
        let code = form.get("code").map(String::as_str).unwrap_or_default();
        // Taken whatever comes next: a code is good for one exchange.
        let code = inner
            .installs
            .codes
            .remove(code)
            .filter(|c| c.expires > Instant::now())
            .ok_or_else(|| ApiError::new("invalid_code"))?;
        if form.get("redirect_uri").map(String::as_str) != Some(code.redirect_uri.as_str()) {
            return Err(ApiError::new("bad_redirect_uri"));
        }
        let token = format!("xoxb-{}-{}", code.team, random_hex(&mut inner.rng));
        let installs = &mut inner.installs;
        if installs.tokens.len() >= MAX_TOKENS {
            return Err(ApiError::new("too_many_tokens"));
        }
        installs.tokens.insert(token.clone(), code.team.clone());
        Ok(json!({
            "ok": true,
            "access_token": token,
            "token_type": "bot",
            "scope": code.scope,
            "bot_user_id": format!("U0B{}", &code.team[1..]),
            "app_id": super::interact::APP_ID,
            "team": {"id": code.team, "name": team_name(&code.team)},
            "enterprise": null,
            "is_enterprise_install": false,
            "authed_user": {"id": super::state::USER_ID},
        }))
    }

    /// Revokes every token issued to `team`; calls with them then fail
    /// with `token_revoked`. Returns how many were revoked.
    pub fn revoke_team(&self, team: &str) -> usize {
        let mut inner = self.lock();
        let installs = &mut inner.installs;
        let tokens: Vec<String> = installs
            .tokens
            .iter()
            .filter(|(_, t)| *t == team)
            .map(|(token, _)| token.clone())
            .collect();
        for token in &tokens {
            installs.tokens.remove(token);
            installs.revoked.insert(token.clone());
        }
        tokens.len()
    }

    /// What Slack does when a workspace removes the app: its tokens are
    /// revoked and the app gets `app_uninstalled` (signed, to
    /// `{app_url}/slack/events`).
    pub async fn uninstall(&self, team: &str) -> Result<ActResponse, ActError> {
        self.revoke_team(team);
        self.send_team_event(team, json!({"type": "app_uninstalled"}), None, None)
            .await
    }
}
