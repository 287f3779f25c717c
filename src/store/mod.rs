//! Durable state: cards, their alerts, and the outbox of Slack operations.
//!
//! # Invariants
//!
//! 1. **One transaction per change.** A card's state, its alerts and every
//!    Slack operation the change causes are written in one transaction
//!    ([`Store::apply`]). Either all of it is durable or none of it is; the
//!    HTTP request that caused it is answered 2xx only after the commit.
//! 2. **One card per key at a time.** The latest card of a key (highest
//!    `seq`) is the only one a notification can change; a new card for the
//!    key is created only by the state machine ([`crate::pipeline::card`]).
//! 3. **At most one `post` operation per card, ever.** A card is posted once;
//!    its `ts`, once known, never changes.
//! 4. **Coalescing.** A card has at most one *pending* `update` operation
//!    (updates render the latest state at send time, so one is enough) and
//!    none while its `post` is still pending (the post will show the latest
//!    state). It has at most one pending `reply` operation, to which new
//!    thread events are appended until it is sent. Both wait for the reply
//!    batching window when alerts caused them, so a storm's changes of a
//!    card become one update and one reply; an action's update is due at
//!    once and brings a pending update of its card forward.
//! 5. **Ordering.** `update` and `reply` operations of a card are not handed
//!    out before the card has a `ts`. If the card's post is dead-lettered, its
//!    other operations are dead-lettered with it, never left waiting.
//! 6. **Nothing is dropped silently.** An operation leaves the outbox only by
//!    succeeding (its row is deleted, with its thread events) or by becoming
//!    a dead letter (kept, counted, listable).
//! 7. **Actions apply once.** An action from Slack or a timer ([`Store::act`])
//!    is applied only if the card is in the state it was decided for (an
//!    acknowledgement needs an unacknowledged firing card; an escalation step
//!    names the level it climbs from), in the same transaction as its card
//!    update and thread reply. Double clicks, redelivered requests, racing
//!    timers and replicas therefore change state once.
//! 8. **Timers are rows.** A card's next escalation step is
//!    `next_escalation_at`, set when the card opens, climbs, is
//!    unacknowledged or reopens, and cleared when it is acknowledged, resolved
//!    or has no further step; nothing about timers lives only in memory.
//! 9. **One sender per channel.** A channel's outbox is drained only by the
//!    holder of its lease ([`Store::acquire_lease`]), which expires `ttl`
//!    after it was last taken or renewed. Taking a free or expired lease
//!    puts the channel's `sending` operations back to pending in the same
//!    transaction (see Recovery). [`Store::begin_attempt`] hands an
//!    operation out once: it answers false when the operation is no longer
//!    pending.
//! 10. **A digest runs once per scheduled instant.** `digest_runs` holds,
//!     per digest key, the latest scheduled instant claimed; a claim
//!     ([`Store::claim_digest`]) is a compare-and-set on it (only a later
//!     instant wins) in the same transaction as the digest's outbox row.
//!     Restarts and replicas therefore neither skip a claimed digest (the
//!     row is durable) nor send one twice. Digest rows in the outbox have no
//!     card (`card_seq` NULL); their delivery is reconciled like a card's
//!     post (see Recovery).
//!     Retention never deletes `digest_runs`.
//! 11. **An install's `state` is used once.** [`Store::take_oauth_state`]
//!     deletes the state it returns in the same statement, so of two
//!     callbacks with one state (on one replica or two) one gets it. Only
//!     hashes of the state and of the browser's cookie are stored; the
//!     caller checks expiry and the cookie after taking it, so a state
//!     presented with the wrong cookie is burnt, not left for a replay.
//!
//! # Several processes
//!
//! Every method is atomic on its own, also when several replicas share one
//! PostgreSQL database: [`Store::apply`] serializes the notifications of one
//! card key (so duplicates from Alertmanager HA peers arriving at two
//! replicas make one card), [`Store::act`] and [`Store::complete`] lock the
//! card they change, and the conditions of invariants 3, 4 and 7 are checked
//! under those locks. Lease expiry compares instants from the replicas'
//! clocks, which must agree to well within the lease's ttl.
//!
//! # Recovery
//!
//! An operation is marked `sending` before its Slack call. When its sender
//! dies, the next holder of the channel's lease puts it back to `pending`;
//! a `post` or `digest` whose outcome is unknown is flagged `reconcile`,
//! and delivery looks for the message in the channel's history (by its
//! message metadata) before posting again, so a restart or a takeover never
//! posts a second card or digest. Thread replies and direct messages are
//! at-least-once: one whose outcome is unknown is sent again. Idempotency keys of requests from Slack
//! (event ids) are kept a day (`requests_seen`).

