//! Delivery: the only code that calls Slack's Web API.
//!
//! One worker per channel drains that channel's outbox in order. The policy
//! is composed of separate pieces:
//! - **pacing**: a [`Pacer`] per channel for `chat.postMessage` (cards and
//!   replies) and one shared pacer for `chat.update` (a per-workspace tier);
//!   a 429 pauses the pacer of its scope for `Retry-After`;
//! - **retry**: [`crate::slack::api::SlackError::retry`] alone decides
//!   whether an answer is retryable; retryable failures back off
//!   exponentially with jitter ([`backoff`]) up to `max_attempts`, then
//!   become dead letters;
//! - **rendering at send time**: a card is rendered from the store when its
//!   operation is sent, so coalesced updates always carry the latest state;
//!   a digest carries the figures counted when it was claimed;
//! - **reconciliation**: a card post or digest whose outcome is unknown
//!   (timeout, dropped connection, crash after sending) is looked up in the
//!   channel's history by its message metadata before it is posted again, no
//!   sooner than one request timeout after the failed call, so that a call
//!   Slack applies late (within twice the timeout of its sending) is found,
//!   not duplicated;
//! - **one sender per channel**: a worker sends only while it holds its
//!   channel's lease in the store (`ChannelLease`), so several replicas on
//!   one database never send a channel's operations twice. It takes the
//!   lease in the same commit as the first operation it hands out (so a new
//!   card on an idle channel waits for one commit, not two), renews it with
//!   any hand-out whose call could outlive it, and gives it up when the
//!   channel is idle or on shutdown; a crashed holder's lease expires after
//!   `delivery.lease_ttl` and another replica takes over (recovering what
//!   the dead one left in flight).
//! - **one `chat.update` in flight**: updates share one workspace-wide
//!   scope, so they go out one at a time across channels; a 429 then
//!   pauses the scope before any other update of it has left.
//! - **incoming-webhook routes**: a channel whose route has a `webhook_url`
//!   is delivered by POSTs to that webhook (`send_to_webhook`): every op
//!   through the channel's pacer at most one per second, the card's post
//!   and each coalesced update as one new message without buttons, replies
//!   skipped (no thread; the change message shows the card's state). No
//!   history to reconcile with: a post of unknown outcome is sent again.
//! - **one token per workspace**: each operation goes out with the bot
//!   token of its route's workspace ([`Workspaces::for_route`]; digests,
//!   which have no route, with the default one); an operation whose
//!   workspace is not installed (never, or uninstalled) is dead-lettered
//!   with a message saying so, never retried in a loop; one refused for a
//!   dead token is retried once at once if another replica stored a new
//!   install meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::counter;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::{CardConfig, DeliveryConfig};
use crate::metrics as m;
use crate::model::{CardId, CardView};
use crate::pipeline::route::Router;
use crate::slack::api::{HistoryRequest, Retry, SlackClient, SlackError, methods};
use crate::slack::workspaces::Workspaces;
use crate::slack::{cards, incoming, template};
use crate::store::{Completion, Lease, NextOp, OpKind, OutboxOp, Store, StoreError};

/// How far back before a card opened to look for it in history.
const RECONCILE_LOOKBACK: chrono::Duration = chrono::Duration::minutes(5);
/// History pages read while reconciling (200 messages each).
const RECONCILE_PAGES: usize = 5;
/// How often the supervisor sweeps the store for channels with work, in case
/// a wake-up was missed (for example work left by a previous process).
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Pause after a store error before a worker tries again.
const STORE_RETRY: Duration = Duration::from_millis(500);
/// Longest wait before asking again for a lease another replica holds: its
/// holder gives it up early when the channel goes idle.
const LEASE_POLL: Duration = Duration::from_secs(1);
/// Slack accepts about one message per second per incoming webhook.
const WEBHOOK_INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket in GCRA form: `burst` calls back to back, then one per
/// `interval`.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    burst: u32,
    /// Theoretical arrival time: when the bucket would be full again.
    tat: Instant,
    paused_until: Option<Instant>,
}

impl Pacer {
    pub fn new(interval: Duration, burst: u32, now: Instant) -> Pacer {
        Pacer {
            interval,
            burst: burst.max(1),
            tat: now,
            paused_until: None,
        }
    }

    /// Reserves a slot and returns how long to wait before using it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let start = self.paused_until.filter(|p| *p > now).unwrap_or(now);
        let tolerance = self.interval * (self.burst - 1);
        let allowed = self.tat.checked_sub(tolerance).unwrap_or(start);
        let at = allowed.max(start);
        self.tat = self.tat.max(at) + self.interval;
        at.saturating_duration_since(now)
    }

    /// Slack said 429: nothing goes out in this scope before `until`.
    pub fn pause(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
    }
}

