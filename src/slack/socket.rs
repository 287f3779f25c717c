//! Socket Mode: Slack delivers interactions, slash commands and events over
//! a WebSocket ackbar opens, instead of HTTP requests to a public URL.
//!
//! [`run`] keeps one connection open until told to stop:
//! `apps.connections.open` with the app-level token (`xapp-...`) gives a
//! single-use `wss://` URL; the socket sends `hello`, then envelopes
//! `{envelope_id, type, payload, accepts_response_payload, retry_attempt,
//! retry_reason}`. Each is dispatched to the same [`Interactions`] handlers
//! the HTTP routes use (no signature: the socket itself is authenticated):
//! `interactive` to [`Interactions::interaction_payload`], `slash_commands`
//! to [`Interactions::run_command`], `events_api` to [`Interactions::event`].
//!
//! # Acks and redelivery
//! An envelope is acked only after its handler returned, i.e. after the
//! store committed, so an envelope whose handling failed (the store was
//! busy) is *not* acked and Slack redelivers it. Handlers are idempotent
//! (events are deduplicated by `event_id` in the store, actions by card
//! state), so a redelivery of something already handled changes nothing.
//! A malformed payload is acked anyway: sending it again cannot help. The
//! ack carries the handler's answer as `payload` when there is one and the
//! envelope `accepts_response_payload` (slash command replies).
//!
//! # Reconnecting
//! - `disconnect` with reason `warning` or `refresh_requested` (or any
//!   other but `link_disabled`): a new connection is opened first, and the
//!   old one is closed only once the new one said `hello`, so no envelope
//!   lands on a closed socket. `link_disabled`: [`run`] stops with
//!   [`SocketError::LinkDisabled`].
//! - A ping every [`SocketOptions::ping_interval`]; a connection that shows
//!   no traffic (pongs included) for [`SocketOptions::dead_after`] is dead.
//! - A failed `apps.connections.open`, handshake or `hello`, and a dropped
//!   connection, back off exponentially with jitter between
//!   [`SocketOptions::backoff_base`] and [`SocketOptions::backoff_max`],
//!   never sooner than a 429's `Retry-After`.
//!
//! # Bounds
//! One connection, two during a handover; one envelope handled at a time
//! per connection (it is read only when the previous one was acked, so
//! nothing queues on our side); frames and messages of at most
//! [`MAX_FRAME_BYTES`]; a handful of supervisor events in a bounded
//! channel.
//!
//! # TLS
//! rustls with the *ring* provider, chosen explicitly, and the webpki
//! roots. A plaintext `ws://` URL is accepted only when the Web API itself
//! is plaintext `http://` (the local emulator).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tracing::{debug, error, info, warn};

use crate::config::Secret;
use crate::slack::api::{SlackClient, SlackError};
use crate::slack::commands::Command;
use crate::slack::interact::{InteractError, Interactions};

/// Largest frame and message read from Slack (envelopes are a few KiB).
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Supervisor events (hello, disconnect, ended) waiting to be looked at.
const EVENT_QUEUE: usize = 8;
/// How long a connection being replaced or stopped gets to close cleanly.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Timings of the Socket Mode client; the defaults follow Slack's advice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOptions {
    /// How often a WebSocket ping is sent.
    pub ping_interval: Duration,
    /// A connection without any traffic (pongs included) this long is
    /// dead; also bounds the handshake and the wait for `hello`.
    pub dead_after: Duration,
    /// First wait after a failed connect or a dropped connection.
    pub backoff_base: Duration,
    /// Longest wait between attempts (a `Retry-After` may ask for more).
    pub backoff_max: Duration,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            ping_interval: Duration::from_secs(5),
            dead_after: Duration::from_secs(20),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Why [`run`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "Slack disabled this app's Socket Mode link (disconnect reason link_disabled); \
         check the app's Socket Mode setting"
    )]
    LinkDisabled,
    #[error("invalid Socket Mode setup: {0}")]
    InvalidConfig(String),
}

/// Why one attempt to open a connection failed.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(transparent)]
    Slack(#[from] SlackError),
    #[error("apps.connections.open returned an unusable URL: {0}")]
    Url(&'static str),
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),
    #[error("no hello from Slack: {0}")]
    NoHello(String),
}