mod decisions;
mod digest_runs;
mod installs;
#[cfg(feature = "postgres")]
pub mod postgres;
mod reads;
pub mod retention;
mod retry;
mod rows;
pub mod sqlite;
mod sqlite_group;
mod sqlite_script;
mod state_cache;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::{
    Alert, CardId, CardState, CardView, Digest, DigestFigures, Labels, ThreadEvent,
};
use crate::pipeline::card::CardBatch;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot open store {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("store migration failed: {0}")]
    Migrate(String),
}

/// What [`Store::apply`] did with one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub card: Option<CardId>,
    pub channel: String,
    /// False when the batch changed nothing (deduped).
    pub changed: bool,
    pub opened: bool,
    pub reopened: bool,
    pub resolved: bool,
    pub alerts_fired: u64,
    pub alerts_resolved: u64,
    /// Outbox operations written (new rows; appends to a pending reply and
    /// coalesced updates do not count).
    pub ops_pushed: Vec<OpKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Post,
    Update,
    Reply,
    /// A direct message to a user about a card (escalation with `dm`),
    /// queued with the card's channel; the user is the op's `recipient`.
    Dm,
    /// A channel's scheduled digest: a message of its own, about no card
    /// (the op's `digest`).
    Digest,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Post => "post",
            OpKind::Update => "update",
            OpKind::Reply => "reply",
            OpKind::Dm => "dm",
            OpKind::Digest => "digest",
        }
    }

    pub fn parse(s: &str) -> Result<OpKind, StoreError> {
        match s {
            "post" => Ok(OpKind::Post),
            "update" => Ok(OpKind::Update),
            "reply" => Ok(OpKind::Reply),
            "dm" => Ok(OpKind::Dm),
            "digest" => Ok(OpKind::Digest),
            other => Err(StoreError::Corrupt(format!(
                "unknown outbox kind {other:?}"
            ))),
        }
    }
}

/// An outbox operation handed to delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxOp {
    pub id: i64,
    pub kind: OpKind,
    /// The card the operation is about; `None` only for a digest.
    pub card: Option<CardId>,
    pub channel: String,
    /// The card's message ts (always set for updates and replies).
    pub card_ts: Option<String>,
    /// Thread events of a reply (or what a direct message is about).
    pub events: Vec<ThreadEvent>,
    /// The user a direct message goes to.
    pub recipient: Option<String>,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The previous attempt of this post or digest may have reached Slack.
    pub reconcile: bool,
    pub card_opened_at: Option<DateTime<Utc>>,
    /// The route of the card (`None` for a digest): delivery picks the
    /// workspace by it without reading the card again.
    pub card_route: Option<String>,
    /// What a digest reports (kind [`OpKind::Digest`] only); boxed, as it
    /// is several times the size of the rest of the operation.
    pub digest: Option<Box<Digest>>,
}

/// The next thing a channel's delivery worker should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextOp {
    Ready(OutboxOp),
    /// Nothing is due before this instant.
    WaitUntil(DateTime<Utc>),
    /// Nothing pending that can be handed out (ops waiting on a card's
    /// post being sent by this worker count as nothing).
    Idle,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// A post succeeded (or was found in history): the card has this ts.
    /// `refresh` asks for an update of the card because what Slack shows
    /// may be older than the current state (adopted after a reconcile).
    Posted { ts: String, refresh: bool },
    /// An update or reply succeeded.
    Done,
    /// Try again at `not_before`. `counts` is false for rate limiting, which
    /// is Slack's pacing, not a failure of the operation.
    Retry {
        not_before: DateTime<Utc>,
        error: String,
        counts: bool,
        outcome_unknown: bool,
    },
    /// Permanent failure.
    Dead { error: String },
}

