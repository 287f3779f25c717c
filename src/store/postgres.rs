//! PostgreSQL store: one pool, shared by several replicas of ackbar.
//!
//! The schema mirrors SQLite's column for column (rows decode through the
//! same `rows` functions); what differs is how concurrent writers are kept
//! apart, since here they are real (see "Several processes" in the module
//! docs of [`crate::store`]):
//!
//! - **per-key advisory locks**: every transaction that changes a card takes
//!   `pg_advisory_xact_lock` on a hash of the card's key first, so the
//!   notifications of one key, and the actions on its cards, run one after
//!   the other and each decides on what the previous one committed (READ
//!   COMMITTED reads a fresh snapshot per statement). A row lock could not
//!   do this: the first notification of a key has no row to lock yet.
//!   SERIALIZABLE could, but would abort and retry whole notifications
//!   under exactly the duplicate storms this is for; the lock only makes
//!   duplicates wait for each other.
//! - **row locks on pending operations**: coalescing into a pending update
//!   or reply locks that row (`FOR UPDATE`), and so does handing it out
//!   ([`Store::begin_attempt`]); either the append lands before the
//!   handout, or it sees the operation `sending` and starts a new one.
//! - **lease rows** are read `FOR UPDATE` before they are decided on.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool, Postgres};

use super::decisions::{
    self, action_event, escalation_due, posted_card, reply_events_to_keep, unchanged,
};
use super::digest_runs;
use super::installs;
use super::reads::{self, AlertnameSql};
use super::retry;
use super::rows::{self, Columns, json, ms};
use super::{
    Action, ActionOutcome, ApplyOutcome, CardBrief, CardSummary, Completion, DeadLetter,
    DigestLimits, DueEscalation, Installation, Lease, NextOp, OAuthState, OpKind, OutboxEntry,
    OutboxOp, OutboxSummary, QuietCard, RetryOutcome, Store, StoreError,
};
use crate::model::{CardId, CardState, CardView, Digest, DigestFigures, ThreadEvent};
use crate::pipeline::card::{self, CardBatch, CardSnapshot, Plan, Target};

