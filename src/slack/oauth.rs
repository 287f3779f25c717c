//! The OAuth v2 install flow: `GET /slack/install` sends the browser to
//! Slack's authorize page, Slack sends it back to `GET
//! /slack/oauth/callback` with a `code`, which ackbar exchanges
//! (`oauth.v2.access`) for the workspace's bot token and keeps in the
//! store ([`crate::store::Installation`]). Several workspaces may install;
//! routes pick theirs with `routes[].team` ([`super::workspaces`]).
//!
//! # The `state`
//!
//! The state ties a callback to an install this ackbar started, in this
//! browser, recently, once:
//! - **random**: 256 bits from the operating system's CSPRNG;
//! - **stored hashed, with an expiry** (`slack.oauth.state_ttl`) in the
//!   store, so the callback may reach another replica than the install page
//!   did, and a copy of the table completes no one's install;
//! - **single use**: the callback takes it with one atomic delete
//!   ([`Store::take_oauth_state`]); a second use finds nothing;
//! - **bound to the browser**: the install page sets a random cookie
//!   ([`COOKIE`]: `HttpOnly`, `SameSite=Lax`, `Secure` when `public_url`
//!   is https, scoped to `/slack/oauth`) whose hash is stored with the
//!   state; a callback without that cookie is refused, so a victim cannot
//!   be made to complete an attacker's install.
//!
//! Whatever goes wrong, the callback answers a page saying what and to
//! start again at `/slack/install`, and stores nothing. Neither the client
//! secret nor a token is ever logged or shown.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::api::{SlackClient, SlackError};
use super::paths::{INSTALL as INSTALL_PATH, OAUTH_CALLBACK as CALLBACK_PATH};
use super::workspaces::Workspaces;
use crate::config::{OAuthConfig, Secret, constant_time_eq};
use crate::store::{Installation, Store, StoreError};

/// The cookie binding an install to the browser that started it.
pub const COOKIE: &str = "ackbar_oauth";
/// The cookie is only sent to the callback.
const COOKIE_PATH: &str = "/slack/oauth";
/// Random bytes in a state and in a browser cookie.
const RANDOM_BYTES: usize = 32;
/// Longest `state` or `code` read from a callback; Slack's are far shorter.
const MAX_PARAM_CHARS: usize = 512;

/// Why an install did not complete. The messages are shown to the person
/// installing, so they say what to do.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error(
        "OAuth installs are not configured here: set slack.oauth and public_url in ackbar's config."
    )]
    NotConfigured,
    #[error("Slack did not complete the install: {0}. Nothing was installed.")]
    Refused(String),
    #[error("The callback is missing its code or state. Nothing was installed.")]
    MissingParams,
    #[error("This install link is unknown or was already used. Nothing was installed.")]
    UnknownState,
    #[error("This install link expired (installs must finish within {0}). Nothing was installed.")]
    Expired(String),
    #[error(
        "This browser did not start this install: no install cookie came with the callback (cookies blocked, or another browser). Nothing was installed."
    )]
    MissingCookie,
    #[error(
        "This install was started in another browser (the install cookie does not match). Nothing was installed."
    )]
    OtherBrowser,
    #[error(
        "Slack refused to exchange the code for a token ({0}); check slack.oauth.client_id and client_secret. Nothing was installed."
    )]
    Exchange(String),
    #[error("Slack answered without a bot token. Nothing was installed.")]
    NotABotToken,
    #[error("ackbar cannot reach its store right now; try again shortly. Nothing was installed.")]
    Store(#[from] StoreError),
    #[error("the operating system's random number generator failed")]
    Random,
    #[error(
        "Too many installs are in progress; try again in a few minutes. Nothing was installed."
    )]
    Busy,
}