/// What [`Store::acquire_lease`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds the channel's lease until `until`. `recovered`
    /// counts operations a previous holder left `sending`, put back to
    /// pending because the caller took the lease over.
    Held {
        until: DateTime<Utc>,
        recovered: u64,
    },
    /// Another holder's lease runs until `until`.
    Busy {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// Counts for metrics and the CLI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxSummary {
    pub pending: u64,
    pub dead: u64,
    pub cards_firing: u64,
}

/// A dead-lettered operation, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub kind: OpKind,
    /// `None` for a digest.
    pub card: Option<CardId>,
    pub channel: String,
    pub attempts: u32,
    pub error: String,
}

/// Where an operation is in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpState {
    /// Waiting to be sent (possibly not before a later instant).
    Pending,
    /// Handed to a sender; back to pending if that sender dies.
    Sending,
    /// Failed for good; kept until retried or pruned with its card.
    Dead,
}

impl OpState {
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Pending => "pending",
            OpState::Sending => "sending",
            OpState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Result<OpState, StoreError> {
        match s {
            "pending" => Ok(OpState::Pending),
            "sending" => Ok(OpState::Sending),
            "dead" => Ok(OpState::Dead),
            other => Err(StoreError::Corrupt(format!(
                "unknown outbox state {other:?}"
            ))),
        }
    }
}

/// An outbox operation as operators see it (`ackbar outbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    pub kind: OpKind,
    /// `None` for a digest, which belongs to no card.
    pub card: Option<CardId>,
    pub channel: String,
    pub state: OpState,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The user a direct message goes to.
    pub recipient: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Not handed out before this instant (backoff, reply batching).
    pub not_before: DateTime<Utc>,
}

/// What [`Store::retry_dead_letter`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// `revived` are pending again; `absorbed` were dead operations that a
    /// pending one now carries (an update a pending post or update renders,
    /// a reply whose events joined the card's pending reply) and are gone.
    Retried {
        revived: Vec<i64>,
        absorbed: Vec<i64>,
    },
    /// The operation is not a dead letter.
    NotDead(OpState),
    NotFound,
}

impl From<OutboxEntry> for DeadLetter {
    fn from(entry: OutboxEntry) -> DeadLetter {
        DeadLetter {
            id: entry.id,
            kind: entry.kind,
            card: entry.card,
            channel: entry.channel,
            attempts: entry.attempts,
            error: entry.last_error.unwrap_or_default(),
        }
    }
}

/// What the store knows about a card when someone acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardBrief {
    pub id: CardId,
    pub route: String,
    pub channel: String,
    pub state: CardState,
    pub opened_at: DateTime<Utc>,
    pub acked_by: Option<String>,
    pub escalation_level: u32,
    pub ts: Option<String>,
    /// The card offers Resolve (its source cannot resolve it).
    pub manual_resolve: bool,
}

/// An action on a card from Slack or a timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Acknowledge {
        by: String,
    },
    /// `next_escalation_at`: when the policy's next step becomes due again.
    Unacknowledge {
        by: String,
        next_escalation_at: Option<DateTime<Utc>>,
    },
    /// Resolve the card by hand (only cards whose source cannot resolve
    /// them offer this): every firing alert becomes resolved.
    Resolve {
        by: String,
    },
    /// Thread a reply about the card without changing its state (a status
    /// question, a silence created in Alertmanager).
    Note {
        event: ThreadEvent,
    },
    /// Climb from step `from_level` to `from_level + 1`. Applied only if the
    /// card is still at `from_level`, firing and unacknowledged, so a double
    /// click, a retried delivery or two replicas' timers escalate once.
    Escalate {
        from_level: u32,
        notify: Vec<String>,
        /// Users who also get a direct message with the card's link.
        dm: Vec<String>,
        by: Option<String>,
        next_escalation_at: Option<DateTime<Utc>>,
    },
}

