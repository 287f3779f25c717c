//! The HTTP server: routes, limits, graceful shutdown.
//!
//! [`run`] owns everything a running ackbar needs (store, pipeline, delivery,
//! and in sandbox mode the Slack emulator); `main.rs` and the tests both
//! call it with a bound listener and a shutdown future.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use chrono::Utc;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::config::{Config, IngestAuth, OtlpConfig, Secret};
use crate::deliver::Deliverer;
use crate::ingest::{alertmanager, otlp};
use crate::metrics as m;
use crate::model::{Notification, OtlpSignal};
use crate::pipeline::oncall::Rotations;
use crate::pipeline::route::Router as AlertRouter;
use crate::pipeline::{IngestReport, Pipeline};
use crate::slack::api::{SlackClient, SlackError};
use crate::slack::interact::{InteractError, Interactions};
use crate::slack::oauth::{self, OAuth};
use crate::slack::paths;
use crate::slack::sandbox::{Sandbox, SandboxOptions};
use crate::slack::workspaces::Workspaces;
use crate::store::{self, Store, StoreError};

/// How long ingest waits for SQLite's write lock before answering 503.
const STORE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The token ackbar uses against its own emulator.
/// The bot token ackbar presents to its own emulator in sandbox mode.
pub const SANDBOX_TOKEN: &str = "xoxb-sandbox";
/// Requests from Slack (interactions carry the whole message) stay far below.
const SLACK_REQUEST_MAX_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up the Slack client: {0}")]
    Slack(#[from] SlackError),
    #[error("cannot read the listener's address: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid on-call rotation: {0}")]
    Rotation(String),
}

struct App {
    interactions: Interactions,
    /// `None` without `slack.oauth`.
    oauth: Option<OAuth>,
    pipeline: Arc<Pipeline>,
    deliverer: Deliverer,
    store: Arc<dyn Store>,
    metrics: Option<PrometheusHandle>,
    auth: Option<IngestAuth>,
    max_body_bytes: usize,
    otlp: OtlpConfig,
}

/// A notification handed in from the same process (the embedded
/// [`Bridge`](crate::Bridge)), with where to say whether it is durable.
pub type Inbound = (
    Notification,
    oneshot::Sender<Result<IngestReport, StoreError>>,
);

/// Runs ackbar on `listener` until `shutdown` completes, then stops
/// accepting, finishes in-flight requests, and delivers what it can until
/// `delivery.shutdown_deadline`. What is left stays in the store.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve(listener, config, shutdown, None).await
}

/// What differs when the server runs inside a host process (the embedded
/// [`Bridge`](crate::Bridge)).
#[derive(Debug)]
pub struct Embedding {
    /// Notifications from the host, ingested until every sender is gone or
    /// the server stops.
    pub inbound: mpsc::Receiver<Inbound>,
}

/// [`run`] inside a host. The host owns the process: ackbar does not
/// install a metrics recorder (its counters go to the host's, if any).
pub async fn run_embedded(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    embedding: Embedding,
) -> Result<(), ServerError> {
    serve(listener, config, shutdown, Some(embedding)).await
}

