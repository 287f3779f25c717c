//! A local Slack Web API emulator.
//!
//! Used by the integration tests and by `ackbar serve` in sandbox mode (no
//! bot token), where the server mounts it with
//! [`mount`]`(app, "/sandbox", s)`; the API base URL is then
//! `http://HOST:PORT/sandbox/api` and the page `http://HOST:PORT/sandbox/`.
//! Tests can also serve it alone, see [`serve_standalone`] and
//! [`spawn_standalone`] (base URL `http://127.0.0.1:PORT/api`, the page at
//! `/`).
//!
//! # The page
//! `GET /` (`/sandbox/` when mounted; `/sandbox` redirects there) is a
//! browser view of the workspace, close to Slack's: channels and DMs, cards
//! rendered from their Block Kit (header, section with fields and
//! accessory, context, divider, actions with primary/danger buttons),
//! mrkdwn, threads, ephemeral messages ("Only visible to you") and the
//! acting user's open modal. Its buttons, modal submissions and closes go
//! through `POST /api/_act/{click|submit_view|close_view}` below, as a user
//! picked in the page ("Acting as"), so ackbar receives exactly what Slack
//! would send, signed server-side. It updates itself through
//! `GET /api/_events` (see [`live`]). See [`page`] for how it keeps alert
//! text from ever running as code.
//!
//! # Routes (relative to the mount point)
//! - `POST|GET /api/{method}`: `chat.postMessage`, `chat.update`,
//!   `chat.getPermalink`, `conversations.history`, `auth.test`,
//!   `chat.postEphemeral`, `views.open`, `views.update`, `views.push`,
//!   `conversations.open`, `usergroups.users.list`. Other methods answer
//!   HTTP 404 `{ok:false, error:"unknown_method"}`. POST takes JSON or form
//!   bodies (in forms `blocks`, `metadata` and `view` are JSON strings); GET
//!   takes a query string.
//! - `GET /api/state`: [`SandboxState`] as JSON.
//! - `GET /api/_events`: Server-Sent Events, one `state` event when the
//!   emulator may have changed (see [`live`]).
//! - `GET /`, `/page.js`, `/page.css`: the page (see [`page`]).
//! - `POST /api/_faults`: a [`Faults`] JSON to change fault injection.
//! - `POST /api/_reset` (JSON body, e.g. `{}`): forget messages, calls, counts and rate windows.
//! - `POST /api/_act/{click|submit_view|close_view|slash_command|event|url_verification|raw|app_url}`:
//!   act as a Slack user toward the app (see below).
//! - `POST /api/_response/{id}`: the response_urls the sandbox mints.
//! - `POST /api/apps.connections.open` and `GET /socket/{ticket}`: Socket
//!   Mode (see [`socket`]); while it is in use, acts go over the socket.
//! - `GET /oauth/v2/authorize` and `POST /api/oauth.v2.access`: OAuth v2
//!   installs by several workspaces, each with its own bot token (see
//!   [`oauth`]; needs [`SandboxOptions::oauth`]).
//!
//! # Acting as Slack toward the app
//! With [`SandboxOptions::app_url`] (or [`Sandbox::set_app_url`]) and a
//! [`SandboxOptions::signing_secret`], [`Sandbox::click`],
//! [`Sandbox::submit_view`], [`Sandbox::close_view`] (`view_closed`, when
//! the view asked for it), [`Sandbox::slash_command`],
//! [`Sandbox::send_event`], [`Sandbox::url_verification`] and
//! [`Sandbox::send_raw`] send what Slack sends, signed with
//! [`crate::slack::verify::sign`], to `{app_url}/slack/interactions`,
//! `/slack/commands` and `/slack/events`, within [`APP_TIMEOUT`]. Trigger
//! ids they mint expire after `trigger_ttl` and are single use;
//! response_urls are `{base}/api/_response/{id}` (base: see
//! [`Sandbox::set_base_url`]; [`spawn_standalone`] sets it), valid
//! `response_url_ttl`, at most 5 posts (then HTTP 410 `used_url`; expired:
//! 410 `expired_url`; unknown: 404 `no_such_url`).
//!
//! # Behaviour
//! Like Slack: `ts` values are unique and strictly increasing per channel;
//! `thread_ts` must name a top-level message of the channel; messages are
//! validated ([`validate`]); `conversations.history` pages newest first and
//! returns metadata only with `include_all_metadata=true`.
//!
//! Rate limits follow the sliding-window model in [`limits`]; a 429 answer is
//! remembered, and any call to the same scope before its `Retry-After`
//! elapsed is counted in `retry_after_violations`.
//!
//! Faults are drawn per call: `error_rate` answers HTTP 500/503 before doing
//! anything; `drop_rate` cuts the connection without a complete answer, half
//! of the time before and half *after* applying the call (the message then
//! exists although the client saw a transport error); `ratelimit_rate`
//! answers a rate-limited call 429 with `Retry-After: 1` whatever its
//! window holds.
//!
//! The call log ([`CallRecord`]) stamps each call on the sandbox's clock
//! ([`Sandbox::elapsed`], microseconds) and names the message it posted or
//! changed, its thread and any `Retry-After`, so a test can tie every call to
//! its card and check pacing from the log alone; [`Sandbox::changes`] wakes
//! a waiting test when a call came in.
//!
//! Everything is bounded: see the `MAX_*` constants in [`state`].