/// Connections per replica. Each write transaction holds one; reads are
/// short. PostgreSQL's default `max_connections` (100) leaves room for
/// several replicas.
const MAX_CONNECTIONS: u32 = 10;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and applies the migrations (sqlx serializes concurrent
    /// migrators with an advisory lock, so replicas may start together).
    pub async fn open(url: &str, acquire_timeout: Duration) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(acquire_timeout)
            .connect(url)
            .await
            .map_err(|e| StoreError::Open {
                url: redact(url),
                reason: e.to_string(),
            })?;
        sqlx::migrate!("src/store/migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(PgStore { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Serializes this transaction with every other one that changes cards of
/// these keys, until it ends. Keys are locked in sorted order so that two
/// notifications with several keys cannot deadlock.
async fn lock_keys<'k>(
    conn: &mut PgConnection,
    keys: impl Iterator<Item = &'k str>,
) -> Result<(), StoreError> {
    let mut keys: Vec<&str> = keys.collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Locks the key of card `id` (see [`lock_keys`]) and returns the card's
/// row sequence number, or `None` when there is no such card.
async fn lock_card(conn: &mut PgConnection, id: &CardId) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT seq, card_key FROM cards WHERE id = $1")
        .bind(&id.0)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    lock_keys(conn, std::iter::once(row.text("card_key")?.as_str())).await?;
    Ok(Some(row.int("seq")?))
}

/// The latest card of a key with its row sequence number.
struct LatestCard {
    seq: i64,
    snapshot: CardSnapshot,
}

async fn plan_batch(
    conn: &mut PgConnection,
    batch: &CardBatch,
    now: DateTime<Utc>,
) -> Result<(Option<LatestCard>, Plan), StoreError> {
    let latest = sqlx::query(
        "SELECT seq, id, state, opened_at, resolved_at, group_digest, firing_count, resolved_count
         FROM cards WHERE card_key = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(&batch.key)
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| {
        Ok::<_, StoreError>(LatestCard {
            seq: row.int("seq")?,
            snapshot: rows::card_snapshot(&row)?,
        })
    })
    .transpose()?;
    let mut known = HashMap::new();
    if let Some(card) = &latest {
        let fingerprints: Vec<i64> = batch
            .alerts
            .iter()
            .map(|a| a.fingerprint.0 as i64)
            .collect();
        let found = sqlx::query(
            "SELECT fingerprint, status, digest, expires_at FROM alerts
             WHERE card_seq = $1 AND fingerprint = ANY($2)",
        )
        .bind(card.seq)
        .bind(&fingerprints)
        .fetch_all(&mut *conn)
        .await?;
        for row in &found {
            let (fingerprint, alert) = rows::known_alert(row)?;
            known.insert(fingerprint, alert);
        }
    }
    let plan = card::plan(latest.as_ref().map(|c| &c.snapshot), &known, batch, now);
    Ok((latest, plan))
}

async fn insert_op(
    conn: &mut PgConnection,
    card_seq: i64,
    channel: &str,
    kind: OpKind,
    not_before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    sqlx::query(
        "INSERT INTO outbox (card_seq, channel, kind, state, not_before, created_at, updated_at)
         VALUES ($1, $2, $3, 'pending', $4, $5, $5) RETURNING id",
    )
    .bind(card_seq)
    .bind(channel)
    .bind(kind.as_str())
    .bind(ms(not_before))
    .bind(ms(now))
    .fetch_one(&mut *conn)
    .await?
    .int("id")
}

/// Enqueues an update due at `due` unless one is already pending, or the
/// post is (either will render the latest state when sent); a pending update
/// due later than an immediate one asked now is brought forward. Returns
/// whether a row was added.
async fn push_update(
    conn: &mut PgConnection,
    card_seq: i64,
    channel: &str,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    // The lock makes a concurrent handout of that operation either finish
    // first (then it is `sending`, no match, and an update is added) or wait
    // until this transaction committed (then it renders this change).
    let pending = sqlx::query(
        "SELECT id FROM outbox WHERE card_seq = $1 AND state = 'pending' AND kind IN ('post', 'update')
         LIMIT 1 FOR UPDATE",
    )
    .bind(card_seq)
    .fetch_optional(&mut *conn)
    .await?;
    if pending.is_some() {
        if due <= now {
            sqlx::query(
                "UPDATE outbox SET not_before = $1 WHERE card_seq = $2 AND state = 'pending' AND kind = 'update'
                   AND not_before > $1",
            )
            .bind(ms(due))
            .bind(card_seq)
            .execute(&mut *conn)
            .await?;
        }
        return Ok(false);
    }
    insert_op(conn, card_seq, channel, OpKind::Update, due, now).await?;
    Ok(true)
}

/// Appends events to the card's pending reply, or starts one that waits for
/// the batching window. Returns whether a row was added.
async fn push_reply(
    conn: &mut PgConnection,
    card_seq: i64,
    channel: &str,
    events: &[ThreadEvent],
    window: Duration,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    // Locked for the same reason as in `push_update`: events appended to a
    // reply being handed out would be deleted with it, unsent.
    let pending = sqlx::query(
        "SELECT id, events_held FROM outbox WHERE card_seq = $1 AND state = 'pending' AND kind = 'reply'
         ORDER BY id DESC LIMIT 1 FOR UPDATE",
    )
    .bind(card_seq)
    .fetch_optional(&mut *conn)
    .await?;
    let (op_id, held, created) = match pending {
        Some(row) => (row.int("id")?, row.count("events_held")? as usize, false),
        None => {
            let not_before = decisions::reply_due(window, now);
            let id = insert_op(conn, card_seq, channel, OpKind::Reply, not_before, now).await?;
            (id, 0, true)
        }
    };
    let kept = reply_events_to_keep(events, held);
    sqlx::query("INSERT INTO thread_events (op_id, event) SELECT $1, e FROM UNNEST($2::text[]) e")
        .bind(op_id)
        .bind(&kept)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE outbox SET events_held = events_held + $1, updated_at = $2 WHERE id = $3")
        .bind(kept.len() as i64)
        .bind(ms(now))
        .bind(op_id)
        .execute(&mut *conn)
        .await?;
    Ok(created)
}

async fn write_change(
    conn: &mut PgConnection,
    batch: &CardBatch,
    latest: Option<&LatestCard>,
    change: &card::Change,
    now: DateTime<Utc>,
) -> Result<ApplyOutcome, StoreError> {
    let seq: i64 = match (&change.target, latest) {
        (Target::New(id), _) => sqlx::query(
            "INSERT INTO cards (id, card_key, route, channel, state, opened_at, resolved_at, group_labels,
                 common_labels, common_annotations, external_url, group_digest, firing_count, resolved_count,
                 updated_at, next_escalation_at, manual_resolve)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING seq",
        )
        .bind(&id.0)
        .bind(&batch.key)
        .bind(&batch.route)
        .bind(&batch.channel)
        .bind(change.state.as_str())
        .bind(ms(change.opened_at))
        .bind(change.resolved_at.map(ms))
        .bind(json(&batch.group_labels))
        .bind(json(&batch.common_labels))
        .bind(json(&batch.common_annotations))
        .bind(&batch.external_url)
        .bind(change.group_digest as i64)
        .bind(change.firing_count as i64)
        .bind(change.resolved_count as i64)
        .bind(ms(now))
        .bind(escalation_due(batch, change, now).map(ms))
        .bind(batch.manual_resolve())
        .fetch_one(&mut *conn)
        .await?
        .int("seq")?,
        (Target::Existing(_) | Target::Reopen(_), Some(card)) => {
            // A reopened card starts over: not acknowledged, its policy from
            // the first step. A resolved one has no step due.
            let reopen = matches!(change.target, Target::Reopen(_));
            sqlx::query(
                "UPDATE cards SET state = $1, resolved_at = $2, group_labels = $3, common_labels = $4,
                     common_annotations = $5, external_url = $6, group_digest = $7, firing_count = $8,
                     resolved_count = $9, updated_at = $10,
                     acked_by = CASE WHEN $11 THEN NULL ELSE acked_by END,
                     acked_at = CASE WHEN $11 THEN NULL ELSE acked_at END,
                     escalation_level = CASE WHEN $11 THEN 0 ELSE escalation_level END,
                     next_escalation_at = CASE WHEN $11 THEN $12
                         WHEN $1 = 'resolved' THEN NULL ELSE next_escalation_at END
                 WHERE seq = $13",
            )
            .bind(change.state.as_str())
            .bind(change.resolved_at.map(ms))
            .bind(json(&batch.group_labels))
            .bind(json(&batch.common_labels))
            .bind(json(&batch.common_annotations))
            .bind(&batch.external_url)
            .bind(change.group_digest as i64)
            .bind(change.firing_count as i64)
            .bind(change.resolved_count as i64)
            .bind(ms(now))
            .bind(reopen)
            .bind(escalation_due(batch, change, now).map(ms))
            .bind(card.seq)
            .execute(&mut *conn)
            .await?;
            card.seq
        }
        (_, None) => {
            return Err(StoreError::Corrupt(
                "change targets a card that does not exist".into(),
            ));
        }
    };

    for &i in &change.alert_writes {
        let a = &batch.alerts[i];
        sqlx::query(
            "INSERT INTO alerts AS old (card_seq, fingerprint, status, digest, labels, annotations, starts_at,
                 ends_at, generator_url, updated_at, occurrences, last_seen_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (card_seq, fingerprint) DO UPDATE SET status = excluded.status,
                 digest = excluded.digest, labels = excluded.labels, annotations = excluded.annotations,
                 starts_at = CASE WHEN old.status = 'firing' AND excluded.status = 'firing'
                     AND excluded.occurrences IS NOT NULL THEN old.starts_at ELSE excluded.starts_at END,
                 ends_at = excluded.ends_at,
                 generator_url = excluded.generator_url, updated_at = excluded.updated_at,
                 occurrences = CASE WHEN old.status = 'firing' AND excluded.status = 'firing'
                     THEN old.occurrences + excluded.occurrences ELSE excluded.occurrences END,
                 last_seen_at = CASE WHEN excluded.last_seen_at IS NOT NULL
                     THEN GREATEST(old.last_seen_at, excluded.last_seen_at) END,
                 expires_at = CASE WHEN excluded.status = 'firing' AND excluded.expires_at IS NOT NULL
                     THEN GREATEST(old.expires_at, excluded.expires_at) END",
        )
        .bind(seq)
        .bind(a.fingerprint.0 as i64)
        .bind(a.status.as_str())
        .bind(a.digest() as i64)
        .bind(json(&a.labels))
        .bind(json(&a.annotations))
        .bind(ms(a.starts_at))
        .bind(a.ends_at.map(ms))
        .bind(&a.generator_url)
        .bind(ms(now))
        .bind(a.occurrences.map(|o| o.count as i64))
        .bind(a.occurrences.map(|o| ms(o.last_seen)))
        .bind(batch.expires_at(a).map(ms))
        .execute(&mut *conn)
        .await?;
    }

    let mut ops_pushed = Vec::new();
    if matches!(change.target, Target::New(_)) {
        insert_op(conn, seq, &batch.channel, OpKind::Post, now, now).await?;
        ops_pushed.push(OpKind::Post);
    }
    let update_due = decisions::update_due(batch, now);
    if change.update_card && push_update(conn, seq, &batch.channel, update_due, now).await? {
        ops_pushed.push(OpKind::Update);
    }
    if !change.events.is_empty()
        && push_reply(
            conn,
            seq,
            &batch.channel,
            &change.events,
            batch.reply_batch_window,
            now,
        )
        .await?
    {
        ops_pushed.push(OpKind::Reply);
    }
    Ok(decisions::changed(batch, change, ops_pushed))
}