/// [`crate::backoff::jittered`] with the delivery config's base and cap.
pub fn backoff(config: &DeliveryConfig, attempt: u32) -> Duration {
    crate::backoff::jittered(config.backoff_base, config.backoff_max, attempt)
}

struct Worker {
    notify: Arc<Notify>,
    handle: JoinHandle<()>,
}

struct Inner {
    store: Arc<dyn Store>,
    workspaces: Workspaces,
    router: Arc<Router>,
    config: DeliveryConfig,
    /// This process's name on channel leases: unique per start, so a
    /// restarted process does not mistake its predecessor's lease for its
    /// own (and takes it over, with recovery, only once it has expired).
    holder: String,
    workers: Mutex<HashMap<String, Worker>>,
    update_pacer: Mutex<Pacer>,
    /// `chat.update` is one rate-limit scope for every channel's worker:
    /// one update at a time is in flight, so a 429 pauses the scope before
    /// any other update of it leaves (none is already on its way).
    update_turn: tokio::sync::Mutex<()>,
    /// `Some(deadline)` once draining for shutdown.
    draining: watch::Sender<Option<Instant>>,
}

/// Handle to the delivery workers. Cheap to clone.
#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

impl Deliverer {
    /// Starts the supervisor, which starts a worker for every channel with
    /// work. Operations a previous process left in flight are recovered by
    /// whichever worker takes their channel's lease next.
    pub fn start(
        store: Arc<dyn Store>,
        workspaces: Workspaces,
        router: Arc<Router>,
        config: DeliveryConfig,
    ) -> (Deliverer, JoinHandle<()>) {
        let now = Instant::now();
        let inner = Arc::new(Inner {
            update_pacer: Mutex::new(Pacer::new(config.update_interval, config.update_burst, now)),
            update_turn: tokio::sync::Mutex::new(()),
            store,
            workspaces,
            router,
            config,
            holder: format!("{}-{:016x}", std::process::id(), fastrand::u64(..)),
            workers: Mutex::new(HashMap::new()),
            draining: watch::channel(None).0,
        });
        let deliverer = Deliverer { inner };
        let supervisor = tokio::spawn(deliverer.clone().supervise());
        (deliverer, supervisor)
    }

    /// New work for `channel` was committed: make sure its worker runs.
    pub fn wake(&self, channel: &str) {
        let mut workers = lock(&self.inner.workers);
        if let Some(w) = workers.get(channel)
            && !w.handle.is_finished()
        {
            w.notify.notify_one();
            return;
        }
        if self.inner.draining.borrow().is_some() {
            return;
        }
        let notify = Arc::new(Notify::new());
        let handle = tokio::spawn(run_channel(
            self.inner.clone(),
            channel.to_owned(),
            notify.clone(),
        ));
        workers.insert(channel.to_owned(), Worker { notify, handle });
    }