mod act;
pub mod interact;
pub mod limits;
pub mod live;
pub mod oauth;
pub mod page;
mod server;
pub mod socket;
pub mod state;
pub mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_interact;
#[cfg(test)]
mod tests_page;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use act::{ActError, ActResponse, Signing};
pub use interact::{ActRecord, EphemeralState, ResponsePostState, ViewState};
pub use limits::RateLimit;
pub use oauth::OAuthApp;
pub use server::{INJECTED_RETRY_AFTER_SECS, MAX_REQUEST_BYTES};
pub use socket::SocketState;
pub use state::{CallRecord, ChannelState, MessageState, MethodCounts, Outcome, SandboxState};

use limits::Limiter;
use state::Workspace;

/// How long Slack waits for an app to answer an interaction, a command or
/// an event.
pub const APP_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest artificial delay a [`Faults`] may ask for.
pub const MAX_FAULT_DELAY: Duration = Duration::from_secs(60);

/// How the emulator is set up.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Channel ids that exist. Posting elsewhere answers `channel_not_found`
    /// unless `auto_create_channels` is set.
    pub channels: Vec<String>,
    /// Accept any well-formed conversation id (`C...`, `G...`, `D...`) and
    /// create the channel on first use (sandbox mode of `ackbar serve`).
    pub auto_create_channels: bool,
    /// When set, calls must carry `Authorization: Bearer <token>` (or a
    /// form `token`); when unset any non-empty bearer token is accepted.
    pub token: Option<String>,
    /// `chat.postMessage` per channel.
    pub post_per_channel: RateLimit,
    /// `chat.update` across the workspace.
    pub update_limit: RateLimit,
    pub faults: Faults,
    /// Secret the sandbox signs its requests to the app with (Slack's
    /// "signing secret"). Without it only unsigned or deliberately
    /// mis-signed requests can be sent.
    pub signing_secret: Option<String>,
    /// User group id (`S...`) -> member user ids, for
    /// `usergroups.users.list`.
    pub user_groups: BTreeMap<String, Vec<String>>,
    /// Known user ids; empty accepts any well-formed `U...`/`W...` id.
    pub users: Vec<String>,
    /// The app's base URL (e.g. `http://127.0.0.1:PORT`): interactions go
    /// to `{app_url}/slack/interactions`, commands to `/slack/commands`,
    /// events to `/slack/events`. See [`Sandbox::set_app_url`].
    pub app_url: Option<String>,
    /// How long a minted trigger id stays valid (Slack: 3 s).
    pub trigger_ttl: Duration,
    /// How long a minted response_url stays valid (Slack: 30 min).
    pub response_url_ttl: Duration,
    /// How long the sandbox waits for the app to answer (Slack: 3 s), over
    /// HTTP or for a Socket Mode ack.
    pub app_timeout: Duration,
    /// The app-level token (`xapp-...`) `apps.connections.open` requires;
    /// `None` accepts any `xapp-` token. See [`socket`].
    pub app_token: Option<String>,
    /// The app's OAuth client id and secret; `None` refuses installs
    /// (`invalid_client_id`). See [`oauth`].
    pub oauth: Option<OAuthApp>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            channels: Vec::new(),
            auto_create_channels: false,
            token: None,
            post_per_channel: RateLimit::POST_PER_CHANNEL,
            update_limit: RateLimit::UPDATE_WORKSPACE,
            faults: Faults::default(),
            signing_secret: None,
            user_groups: BTreeMap::new(),
            users: Vec::new(),
            app_url: None,
            trigger_ttl: interact::TRIGGER_TTL,
            response_url_ttl: interact::RESPONSE_URL_TTL,
            app_timeout: APP_TIMEOUT,
            app_token: None,
            oauth: None,
        }
    }
}

impl SandboxOptions {
    /// Options for `ackbar serve` without a bot token: any channel id, any
    /// token, Slack-like rate limits, no faults.
    pub fn serve_mode() -> SandboxOptions {
        SandboxOptions {
            auto_create_channels: true,
            ..SandboxOptions::default()
        }
    }