async fn brief(conn: &mut PgConnection, card: &CardId) -> Result<Option<CardBrief>, StoreError> {
    sqlx::query(
        "SELECT route, channel, state, opened_at, acked_by, escalation_level, ts, manual_resolve
         FROM cards WHERE id = $1",
    )
    .bind(&card.0)
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| rows::card_brief(card, &row))
    .transpose()
}

/// An outbox row with what delivery needs of its card (none for a digest);
/// callers add the condition.
const OP_SELECT: &str =
    "SELECT o.id, o.kind, o.channel, o.events, o.recipient, o.attempts, o.reconcile,
        o.digest, c.id AS card_id, c.ts, c.opened_at, c.route
    FROM outbox o LEFT JOIN cards c ON c.seq = o.card_seq";

/// The operation of an [`OP_SELECT`] row, with a reply's thread events.
async fn with_events(conn: &mut PgConnection, row: &PgRow) -> Result<OutboxOp, StoreError> {
    let mut op = rows::outbox_op(row)?;
    if op.kind == OpKind::Reply {
        let rows = sqlx::query("SELECT event FROM thread_events WHERE op_id = $1 ORDER BY id")
            .bind(op.id)
            .fetch_all(&mut *conn)
            .await?;
        op.events = rows
            .iter()
            .map(|r| r.json("event"))
            .collect::<Result<_, StoreError>>()?;
    }
    Ok(op)
}

