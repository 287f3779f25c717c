//! Socket Mode in the emulator.
//!
//! - `POST /api/apps.connections.open` with `Authorization: Bearer xapp-...`
//!   (the app-level token; [`super::SandboxOptions::app_token`] pins it,
//!   otherwise any `xapp-` token is accepted, and a bot token answers
//!   `not_allowed_token_type`) mints a single-use ticket and answers
//!   `{ok:true, url:"ws://{base}/socket/{ticket}"}`.
//! - `GET /socket/{ticket}` upgrades to a WebSocket, sends `hello`, then
//!   envelopes `{envelope_id, type, payload, accepts_response_payload,
//!   retry_attempt, retry_reason}` and reads acks `{envelope_id, payload?}`.
//!
//! While Socket Mode is in use (a connection is open, or one was and no
//! `app_url` is set), [`Sandbox::click`], [`Sandbox::slash_command`],
//! [`Sandbox::send_event`] and [`Sandbox::submit_view`] deliver over the
//! socket instead of HTTP (types `interactive`, `slash_commands`,
//! `events_api`) and wait up to `app_timeout` for the ack with the same
//! `envelope_id`: its payload comes back as an [`super::ActResponse`] with
//! status 200, no ack in time is [`super::ActError::NotAcked`]. Like Slack,
//! an envelope not acked within `app_timeout`, or whose connection closed
//! before its ack, is redelivered (`retry_attempt` + 1) up to
//! [`MAX_REDELIVERIES`] times, in the background.
//!
//! New envelopes go to the newest connection that was not told to
//! disconnect, else to the newest open one. Test hooks:
//! [`Sandbox::socket_disconnect`] and [`Sandbox::socket_drop_next_ack`];
//! counts are in [`SandboxState::socket`](super::SandboxState).
//!
//! Bounded: [`MAX_CONNECTIONS`] open connections, [`MAX_TICKETS`] unused
//! tickets, [`MAX_PENDING_ENVELOPES`] envelopes awaiting an ack, a queue of
//! [`CONNECTION_QUEUE`] frames per connection, frames of at most
//! [`MAX_FRAME_BYTES`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::act::{ActError, COMMANDS_PATH, EVENTS_PATH, INTERACTIONS_PATH, Signing};
use super::interact::{APP_ID, ActRecord};
use super::state::Outcome;
use super::{Inner, Sandbox};
use crate::slack::verify;

/// Slack allows up to 10 Socket Mode connections per app.
pub const MAX_CONNECTIONS: usize = 10;
/// Tickets minted by `apps.connections.open` and not used yet.
pub const MAX_TICKETS: usize = 16;
/// How long a ticket (a `wss://` URL) can be used.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Envelopes sent and not acked yet, across connections.
pub const MAX_PENDING_ENVELOPES: usize = 256;
/// How often an unacked envelope is sent again.
pub const MAX_REDELIVERIES: u32 = 3;
/// Frames waiting to be written to one connection.
pub const CONNECTION_QUEUE: usize = 64;
/// Largest frame or message read from the app.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// How long a connection told to disconnect stays open if the app does not
/// close it (Slack: about 10 s for `warning`; shorter here to keep tests
/// quick).
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(1);
/// How often a delivery looks for a connection while none is open.
const CONNECTION_POLL: Duration = Duration::from_millis(20);

/// The method name.
pub const APPS_CONNECTIONS_OPEN: &str = "apps.connections.open";

/// Socket Mode counts (`state.socket`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SocketState {
    /// WebSocket connections accepted (each sent `hello`).
    pub connections_opened: u64,
    /// Connections open now.
    pub open: u64,
    /// Envelopes written, first deliveries and redeliveries.
    pub envelopes_sent: u64,
    /// Acks received and honoured.
    pub acks: u64,
    /// Acks ignored on purpose ([`Sandbox::socket_drop_next_ack`]).
    pub acks_dropped: u64,
    /// Envelopes sent again after no ack or a closed connection.
    pub redeliveries: u64,
    /// Envelopes given up on after [`MAX_REDELIVERIES`].
    pub undelivered: u64,
    /// `disconnect` messages sent.
    pub disconnects_sent: u64,
    /// Times the last open connection closed, leaving none: a client that
    /// hands over properly (new connection first) leaves no gap.
    pub gaps: u64,
}