    async fn supervise(self) {
        let mut draining = self.inner.draining.subscribe();
        loop {
            match self.inner.store.pending_channels().await {
                Ok(channels) => channels.iter().for_each(|c| self.wake(c)),
                Err(e) => warn!(error = %e, "cannot list channels with pending Slack operations"),
            }
            match self.inner.store.outbox_summary().await {
                Ok(summary) => m::outbox_gauges(summary),
                Err(e) => debug!(error = %e, "cannot read outbox summary"),
            }
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
                _ = draining.changed() => return,
            }
        }
    }

    /// Keeps delivering until nothing is due or `deadline` passes, then stops
    /// every worker. What is left stays in the store for the next start.
    pub async fn drain(&self, deadline: Duration) {
        let until = Instant::now() + deadline;
        self.inner.draining.send_replace(Some(until));
        let workers: Vec<Worker> = lock(&self.inner.workers).drain().map(|(_, w)| w).collect();
        for w in &workers {
            w.notify.notify_one();
        }
        for w in workers {
            let abort = w.handle.abort_handle();
            if tokio::time::timeout_at(until, w.handle).await.is_err() {
                abort.abort();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A worker's hold on its channel's lease.
///
/// The lease is taken when there is something to do: together with the
/// first operation it hands out ([`ChannelLease::begin`], one store commit),
/// or alone when the channel has nothing due (so that what a dead holder
/// left in flight is recovered). It is renewed with a hand-out that would
/// otherwise outlive it, and given up when the channel is idle.
struct ChannelLease<'a> {
    inner: &'a Inner,
    channel: &'a str,
    /// Until when this worker holds the lease, as far as it knows.
    until: Option<DateTime<Utc>>,
    /// Until when another holder has it, as last seen.
    busy_until: Option<DateTime<Utc>>,
}

/// What [`ChannelLease::begin`] got.
enum Handout {
    /// Handed out to this worker, under the lease: send it.
    Begun(OutboxOp),
    /// No longer pending (sent, or taken by another sender).
    Gone,
    /// Another holder delivers the channel.
    Busy,
}

impl ChannelLease<'_> {
    fn held(&self) -> bool {
        self.until.is_some_and(|until| until > Utc::now())
    }

    /// Takes or renews the lease; afterwards [`ChannelLease::held`] or
    /// `busy_until` says who has it.
    async fn renew(&mut self) -> Result<(), StoreError> {
        let ttl = self.inner.config.lease_ttl;
        let answer = self
            .inner
            .store
            .acquire_lease(self.channel, &self.inner.holder, ttl, Utc::now())
            .await;
        self.note(answer.map(|lease| (lease, ()))).map(|_| ())
    }

    /// Hands operation `op_id` out under the lease, for a Slack call that
    /// may take up to `call`. While more than that is left of the lease the
    /// hand-out is the only store write; otherwise the lease is taken or
    /// renewed in the same commit.
    async fn begin(&mut self, op_id: i64, call: Duration) -> Result<Handout, StoreError> {
        let store = &self.inner.store;
        let call = chrono::Duration::from_std(call).unwrap_or(chrono::Duration::MAX);
        let op = match self.until {
            Some(until) if until - Utc::now() > call => {
                store.begin_attempt(op_id, Utc::now()).await?
            }
            _ => {
                let ttl = self.inner.config.lease_ttl;
                let answer = store
                    .begin_attempt_leased(op_id, self.channel, &self.inner.holder, ttl, Utc::now())
                    .await;
                match self.note(answer)? {
                    Some(op) => op,
                    None => return Ok(Handout::Busy),
                }
            }
        };
        Ok(op.map_or(Handout::Gone, Handout::Begun))
    }

    /// Records what the store said about the lease; `Ok(None)` when another
    /// holder has it.
    fn note<T>(&mut self, answer: Result<(Lease, T), StoreError>) -> Result<Option<T>, StoreError> {
        let (lease, rest) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                self.until = None;
                return Err(e);
            }
        };
        match lease {
            Lease::Held { until, recovered } => {
                if recovered > 0 {
                    info!(
                        channel = self.channel,
                        recovered,
                        "took over a channel: operations its previous sender left in flight will be retried (posts reconciled first)"
                    );
                }
                self.until = Some(until);
                self.busy_until = None;
                Ok(Some(rest))
            }
            Lease::Busy { holder, until } => {
                debug!(channel = self.channel, holder, %until, "another replica delivers this channel");
                self.until = None;
                self.busy_until = Some(until);
                Ok(None)
            }
        }
    }

    /// Gives the lease up so another replica can take the channel at once.
    async fn release(&mut self) {
        if self.until.take().is_none() {
            return;
        }
        if let Err(e) = self
            .inner
            .store
            .release_lease(self.channel, &self.inner.holder)
            .await
        {
            // It expires by itself.
            debug!(channel = self.channel, error = %e, "cannot release a channel lease");
        }
    }
}

async fn run_channel(inner: Arc<Inner>, channel: String, notify: Arc<Notify>) {
    let mut lease = ChannelLease {
        inner: &inner,
        channel: &channel,
        until: None,
        busy_until: None,
    };
    drain_channel(&inner, &channel, &notify, &mut lease).await;
    lease.release().await;
}