async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    embedding: Option<Embedding>,
) -> Result<(), ServerError> {
    let metrics = match embedding {
        None => m::install(),
        Some(_) => None,
    };
    let addr = listener.local_addr()?;
    let _serving = store::lock_for_serving(&config.store.url)?;
    let store = store::open(&config.store.url, STORE_BUSY_TIMEOUT).await?;
    let routes = config.effective_routes();
    let router = Arc::new(AlertRouter::new(routes.clone()));

    let rotations = Arc::new(Rotations::new(&config.oncall).map_err(ServerError::Rotation)?);
    let mut signing_secret = config.slack.signing_secret.clone();
    let (slack, sandbox) = if config.sandbox_mode() {
        // The emulator signs what it sends as Slack does; without a
        // configured secret it and ackbar share a random one.
        let secret = signing_secret
            .get_or_insert_with(|| {
                Secret::Resolved(format!(
                    "{:016x}{:016x}",
                    fastrand::u64(..),
                    fastrand::u64(..)
                ))
            })
            .expose()
            .to_owned();
        let sandbox = Sandbox::new(SandboxOptions {
            channels: routes
                .iter()
                .map(|r| r.channel.clone())
                .chain(config.digests.iter().map(|d| d.channel.clone()))
                .collect(),
            auto_create_channels: true,
            signing_secret: Some(secret),
            app_url: Some(format!("http://{addr}")),
            ..SandboxOptions::default()
        });
        // Where the emulator mints response_urls: under ackbar's own listener.
        sandbox.set_base_url(format!("http://{addr}/sandbox"));
        let api_url = format!("http://{addr}/sandbox/api");
        info!(%api_url, "no slack.bot_token or slack.oauth configured: sandbox mode (local Slack emulator; state at /sandbox/api/state)");
        info!(page = %format!("http://{addr}/sandbox/"), "sandbox page: cards, threads and buttons in a browser");
        (
            SlackClient::without_token(&api_url, config.slack.request_timeout)?,
            Some(sandbox),
        )
    } else {
        (
            SlackClient::without_token(&config.slack.api_url, config.slack.request_timeout)?,
            None,
        )
    };
    let default_token = match &sandbox {
        Some(_) => Some(SANDBOX_TOKEN),
        None => config.slack.bot_token.as_ref().map(|t| t.expose()),
    };
    let install_url = format!(
        "{}{}",
        config.public_url.as_deref().unwrap_or_default(),
        paths::INSTALL
    );
    let workspaces = Workspaces::new(
        store.clone(),
        slack.clone(),
        default_token,
        config.slack.oauth.is_some(),
        install_url,
    )?;
    let oauth = config
        .slack
        .oauth
        .as_ref()
        .zip(config.public_url.as_deref())
        .map(|(oauth, public_url)| {
            OAuth::new(oauth, public_url, store.clone(), workspaces.clone())
        });

    if oauth.is_some() && signing_secret.is_none() && config.slack.app_token.is_none() {
        warn!(
            "slack.oauth is set without slack.signing_secret or slack.app_token: ackbar cannot receive app_uninstalled, so an uninstalled workspace's cards fail on Slack's answer instead"
        );
    }
    let (deliverer, supervisor) = Deliverer::start(
        store.clone(),
        workspaces.clone(),
        router.clone(),
        config.delivery.clone(),
    );
    let (stop_timer, timer_stopped) = tokio::sync::watch::channel(false);
    let escalation_timer = tokio::spawn(crate::pipeline::escalation::run_timer(
        store.clone(),
        router.clone(),
        rotations.clone(),
        deliverer.clone(),
        timer_stopped,
    ));
    let pipeline = Arc::new(Pipeline::new(
        router.clone(),
        store.clone(),
        config.delivery.reply_batch_window,
    ));
    let pruner = tokio::spawn(store::retention::run_pruner(
        store.clone(),
        config.store.retention,
        stop_timer.subscribe(),
    ));
    let quiet_timer = tokio::spawn(crate::pipeline::quiet::run_timer(
        pipeline.clone(),
        deliverer.clone(),
        stop_timer.subscribe(),
    ));
    let digest_timer = tokio::spawn(crate::pipeline::digest::run_timer(
        store.clone(),
        crate::pipeline::digest::from_config(&config.digests),
        deliverer.clone(),
        Utc::now,
        stop_timer.subscribe(),
    ));
    let app = Arc::new(App {
        interactions: Interactions::new(
            store.clone(),
            deliverer.clone(),
            router.clone(),
            rotations,
            workspaces.clone(),
            signing_secret,
        ),
        oauth,
        pipeline,
        deliverer: deliverer.clone(),
        store,
        metrics,
        auth: config.ingest.auth.clone(),
        max_body_bytes: config.ingest.max_body_bytes,
        otlp: config.otlp.clone(),
    });

    let inbound = embedding.map(|Embedding { mut inbound }| {
        let app = app.clone();
        tokio::spawn(async move {
            while let Some((notification, answer)) = inbound.recv().await {
                let result = app.ingest(notification).await;
                let _ = answer.send(result);
            }
        })
    });
    let socket_mode = crate::slack::socket::spawn(
        config.slack.app_token.as_ref(),
        &slack,
        &app.interactions,
        crate::slack::socket::SocketOptions {
            ping_interval: config.slack.socket_mode.ping_interval,
            dead_after: config.slack.socket_mode.dead_after,
            ..Default::default()
        },
        stop_timer.subscribe(),
    );
    let mut http = Router::new()
        .route(
            "/webhook/alertmanager",
            post(alertmanager_webhook).layer(DefaultBodyLimit::max(config.ingest.max_body_bytes)),
        )
        .route(
            "/v1/logs",
            post(otlp_logs).layer(DefaultBodyLimit::max(config.ingest.max_body_bytes)),
        )
        .route(
            "/v1/traces",
            post(otlp_traces).layer(DefaultBodyLimit::max(config.ingest.max_body_bytes)),
        )
        .route(
            paths::INTERACTIONS,
            post(slack_interactions).layer(DefaultBodyLimit::max(SLACK_REQUEST_MAX_BYTES)),
        )
        .route(
            paths::COMMANDS,
            post(slack_commands).layer(DefaultBodyLimit::max(SLACK_REQUEST_MAX_BYTES)),
        )
        .route(
            paths::EVENTS,
            post(slack_events).layer(DefaultBodyLimit::max(SLACK_REQUEST_MAX_BYTES)),
        )
        .route(paths::INSTALL, get(slack_install))
        .route(paths::OAUTH_CALLBACK, get(slack_oauth_callback))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(app);
    // Open sandbox pages hold an event stream; a graceful shutdown waits
    // for open responses, so the streams end when shutdown begins.
    let live_pages = sandbox.clone();
    let shutdown = async move {
        shutdown.await;
        if let Some(sandbox) = live_pages {
            sandbox.close_live_updates();
        }
    };
    if let Some(sandbox) = sandbox {
        http = crate::slack::sandbox::mount(http, "/sandbox", sandbox);
    }

    info!(%addr, "ackbar listening");
    axum::serve(listener, http)
        .with_graceful_shutdown(shutdown)
        .await?;
    // The sandbox's Slack lives on the listener that just closed, and its
    // messages die with the process: nothing to flush to. What is due stays
    // in the outbox for the next start.
    let flush_deadline = if config.sandbox_mode() {
        std::time::Duration::ZERO
    } else {
        config.delivery.shutdown_deadline
    };
    info!(deadline = ?flush_deadline, "stopped accepting requests; flushing the outbox");
    // The Bridge stops the server only after its last notification was
    // answered, so nothing accepted is cut off here.
    if let Some(inbound) = inbound {
        inbound.abort();
    }
    let _ = stop_timer.send(true);
    let _ = escalation_timer.await;
    let _ = quiet_timer.await;
    let _ = digest_timer.await;
    let _ = pruner.await;
    if let Some(socket_mode) = socket_mode {
        let _ = socket_mode.await;
    }
    deliverer.drain(flush_deadline).await;
    supervisor.abort();
    info!("ackbar stopped");
    Ok(())
}