#[async_trait]
impl Store for PgStore {
    async fn apply(
        &self,
        batches: &[CardBatch],
        now: DateTime<Utc>,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        // Fast path without locks: most notifications are re-sends that
        // change nothing.
        {
            let mut conn = self.pool.acquire().await?;
            let mut outcomes = Vec::with_capacity(batches.len());
            for batch in batches {
                let (latest, plan) = plan_batch(&mut conn, batch, now).await?;
                if plan != Plan::Unchanged {
                    outcomes.clear();
                    break;
                }
                outcomes.push(unchanged(batch, latest.as_ref().map(|c| &c.snapshot.id)));
            }
            if outcomes.len() == batches.len() {
                return Ok(outcomes);
            }
        }
        // Something changes: decide again under the keys' locks (a replica
        // may have applied a duplicate in between) and write.
        let mut tx = self.pool.begin().await?;
        lock_keys(&mut tx, batches.iter().map(|b| b.key.as_str())).await?;
        let mut outcomes = Vec::with_capacity(batches.len());
        for batch in batches {
            let (latest, plan) = plan_batch(&mut tx, batch, now).await?;
            let outcome = match plan {
                Plan::Unchanged => unchanged(batch, latest.as_ref().map(|c| &c.snapshot.id)),
                Plan::Apply(change) => {
                    write_change(&mut tx, batch, latest.as_ref(), &change, now).await?
                }
            };
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        channel: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        let until = decisions::lease_until(ttl, now);
        let mut tx = self.pool.begin().await?;
        // Make sure there is a row to lock: a channel never leased reads as
        // an expired lease of nobody.
        sqlx::query(
            "INSERT INTO channel_leases (channel, holder, expires_at) VALUES ($1, '', 0)
             ON CONFLICT (channel) DO NOTHING",
        )
        .bind(channel)
        .execute(&mut *tx)
        .await?;
        let current = sqlx::query(
            "SELECT holder, expires_at FROM channel_leases WHERE channel = $1 FOR UPDATE",
        )
        .bind(channel)
        .fetch_one(&mut *tx)
        .await?;
        let step = decisions::lease_step(
            &current.text("holder")?,
            current.instant("expires_at")?,
            holder,
            now,
        );
        let recovered = match step {
            decisions::LeaseStep::Busy { holder, until } => {
                return Ok(Lease::Busy { holder, until });
            }
            decisions::LeaseStep::Renew => 0,
            decisions::LeaseStep::Take => sqlx::query(
                "UPDATE outbox SET state = 'pending', reconcile = reconcile OR kind IN ('post', 'digest')
                 WHERE channel = $1 AND state = 'sending'",
            )
            .bind(channel)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        sqlx::query("UPDATE channel_leases SET holder = $2, expires_at = $3 WHERE channel = $1")
            .bind(channel)
            .bind(holder)
            .bind(ms(until))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Lease::Held { until, recovered })
    }

    async fn release_lease(&self, channel: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM channel_leases WHERE channel = $1 AND holder = $2")
            .bind(channel)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn pending_channels(&self) -> Result<Vec<String>, StoreError> {
        reads::pending_channels(&self.pool).await
    }

    async fn next_op(&self, channel: &str, now: DateTime<Utc>) -> Result<NextOp, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(&format!(
            "{OP_SELECT} WHERE o.channel = $1 AND o.state = 'pending' AND o.not_before <= $2
               AND (o.kind IN ('post', 'digest') OR c.ts IS NOT NULL)
             ORDER BY o.id LIMIT 1"
        ))
        .bind(channel)
        .bind(ms(now))
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            return Ok(NextOp::Ready(with_events(&mut conn, &row).await?));
        }
        let next = sqlx::query(
            "SELECT MIN(o.not_before) AS next FROM outbox o LEFT JOIN cards c ON c.seq = o.card_seq
             WHERE o.channel = $1 AND o.state = 'pending' AND (o.kind IN ('post', 'digest') OR c.ts IS NOT NULL)",
        )
        .bind(channel)
        .fetch_one(&mut *conn)
        .await?
        .opt_instant("next")?;
        Ok(match next {
            Some(at) => NextOp::WaitUntil(at),
            None => NextOp::Idle,
        })
    }