/// Delivers `channel`'s operations while this worker holds its lease, until
/// shutdown.
async fn drain_channel(
    inner: &Inner,
    channel: &str,
    notify: &Notify,
    lease: &mut ChannelLease<'_>,
) {
    let mut pacer = match webhook_of(&inner.router, channel) {
        // One webhook per channel (config validation): pacing the channel
        // paces its webhook.
        Some(_) => Pacer::new(
            inner.config.post_interval.max(WEBHOOK_INTERVAL),
            1,
            Instant::now(),
        ),
        None => Pacer::new(
            inner.config.post_interval,
            inner.config.post_burst,
            Instant::now(),
        ),
    };
    let mut draining = inner.draining.subscribe();
    loop {
        let deadline = *draining.borrow_and_update();
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        if let Some(busy_until) = lease.busy_until.take() {
            // Shutting down: the channel is in other hands already.
            if deadline.is_some() {
                return;
            }
            let wait = (busy_until - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait.min(LEASE_POLL)) => {}
                _ = draining.changed() => {}
            }
        }
        match inner.store.next_op(channel, Utc::now()).await {
            Ok(NextOp::Ready(op)) => {
                process(inner, &mut pacer, lease, op).await;
            }
            Ok(NextOp::WaitUntil(_) | NextOp::Idle) if !lease.held() => {
                // Nothing due, but a holder that died may have left
                // operations in flight, which only taking the lease
                // recovers: take it, then look again.
                take_lease(lease).await;
            }
            Ok(NextOp::WaitUntil(at)) => {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                let wake_at = Instant::now() + wait;
                if deadline.is_some_and(|d| wake_at > d) {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(wake_at) => {}
                    _ = notify.notified() => {}
                    _ = draining.changed() => {}
                }
            }
            Ok(NextOp::Idle) => {
                lease.release().await;
                if deadline.is_some() {
                    return;
                }
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = draining.changed() => {}
                }
            }
            Err(e) => {
                m::store_error();
                warn!(channel, error = %e, "cannot read the outbox; retrying");
                tokio::time::sleep(STORE_RETRY).await;
            }
        }
    }
}

/// Takes the lease; true when this worker holds it. A store error is
/// counted, logged and waited out (false).
async fn take_lease(lease: &mut ChannelLease<'_>) -> bool {
    if let Err(e) = lease.renew().await {
        m::store_error();
        warn!(channel = lease.channel, error = %e, "cannot take the channel's delivery lease; retrying");
        tokio::time::sleep(STORE_RETRY).await;
    }
    lease.held()
}

fn method(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Post | OpKind::Reply | OpKind::Dm | OpKind::Digest => "chat.postMessage",
        OpKind::Update => "chat.update",
    }
}

fn card_config<'a>(router: &'a Router, view: &CardView) -> Option<&'a CardConfig> {
    router.by_name(&view.route).map(|r| &r.card)
}

async fn load_view(inner: &Inner, card: &CardId) -> Result<Option<CardView>, StoreError> {
    card_view_to_send(&*inner.store, &inner.router, card).await
}

/// The card as delivery renders it: its route's card settings applied
/// (`ackbar preview` renders through this too).
pub async fn card_view_to_send(
    store: &dyn Store,
    router: &Router,
    card: &CardId,
) -> Result<Option<CardView>, StoreError> {
    // The route may have been renamed since the card opened; fall back to
    // the defaults then.
    let max = router
        .routes()
        .iter()
        .map(|r| r.card.max_alerts)
        .max()
        .unwrap_or(10);
    let Some(mut view) = store.card_view(card, max).await? else {
        return Ok(None);
    };
    let config = card_config(router, &view).cloned().unwrap_or_default();
    view.alerts.truncate(config.max_alerts as usize);
    view.key_labels = config.key_labels;
    Ok(Some(view))
}

/// The workspace (`routes[].team`) an operation goes to: its card's
/// route's; `None` (the default workspace) for a digest, a route naming
/// none, or one gone from the config.
fn op_team<'a>(inner: &'a Inner, op: &OutboxOp) -> Option<&'a str> {
    let route = op.card_route.as_deref()?;
    inner.router.by_name(route)?.team.as_deref()
}

/// The client of `team`'s workspace, or how the attempt ends without one:
/// dead when the workspace is not installed, retried when the store is
/// unreachable.
async fn workspace_client(inner: &Inner, team: Option<&str>) -> Result<SlackClient, Completion> {
    inner.workspaces.for_route(team).await.map_err(|e| {
        if e.is_transient() {
            m::store_error();
            warn!(error = %e, "cannot read the workspace's token; retrying");
            Completion::Retry {
                not_before: Utc::now()
                    + chrono::Duration::from_std(STORE_RETRY).unwrap_or_default(),
                error: e.to_string(),
                counts: false,
                outcome_unknown: false,
            }
        } else {
            warn!(team, error = %e, "no bot token for the operation's workspace; dead-lettered");
            Completion::Dead {
                error: e.to_string(),
            }
        }
    })
}