impl App {
    /// Applies a notification and wakes delivery for the channels it gave
    /// work. `Ok` means every change is durable.
    async fn ingest(&self, notification: Notification) -> Result<IngestReport, StoreError> {
        let report = self.pipeline.ingest(notification, Utc::now()).await?;
        self.wake_delivery(&report);
        Ok(report)
    }

    /// Wakes delivery for the channels `report` gave work.
    fn wake_delivery(&self, report: &IngestReport) {
        for channel in report.channels_to_wake() {
            self.deliverer.wake(channel);
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

const UNAUTHORIZED_MESSAGE: &str = "missing or wrong credentials (see ingest.auth)";
const STORE_BUSY_MESSAGE: &str = "the store cannot commit right now; retry later";

/// The `WWW-Authenticate` challenge when `ingest.auth` is configured and the
/// request does not satisfy it.
fn auth_challenge(app: &App, headers: &HeaderMap) -> Option<&'static str> {
    let auth = app.auth.as_ref()?;
    if authorized(auth, headers) {
        return None;
    }
    m::rejected("unauthorized");
    Some(match auth {
        IngestAuth::Bearer(_) => "Bearer",
        IngestAuth::Basic { .. } => "Basic realm=\"ackbar\"",
    })
}

fn with_header(mut response: Response, name: header::HeaderName, value: &'static str) -> Response {
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
    response
}

/// Why a request body could not be read: the status and a message.
async fn read_body(request: Request) -> Result<Bytes, (StatusCode, String)> {
    match Bytes::from_request(request, &()).await {
        Ok(body) => Ok(body),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            m::rejected("too_large");
            Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is larger than ingest.max_body_bytes allows".to_owned(),
            ))
        }
        Err(rejection) => {
            m::rejected("body");
            Err((
                rejection.status(),
                format!("cannot read request body: {}", rejection.body_text()),
            ))
        }
    }
}

/// The answer to an accepted webhook (a struct: it is on the hot path).
#[derive(serde::Serialize)]
struct Accepted {
    status: &'static str,
    alerts: u64,
    cards_changed: usize,
    unrouted: u64,
}