impl OpenError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            OpenError::Slack(SlackError::RateLimited { retry_after }) => Some(*retry_after),
            _ => None,
        }
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Starts [`run`] in a task when `app_token` is configured (Socket Mode is
/// on exactly then). `slack` is any
/// client for the right API base URL; the app token is passed explicitly.
/// Stop it by sending `true` on the `stop` channel's sender, then await the
/// handle.
pub fn spawn(
    app_token: Option<&Secret>,
    slack: &SlackClient,
    handlers: &Interactions,
    options: SocketOptions,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<Result<(), SocketError>>> {
    let token = app_token.filter(|t| !t.expose().trim().is_empty())?.clone();
    Some(tokio::spawn(run(
        token,
        slack.clone(),
        handlers.clone(),
        options,
        stop,
    )))
}

/// Keeps a Socket Mode connection open and serves its envelopes until
/// `stop` turns `true` (or its sender is dropped). Returns an error only
/// for what reconnecting cannot fix.
pub async fn run(
    app_token: Secret,
    slack: SlackClient,
    handlers: Interactions,
    options: SocketOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SocketError> {
    let opener = Opener {
        tls: tls_config()?,
        plaintext_ok: slack.api_url().starts_with("http://"),
        slack,
        token: app_token,
        options: options.clone(),
    };
    let (events_tx, mut events) = mpsc::channel(EVENT_QUEUE);
    let mut backoff = Backoff::new(options.backoff_base, options.backoff_max);
    let mut active: Option<ConnHandle> = None;
    let mut draining: Option<ConnHandle> = None;
    let mut next_id = 0_u64;
    let spawn_conn = |id: u64, ws: Ws| {
        let (close_tx, close_rx) = oneshot::channel();
        let task = tokio::spawn(connection(
            id,
            ws,
            handlers.clone(),
            options.clone(),
            events_tx.clone(),
            close_rx,
        ));
        ConnHandle {
            id,
            close: Some(close_tx),
            task,
        }
    };
    let outcome = loop {
        if *stop.borrow() {
            break Ok(());
        }
        if active.is_none() {
            let opened = tokio::select! {
                r = opener.open() => r,
                _ = stopped(&mut stop) => break Ok(()),
            };
            match opened {
                Ok(ws) => {
                    backoff.reset();
                    next_id += 1;
                    info!(connection = next_id, "Socket Mode connected");
                    active = Some(spawn_conn(next_id, ws));
                }
                Err(e) => {
                    let wait = backoff.next(e.retry_after());
                    warn!(error = %e, retry_in = ?wait, "cannot open a Socket Mode connection");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = stopped(&mut stop) => break Ok(()),
                    }
                    continue;
                }
            }
        }
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stopped(&mut stop) => break Ok(()),
        };
        // We hold a sender, so the channel never ends; be defensive anyway.
        let Some(event) = event else { break Ok(()) };
        match event {
            ConnEvent::Disconnect { conn, reason } if reason == "link_disabled" => {
                error!(
                    connection = conn,
                    "Slack disabled Socket Mode for this app (link_disabled); stopping the Socket Mode client"
                );
                break Err(SocketError::LinkDisabled);
            }
            ConnEvent::Disconnect { conn, reason } => {
                if active.as_ref().is_none_or(|a| a.id != conn) {
                    continue;
                }
                info!(
                    connection = conn,
                    reason,
                    "Slack asked to reconnect; opening the new connection before closing the old"
                );
                let opened = tokio::select! {
                    r = opener.open() => r,
                    _ = stopped(&mut stop) => break Ok(()),
                };
                match opened {
                    Ok(ws) => {
                        next_id += 1;
                        info!(
                            connection = next_id,
                            replaces = conn,
                            "Socket Mode connected"
                        );
                        let fresh = spawn_conn(next_id, ws);
                        if let Some(mut old) = active.replace(fresh) {
                            old.close();
                            if let Some(previous) = draining.replace(old) {
                                previous.task.abort();
                            }
                        }
                    }
                    Err(e) => {
                        // Keep serving the old one; once it ends, the
                        // ordinary reconnect (with backoff) takes over.
                        warn!(error = %e, "cannot open the replacement Socket Mode connection; keeping the old one while it lasts");
                    }
                }
            }
            ConnEvent::Ended { conn, why } => {
                if active.as_ref().is_some_and(|a| a.id == conn) {
                    active = None;
                    let wait = backoff.next(None);
                    warn!(connection = conn, why, retry_in = ?wait, "Socket Mode connection lost; reconnecting");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = stopped(&mut stop) => break Ok(()),
                    }
                } else if draining.as_ref().is_some_and(|d| d.id == conn) {
                    debug!(connection = conn, why, "old Socket Mode connection closed");
                    draining = None;
                }
            }
        }
    };
    for mut handle in [active, draining].into_iter().flatten() {
        handle.close();
        let mut task = handle.task;
        if tokio::time::timeout(CLOSE_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
    info!("Socket Mode client stopped");
    outcome
}

/// Resolves when `stop` turns true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

struct ConnHandle {
    id: u64,
    close: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ConnHandle {
    /// Asks the connection to finish the envelope at hand and close.
    fn close(&mut self) {
        if let Some(tx) = self.close.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Debug)]
enum ConnEvent {
    Disconnect { conn: u64, reason: String },
    Ended { conn: u64, why: String },
}

struct Opener {
    slack: SlackClient,
    token: Secret,
    tls: Arc<rustls::ClientConfig>,
    plaintext_ok: bool,
    options: SocketOptions,
}

impl Opener {
    /// `apps.connections.open`, the WebSocket handshake, and `hello`.
    async fn open(&self) -> Result<Ws, OpenError> {
        // The URL carries a single-use ticket: it is never logged.
        let url = self
            .slack
            .apps_connections_open(self.token.expose())
            .await?;
        if !(url.starts_with("wss://") || (self.plaintext_ok && url.starts_with("ws://"))) {
            return Err(OpenError::Url(if url.starts_with("ws://") {
                "plaintext ws:// is accepted only from a plaintext (local) API"
            } else {
                "not a wss:// URL"
            }));
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let handshake = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            Some(config),
            true,
            Some(Connector::Rustls(self.tls.clone())),
        );
        let (mut ws, _) = tokio::time::timeout(self.options.dead_after, handshake)
            .await
            .map_err(|_| OpenError::Handshake("timed out".to_owned()))?
            .map_err(|e| OpenError::Handshake(e.to_string()))?;
        let deadline = Instant::now() + self.options.dead_after;
        loop {
            let next = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| OpenError::NoHello("timed out".to_owned()))?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<Incoming>(text.as_str()) {
                        Ok(m) if m.kind == "hello" => return Ok(ws),
                        Ok(m) if m.kind == "disconnect" => {
                            return Err(OpenError::NoHello(format!(
                                "disconnect ({}) before hello",
                                m.reason.unwrap_or_default()
                            )));
                        }
                        _ => debug!("ignoring a Socket Mode message before hello"),
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(OpenError::NoHello("closed before hello".to_owned()));
                }
                Some(Err(e)) => return Err(OpenError::NoHello(e.to_string())),
                Some(Ok(_)) => {}
            }
        }
    }
}

/// rustls on *ring*, chosen here rather than through a process-wide
/// default, with the webpki roots.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, SocketError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SocketError::InvalidConfig(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A message from Slack over the socket.
#[derive(Debug, Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    envelope_id: Option<String>,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    accepts_response_payload: bool,
    #[serde(default)]
    retry_attempt: u32,
    #[serde(default)]
    retry_reason: Option<String>,
    /// `disconnect` only.
    #[serde(default)]
    reason: Option<String>,
}