async fn process(inner: &Inner, pacer: &mut Pacer, lease: &mut ChannelLease<'_>, op: OutboxOp) {
    let hook = webhook_of(&inner.router, &op.channel);
    // A webhook channel has no thread to reply in: the update that comes
    // with the same change shows it.
    let skip = hook.is_some() && op.kind == OpKind::Reply;
    let team = op_team(inner, &op);
    let slack = match hook {
        // The webhook URL is the credential: no workspace token needed.
        Some(_) => inner.workspaces.template().clone(),
        None => match workspace_client(inner, team).await {
            Ok(slack) => slack,
            Err(completion) => {
                record(inner, &op, completion).await;
                return;
            }
        },
    };
    if op.reconcile && hook.is_none() {
        // Adopting a found message completes the operation without handing
        // it out: only the lease's holder may.
        if !lease.held() && !take_lease(lease).await {
            return;
        }
        match find_posted(&slack, &op).await {
            Ok(Some(ts)) => {
                counter!(m::SLACK_RECONCILED).increment(1);
                info!(kind = op.kind.as_str(), card = ?op.card, ts, "message found in channel history; adopting it instead of posting again");
                let completion = match op.kind {
                    OpKind::Post => Completion::Posted { ts, refresh: true },
                    _ => Completion::Done,
                };
                record(inner, &op, completion).await;
                return;
            }
            Ok(None) => {}
            Err(e) => {
                let completion = failure(inner, &op, &e, "conversations.history", pacer, team);
                record(inner, &op, completion).await;
                return;
            }
        }
    }

    // Held until this update's answer paused the scope or not.
    let _update_turn = match (op.kind, hook) {
        (OpKind::Update, None) if !skip => Some(inner.update_turn.lock().await),
        _ => None,
    };
    let wait = match op.kind {
        _ if skip => Duration::ZERO,
        _ if hook.is_some() => pacer.reserve(Instant::now()),
        OpKind::Post | OpKind::Reply | OpKind::Dm | OpKind::Digest => pacer.reserve(Instant::now()),
        OpKind::Update => lock(&inner.update_pacer).reserve(Instant::now()),
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }

    // Mark the operation `sending` before reading the card: a change
    // committed after this point sees no pending post or update to coalesce
    // into and enqueues its own update, so no change is rendered stale. The
    // pacer may have waited long (a 429's Retry-After): the lease must
    // outlast the call (`lease_ttl` > `slack.request_timeout`).
    let call = inner.workspaces.template().request_timeout();
    let op = match lease.begin(op.id, call).await {
        Ok(Handout::Begun(op)) => op,
        Ok(Handout::Gone) => {
            debug!(op = op.id, "operation already handed out; skipping");
            return;
        }
        Ok(Handout::Busy) => return, // another replica took the channel over
        Err(e) => {
            m::store_error();
            warn!(error = %e, "cannot record delivery attempt; retrying");
            tokio::time::sleep(STORE_RETRY).await;
            return;
        }
    };
    if skip {
        debug!(
            op = op.id,
            "reply on a webhook channel: shown by the card's change message"
        );
        record(inner, &op, Completion::Done).await;
        return;
    }
    let method = match hook {
        Some(_) => methods::INCOMING_WEBHOOK,
        None => method(op.kind),
    };
    let result = if op.kind == OpKind::Digest {
        send_digest(&slack, &op, hook).await
    } else {
        let Some(view) = view_to_send(inner, &op).await else {
            return;
        };
        match hook {
            Some(url) => send_to_webhook(inner, &slack, &op, &view, url).await,
            None => send_card_op(inner, &slack, &op, &view).await,
        }
    };
    let completion = match result {
        Ok(c) => {
            m::slack_call(method, "ok");
            if let (Completion::Posted { .. }, Some(opened)) = (&c, op.card_opened_at) {
                m::card_posted((Utc::now() - opened).to_std().unwrap_or_default());
            }
            c
        }
        Err(e) if hook.is_none() && inner.workspaces.token_replaced(team, &slack, &e).await => {
            // Another replica stored a new install while this one still
            // had the old token cached: try again with the new one.
            m::slack_call(method, "retry");
            info!(team, error = %e, "the workspace's token was replaced; retrying with the new one");
            Completion::Retry {
                not_before: Utc::now(),
                error: e.to_string(),
                counts: true,
                outcome_unknown: false,
            }
        }
        Err(e) => failure(inner, &op, &e, method, pacer, team),
    };
    record(inner, &op, completion).await;
}