    /// Options with these channels and default limits.
    pub fn with_channels<I, S>(channels: I) -> SandboxOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        SandboxOptions {
            channels: channels.into_iter().map(Into::into).collect(),
            ..SandboxOptions::default()
        }
    }
}

/// Fault injection, drawn independently for every API call. JSON form (all
/// fields optional): `{"error_rate":0.1, "drop_rate":0.1, "delay_ms":200,
/// "delay_rate":0.5, "ratelimit_rate":0.05, "seed":42}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction of calls answered HTTP 500 or 503 before doing anything.
    pub error_rate: f64,
    /// Fraction of calls whose connection is cut without an answer, half
    /// before and half after applying the call.
    pub drop_rate: f64,
    /// Latency added to a `delay_rate` fraction of calls.
    #[serde(rename = "delay_ms", with = "duration_ms")]
    pub delay: Duration,
    pub delay_rate: f64,
    /// Fraction of rate-limited calls (`chat.postMessage`, `chat.update`,
    /// incoming webhooks) answered HTTP 429 `ratelimited` with
    /// `Retry-After: 1`, their scope refused for that second as if its
    /// window were full: calls into it before then are violations.
    pub ratelimit_rate: f64,
    /// Seed for reproducible draws; `None` seeds randomly.
    pub seed: Option<u64>,
}

impl Faults {
    /// Reject rates outside `0..=1` and delays above [`MAX_FAULT_DELAY`].
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("drop_rate", self.drop_rate),
            ("delay_rate", self.delay_rate),
            ("ratelimit_rate", self.ratelimit_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be within 0..=1, got {rate}"));
            }
        }
        if self.delay > MAX_FAULT_DELAY {
            return Err(format!(
                "delay must be at most {}ms",
                MAX_FAULT_DELAY.as_millis()
            ));
        }
        Ok(())
    }
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// The emulator. Cheap to clone; all clones share one workspace.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Mutex<Inner>>,
    /// The page's live updates (outside the lock: streams wait on it).
    live: Arc<live::Live>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

struct Inner {
    started: Instant,
    token: Option<String>,
    post_per_channel: RateLimit,
    update_limit: RateLimit,
    faults: Faults,
    rng: fastrand::Rng,
    workspace: Workspace,
    limiter: Limiter,
    calls: std::collections::VecDeque<CallRecord>,
    counts: std::collections::BTreeMap<String, MethodCounts>,
    retry_after_violations: u64,
    signing_secret: Option<String>,
    user_groups: BTreeMap<String, Vec<String>>,
    users: Vec<String>,
    app_url: Option<String>,
    /// Where the sandbox's own routes are reachable (for response_urls);
    /// set by [`spawn_standalone`], [`Sandbox::set_base_url`], or from the
    /// first control request.
    base_url: Option<String>,
    trigger_ttl: Duration,
    response_url_ttl: Duration,
    app_timeout: Duration,
    /// Sends requests to the app; shares one connection pool.
    http: reqwest::Client,
    interact: interact::Interact,
    app_token: Option<String>,
    socket: socket::Hub,
    oauth: Option<OAuthApp>,
    installs: oauth::Installs,
}

/// Rejected `Faults`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid faults: {0}")]
pub struct InvalidFaults(pub String);