fn accepted(alerts: u64, cards_changed: usize, unrouted: u64) -> Response {
    let answer = Accepted {
        status: "accepted",
        alerts,
        cards_changed,
        unrouted,
    };
    (StatusCode::OK, Json(answer)).into_response()
}

async fn alertmanager_webhook(State(app): State<Arc<App>>, request: Request) -> Response {
    if let Some(challenge) = auth_challenge(&app, request.headers()) {
        let response = error(StatusCode::UNAUTHORIZED, UNAUTHORIZED_MESSAGE);
        return with_header(response, header::WWW_AUTHENTICATE, challenge);
    }
    if !is_json(request.headers()) {
        m::rejected("content_type");
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json (an Alertmanager webhook, payload version 4)",
        );
    }
    let body = match read_body(request).await {
        Ok(body) => body,
        Err((status, message)) => return error(status, message),
    };
    if let Some(resent) = app.pipeline.recognise_resend(&body) {
        return accepted(resent.alerts, 0, resent.unrouted);
    }
    let notification = match alertmanager::decode(&body) {
        Ok(n) => n,
        Err(e) => {
            m::rejected("invalid");
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let alerts = notification.alerts.len() as u64;
    let ingested = app
        .pipeline
        .ingest_resendable(&body, notification, Utc::now())
        .await;
    match ingested.inspect(|report| app.wake_delivery(report)) {
        Ok(report) => {
            let changed = report.outcomes.iter().filter(|o| o.changed).count();
            accepted(alerts, changed, report.unrouted)
        }
        Err(e) => {
            warn!(error = %e, "cannot commit a notification; answering 503 so Alertmanager retries");
            with_header(
                error(StatusCode::SERVICE_UNAVAILABLE, STORE_BUSY_MESSAGE),
                header::RETRY_AFTER,
                "5",
            )
        }
    }
}

async fn otlp_logs(State(app): State<Arc<App>>, request: Request) -> Response {
    otlp_export(&app, OtlpSignal::Logs, request).await
}

async fn otlp_traces(State(app): State<Arc<App>>, request: Request) -> Response {
    otlp_export(&app, OtlpSignal::Traces, request).await
}

/// `POST /v1/logs` and `POST /v1/traces`. Every answer is in the request's
/// encoding (JSON when the content type is unknown): an
/// `Export*ServiceResponse` on success, a `google.rpc.Status` otherwise.
async fn otlp_export(app: &App, signal: OtlpSignal, request: Request) -> Response {
    let headers = request.headers();
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let encoding = otlp::Encoding::from_content_type(header_text(header::CONTENT_TYPE));
    let answer_in = *encoding.as_ref().unwrap_or(&otlp::Encoding::Json);
    let answer = |status: StatusCode, body: Vec<u8>| {
        (
            status,
            [(header::CONTENT_TYPE, answer_in.content_type())],
            body,
        )
            .into_response()
    };
    let refuse = |e: otlp::OtlpError| {
        let status = match &e {
            otlp::OtlpError::ContentType { .. } | otlp::OtlpError::ContentEncoding { .. } => {
                m::rejected("content_type");
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            otlp::OtlpError::TooLarge { .. } => {
                m::rejected("too_large");
                StatusCode::PAYLOAD_TOO_LARGE
            }
            _ => {
                m::rejected("invalid");
                StatusCode::BAD_REQUEST
            }
        };
        answer(status, otlp::error_body(answer_in, &e))
    };

    if let Some(challenge) = auth_challenge(app, headers) {
        let body = otlp::unauthenticated_body(answer_in, UNAUTHORIZED_MESSAGE);
        let response = answer(StatusCode::UNAUTHORIZED, body);
        return with_header(response, header::WWW_AUTHENTICATE, challenge);
    }
    let encoding = match encoding {
        Ok(encoding) => encoding,
        Err(e) => return refuse(e),
    };
    let content_encoding = header_text(header::CONTENT_ENCODING).map(str::to_owned);
    let body = match read_body(request).await {
        Ok(body) => body,
        Err((StatusCode::PAYLOAD_TOO_LARGE, _)) => {
            let limit = app.max_body_bytes;
            let e = otlp::OtlpError::TooLarge {
                limit,
                decompressed: false,
            };
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                otlp::error_body(answer_in, &e),
            );
        }
        Err((status, message)) => {
            let e = otlp::OtlpError::Unreadable(message);
            return answer(status, otlp::error_body(answer_in, &e));
        }
    };
    let decoded = otlp::decompress(&body, content_encoding.as_deref(), app.max_body_bytes)
        .and_then(|body| otlp::decode(signal, encoding, &body, &app.otlp, Utc::now()));
    let decoded = match decoded {
        Ok(decoded) => decoded,
        Err(e) => return refuse(e),
    };
    m::otlp_records(
        signal,
        decoded.alerted(),
        decoded.skipped(),
        decoded.rejected,
    );
    let response_body = decoded.response(encoding);
    if decoded.notification.alerts.is_empty() {
        return answer(StatusCode::OK, response_body);
    }
    if let Err(e) = app.ingest(decoded.notification).await {
        warn!(error = %e, "cannot commit OTLP alerts; answering 503 so the client retries");
        let body = otlp::unavailable_body(answer_in, STORE_BUSY_MESSAGE);
        return with_header(
            answer(StatusCode::SERVICE_UNAVAILABLE, body),
            header::RETRY_AFTER,
            "5",
        );
    }
    answer(StatusCode::OK, response_body)
}

/// Reads a request from Slack and verifies its signature over the raw body,
/// before anything is parsed.
async fn verified_body(app: &App, request: Request) -> Result<Bytes, Response> {
    let headers = request.headers().clone();
    let body = Bytes::from_request(request, &())
        .await
        .map_err(|rejection| error(rejection.status(), rejection.body_text()))?;
    if let Err(e) = app.interactions.verify(&headers, &body) {
        m::rejected("slack_signature");
        return Err(error(StatusCode::UNAUTHORIZED, e.to_string()));
    }
    Ok(body)
}

/// Maps a handler's result to the answer Slack gets.
fn slack_answer(result: Result<Option<serde_json::Value>, InteractError>) -> Response {
    match result {
        Ok(Some(body)) => (StatusCode::OK, Json(body)).into_response(),
        Ok(None) => StatusCode::OK.into_response(),
        Err(InteractError::Malformed(message)) => error(StatusCode::BAD_REQUEST, message),
        Err(e) => {
            warn!(error = %e, "cannot handle a request from Slack");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot handle this right now; try again",
            )
        }
    }
}