/// The card an operation renders, loaded at send time; `None` when there is
/// nothing to send now (the outcome is already recorded).
async fn view_to_send(inner: &Inner, op: &OutboxOp) -> Option<CardView> {
    let Some(card) = &op.card else {
        let error = format!("{} operation without a card", op.kind.as_str());
        record(inner, op, Completion::Dead { error }).await;
        return None;
    };
    match load_view(inner, card).await {
        Ok(Some(view)) => Some(view),
        Ok(None) => {
            let error = format!("card {card} is not in the store");
            record(inner, op, Completion::Dead { error }).await;
            None
        }
        Err(e) => {
            m::store_error();
            warn!(error = %e, "cannot load card for delivery; retrying");
            let completion = Completion::Retry {
                not_before: Utc::now()
                    + chrono::Duration::from_std(STORE_RETRY).unwrap_or_default(),
                error: e.to_string(),
                counts: false,
                outcome_unknown: false,
            };
            record(inner, op, completion).await;
            None
        }
    }
}

/// Sends a card's post, update, reply or direct message.
async fn send_card_op(
    inner: &Inner,
    slack: &SlackClient,
    op: &OutboxOp,
    view: &CardView,
) -> Result<Completion, SlackError> {
    let now = Utc::now();
    // The route's templates (or the default card and replies) render it.
    let route = inner.router.by_name(&view.route);
    match op.kind {
        OpKind::Post => slack
            .post_message(&op.channel, &template::card(view, now, route), None)
            .await
            .map(|posted| Completion::Posted {
                ts: posted.ts,
                refresh: false,
            }),
        OpKind::Update => match &op.card_ts {
            Some(ts) => slack
                .update_message(&op.channel, ts, &template::card(view, now, route))
                .await
                .map(|()| Completion::Done),
            None => Ok(Completion::Dead {
                error: "update of a card that has no ts".to_owned(),
            }),
        },
        OpKind::Reply => match &op.card_ts {
            Some(ts) => slack
                .post_message(
                    &op.channel,
                    &template::reply(view, &op.events, now, route),
                    Some(ts),
                )
                .await
                .map(|_| Completion::Done),
            None => Ok(Completion::Dead {
                error: "reply to a card that has no ts".to_owned(),
            }),
        },
        OpKind::Dm => match (&op.card_ts, &op.recipient) {
            (Some(ts), Some(user)) => direct_message(slack, view, ts, user, &op.events, now)
                .await
                .map(|()| Completion::Done),
            _ => Ok(Completion::Dead {
                error: "direct message without a card ts or a user".to_owned(),
            }),
        },
        OpKind::Digest => Ok(Completion::Dead {
            error: "a digest is not about a card".to_owned(),
        }),
    }
}

/// The incoming webhook that delivers `channel`, if a route has one.
fn webhook_of<'a>(router: &'a Router, channel: &str) -> Option<&'a str> {
    router
        .routes()
        .iter()
        .filter(|r| r.channel == channel)
        .find_map(|r| r.webhook_url.as_ref())
        .map(|url| url.expose())
}

/// Sends a card's operation through the channel's incoming webhook: the
/// post and each (coalesced) update become one new message showing the
/// card's current state, without buttons. The card's `ts` records that it
/// was posted (webhooks return none).
async fn send_to_webhook(
    inner: &Inner,
    slack: &SlackClient,
    op: &OutboxOp,
    view: &CardView,
    url: &str,
) -> Result<Completion, SlackError> {
    let route = inner.router.by_name(&view.route);
    let message = || incoming::webhook_message(template::card(view, Utc::now(), route));
    match op.kind {
        OpKind::Post => slack
            .post_incoming_webhook(url, &message())
            .await
            .map(|()| Completion::Posted {
                ts: format!("webhook-{}", view.id.0),
                refresh: false,
            }),
        OpKind::Update => slack
            .post_incoming_webhook(url, &message())
            .await
            .map(|()| Completion::Done),
        // Config validation refuses `dm` on webhook routes; replies are
        // skipped before sending.
        OpKind::Dm | OpKind::Reply | OpKind::Digest => Ok(Completion::Dead {
            error: format!(
                "a {} cannot go through an incoming webhook",
                op.kind.as_str()
            ),
        }),
    }
}

/// Posts a digest. Its firing cards link to their messages where Slack
/// gives a permalink; one it does not (a deleted message, a hiccup) is
/// listed by name rather than holding the digest back. The message carries
/// metadata by which a post of unknown outcome is found again
/// ([`find_posted`]).
async fn send_digest(
    slack: &SlackClient,
    op: &OutboxOp,
    hook: Option<&str>,
) -> Result<Completion, SlackError> {
    let Some(digest) = &op.digest else {
        return Ok(Completion::Dead {
            error: "digest operation without its digest".to_owned(),
        });
    };
    if let Some(url) = hook {
        // No bot token to ask for permalinks: cards are listed by name.
        let permalinks = vec![None; digest.figures.oldest_firing.len()];
        let message = crate::slack::digest::render_digest(digest, &permalinks);
        return slack
            .post_incoming_webhook(url, &incoming::webhook_message(message))
            .await
            .map(|()| Completion::Done);
    }
    let mut permalinks = Vec::with_capacity(digest.figures.oldest_firing.len());
    for card in &digest.figures.oldest_firing {
        let permalink = match &card.ts {
            Some(ts) => match slack.get_permalink(&op.channel, ts).await {
                Ok(link) => Some(link),
                Err(e) => {
                    debug!(card = %card.id, error = %e, "no permalink for a digest's firing card");
                    None
                }
            },
            None => None,
        };
        permalinks.push(permalink);
    }
    slack
        .post_message(
            &op.channel,
            &crate::slack::digest::render_digest(digest, &permalinks),
            None,
        )
        .await
        .map(|_| Completion::Done)
}