/// Serves one connection until it ends or is told to close.
async fn connection(
    id: u64,
    mut ws: Ws,
    handlers: Interactions,
    options: SocketOptions,
    events: mpsc::Sender<ConnEvent>,
    mut close: oneshot::Receiver<()>,
) {
    let mut ping = tokio::time::interval_at(
        Instant::now() + options.ping_interval,
        options.ping_interval,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    let why = loop {
        tokio::select! {
            biased;
            _ = &mut close => {
                // Told to close (handover done, or stopping); a dropped
                // sender means the supervisor is gone: close as well.
                let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
                break "closed by ackbar".to_owned();
            }
            () = tokio::time::sleep_until(last_seen + options.dead_after) => {
                break format!("no traffic for {:?}", options.dead_after);
            }
            _ = ping.tick() => {
                if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                    break format!("cannot send a ping: {e}");
                }
            }
            next = ws.next() => {
                let message = match next {
                    None => break "closed by Slack".to_owned(),
                    Some(Err(e)) => break format!("read failed: {e}"),
                    Some(Ok(m)) => m,
                };
                last_seen = Instant::now();
                let text = match message {
                    Message::Text(text) => text,
                    Message::Close(_) => break "closed by Slack".to_owned(),
                    // Pings are answered by tungstenite; pongs only count
                    // as traffic.
                    _ => continue,
                };
                let incoming = match serde_json::from_str::<Incoming>(text.as_str()) {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(error = %e, "ignoring a Socket Mode message that is not JSON of the expected shape");
                        continue;
                    }
                };
                match incoming.kind.as_str() {
                    "disconnect" => {
                        let reason = incoming.reason.unwrap_or_else(|| "unknown".to_owned());
                        let _ = events.send(ConnEvent::Disconnect { conn: id, reason }).await;
                    }
                    "hello" => debug!(connection = id, "hello again"),
                    _ => {
                        if let Some(ack) = handle_envelope(&handlers, incoming).await
                            && let Err(e) = ws.send(Message::text(ack.to_string())).await {
                                break format!("cannot send an ack: {e}");
                            }
                    }
                }
            }
        }
    };
    let _ = events.send(ConnEvent::Ended { conn: id, why }).await;
}