/// What an [`Action`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    /// State changed; the card update and thread reply are in the outbox.
    Applied {
        channel: String,
    },
    /// Nothing to change (already acknowledged, already escalated, resolved…).
    NoChange(CardBrief),
    NotFound,
}

/// A firing card, as the slash command lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSummary {
    pub id: CardId,
    pub route: String,
    pub channel: String,
    pub ts: Option<String>,
    pub title: String,
    pub firing_count: u64,
    pub acked_by: Option<String>,
    pub escalation_level: u32,
    pub opened_at: DateTime<Utc>,
}

/// A card whose next escalation step is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEscalation {
    pub card: CardId,
    pub route: String,
    pub level: u32,
    pub opened_at: DateTime<Utc>,
}

/// A card with event-sourced alerts that have been quiet past their expiry.
/// The alerts come back resolved (ending at their last occurrence), to be
/// applied like any source's resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietCard {
    pub key: String,
    pub route: String,
    pub channel: String,
    pub group_labels: Labels,
    pub common_labels: Labels,
    pub common_annotations: Labels,
    pub external_url: Option<String>,
    pub alerts: Vec<Alert>,
}

/// A workspace that installed ackbar through OAuth v2
/// ([`crate::slack::oauth`]). `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Installation {
    pub team_id: String,
    pub team_name: String,
    /// The bot token (`xoxb-...`), stored as Slack issued it: unencrypted,
    /// so the database must be protected like the token itself.
    pub bot_token: String,
    pub bot_user_id: String,
    pub scopes: Vec<String>,
    pub installed_at: DateTime<Utc>,
}

impl std::fmt::Debug for Installation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installation")
            .field("team_id", &self.team_id)
            .field("team_name", &self.team_name)
            .field("bot_token", &"***")
            .field("bot_user_id", &self.bot_user_id)
            .field("scopes", &self.scopes)
            .field("installed_at", &self.installed_at)
            .finish()
    }
}

/// An OAuth install in progress, as [`Store::take_oauth_state`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    /// Hash of the cookie the browser that started the install was given.
    pub browser_hash: String,
    pub expires_at: DateTime<Utc>,
}