enum Frame {
    Text(String),
    Close,
    /// Stop reading (so no pong answers a ping) and send nothing: a
    /// connection that died without closing.
    Freeze,
}

enum AckOutcome {
    Acked(Option<Value>),
    ConnectionClosed,
}

struct Conn {
    tx: mpsc::Sender<Frame>,
    /// Told to disconnect: gets new envelopes only when nothing else is open.
    draining: bool,
}

struct Pending {
    conn: u64,
    tx: oneshot::Sender<AckOutcome>,
}

/// The Socket Mode part of the workspace.
#[derive(Default)]
pub(super) struct Hub {
    tickets: HashMap<String, Instant>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    pending: HashMap<String, Pending>,
    drop_acks: u32,
    /// A connection was opened at some point: with no `app_url`, acts wait
    /// for a connection instead of failing.
    used: bool,
    pub(super) stats: SocketState,
}

impl Hub {
    fn prune_tickets(&mut self) {
        let now = Instant::now();
        self.tickets.retain(|_, expires| *expires > now);
    }
}

fn random_id(rng: &mut fastrand::Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.usize(..36)]))
        .collect()
}

fn api_error(error: &str) -> Response {
    Json(json!({"ok": false, "error": error})).into_response()
}

/// `POST /api/apps.connections.open`.
pub(super) async fn connections_open(State(sb): State<Sandbox>, headers: HeaderMap) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let answer = {
        let mut guard = sb.lock();
        let inner: &mut Inner = &mut guard;
        match (&token, &inner.app_token) {
            (None, _) => Err("not_authed"),
            (Some(t), _) if !t.starts_with("xapp-") => Err("not_allowed_token_type"),
            (Some(t), Some(expected))
                if !crate::config::constant_time_eq(t.as_bytes(), expected.as_bytes()) =>
            {
                Err("invalid_auth")
            }
            _ => {
                inner.socket.prune_tickets();
                if inner.socket.tickets.len() >= MAX_TICKETS
                    || inner.socket.conns.len() >= MAX_CONNECTIONS
                {
                    Err("too_many_websockets")
                } else {
                    let ticket = random_id(&mut inner.rng, 24);
                    inner
                        .socket
                        .tickets
                        .insert(ticket.clone(), Instant::now() + TICKET_TTL);
                    let base = inner
                        .base_url
                        .clone()
                        .unwrap_or_else(|| "http://sandbox.invalid".to_owned());
                    let ws_base = match base.strip_prefix("https://") {
                        Some(rest) => format!("wss://{rest}"),
                        None => format!("ws://{}", base.trim_start_matches("http://")),
                    };
                    Ok(format!("{ws_base}/socket/{ticket}"))
                }
            }
        }
    };
    match answer {
        Ok(url) => {
            sb.record(
                APPS_CONNECTIONS_OPEN,
                APPS_CONNECTIONS_OPEN,
                None,
                Outcome::Ok,
                false,
            );
            Json(json!({"ok": true, "url": url})).into_response()
        }
        Err(e) => {
            sb.record(
                APPS_CONNECTIONS_OPEN,
                APPS_CONNECTIONS_OPEN,
                None,
                Outcome::Error(e.to_owned()),
                false,
            );
            api_error(e)
        }
    }
}

/// `GET /socket/{ticket}`: the WebSocket.
pub(super) async fn socket(
    State(sb): State<Sandbox>,
    Path(ticket): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    {
        let mut inner = sb.lock();
        inner.socket.prune_tickets();
        if inner.socket.tickets.remove(&ticket).is_none() {
            return (StatusCode::NOT_FOUND, "unknown or expired socket ticket").into_response();
        }
        if inner.socket.conns.len() >= MAX_CONNECTIONS {
            return (StatusCode::TOO_MANY_REQUESTS, "too many connections").into_response();
        }
    }
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |ws| serve(sb, ws))
}