impl OAuthError {
    fn status(&self) -> StatusCode {
        match self {
            OAuthError::NotConfigured => StatusCode::NOT_FOUND,
            OAuthError::Exchange(_) | OAuthError::NotABotToken => StatusCode::BAD_GATEWAY,
            OAuthError::Store(_) | OAuthError::Random | OAuthError::Busy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The query Slack sends the browser back with.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    /// `access_denied` when the person cancelled.
    #[serde(default)]
    pub error: Option<String>,
}

/// The install page's query: `team` preselects a workspace on Slack's page.
#[derive(Debug, Default, Deserialize)]
pub struct InstallQuery {
    #[serde(default)]
    pub team: Option<String>,
}

/// The install flow. Cheap to clone.
#[derive(Clone)]
pub struct OAuth {
    inner: Arc<Inner>,
}

struct Inner {
    client_id: String,
    client_secret: Secret,
    /// Comma-separated, as Slack's authorize page takes them.
    scopes: String,
    authorize_url: String,
    redirect_uri: String,
    state_ttl: Duration,
    secure_cookie: bool,
    store: Arc<dyn Store>,
    /// For `oauth.v2.access`, which needs no token.
    slack: SlackClient,
    /// Told about new installs so no stale token stays cached.
    workspaces: Workspaces,
}

impl OAuth {
    /// The flow for `config`, with ackbar reachable at `public_url`.
    pub fn new(
        config: &OAuthConfig,
        public_url: &str,
        store: Arc<dyn Store>,
        workspaces: Workspaces,
    ) -> OAuth {
        OAuth {
            inner: Arc::new(Inner {
                client_id: config.client_id.clone(),
                client_secret: config.client_secret.clone(),
                scopes: config.effective_scopes().join(","),
                authorize_url: config.authorize_url.clone(),
                redirect_uri: format!("{public_url}{CALLBACK_PATH}"),
                state_ttl: config.state_ttl,
                secure_cookie: public_url.starts_with("https://"),
                store,
                slack: workspaces.template().clone(),
                workspaces,
            }),
        }
    }

    /// `GET /slack/install`: a fresh state and browser cookie, and a
    /// redirect to Slack's authorize page.
    pub async fn install(&self, query: InstallQuery) -> Response {
        match self.start(query, Utc::now()).await {
            Ok((location, cookie)) => {
                let mut response = StatusCode::FOUND.into_response();
                let headers = response.headers_mut();
                set(headers, header::LOCATION, &location);
                set(headers, header::SET_COOKIE, &cookie);
                set(headers, header::CACHE_CONTROL, "no-store");
                response
            }
            Err(e) => {
                warn!(error = %e, "cannot start an install");
                error_page(&e, None)
            }
        }
    }

    async fn start(
        &self,
        query: InstallQuery,
        now: DateTime<Utc>,
    ) -> Result<(String, String), OAuthError> {
        let inner = &self.inner;
        let state = random_token()?;
        let browser = random_token()?;
        let ttl = chrono::Duration::from_std(inner.state_ttl).unwrap_or(chrono::Duration::MAX);
        if !inner
            .store
            .save_oauth_state(&digest(&state), &digest(&browser), now + ttl, now)
            .await?
        {
            return Err(OAuthError::Busy);
        }
        let mut params = vec![
            ("client_id", inner.client_id.as_str()),
            ("scope", inner.scopes.as_str()),
            ("state", state.as_str()),
            ("redirect_uri", inner.redirect_uri.as_str()),
        ];
        // Only a well-formed team id is passed on to Slack.
        let team = query.team.filter(|t| crate::config::is_team_id(t));
        if let Some(team) = &team {
            params.push(("team", team));
        }
        let query = serde_urlencoded::to_string(&params).unwrap_or_default();
        let location = format!("{}?{query}", inner.authorize_url);
        let cookie = self.cookie(&browser, inner.state_ttl.as_secs().max(1));
        Ok((location, cookie))
    }

    /// `Set-Cookie` for the browser cookie; `max_age` 0 deletes it.
    fn cookie(&self, value: &str, max_age: u64) -> String {
        let secure = if self.inner.secure_cookie {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
        )
    }

    /// `GET /slack/oauth/callback`: checks the state and the browser,
    /// exchanges the code, stores the installation, and says so.
    pub async fn callback(&self, query: CallbackQuery, headers: &HeaderMap) -> Response {
        // The cookie has done its job whatever the outcome.
        let clear = self.cookie("", 0);
        match self.complete(query, headers, Utc::now()).await {
            Ok(installation) => success_page(&installation, &clear),
            Err(e) => {
                match &e {
                    OAuthError::Store(_) | OAuthError::Exchange(_) | OAuthError::NotABotToken => {
                        warn!(error = %e, "an install failed");
                    }
                    _ => info!(error = %e, "an install callback was refused"),
                }
                error_page(&e, Some(&clear))
            }
        }
    }

    async fn complete(
        &self,
        query: CallbackQuery,
        headers: &HeaderMap,
        now: DateTime<Utc>,
    ) -> Result<Installation, OAuthError> {
        let inner = &self.inner;
        let state = query
            .state
            .filter(|s| !s.is_empty() && s.len() <= MAX_PARAM_CHARS);
        if let Some(error) = query.error {
            // Burn the state: this install is over.
            if let Some(state) = &state {
                inner.store.take_oauth_state(&digest(state)).await?;
            }
            let error = crate::slack::blocks::truncate(&error, 100);
            return Err(OAuthError::Refused(if error == "access_denied" {
                "the install was cancelled on Slack's page (access_denied)".to_owned()
            } else {
                error
            }));
        }
        let code = query
            .code
            .filter(|c| !c.is_empty() && c.len() <= MAX_PARAM_CHARS);
        let (Some(code), Some(state)) = (code, state) else {
            return Err(OAuthError::MissingParams);
        };
        // Taken before anything else is checked: a state that reached a
        // callback is never good again, whatever comes next.
        let Some(pending) = inner.store.take_oauth_state(&digest(&state)).await? else {
            return Err(OAuthError::UnknownState);
        };
        if pending.expires_at <= now {
            return Err(OAuthError::Expired(human_duration(inner.state_ttl)));
        }
        let Some(browser) = cookie_value(headers, COOKIE) else {
            return Err(OAuthError::MissingCookie);
        };
        if !constant_time_eq(digest(&browser).as_bytes(), pending.browser_hash.as_bytes()) {
            return Err(OAuthError::OtherBrowser);
        }
        let access = inner
            .slack
            .oauth_v2_access(
                &inner.client_id,
                inner.client_secret.expose(),
                &code,
                &inner.redirect_uri,
            )
            .await
            .map_err(|e| match e {
                SlackError::Api { error, .. } => {
                    OAuthError::Exchange(crate::slack::blocks::truncate(&error, 100))
                }
                other => OAuthError::Exchange(other.to_string()),
            })?;
        if access.token_type.as_deref().is_some_and(|t| t != "bot")
            || !access.access_token.starts_with("xoxb-")
            || !crate::config::is_team_id(&access.team.id)
        {
            return Err(OAuthError::NotABotToken);
        }
        let installation = Installation {
            team_name: access
                .team
                .name
                .clone()
                .unwrap_or_else(|| access.team.id.clone()),
            team_id: access.team.id,
            bot_token: access.access_token,
            bot_user_id: access.bot_user_id,
            scopes: access
                .scope
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            installed_at: now,
        };
        inner.store.save_installation(&installation).await?;
        inner.workspaces.forget(Some(&installation.team_id));
        inner.workspaces.forget(None);
        info!(
            team_id = installation.team_id,
            team_name = installation.team_name,
            "a workspace installed ackbar"
        );
        Ok(installation)
    }
}

/// The answer to `/slack/install` and the callback when OAuth is off.
pub fn not_configured() -> Response {
    error_page(&OAuthError::NotConfigured, None)
}

/// `RANDOM_BYTES` from the OS CSPRNG, base64url without padding.
fn random_token() -> Result<String, OAuthError> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; RANDOM_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| OAuthError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Hex SHA-256: what the store keeps instead of a state or a cookie.
fn digest(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of cookie `name` among the request's `Cookie` headers.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Escapes text for HTML element content and attribute values.
fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small HTML page. `no-referrer`: the callback's URL carries the code;
/// `no-store`: nothing of an install stays in caches.
fn page(status: StatusCode, title: &str, body: &str, clear_cookie: Option<&str>) -> Response {
    let document = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · ackbar</title></head>\n<body style=\"font-family: sans-serif; max-width: 40em; margin: 3em auto\">\n<h1>{title}</h1>\n{body}\n</body></html>\n",
        title = html(title)
    );
    let mut response = (status, document).into_response();
    let headers = response.headers_mut();
    set(headers, header::CONTENT_TYPE, "text/html; charset=utf-8");
    set(headers, header::CACHE_CONTROL, "no-store");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'",
    );
    if let Some(cookie) = clear_cookie {
        set(headers, header::SET_COOKIE, cookie);
    }
    response
}

fn error_page(e: &OAuthError, clear_cookie: Option<&str>) -> Response {
    let again = if matches!(e, OAuthError::NotConfigured) {
        String::new()
    } else {
        format!("<p>Start again at <a href=\"{INSTALL_PATH}\">{INSTALL_PATH}</a>.</p>")
    };
    page(
        e.status(),
        "ackbar was not installed",
        &format!("<p>{}</p>\n{again}", html(&e.to_string())),
        clear_cookie,
    )
}

fn success_page(installation: &Installation, clear_cookie: &str) -> Response {
    let (name, id) = (html(&installation.team_name), html(&installation.team_id));
    page(
        StatusCode::OK,
        "ackbar is installed",
        &format!(
            "<p>ackbar is installed in the workspace <strong>{name}</strong> (team id <code>{id}</code>).</p>\n\
             <p>Routes with <code>\"team\": \"{id}\"</code> post their cards there; invite the ackbar bot to their channels.</p>"
        ),
        Some(clear_cookie),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_ne!(a, b);
        // 32 bytes in unpadded base64: 43 characters, 256 bits.
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn the_cookie_is_found_among_others_and_empty_counts_as_missing() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ackbar_oauth=xyz; b=2"),
        );
        assert_eq!(cookie_value(&headers, COOKIE).as_deref(), Some("xyz"));
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("x_ackbar_oauth=1"));
        headers.append(header::COOKIE, HeaderValue::from_static("ackbar_oauth="));
        assert_eq!(cookie_value(&headers, COOKIE), None);
    }

    #[test]
    fn pages_escape_what_they_show() {
        assert_eq!(
            html("<b>\"T&'\"</b>"),
            "&lt;b&gt;&quot;T&amp;&#39;&quot;&lt;/b&gt;"
        );
    }
}