/// How much a digest lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestLimits {
    /// Alert names in "noisiest".
    pub noisiest: u32,
    /// Cards in "firing now" shown by name (all are counted).
    pub oldest_firing: u32,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies batches (one per card key) in one transaction: state changes
    /// and the outbox operations they cause. Returns one outcome per batch,
    /// once they are durable. (A store may commit several notifications'
    /// batches in one transaction; a notification's batches are never split.)
    async fn apply(
        &self,
        batches: &[CardBatch],
        now: DateTime<Utc>,
    ) -> Result<Vec<ApplyOutcome>, StoreError>;

    /// [`Store::apply`] for a caller done with the batches: a store that
    /// hands them to another task (SQLite's group commit) takes them as
    /// they are instead of copying them.
    async fn apply_owned(
        &self,
        batches: Vec<CardBatch>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        self.apply(&batches, now).await
    }

    /// A stamp of what this process's state cache holds for `key`, new
    /// whenever that changes; `None` when it holds nothing for the key.
    /// While a key keeps its stamp, a batch for it that was decided
    /// unchanged would be decided unchanged again, so a caller may answer a
    /// byte-identical re-send without deciding it again
    /// ([`crate::pipeline::resend`]). Stores written by other processes too
    /// (PostgreSQL, shared by replicas) keep no such cache.
    fn cache_stamp(&self, _key: &str) -> Option<u64> {
        None
    }

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Takes or renews `channel`'s lease for `holder` until `now + ttl`,
    /// unless another holder's lease is still running (invariant 9).
    async fn acquire_lease(
        &self,
        channel: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease, StoreError>;

    /// Gives up `channel`'s lease if `holder` has it, so another replica
    /// can take it at once.
    async fn release_lease(&self, channel: &str, holder: &str) -> Result<(), StoreError>;

    /// Channels that have pending operations.
    async fn pending_channels(&self) -> Result<Vec<String>, StoreError>;

    /// The oldest operation of `channel` that is due at `now` and may be
    /// sent (its card has a ts, or it is the post).
    async fn next_op(&self, channel: &str, now: DateTime<Utc>) -> Result<NextOp, StoreError>;

    /// Hands the operation out: marks it `sending` and counts the attempt,
    /// durably, before the Slack call, and returns it as it is at that
    /// moment (a reply with every event appended since [`Store::next_op`]
    /// looked). `None` when it is no longer pending (sent, or taken by
    /// another sender): the caller must not send it.
    async fn begin_attempt(
        &self,
        op_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboxOp>, StoreError>;

    /// [`Store::acquire_lease`] and, when `holder` then holds `channel`'s
    /// lease, [`Store::begin_attempt`] of `op_id` (an operation of that
    /// channel). The operation is `None` when the lease is busy or the
    /// operation no longer pending. A store that can do both in one
    /// transaction does: a channel's first send after it was idle then
    /// waits for one commit, not two.
    async fn begin_attempt_leased(
        &self,
        op_id: i64,
        channel: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(Lease, Option<OutboxOp>), StoreError> {
        let lease = self.acquire_lease(channel, holder, ttl, now).await?;
        let op = match lease {
            Lease::Held { .. } => self.begin_attempt(op_id, now).await?,
            Lease::Busy { .. } => None,
        };
        Ok((lease, op))
    }

    /// Records how an attempt ended (see [`Completion`]).
    async fn complete(
        &self,
        op: &OutboxOp,
        completion: Completion,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The card as it should be rendered now, listing at most `max_alerts`.
    async fn card_view(
        &self,
        card: &CardId,
        max_alerts: u32,
    ) -> Result<Option<CardView>, StoreError>;

    async fn outbox_summary(&self) -> Result<OutboxSummary, StoreError>;

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError>;

    /// Operations in the outbox, oldest first: every one, or only dead
    /// letters.
    async fn outbox_entries(
        &self,
        dead_only: bool,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Puts a dead letter back to pending, due at `now`, keeping the
    /// invariants: when the card's post is dead, retrying any of its
    /// operations retries the post with every dead operation of the card
    /// (invariant 5); a revived update or reply that a pending one of the
    /// card already covers is absorbed into it (invariant 4, see
    /// [`RetryOutcome`]).
    async fn retry_dead_letter(
        &self,
        op_id: i64,
        now: DateTime<Utc>,
    ) -> Result<RetryOutcome, StoreError>;

    /// The card's current state for someone about to act on it.
    async fn card_brief(&self, card: &CardId) -> Result<Option<CardBrief>, StoreError>;

    /// Applies an action and writes the card update and thread reply it
    /// causes, in one transaction.
    async fn act(
        &self,
        card: &CardId,
        action: Action,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, StoreError>;

    /// Firing cards, oldest first.
    async fn firing_cards(&self, limit: u32) -> Result<Vec<CardSummary>, StoreError>;

    /// Cards whose id starts with `prefix` (at most `limit`).
    async fn cards_by_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<CardId>, StoreError>;

    /// The card posted as message `ts` in `channel`.
    async fn card_by_message(&self, channel: &str, ts: &str) -> Result<Option<CardId>, StoreError>;

    /// Firing, unacknowledged cards whose next escalation step is due.
    async fn due_escalations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueEscalation>, StoreError>;

    /// When the earliest pending escalation step is due.
    async fn next_escalation_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Cards with firing event-sourced alerts whose quiet period ended by
    /// `now`, at most `limit` alerts in all.
    async fn quiet_alerts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<QuietCard>, StoreError>;

    /// When the earliest firing event-sourced alert's quiet period ends.
    async fn next_quiet_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Deletes up to `limit` cards that resolved before `resolved_before`
    /// and have nothing left to deliver, with their alerts and outbox rows
    /// (dead letters included). Returns how many cards went.
    async fn prune(&self, resolved_before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// Records an idempotency key (a Slack event id, a delivery of an
    /// interaction). True the first time; false for a repeat.
    async fn first_seen(&self, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// What `channel`'s digest reports for the period `from <= t < to`,
    /// with the cards firing now.
    async fn digest_figures(
        &self,
        channel: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limits: DigestLimits,
    ) -> Result<DigestFigures, StoreError>;

    /// The scheduled instant the digest `key` last ran for (invariant 10).
    async fn last_digest(&self, key: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Claims the digest `key` for the scheduled instant `instant` and, in
    /// the same transaction, enqueues `digest` into its channel's outbox
    /// (invariant 10). Claims only if the digest last ran for an earlier
    /// instant, so of racing replicas and restarts exactly one succeeds.
    /// With `digest: None` it records `instant` without sending, and only
    /// for a digest that has never run: where a new digest starts counting.
    /// True when this call claimed.
    async fn claim_digest(
        &self,
        key: &str,
        instant: DateTime<Utc>,
        digest: Option<&Digest>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The latest card of a key, for tests and the CLI.
    async fn card_by_key(
        &self,
        key: &str,
    ) -> Result<Option<(CardId, CardState, Option<String>)>, StoreError>;

    // OAuth installs (invariant 11).

    /// Remembers an install's `state` (by its hash) until `expires_at`,
    /// bound to the browser whose cookie hashes to `browser_hash`. Expired
    /// states are swept on the way. `false` when
    /// `MAX_PENDING_STATES` (1,000) installs are already in progress
    /// (nothing is saved).
    async fn save_oauth_state(
        &self,
        state_hash: &str,
        browser_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Takes (deletes and returns) the state with this hash: whoever calls
    /// first gets it, every later call `None`, across replicas.
    async fn take_oauth_state(&self, state_hash: &str) -> Result<Option<OAuthState>, StoreError>;

    /// Stores a workspace's installation, replacing an earlier one.
    async fn save_installation(&self, installation: &Installation) -> Result<(), StoreError>;

    async fn installation(&self, team_id: &str) -> Result<Option<Installation>, StoreError>;

    /// Installations by team id, at most `limit`.
    async fn installations(&self, limit: u32) -> Result<Vec<Installation>, StoreError>;

    /// Forgets a workspace's installation (uninstalled, token revoked).
    /// False when there was none.
    async fn remove_installation(&self, team_id: &str) -> Result<bool, StoreError>;
}

/// The store URLs this build opens, for error messages.
#[cfg(feature = "postgres")]
pub const SUPPORTED_SCHEMES: &str = "sqlite://PATH or postgres://USER@HOST/DATABASE";
#[cfg(not(feature = "postgres"))]
pub const SUPPORTED_SCHEMES: &str = "sqlite://PATH (postgres:// needs the `postgres` feature)";

/// Whether [`open`] understands the URL's scheme.
pub fn supported_url(url: &str) -> bool {
    url.starts_with("sqlite:")
        || (cfg!(feature = "postgres")
            && (url.starts_with("postgres://") || url.starts_with("postgresql://")))
}

/// What `ackbar serve` holds for the store a URL names while it runs: the
/// SQLite database's serving lock ([`sqlite::lock_for_serving`]); nothing
/// for PostgreSQL, which replicas share.
pub fn lock_for_serving(url: &str) -> Result<Option<sqlite::ServingLock>, StoreError> {
    if url.starts_with("sqlite:") {
        return sqlite::lock_for_serving(url);
    }
    Ok(None)
}

/// Opens the store a URL names and applies its migrations.
pub async fn open(
    url: &str,
    busy_timeout: Duration,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::open(url, busy_timeout).await?;
        return Ok(std::sync::Arc::new(store));
    }
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PgStore::open(url, busy_timeout).await?;
        return Ok(std::sync::Arc::new(store));
    }
    Err(StoreError::Open {
        url: url.to_owned(),
        reason: format!("unsupported scheme (use {SUPPORTED_SCHEMES})"),
    })
}