async fn slack_interactions(State(app): State<Arc<App>>, request: Request) -> Response {
    let body = match verified_body(&app, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    slack_answer(app.interactions.interaction(&body).await)
}

async fn slack_commands(State(app): State<Arc<App>>, request: Request) -> Response {
    let body = match verified_body(&app, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    slack_answer(app.interactions.command(&body).await)
}

async fn slack_events(State(app): State<Arc<App>>, request: Request) -> Response {
    let body = match verified_body(&app, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    slack_answer(app.interactions.event(&body).await)
}

async fn slack_install(
    State(app): State<Arc<App>>,
    query: Result<Query<oauth::InstallQuery>, QueryRejection>,
) -> Response {
    match &app.oauth {
        Some(flow) => flow.install(query.map(|q| q.0).unwrap_or_default()).await,
        None => oauth::not_configured(),
    }
}

/// A query that does not decode (a repeated field, say) is treated as
/// empty: the flow then explains what is missing.
async fn slack_oauth_callback(
    State(app): State<Arc<App>>,
    query: Result<Query<oauth::CallbackQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    match &app.oauth {
        Some(flow) => {
            flow.callback(query.map(|q| q.0).unwrap_or_default(), &headers)
                .await
        }
        None => oauth::not_configured(),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn authorized(auth: &IngestAuth, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    match auth {
        IngestAuth::Bearer(token) => {
            scheme.eq_ignore_ascii_case("bearer") && token.matches(credentials.trim().as_bytes())
        }
        IngestAuth::Basic { username, password } => {
            if !scheme.eq_ignore_ascii_case("basic") {
                return false;
            }
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials.trim())
            else {
                return false;
            };
            let Some(colon) = decoded.iter().position(|&b| b == b':') else {
                return false;
            };
            let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
            // Evaluate both so timing does not reveal which one was wrong.
            let user_ok = crate::config::constant_time_eq(username.as_bytes(), user);
            let pass_ok = password.matches(pass);
            user_ok & pass_ok
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
    }
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    if let Ok(summary) = app.store.outbox_summary().await {
        m::outbox_gauges(summary);
    }
    match &app.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "metrics are recorded by the host application's recorder",
        ),
    }
}