/// Handles one envelope; returns the ack to send, or `None` when it must
/// not be acked (so that Slack redelivers it).
async fn handle_envelope(handlers: &Interactions, envelope: Incoming) -> Option<Value> {
    let Some(envelope_id) = envelope.envelope_id else {
        debug!(
            kind = envelope.kind,
            "ignoring a Socket Mode message without envelope_id"
        );
        return None;
    };
    if envelope.retry_attempt > 0 {
        debug!(
            envelope_id,
            retry_attempt = envelope.retry_attempt,
            retry_reason = envelope.retry_reason.as_deref().unwrap_or(""),
            "redelivered envelope"
        );
    }
    let payload = envelope.payload.unwrap_or(Value::Null);
    let result = dispatch(handlers, &envelope.kind, payload).await;
    ack_for(
        envelope_id,
        &envelope.kind,
        envelope.accepts_response_payload,
        result,
    )
}

async fn dispatch(
    handlers: &Interactions,
    kind: &str,
    payload: Value,
) -> Result<Option<Value>, InteractError> {
    let bytes = || {
        serde_json::to_vec(&payload)
            .map_err(|e| InteractError::Malformed(format!("cannot re-encode the payload: {e}")))
    };
    match kind {
        "interactive" => handlers.interaction_payload(&bytes()?).await,
        "slash_commands" => {
            let command: Command = serde_json::from_value(payload.clone()).map_err(|e| {
                InteractError::Malformed(format!("not a slash command payload: {e}"))
            })?;
            handlers.run_command(command).await
        }
        "events_api" => handlers.event(&bytes()?).await,
        other => {
            debug!(
                kind = other,
                "acking a Socket Mode envelope of a type ackbar does not handle"
            );
            Ok(None)
        }
    }
}

/// The ack for a handled envelope (see the module docs for the rules).
fn ack_for(
    envelope_id: String,
    kind: &str,
    accepts_response_payload: bool,
    result: Result<Option<Value>, InteractError>,
) -> Option<Value> {
    match result {
        Ok(Some(body)) if accepts_response_payload => {
            Some(json!({ "envelope_id": envelope_id, "payload": body }))
        }
        Ok(_) => Some(json!({ "envelope_id": envelope_id })),
        Err(InteractError::Malformed(message)) => {
            warn!(
                envelope_id,
                kind, message, "acking a malformed Socket Mode envelope without handling it"
            );
            Some(json!({ "envelope_id": envelope_id }))
        }
        Err(e) => {
            warn!(envelope_id, kind, error = %e, "cannot handle a Socket Mode envelope; not acking it, so Slack redelivers it");
            None
        }
    }
}

/// Exponential backoff with jitter: attempt n waits a random time in
/// `[d/2, d]` with `d = min(max, base * 2^n)`, and never less than a
/// server's `Retry-After`.
#[derive(Debug, Clone)]
struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let factor = 1_u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter = Duration::from_nanos(fastrand::u64(
            0..=u64::try_from(half.as_nanos()).unwrap_or(u64::MAX),
        ));
        let wait = half + jitter;
        match retry_after {
            Some(r) => wait.max(r),
            None => wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(30);
        let mut b = Backoff::new(base, max);
        let mut ceiling = base;
        for _ in 0..10 {
            let wait = b.next(None);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{wait:?} within {ceiling:?}"
            );
            ceiling = (ceiling * 2).min(max);
        }
        assert!(b.next(None) <= max);
        b.reset();
        assert!(b.next(None) <= base);
    }

    #[test]
    fn backoff_honours_retry_after() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
        assert_eq!(b.next(Some(Duration::from_secs(7))), Duration::from_secs(7));
    }

    #[test]
    fn acks_carry_a_reply_only_when_accepted_and_failures_are_not_acked() {
        let reply = Some(json!({"text": "hi"}));
        assert_eq!(
            ack_for("e1".into(), "slash_commands", true, Ok(reply.clone())),
            Some(json!({"envelope_id": "e1", "payload": {"text": "hi"}}))
        );
        assert_eq!(
            ack_for("e2".into(), "events_api", false, Ok(reply)),
            Some(json!({"envelope_id": "e2"}))
        );
        assert_eq!(
            ack_for(
                "e3".into(),
                "interactive",
                false,
                Err(InteractError::Malformed("x".into()))
            ),
            Some(json!({"envelope_id": "e3"}))
        );
        let busy = InteractError::Store(crate::store::StoreError::Unavailable("busy".into()));
        assert_eq!(ack_for("e4".into(), "interactive", false, Err(busy)), None);
    }

    #[test]
    fn tls_config_builds_on_ring() {
        assert!(tls_config().is_ok());
    }
}