/// Sends `user` a direct message linking to the card. At least once: a
/// failure after the post (rare) sends it again.
async fn direct_message(
    slack: &SlackClient,
    view: &CardView,
    card_ts: &str,
    user: &str,
    events: &[crate::model::ThreadEvent],
    now: DateTime<Utc>,
) -> Result<(), SlackError> {
    let permalink = slack.get_permalink(&view.channel, card_ts).await?;
    let dm_channel = slack.conversations_open(&[user]).await?;
    let message = cards::render_dm(view, events, &permalink, now);
    slack
        .post_message(&dm_channel, &message, None)
        .await
        .map(|_| ())
}

/// Turns a failed call into the next step for its operation. A token
/// Slack no longer accepts is dropped from the cache, so the next operation
/// of `team` reads its installation again.
fn failure(
    inner: &Inner,
    op: &OutboxOp,
    e: &SlackError,
    method: &'static str,
    pacer: &mut Pacer,
    team: Option<&str>,
) -> Completion {
    inner.workspaces.forget_if_dead(team, e);
    let now = Utc::now();
    match e.retry() {
        Retry::After(delay) => {
            m::slack_call(method, "ratelimited");
            counter!(m::SLACK_RATELIMITED, "method" => method).increment(1);
            let until = Instant::now() + delay;
            match method {
                "chat.update" => lock(&inner.update_pacer).pause(until),
                _ => pacer.pause(until),
            }
            debug!(
                channel = op.channel,
                method,
                ?delay,
                "rate limited by Slack; pausing this scope"
            );
            Completion::Retry {
                not_before: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                error: e.to_string(),
                counts: false,
                outcome_unknown: false,
            }
        }
        Retry::Backoff if op.attempts + 1 < inner.config.max_attempts => {
            m::slack_call(method, "retry");
            let mut delay = backoff(&inner.config, op.attempts + 1);
            if matches!(op.kind, OpKind::Post | OpKind::Digest) && e.outcome_unknown() {
                // A call that outlived the client's timeout may still be
                // applied by Slack a little later. Reconciling at once
                // would miss such a card and post it again; waiting another
                // timeout's length finds every post Slack applies within
                // twice the timeout of its sending.
                delay = delay.max(inner.workspaces.template().request_timeout());
            }
            warn!(channel = op.channel, method, error = %e, attempt = op.attempts + 1, ?delay, "Slack call failed; retrying");
            Completion::Retry {
                not_before: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                error: e.to_string(),
                counts: true,
                outcome_unknown: e.outcome_unknown(),
            }
        }
        Retry::Backoff | Retry::Never => {
            m::slack_call(method, "error");
            warn!(channel = op.channel, method, error = %e, card = ?op.card, "Slack operation failed permanently; dead-lettered");
            Completion::Dead {
                error: inner.workspaces.explain(team, e),
            }
        }
    }
}

/// Records the completion; a store that is down is retried until it answers
/// or delivery drains (the operation then stays `sending` and is recovered
/// at the next start).
async fn record(inner: &Inner, op: &OutboxOp, completion: Completion) {
    match &completion {
        Completion::Posted { .. } | Completion::Done => {
            counter!(m::OUTBOX_POPPED, "kind" => op.kind.as_str()).increment(1);
        }
        Completion::Dead { .. } => {
            counter!(m::OUTBOX_DEAD_LETTERS, "kind" => op.kind.as_str()).increment(1);
        }
        Completion::Retry { .. } => {}
    }
    let draining = inner.draining.subscribe();
    loop {
        match inner
            .store
            .complete(op, completion.clone(), Utc::now())
            .await
        {
            Ok(()) => return,
            Err(e) => {
                m::store_error();
                warn!(error = %e, op = op.id, "cannot record a delivery outcome; retrying");
                if draining.borrow().is_some_and(|d| Instant::now() >= d) {
                    return;
                }
                tokio::time::sleep(STORE_RETRY).await;
            }
        }
    }
}