    async fn begin_attempt(
        &self,
        op_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboxOp>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "{OP_SELECT} WHERE o.id = $1 AND o.state = 'pending' FOR UPDATE OF o"
        ))
        .bind(op_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        sqlx::query(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = $2 WHERE id = $1",
        )
        .bind(op_id)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        let op = with_events(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(Some(op))
    }

    async fn complete(
        &self,
        op: &OutboxOp,
        completion: Completion,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        match completion {
            Completion::Posted { ts, refresh } => {
                let card = posted_card(op)?;
                sqlx::query("UPDATE cards SET ts = $1 WHERE id = $2 AND ts IS NULL")
                    .bind(&ts)
                    .bind(&card.0)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM outbox WHERE id = $1")
                    .bind(op.id)
                    .execute(&mut *tx)
                    .await?;
                // Coalescing into a pending update decides on the card's
                // operations: under its key's lock, like a notification.
                if refresh && let Some(seq) = lock_card(&mut tx, card).await? {
                    push_update(&mut tx, seq, &op.channel, now, now).await?;
                }
            }
            Completion::Done => {
                sqlx::query("DELETE FROM outbox WHERE id = $1")
                    .bind(op.id)
                    .execute(&mut *tx)
                    .await?;
            }
            Completion::Retry {
                not_before,
                error,
                counts,
                outcome_unknown,
            } => {
                sqlx::query(
                    "UPDATE outbox SET state = 'pending', not_before = $1, last_error = $2, updated_at = $3,
                         attempts = attempts - $4, reconcile = reconcile OR ($5 AND kind IN ('post', 'digest'))
                     WHERE id = $6",
                )
                .bind(ms(not_before))
                .bind(&error)
                .bind(ms(now))
                .bind(if counts { 0_i64 } else { 1 })
                .bind(outcome_unknown)
                .bind(op.id)
                .execute(&mut *tx)
                .await?;
            }
            Completion::Dead { error } => {
                sqlx::query(
                    "UPDATE outbox SET state = 'dead', last_error = $1, updated_at = $2 WHERE id = $3",
                )
                .bind(&error)
                .bind(ms(now))
                .bind(op.id)
                .execute(&mut *tx)
                .await?;
                if op.kind == OpKind::Post {
                    // Invariant 5: the card's other operations can never be
                    // sent without a ts; dead-letter them with the post.
                    sqlx::query(
                        "UPDATE outbox SET state = 'dead', last_error = $1, updated_at = $2
                         WHERE card_seq = (SELECT seq FROM cards WHERE id = $3) AND state = 'pending'",
                    )
                    .bind(decisions::orphan_error(&error))
                    .bind(ms(now))
                    .bind(&posted_card(op)?.0)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn card_view(
        &self,
        card: &CardId,
        max_alerts: u32,
    ) -> Result<Option<CardView>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let Some(row) = sqlx::query("SELECT * FROM cards WHERE id = $1")
            .bind(&card.0)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let alert_rows = sqlx::query(
            "SELECT fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, occurrences,
                 last_seen_at FROM alerts
             WHERE card_seq = $1
             ORDER BY CASE status WHEN 'firing' THEN 0 ELSE 1 END, updated_at DESC, starts_at, fingerprint
             LIMIT $2",
        )
        .bind(row.int("seq")?)
        .bind(i64::from(max_alerts))
        .fetch_all(&mut *conn)
        .await?;
        let alerts = alert_rows
            .iter()
            .map(rows::card_alert)
            .collect::<Result<_, _>>()?;
        rows::card_view(card, &row, alerts).map(Some)
    }

    async fn outbox_summary(&self) -> Result<OutboxSummary, StoreError> {
        reads::outbox_summary(&self.pool).await
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        reads::dead_letters(&self.pool, limit).await
    }

    async fn outbox_entries(
        &self,
        dead_only: bool,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        reads::outbox_entries(&self.pool, dead_only, limit).await
    }

    async fn retry_dead_letter(
        &self,
        op_id: i64,
        now: DateTime<Utc>,
    ) -> Result<RetryOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let op = sqlx::query(
            "SELECT c.id AS card_id FROM outbox o LEFT JOIN cards c ON c.seq = o.card_seq
             WHERE o.id = $1",
        )
        .bind(op_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(op) = op else {
            return Ok(RetryOutcome::NotFound);
        };
        // Under the card's lock no notification or action of the card can
        // add an operation between the plan and its execution. A digest
        // belongs to no card: nothing else ever adds to it.
        if let Some(card) = op.opt_text("card_id")? {
            lock_card(&mut tx, &CardId(card)).await?;
        }
        let outcome = retry::retry_dead_letter::<Postgres>(&mut tx, op_id, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn card_brief(&self, card: &CardId) -> Result<Option<CardBrief>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        brief(&mut conn, card).await
    }

    async fn act(
        &self,
        card: &CardId,
        action: Action,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Under the key's lock the check of invariant 7 below sees every
        // committed action and notification, and none can come in between.
        let Some(seq) = lock_card(&mut tx, card).await? else {
            return Ok(ActionOutcome::NotFound);
        };
        let Some(current) = brief(&mut tx, card).await? else {
            return Ok(ActionOutcome::NotFound);
        };
        let Some(event) = action_event(&action, &current, now) else {
            return Ok(ActionOutcome::NoChange(current));
        };
        let update = match &action {
            Action::Acknowledge { by } => Some(
                sqlx::query(
                    "UPDATE cards SET acked_by = $1, acked_at = $2, next_escalation_at = NULL, updated_at = $2
                     WHERE seq = $3",
                )
                .bind(by)
                .bind(ms(now))
                .bind(seq),
            ),
            Action::Unacknowledge {
                next_escalation_at, ..
            } => Some(
                sqlx::query(
                    "UPDATE cards SET acked_by = NULL, acked_at = NULL, next_escalation_at = $1, updated_at = $2
                     WHERE seq = $3",
                )
                .bind(next_escalation_at.map(ms))
                .bind(ms(now))
                .bind(seq),
            ),
            Action::Resolve { .. } => {
                // Digest 0 matches no alert: the source's next report of one
                // of these alerts, firing or not, is a change (a re-fire
                // reopens the card within the reopen window).
                sqlx::query(
                    "UPDATE alerts SET status = 'resolved', ends_at = $1, digest = 0, updated_at = $1
                     WHERE card_seq = $2 AND status = 'firing'",
                )
                .bind(ms(now))
                .bind(seq)
                .execute(&mut *tx)
                .await?;
                Some(
                    sqlx::query(
                        "UPDATE cards SET state = 'resolved', resolved_at = $1,
                             resolved_count = resolved_count + firing_count, firing_count = 0,
                             next_escalation_at = NULL, updated_at = $1
                         WHERE seq = $2",
                    )
                    .bind(ms(now))
                    .bind(seq),
                )
            }
            Action::Note { .. } => None,
            Action::Escalate {
                next_escalation_at, ..
            } => Some(
                sqlx::query(
                    "UPDATE cards SET escalation_level = escalation_level + 1, next_escalation_at = $1,
                         updated_at = $2
                     WHERE seq = $3",
                )
                .bind(next_escalation_at.map(ms))
                .bind(ms(now))
                .bind(seq),
            ),
        };
        // A status question changes nothing on the card: only the reply.
        if let Some(update) = update {
            update.execute(&mut *tx).await?;
            push_update(&mut tx, seq, &current.channel, now, now).await?;
        }
        if let Action::Escalate { dm, .. } = &action {
            let events = json(&[&event]);
            for user in dm {
                sqlx::query(
                    "INSERT INTO outbox (card_seq, channel, kind, state, events, recipient, not_before, created_at,
                         updated_at)
                     VALUES ($1, $2, 'dm', 'pending', $3, $4, $5, $5, $5)",
                )
                .bind(seq)
                .bind(&current.channel)
                .bind(&events)
                .bind(user)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
            }
        }
        // Actions are answers to a person: reply at once rather than after
        // the batching window meant for alert storms.
        push_reply(
            &mut tx,
            seq,
            &current.channel,
            &[event],
            Duration::ZERO,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(ActionOutcome::Applied {
            channel: current.channel,
        })
    }

    async fn firing_cards(&self, limit: u32) -> Result<Vec<CardSummary>, StoreError> {
        reads::firing_cards(&self.pool, limit).await
    }

    async fn cards_by_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<CardId>, StoreError> {
        reads::cards_by_prefix(&self.pool, prefix, limit).await
    }

    async fn card_by_message(&self, channel: &str, ts: &str) -> Result<Option<CardId>, StoreError> {
        reads::card_by_message(&self.pool, channel, ts).await
    }

    async fn due_escalations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueEscalation>, StoreError> {
        reads::due_escalations(&self.pool, now, limit).await
    }

    async fn next_escalation_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        reads::next_escalation_at(&self.pool).await
    }

    async fn quiet_alerts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<QuietCard>, StoreError> {
        reads::quiet_alerts(&self.pool, now, limit).await
    }

    async fn next_quiet_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        reads::next_quiet_at(&self.pool).await
    }

    async fn prune(&self, resolved_before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: a card some replica is writing right now is left for
        // the next round rather than waited for (or deleted under it).
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM cards c WHERE c.state = 'resolved' AND c.resolved_at < $1
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.card_seq = c.seq AND o.state <> 'dead')
             ORDER BY c.resolved_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(ms(resolved_before))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        // Digests are about no card: a dead one goes after the same time.
        sqlx::query(
            "DELETE FROM outbox WHERE kind = 'digest' AND state = 'dead' AND updated_at < $1",
        )
        .bind(ms(resolved_before))
        .execute(&mut *tx)
        .await?;
        if seqs.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        // Children first (thread events go with their outbox rows by
        // cascade).
        for sql in [
            "DELETE FROM alerts WHERE card_seq = ANY($1)",
            "DELETE FROM outbox WHERE card_seq = ANY($1)",
            "DELETE FROM cards WHERE seq = ANY($1)",
        ] {
            sqlx::query(sql).bind(&seqs).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(seqs.len() as u64)
    }

    async fn first_seen(&self, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM requests_seen WHERE at < $1")
            .bind(ms(decisions::seen_expiry(now)))
            .execute(&mut *tx)
            .await?;
        // A concurrent insert of the same key waits for this one's commit
        // and then does nothing: exactly one caller sees `true`.
        let inserted = sqlx::query(
            "INSERT INTO requests_seen (key, at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }

    async fn digest_figures(
        &self,
        channel: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limits: DigestLimits,
    ) -> Result<DigestFigures, StoreError> {
        reads::digest_figures(
            &self.pool,
            AlertnameSql::Postgres,
            channel,
            from,
            to,
            limits,
        )
        .await
    }

    async fn last_digest(&self, key: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        reads::last_digest(&self.pool, key).await
    }

    async fn claim_digest(
        &self,
        key: &str,
        instant: DateTime<Utc>,
        digest: Option<&Digest>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let claimed =
            digest_runs::claim::<sqlx::Postgres>(&mut tx, key, instant, digest, now).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn card_by_key(
        &self,
        key: &str,
    ) -> Result<Option<(CardId, CardState, Option<String>)>, StoreError> {
        reads::card_by_key(&self.pool, key).await
    }

    async fn save_oauth_state(
        &self,
        state_hash: &str,
        browser_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        installs::save_state(&self.pool, state_hash, browser_hash, expires_at, now).await
    }

    async fn take_oauth_state(&self, state_hash: &str) -> Result<Option<OAuthState>, StoreError> {
        installs::take_state(&self.pool, state_hash).await
    }

    async fn save_installation(&self, installation: &Installation) -> Result<(), StoreError> {
        installs::save_installation(&self.pool, installation).await
    }

    async fn installation(&self, team_id: &str) -> Result<Option<Installation>, StoreError> {
        installs::installation_of(&self.pool, team_id).await
    }

    async fn installations(&self, limit: u32) -> Result<Vec<Installation>, StoreError> {
        installs::installations(&self.pool, limit).await
    }

    async fn remove_installation(&self, team_id: &str) -> Result<bool, StoreError> {
        installs::remove_installation(&self.pool, team_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_drops_the_password_only() {
        assert_eq!(
            redact("postgres://ackbar:s3cret@db.internal:5432/ackbar"),
            "postgres://ackbar@db.internal:5432/ackbar"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
    }
}