async fn serve(sb: Sandbox, mut ws: WebSocket) {
    let (tx, mut rx) = mpsc::channel(CONNECTION_QUEUE);
    let (id, count) = {
        let mut inner = sb.lock();
        let hub = &mut inner.socket;
        if hub.conns.len() >= MAX_CONNECTIONS {
            return;
        }
        hub.next_conn += 1;
        let id = hub.next_conn;
        hub.conns.insert(
            id,
            Conn {
                tx,
                draining: false,
            },
        );
        hub.used = true;
        hub.stats.connections_opened += 1;
        hub.stats.open = hub.conns.len() as u64;
        (id, hub.conns.len())
    };
    let hello = json!({
        "type": "hello",
        "num_connections": count,
        "debug_info": {"host": "sandbox", "approximate_connection_time": 18060},
        "connection_info": {"app_id": APP_ID},
    });
    if ws
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok()
    {
        loop {
            tokio::select! {
                frame = rx.recv() => match frame {
                    Some(Frame::Text(text)) => {
                        if ws.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(Frame::Close) | None => {
                        let _ = ws.send(Message::Close(None)).await;
                        break;
                    }
                    Some(Frame::Freeze) => {
                        // Hold the connection without reading it until told to
                        // close (or the hub goes away); the app must notice.
                        while let Some(frame) = rx.recv().await {
                            if matches!(frame, Frame::Close) {
                                break;
                            }
                        }
                        break;
                    }
                },
                message = ws.recv() => match message {
                    Some(Ok(Message::Text(text))) => sb.on_ack(text.as_str()),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    let mut inner = sb.lock();
    let hub = &mut inner.socket;
    hub.conns.remove(&id);
    hub.stats.open = hub.conns.len() as u64;
    if hub.conns.is_empty() {
        hub.stats.gaps += 1;
    }
    let lost: Vec<String> = hub
        .pending
        .iter()
        .filter(|(_, p)| p.conn == id)
        .map(|(k, _)| k.clone())
        .collect();
    for envelope_id in lost {
        if let Some(p) = hub.pending.remove(&envelope_id) {
            let _ = p.tx.send(AckOutcome::ConnectionClosed);
        }
    }
}

#[derive(Deserialize)]
struct Ack {
    envelope_id: String,
    #[serde(default)]
    payload: Option<Value>,
}

/// What the sandbox would send over Socket Mode instead of an HTTP request.
pub(super) struct Envelope {
    kind: &'static str,
    payload: Value,
    accepts_response_payload: bool,
    retry_attempt: u32,
    retry_reason: Option<String>,
}

/// The envelope for a request the sandbox would POST to the app, or `None`
/// for requests Socket Mode does not carry (raw, mis-signed, URL
/// verification).
pub(super) fn envelope_for(
    kind: &str,
    path: &str,
    body: &[u8],
    signing: Signing,
    extra: &[(&'static str, String)],
) -> Option<Envelope> {
    if signing != Signing::Valid || matches!(kind, "raw" | "url_verification") {
        return None;
    }
    match path {
        INTERACTIONS_PATH => {
            #[derive(Deserialize)]
            struct Form {
                payload: String,
            }
            let form: Form = serde_urlencoded::from_bytes(body).ok()?;
            let payload: Value = serde_json::from_str(&form.payload).ok()?;
            // Slack takes a response payload for view submissions (to
            // update, push or show errors), not for block actions.
            let accepts = payload.get("type").and_then(Value::as_str) == Some("view_submission");
            Some(Envelope {
                kind: "interactive",
                payload,
                accepts_response_payload: accepts,
                retry_attempt: 0,
                retry_reason: None,
            })
        }
        COMMANDS_PATH => {
            let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
            let payload: Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            Some(Envelope {
                kind: "slash_commands",
                payload: Value::Object(payload),
                accepts_response_payload: true,
                retry_attempt: 0,
                retry_reason: None,
            })
        }
        EVENTS_PATH => {
            let payload: Value = serde_json::from_slice(body).ok()?;
            let header = |name: &str| {
                extra
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            Some(Envelope {
                kind: "events_api",
                payload,
                accepts_response_payload: false,
                retry_attempt: header(verify::RETRY_NUM_HEADER)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                retry_reason: header(verify::RETRY_REASON_HEADER),
            })
        }
        _ => None,
    }
}

impl Sandbox {
    /// Whether acts go over Socket Mode: a connection is open, or one was
    /// and the app has no request URL.
    pub(super) fn socket_mode(&self) -> bool {
        let inner = self.lock();
        !inner.socket.conns.is_empty() || (inner.socket.used && inner.app_url.is_none())
    }

    /// Socket Mode counts.
    pub fn socket_state(&self) -> SocketState {
        self.lock().socket.stats.clone()
    }

    /// Sends `{"type":"disconnect","reason":reason}` to every open
    /// connection; new envelopes then prefer connections opened later. A
    /// connection the app has not closed [`DISCONNECT_GRACE`] later is
    /// closed by the sandbox, at once for `link_disabled`. Returns how many
    /// connections were told.
    pub fn socket_disconnect(&self, reason: &str) -> usize {
        let message = json!({
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "sandbox"},
        })
        .to_string();
        let told: Vec<u64> = {
            let mut inner = self.lock();
            let hub = &mut inner.socket;
            let mut told = Vec::new();
            for (id, conn) in hub.conns.iter_mut() {
                if conn.tx.try_send(Frame::Text(message.clone())).is_ok() {
                    conn.draining = true;
                    told.push(*id);
                }
            }
            hub.stats.disconnects_sent += told.len() as u64;
            told
        };
        let grace = if reason == "link_disabled" {
            Duration::ZERO
        } else {
            DISCONNECT_GRACE
        };
        let sb = self.clone();
        let ids = told.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let inner = sb.lock();
            for id in ids {
                if let Some(conn) = inner.socket.conns.get(&id) {
                    let _ = conn.tx.try_send(Frame::Close);
                }
            }
        });
        told.len()
    }

    /// Makes every open connection go silent, as a connection that died
    /// without closing does: no pongs, no envelopes. New envelopes go to
    /// connections opened later. Returns how many connections froze.
    pub fn socket_freeze(&self) -> usize {
        let mut inner = self.lock();
        let mut frozen = 0;
        for conn in inner.socket.conns.values_mut() {
            if conn.tx.try_send(Frame::Freeze).is_ok() {
                conn.draining = true;
                frozen += 1;
            }
        }
        frozen
    }

    /// Ignore the next `n` acks, as if they were lost: their envelopes are
    /// redelivered once `app_timeout` passes.
    pub fn socket_drop_next_ack(&self, n: u32) {
        self.lock().socket.drop_acks = n;
    }

    fn on_ack(&self, text: &str) {
        let Ok(ack) = serde_json::from_str::<Ack>(text) else {
            tracing::debug!("sandbox: a socket message that is not an ack");
            return;
        };
        let mut inner = self.lock();
        let hub = &mut inner.socket;
        if hub.drop_acks > 0 {
            hub.drop_acks -= 1;
            hub.stats.acks_dropped += 1;
            return;
        }
        hub.stats.acks += 1;
        if let Some(p) = hub.pending.remove(&ack.envelope_id) {
            let _ = p.tx.send(AckOutcome::Acked(ack.payload));
        }
    }

    /// Writes `envelope` to a connection (waiting up to `wait` for one to
    /// be open) and registers for its ack.
    async fn socket_send(
        &self,
        envelope_id: &str,
        text: String,
        wait: Duration,
    ) -> Result<oneshot::Receiver<AckOutcome>, ActError> {
        let deadline = Instant::now() + wait;
        loop {
            {
                let mut inner = self.lock();
                let hub = &mut inner.socket;
                if hub.pending.len() >= MAX_PENDING_ENVELOPES {
                    return Err(ActError::InvalidRequest(
                        "too many envelopes await an ack".into(),
                    ));
                }
                let target = hub
                    .conns
                    .iter()
                    .rev()
                    .find(|(_, c)| !c.draining)
                    .or_else(|| hub.conns.iter().next_back())
                    .map(|(id, c)| (*id, c.tx.clone()));
                if let Some((id, tx)) = target
                    && tx.try_send(Frame::Text(text.clone())).is_ok()
                {
                    let (ack_tx, ack_rx) = oneshot::channel();
                    hub.pending.insert(
                        envelope_id.to_owned(),
                        Pending {
                            conn: id,
                            tx: ack_tx,
                        },
                    );
                    hub.stats.envelopes_sent += 1;
                    return Ok(ack_rx);
                }
            }
            if Instant::now() >= deadline {
                return Err(ActError::Transport(
                    "no Socket Mode connection could take the envelope".into(),
                ));
            }
            tokio::time::sleep(CONNECTION_POLL).await;
        }
    }

    /// Delivers over Socket Mode instead of HTTP, if Socket Mode is in use
    /// and the request is one it carries.
    pub(super) async fn socket_deliver(
        &self,
        kind: &str,
        path: &str,
        body: &[u8],
        signing: Signing,
        extra: &[(&'static str, String)],
    ) -> Option<Result<(u16, String, u64), ActError>> {
        if !self.socket_mode() {
            return None;
        }
        let envelope = envelope_for(kind, path, body, signing, extra)?;
        let (timeout, started, envelope_id) = {
            let mut inner = self.lock();
            let id = format!("sbx-{}", random_id(&mut inner.rng, 20));
            (inner.app_timeout, inner.started, id)
        };
        let t0 = Instant::now();
        let (first_tx, first_rx) = oneshot::channel();
        tokio::spawn(self.clone().deliver_envelope(
            envelope_id.clone(),
            envelope,
            timeout,
            first_tx,
        ));
        // The delivery task alone settles the outcome (it gives up on the
        // ack after `timeout`). A second timer here would race it: a task
        // polled late could see a redelivery's ack before its own timer and
        // report a dropped ack as acked.
        let result = match first_rx.await {
            Ok(Ok(payload)) => Ok((200, payload.map(|p| p.to_string()).unwrap_or_default())),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(not_acked(&envelope_id, timeout)),
        };
        let elapsed_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        let at_ms = u64::try_from(t0.duration_since(started).as_millis()).unwrap_or(u64::MAX);
        self.lock().interact.record_act(ActRecord {
            kind: kind.to_owned(),
            path: format!("socket:{path}"),
            status: result.as_ref().ok().map(|(s, _)| *s),
            elapsed_ms,
            at_ms,
            error: result.as_ref().err().map(ToString::to_string),
        });
        Some(result.map(|(status, body)| (status, body, elapsed_ms)))
    }

    /// Sends an envelope and its redeliveries. Reports on `first` what the
    /// sender sees: the ack if it comes within `timeout` of the first send
    /// (a redelivery after a closed connection counts while that window is
    /// open), else [`ActError::NotAcked`], or a failure to send at all.
    async fn deliver_envelope(
        self,
        envelope_id: String,
        envelope: Envelope,
        timeout: Duration,
        first: oneshot::Sender<Result<Option<Value>, ActError>>,
    ) {
        let window_ends = Instant::now() + timeout;
        let mut first = Some(first);
        let mut retry_reason = envelope.retry_reason.clone();
        for n in 0..=MAX_REDELIVERIES {
            let text = json!({
                "envelope_id": envelope_id,
                "type": envelope.kind,
                "payload": envelope.payload,
                "accepts_response_payload": envelope.accepts_response_payload,
                "retry_attempt": envelope.retry_attempt + n,
                "retry_reason": retry_reason.as_deref().unwrap_or(""),
            })
            .to_string();
            let ack = match self.socket_send(&envelope_id, text, timeout).await {
                Ok(rx) => rx,
                Err(e) => {
                    if let Some(tx) = first.take() {
                        let _ = tx.send(Err(e));
                    }
                    break;
                }
            };
            if n > 0 {
                self.lock().socket.stats.redeliveries += 1;
            }
            match tokio::time::timeout(timeout, ack).await {
                Ok(Ok(AckOutcome::Acked(payload))) => {
                    if let Some(tx) = first.take() {
                        let _ = tx.send(Ok(payload));
                    }
                    return;
                }
                Ok(Ok(AckOutcome::ConnectionClosed)) | Ok(Err(_)) => {
                    retry_reason = Some("connection_closed".to_owned());
                    if Instant::now() >= window_ends
                        && let Some(tx) = first.take()
                    {
                        let _ = tx.send(Err(not_acked(&envelope_id, timeout)));
                    }
                }
                Err(_) => {
                    self.lock().socket.pending.remove(&envelope_id);
                    retry_reason = Some("timeout".to_owned());
                    if let Some(tx) = first.take() {
                        let _ = tx.send(Err(not_acked(&envelope_id, timeout)));
                    }
                }
            }
        }
        self.lock().socket.stats.undelivered += 1;
    }
}

/// No ack for `envelope_id` within `timeout` of its first send.
fn not_acked(envelope_id: &str, timeout: Duration) -> ActError {
    ActError::NotAcked {
        envelope_id: envelope_id.to_owned(),
        after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    }
}