/// How a message that may already be posted is found in its channel's
/// history: posted after `since`, with message metadata of `event_type`
/// whose payload has every key of `payload`.
struct PostedMarker {
    since: DateTime<Utc>,
    event_type: &'static str,
    payload: serde_json::Map<String, serde_json::Value>,
}

/// The marker of a card's post or a digest; `None` for operations that are
/// not reconciled (they are at least once).
fn posted_marker(op: &OutboxOp) -> Option<PostedMarker> {
    match op.kind {
        OpKind::Post => {
            let card = op.card.as_ref()?;
            Some(PostedMarker {
                since: op.card_opened_at?,
                event_type: cards::METADATA_EVENT_TYPE,
                payload: [("card_id".to_owned(), card.0.clone().into())]
                    .into_iter()
                    .collect(),
            })
        }
        OpKind::Digest => {
            let digest = op.digest.as_ref()?;
            Some(PostedMarker {
                // Posted only after it was counted.
                since: digest.as_of,
                event_type: crate::slack::digest::METADATA_EVENT_TYPE,
                payload: match crate::slack::digest::metadata_payload(digest) {
                    serde_json::Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                },
            })
        }
        OpKind::Update | OpKind::Reply | OpKind::Dm => None,
    }
}

/// Looks for the operation's message in the channel's recent history by its
/// metadata.
async fn find_posted(slack: &SlackClient, op: &OutboxOp) -> Result<Option<String>, SlackError> {
    let Some(marker) = posted_marker(op) else {
        return Ok(None);
    };
    let oldest = marker.since - RECONCILE_LOOKBACK;
    let mut cursor = None;
    for _ in 0..RECONCILE_PAGES {
        let page = slack
            .conversations_history(&HistoryRequest {
                channel: op.channel.clone(),
                oldest: Some(slack_ts(oldest)),
                limit: 200,
                cursor: cursor.take(),
            })
            .await?;
        m::slack_call("conversations.history", "ok");
        let found = page.messages.into_iter().find(|msg| {
            msg.metadata.as_ref().is_some_and(|meta| {
                meta.event_type == marker.event_type
                    && marker
                        .payload
                        .iter()
                        .all(|(k, v)| meta.event_payload.get(k) == Some(v))
            })
        });
        if let Some(msg) = found {
            return Ok(Some(msg.ts));
        }
        match page.next_cursor {
            Some(next) if !next.is_empty() => cursor = Some(next),
            _ => break,
        }
    }
    Ok(None)
}

/// A Slack timestamp (`seconds.micros`) for an instant.
fn slack_ts(t: DateTime<Utc>) -> String {
    format!("{}.{:06}", t.timestamp(), t.timestamp_subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pacer_allows_a_burst_then_one_per_interval() {
        let now = Instant::now();
        let mut p = Pacer::new(Duration::from_secs(1), 3, now);
        let waits: Vec<_> = (0..5).map(|_| p.reserve(now)).collect();
        assert_eq!(
            waits,
            [0, 0, 0, 1, 2].map(Duration::from_secs).to_vec(),
            "three at once, then one per second"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_refills_after_idle_time() {
        let now = Instant::now();
        let mut p = Pacer::new(Duration::from_secs(1), 2, now);
        p.reserve(now);
        p.reserve(now);
        let later = now + Duration::from_secs(10);
        assert_eq!(p.reserve(later), Duration::ZERO);
        assert_eq!(p.reserve(later), Duration::ZERO);
        assert_eq!(p.reserve(later), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_holds_every_call_until_retry_after() {
        let now = Instant::now();
        let mut p = Pacer::new(Duration::from_millis(100), 5, now);
        p.pause(now + Duration::from_secs(3));
        assert_eq!(p.reserve(now), Duration::from_secs(3));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let config = DeliveryConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            ..DeliveryConfig::default()
        };
        for attempt in 1..30 {
            let d = backoff(&config, attempt);
            let cap = Duration::from_millis(100 * (1u64 << (attempt - 1).min(20)))
                .min(Duration::from_secs(2));
            assert!(
                d <= cap && d >= cap / 2,
                "attempt {attempt}: {d:?} vs {cap:?}"
            );
        }
    }

    #[test]
    fn slack_ts_has_six_decimal_places() {
        let t = DateTime::from_timestamp(1_700_000_000, 5_000).unwrap();
        assert_eq!(slack_ts(t), "1700000000.000005");
    }
}
