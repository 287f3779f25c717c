//! Live updates for the sandbox page: a version number that moves after
//! every request which can change the emulator, and `GET /api/_events`, a
//! Server-Sent Events stream that says when it moved (the page then
//! re-reads `GET /api/state`).
//!
//! Streams are bounded: at most [`MAX_WATCHERS`] at once (more answer 503),
//! a keep-alive comment every [`KEEP_ALIVE`] (which also notices a closed
//! tab), at most one event per [`MIN_EVENT_GAP`] however fast the emulator
//! changes, and a lifetime of [`MAX_STREAM_AGE`] (`EventSource` reconnects
//! by itself). [`Sandbox::close_live_updates`] ends every stream, so a
//! graceful shutdown does not wait for open pages.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Sandbox;

/// Event streams open at once; one per open page.
pub const MAX_WATCHERS: usize = 16;
/// Interval of the keep-alive comment on an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Least time between two events of one stream: a burst of changes (a
/// delivery run posting many cards) is one event.
pub const MIN_EVENT_GAP: Duration = Duration::from_millis(150);
/// Longest a stream stays open before the page reconnects.
pub const MAX_STREAM_AGE: Duration = Duration::from_secs(10 * 60);
/// Name of the event sent when the state changed (and once on connect).
pub const STATE_EVENT: &str = "state";

/// The version and the watchers of one sandbox.
#[derive(Debug)]
pub(super) struct Live {
    version: watch::Sender<u64>,
    closed: watch::Sender<bool>,
    watchers: AtomicUsize,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            version: watch::Sender::new(0),
            closed: watch::Sender::new(false),
            watchers: AtomicUsize::new(0),
        }
    }
}

impl Live {
    /// The emulator may have changed: wake every stream.
    pub(super) fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(super) fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// End every stream and refuse new ones.
    pub(super) fn close(&self) {
        self.closed.send_replace(true);
    }

    pub(super) fn watchers(&self) -> usize {
        self.watchers.load(Ordering::SeqCst)
    }

    /// A seat for one more stream, unless [`MAX_WATCHERS`] are taken.
    fn watch(self: &Arc<Live>) -> Option<Watcher> {
        self.watchers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_WATCHERS).then_some(n + 1)
            })
            .ok()?;
        Some(Watcher {
            version: self.version.subscribe(),
            closed: self.closed.subscribe(),
            live: self.clone(),
            ends: Instant::now() + MAX_STREAM_AGE,
            first: true,
        })
    }
}

/// One open stream; gives its seat back when the stream is dropped.
struct Watcher {
    live: Arc<Live>,
    version: watch::Receiver<u64>,
    closed: watch::Receiver<bool>,
    ends: Instant,
    first: bool,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.live.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Watcher {
    /// The next version to announce, or `None` when the stream ends.
    async fn next(&mut self) -> Option<u64> {
        if self.first {
            // A (re)connecting page may have missed changes: it reads the
            // state once right away.
            self.first = false;
            return Some(*self.version.borrow_and_update());
        }
        let Watcher {
            version,
            closed,
            ends,
            ..
        } = self;
        tokio::select! {
            _ = closed.wait_for(|c| *c) => None,
            _ = tokio::time::sleep_until(*ends) => None,
            changed = async {
                tokio::time::sleep(MIN_EVENT_GAP).await;
                version.changed().await
            } => changed.ok().map(|()| *version.borrow_and_update()),
        }
    }
}

fn state_event(version: u64) -> Event {
    Event::default()
        .event(STATE_EVENT)
        .data(json!({ "version": version }).to_string())
}

fn events(watcher: Watcher) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(watcher, |mut w| async move {
        let version = w.next().await?;
        Some((Ok(state_event(version)), w))
    })
}

/// `GET /api/_events`.
pub(super) async fn get_events(State(sb): State<Sandbox>) -> Response {
    let refuse = |why: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ok": false, "error": "unavailable", "detail": why})),
        )
            .into_response()
    };
    if *sb.live.closed.borrow() {
        return refuse("the sandbox is shutting down");
    }
    match sb.live.watch() {
        None => refuse(&format!(
            "at most {MAX_WATCHERS} live-update streams at once; close other sandbox pages"
        )),
        Some(watcher) => Sse::new(events(watcher))
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
            .into_response(),
    }
}

/// Layer of every route that can change the emulator: bumps the version
/// once the handler is done.
pub(super) async fn bump_after(State(sb): State<Sandbox>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    sb.live.bump();
    response
}

impl Sandbox {
    /// End every live-update stream of the page and refuse new ones (a
    /// server shutting down gracefully waits for open responses).
    pub fn close_live_updates(&self) {
        self.live.close();
    }

    /// How many times the emulator may have changed since it started.
    pub fn live_version(&self) -> u64 {
        self.live.version()
    }

    /// Sees [`Sandbox::live_version`] move once a request that may have
    /// changed the emulator (an API call, an act) was answered, so a test
    /// or a bench awaits `changed()` rather than polling the state.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.live.version.subscribe()
    }

    /// Live-update streams open now.
    pub fn live_watchers(&self) -> usize {
        self.live.watchers()
    }
}