impl Sandbox {
    /// A sandbox with these options. Invalid fault settings are replaced
    /// by no faults (use [`Sandbox::set_faults`] to get the error).
    pub fn new(options: SandboxOptions) -> Sandbox {
        let faults = if options.faults.validate().is_ok() {
            options.faults
        } else {
            tracing::warn!("sandbox: invalid fault settings ignored");
            Faults::default()
        };
        let rng = rng_for(&faults);
        Sandbox {
            inner: Arc::new(Mutex::new(Inner {
                started: Instant::now(),
                token: options.token,
                post_per_channel: options.post_per_channel,
                update_limit: options.update_limit,
                faults,
                rng,
                workspace: Workspace::new(options.channels, options.auto_create_channels),
                limiter: Limiter::default(),
                calls: Default::default(),
                counts: Default::default(),
                retry_after_violations: 0,
                signing_secret: options.signing_secret,
                user_groups: options.user_groups,
                users: options.users,
                app_url: options.app_url.map(|u| u.trim_end_matches('/').to_owned()),
                base_url: None,
                trigger_ttl: options.trigger_ttl,
                response_url_ttl: options.response_url_ttl,
                app_timeout: options.app_timeout,
                http: reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .unwrap_or_default(),
                interact: interact::Interact::default(),
                app_token: options.app_token,
                socket: socket::Hub::default(),
                oauth: options.oauth,
                installs: oauth::Installs::default(),
            })),
            live: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock, but a poisoned workspace is
        // still the best data a test can get.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Time since the sandbox was created: the clock of
    /// [`CallRecord::at_us`], so a test can stamp its own steps (a webhook
    /// sent) and compare them with the calls the sandbox saw.
    pub fn elapsed(&self) -> Duration {
        self.lock().started.elapsed()
    }

    /// Snapshot of the whole state (what `GET /api/state` returns).
    pub fn state(&self) -> SandboxState {
        let inner = self.lock();
        SandboxState {
            channels: inner.workspace.snapshot(),
            calls: inner.calls.iter().cloned().collect(),
            counts: inner.counts.clone(),
            retry_after_violations: inner.retry_after_violations,
            views: inner.interact.views().cloned().collect(),
            ephemerals: inner.interact.ephemerals.iter().cloned().collect(),
            response_posts: inner.interact.response_posts.iter().cloned().collect(),
            acts: inner.interact.acts.iter().cloned().collect(),
            socket: inner.socket.stats.clone(),
        }
    }

    /// Where the app listens (its base URL, no trailing slash); `None`
    /// stops the sandbox from sending anything.
    pub fn set_app_url(&self, url: Option<String>) {
        self.lock().app_url = url.map(|u| u.trim_end_matches('/').to_owned());
    }

    /// The app's base URL, if set.
    pub fn app_url(&self) -> Option<String> {
        self.lock().app_url.clone()
    }

    /// Where the sandbox's own routes are reachable from the app, e.g.
    /// `http://127.0.0.1:PORT` standalone or `http://HOST:PORT/sandbox`
    /// when mounted; minted response_urls are `{base}/api/_response/{id}`.
    pub fn set_base_url(&self, url: impl Into<String>) {
        self.lock().base_url = Some(url.into().trim_end_matches('/').to_owned());
    }

    fn set_base_url_if_unset(&self, url: String) {
        let mut inner = self.lock();
        if inner.base_url.is_none() {
            inner.base_url = Some(url.trim_end_matches('/').to_owned());
        }
    }

    /// Change fault injection from now on.
    pub fn set_faults(&self, faults: Faults) -> Result<(), InvalidFaults> {
        faults.validate().map_err(InvalidFaults)?;
        let mut inner = self.lock();
        inner.rng = rng_for(&faults);
        inner.faults = faults;
        Ok(())
    }

    /// The current fault settings.
    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Forget all messages, calls, counts, violations, rate windows, views,
    /// ephemerals, trigger ids, response_urls, OAuth codes and tokens; keep
    /// options and faults.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.workspace.clear();
        inner.limiter.clear();
        inner.calls.clear();
        inner.counts.clear();
        inner.retry_after_violations = 0;
        inner.interact.clear();
        inner.installs.clear();
    }
}

fn rng_for(faults: &Faults) -> fastrand::Rng {
    match faults.seed {
        Some(seed) => fastrand::Rng::with_seed(seed),
        None => fastrand::Rng::new(),
    }
}

/// The emulator's routes, to be mounted (e.g. under `/sandbox`).
pub fn router(sandbox: Sandbox) -> axum::Router {
    server::router(sandbox)
}

/// Mount the emulator and its page on `app` under `at` (e.g. `/sandbox`):
/// the API under `{at}/api`, the page at `{at}/` (with a trailing slash, so
/// that its relative URLs resolve under `at`), and `{at}` redirecting there.
pub fn mount(app: axum::Router, at: &str, sandbox: Sandbox) -> axum::Router {
    let page = format!("{at}/");
    app.nest(at, router(sandbox))
        .route(&page, axum::routing::get(page::index))
        .route(
            at,
            axum::routing::get(move || async move { axum::response::Redirect::permanent(&page) }),
        )
}

/// Serve the emulator alone on `listener`, routes under `/api`, the page
/// at `/`. Runs until the listener fails; abort the task to stop it.
pub async fn serve_standalone(
    sandbox: Sandbox,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let app = router(sandbox).route("/", axum::routing::get(page::index));
    axum::serve(listener, app).await
}

/// Bind `127.0.0.1:0`, serve the emulator there in a background task, and
/// return its API base URL (`http://127.0.0.1:PORT/api`) and the task.
pub async fn spawn_standalone(
    sandbox: Sandbox,
) -> std::io::Result<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    sandbox.set_base_url_if_unset(format!("http://{addr}"));
    let task = tokio::spawn(serve_standalone(sandbox, listener));
    Ok((format!("http://{addr}/api"), task))
}
