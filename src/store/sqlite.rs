//! SQLite store: WAL journal, one writer connection, a small reader pool.
//!
//! Writes go through a single connection so transactions never fight over
//! SQLite's write lock (no `SQLITE_BUSY` upgrades); reads (the dedupe fast
//! path, rendering) use the reader pool and run beside writes thanks to WAL.
//! `synchronous = FULL`: a commit is on disk before ingest answers 2xx.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::{
    Action, ActionOutcome, ApplyOutcome, CardBrief, CardSummary, Completion, DeadLetter,
    DueEscalation, NextOp, OpKind, OutboxOp, OutboxSummary, QuietCard, Store, StoreError,
};
use crate::model::{
    Acknowledgement, Alert, AlertStatus, CardAlert, CardId, CardState, CardView, Fingerprint,
    Labels, Occurrences, ThreadEvent,
};
use crate::pipeline::card::{self, CardBatch, CardSnapshot, KnownAlert, Plan, Target};

/// Thread events kept in one pending reply. Past this a storm's reply is
/// already capped by rendering; more events would only grow the row.
const MAX_EVENTS_PER_REPLY: usize = 2_000;
/// Fingerprints per `IN (...)` query (SQLite's default limit is 32,766
/// parameters; stay far below).
const IN_CHUNK: usize = 500;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(e.to_string()),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(v)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp out of range: {v}")))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    // Serializing maps of strings and our own enums cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad JSON column: {e}")))
}

impl SqliteStore {
    /// Opens (creating when missing) and migrates. `sqlite::memory:` gives a
    /// private in-memory database (one connection serves reads and writes).
    pub async fn open(url: &str, busy_timeout: Duration) -> Result<SqliteStore, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            url: url.to_owned(),
            reason,
        };
        let memory = url.contains(":memory:");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| open_err(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(if memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(busy_timeout);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(busy_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|e| open_err(e.to_string()))?;
        sqlx::migrate!("src/store/migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        let reader = if memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(busy_timeout)
                .connect_with(options.read_only(true))
                .await
                .map_err(|e| open_err(e.to_string()))?
        };
        Ok(SqliteStore { writer, reader })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// The latest card of a key with its row sequence number.
struct LatestCard {
    seq: i64,
    snapshot: CardSnapshot,
}

async fn latest_card(
    conn: &mut SqliteConnection,
    key: &str,
) -> Result<Option<LatestCard>, StoreError> {
    let row = sqlx::query(
        "SELECT seq, id, state, opened_at, resolved_at, group_digest, firing_count, resolved_count
         FROM cards WHERE card_key = ? ORDER BY seq DESC LIMIT 1",
    )
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get("state")?;
    Ok(Some(LatestCard {
        seq: row.try_get("seq")?,
        snapshot: CardSnapshot {
            id: CardId(row.try_get("id")?),
            state: CardState::from_str(&state).map_err(StoreError::Corrupt)?,
            opened_at: from_ms(row.try_get("opened_at")?)?,
            resolved_at: row
                .try_get::<Option<i64>, _>("resolved_at")?
                .map(from_ms)
                .transpose()?,
            group_digest: row.try_get::<i64, _>("group_digest")? as u64,
            firing_count: row.try_get::<i64, _>("firing_count")? as u64,
            resolved_count: row.try_get::<i64, _>("resolved_count")? as u64,
        },
    }))
}

/// The occurrence columns of an alert row (both NULL for state sources).
fn occurrences_from_row(row: &SqliteRow) -> Result<Option<Occurrences>, StoreError> {
    let count: Option<i64> = row.try_get("occurrences")?;
    let last_seen: Option<i64> = row.try_get("last_seen_at")?;
    match (count, last_seen) {
        (Some(count), Some(last_seen)) => Ok(Some(Occurrences {
            count: count as u64,
            last_seen: from_ms(last_seen)?,
        })),
        _ => Ok(None),
    }
}

async fn known_alerts(
    conn: &mut SqliteConnection,
    card_seq: i64,
    batch: &CardBatch,
) -> Result<HashMap<Fingerprint, KnownAlert>, StoreError> {
    let mut known = HashMap::with_capacity(batch.alerts.len());
    for chunk in batch.alerts.chunks(IN_CHUNK) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            "SELECT fingerprint, status, digest, expires_at FROM alerts WHERE card_seq = ? AND fingerprint IN ({placeholders})"
        );
        let mut q = sqlx::query(&sql).bind(card_seq);
        for a in chunk {
            q = q.bind(a.fingerprint.0 as i64);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let status: String = row.try_get("status")?;
            known.insert(
                Fingerprint(row.try_get::<i64, _>("fingerprint")? as u64),
                KnownAlert {
                    status: AlertStatus::from_str(&status).map_err(StoreError::Corrupt)?,
                    digest: row.try_get::<i64, _>("digest")? as u64,
                    expires_at: row
                        .try_get::<Option<i64>, _>("expires_at")?
                        .map(from_ms)
                        .transpose()?,
                },
            );
        }
    }
    Ok(known)
}

async fn plan_batch(
    conn: &mut SqliteConnection,
    batch: &CardBatch,
    now: DateTime<Utc>,
) -> Result<(Option<LatestCard>, Plan), StoreError> {
    let latest = latest_card(conn, &batch.key).await?;
    let known = match &latest {
        Some(card) => known_alerts(conn, card.seq, batch).await?,
        None => HashMap::new(),
    };
    let plan = card::plan(latest.as_ref().map(|c| &c.snapshot), &known, batch, now);
    Ok((latest, plan))
}

fn unchanged(batch: &CardBatch, latest: Option<&LatestCard>) -> ApplyOutcome {
    ApplyOutcome {
        card: latest.map(|c| c.snapshot.id.clone()),
        channel: batch.channel.clone(),
        changed: false,
        opened: false,
        reopened: false,
        resolved: false,
        alerts_fired: 0,
        alerts_resolved: 0,
        ops_pushed: Vec::new(),
    }
}

async fn insert_op(
    conn: &mut SqliteConnection,
    card_seq: i64,
    channel: &str,
    kind: OpKind,
    events: Option<&str>,
    not_before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let done = sqlx::query(
        "INSERT INTO outbox (card_seq, channel, kind, state, events, not_before, created_at, updated_at)
         VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)",
    )
    .bind(card_seq)
    .bind(channel)
    .bind(kind.as_str())
    .bind(events)
    .bind(ms(not_before))
    .bind(ms(now))
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    Ok(done.last_insert_rowid())
}

/// Enqueues an update unless one is already pending, or the post is (either
/// will render the latest state when sent). Returns whether a row was added.
async fn push_update(
    conn: &mut SqliteConnection,
    card_seq: i64,
    channel: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let pending = sqlx::query(
        "SELECT 1 FROM outbox WHERE card_seq = ? AND state = 'pending' AND kind IN ('post', 'update') LIMIT 1",
    )
    .bind(card_seq)
    .fetch_optional(&mut *conn)
    .await?;
    if pending.is_some() {
        return Ok(false);
    }
    insert_op(conn, card_seq, channel, OpKind::Update, None, now, now).await?;
    Ok(true)
}

/// Appends events to the card's pending reply, or starts one that waits for
/// the batching window. Returns whether a row was added.
async fn push_reply(
    conn: &mut SqliteConnection,
    card_seq: i64,
    channel: &str,
    events: &[ThreadEvent],
    window: Duration,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let pending = sqlx::query(
        "SELECT id, events_held FROM outbox WHERE card_seq = ? AND state = 'pending' AND kind = 'reply'
         ORDER BY id DESC LIMIT 1",
    )
    .bind(card_seq)
    .fetch_optional(&mut *conn)
    .await?;
    let (op_id, held, created) = match pending {
        Some(row) => (
            row.try_get::<i64, _>("id")?,
            row.try_get::<i64, _>("events_held")? as usize,
            false,
        ),
        None => {
            let not_before = now + chrono::Duration::from_std(window).unwrap_or_default();
            let id = insert_op(
                conn,
                card_seq,
                channel,
                OpKind::Reply,
                None,
                not_before,
                now,
            )
            .await?;
            (id, 0, true)
        }
    };
    // Past the cap, keep only the card-level events (resolved, reopened):
    // the reply already lists more alerts than it can show.
    let room = MAX_EVENTS_PER_REPLY.saturating_sub(held);
    let kept: Vec<String> = events
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            *i < room
                || matches!(
                    e,
                    ThreadEvent::CardResolved { .. } | ThreadEvent::CardReopened { .. }
                )
        })
        .map(|(_, e)| json(e))
        .collect();
    for chunk in kept.chunks(IN_CHUNK / 2) {
        let rows = vec!["(?, ?)"; chunk.len()].join(", ");
        let sql = format!("INSERT INTO thread_events (op_id, event) VALUES {rows}");
        let mut q = sqlx::query(&sql);
        for event in chunk {
            q = q.bind(op_id).bind(event);
        }
        q.execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE outbox SET events_held = events_held + ?, updated_at = ? WHERE id = ?")
        .bind(kept.len() as i64)
        .bind(ms(now))
        .bind(op_id)
        .execute(&mut *conn)
        .await?;
    Ok(created)
}

async fn write_change(
    conn: &mut SqliteConnection,
    batch: &CardBatch,
    latest: Option<&LatestCard>,
    change: &card::Change,
    now: DateTime<Utc>,
) -> Result<ApplyOutcome, StoreError> {
    let seq: i64 = match (&change.target, latest) {
        (Target::New(id), _) => sqlx::query(
            "INSERT INTO cards (id, card_key, route, channel, state, opened_at, resolved_at, group_labels,
                 common_labels, common_annotations, external_url, group_digest, firing_count, resolved_count, updated_at,
                 next_escalation_at, manual_resolve)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
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
        .bind(batch.manual_resolve)
        .fetch_one(&mut *conn)
        .await?
        .try_get("seq")?,
        (Target::Existing(_) | Target::Reopen(_), Some(card)) => {
            if matches!(change.target, Target::Reopen(_)) {
                // A reopened card starts over: not acknowledged, its policy
                // from the first step.
                sqlx::query(
                    "UPDATE cards SET acked_by = NULL, acked_at = NULL, escalation_level = 0,
                         next_escalation_at = ? WHERE seq = ?",
                )
                .bind(escalation_due(batch, change, now).map(ms))
                .bind(card.seq)
                .execute(&mut *conn)
                .await?;
            } else if change.state == CardState::Resolved {
                sqlx::query("UPDATE cards SET next_escalation_at = NULL WHERE seq = ?")
                    .bind(card.seq)
                    .execute(&mut *conn)
                    .await?;
            }
            sqlx::query(
                "UPDATE cards SET state = ?, resolved_at = ?, group_labels = ?, common_labels = ?,
                     common_annotations = ?, external_url = ?, group_digest = ?, firing_count = ?,
                     resolved_count = ?, updated_at = ?
                 WHERE seq = ?",
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
            .bind(card.seq)
            .execute(&mut *conn)
            .await?;
            card.seq
        }
        (_, None) => return Err(StoreError::Corrupt("change targets a card that does not exist".into())),
    };

    for &i in &change.alert_writes {
        let a = &batch.alerts[i];
        sqlx::query(
            "INSERT INTO alerts (card_seq, fingerprint, status, digest, labels, annotations, starts_at, ends_at,
                 generator_url, updated_at, occurrences, last_seen_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (card_seq, fingerprint) DO UPDATE SET status = excluded.status,
                 digest = excluded.digest, labels = excluded.labels, annotations = excluded.annotations,
                 starts_at = CASE WHEN alerts.status = 'firing' AND excluded.status = 'firing'
                     AND excluded.occurrences IS NOT NULL THEN alerts.starts_at ELSE excluded.starts_at END,
                 ends_at = excluded.ends_at,
                 generator_url = excluded.generator_url, updated_at = excluded.updated_at,
                 occurrences = CASE WHEN alerts.status = 'firing' AND excluded.status = 'firing'
                     THEN alerts.occurrences + excluded.occurrences ELSE excluded.occurrences END,
                 last_seen_at = max(coalesce(alerts.last_seen_at, excluded.last_seen_at), excluded.last_seen_at),
                 expires_at = CASE WHEN excluded.status = 'firing'
                     THEN max(coalesce(alerts.expires_at, excluded.expires_at), excluded.expires_at) END",
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
        insert_op(conn, seq, &batch.channel, OpKind::Post, None, now, now).await?;
        ops_pushed.push(OpKind::Post);
    }
    if change.update_card && push_update(conn, seq, &batch.channel, now).await? {
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
    Ok(ApplyOutcome {
        card: Some(change.target.card_id().clone()),
        channel: batch.channel.clone(),
        changed: true,
        opened: matches!(change.target, Target::New(_)),
        reopened: matches!(change.target, Target::Reopen(_)),
        resolved: change.card_resolved(),
        alerts_fired: change.alerts_fired,
        alerts_resolved: change.alerts_resolved,
        ops_pushed,
    })
}

/// When a new or reopened card's first escalation step is due.
fn escalation_due(
    batch: &CardBatch,
    change: &card::Change,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if change.state != CardState::Firing {
        return None;
    }
    let after = chrono::Duration::from_std(batch.first_escalation?).ok()?;
    now.checked_add_signed(after)
}

async fn brief(
    conn: &mut SqliteConnection,
    card: &CardId,
) -> Result<Option<(i64, CardBrief)>, StoreError> {
    let row = sqlx::query(
        "SELECT seq, route, channel, state, opened_at, acked_by, escalation_level, ts, manual_resolve
         FROM cards WHERE id = ?",
    )
    .bind(&card.0)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get("state")?;
    Ok(Some((
        row.try_get("seq")?,
        CardBrief {
            id: card.clone(),
            route: row.try_get("route")?,
            channel: row.try_get("channel")?,
            state: CardState::from_str(&state).map_err(StoreError::Corrupt)?,
            opened_at: from_ms(row.try_get("opened_at")?)?,
            acked_by: row.try_get("acked_by")?,
            escalation_level: row.try_get::<i64, _>("escalation_level")? as u32,
            ts: row.try_get("ts")?,
            manual_resolve: row.try_get::<i64, _>("manual_resolve")? != 0,
        },
    )))
}

fn op_from_row(row: &SqliteRow) -> Result<OutboxOp, StoreError> {
    let kind = OpKind::parse(row.try_get("kind")?)?;
    let events = match row.try_get::<Option<&str>, _>("events")? {
        Some(text) => from_json(text)?,
        None => Vec::new(),
    };
    Ok(OutboxOp {
        id: row.try_get("id")?,
        kind,
        card: CardId(row.try_get("card_id")?),
        channel: row.try_get("channel")?,
        card_ts: row.try_get("ts")?,
        events,
        recipient: row.try_get("recipient")?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        reconcile: row.try_get::<i64, _>("reconcile")? != 0,
        card_opened_at: from_ms(row.try_get("opened_at")?)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn apply(
        &self,
        batches: &[CardBatch],
        now: DateTime<Utc>,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        // Fast path: decide on a reader connection. Most notifications are
        // re-sends that change nothing; they never take the write lock.
        {
            let mut conn = self.reader.acquire().await?;
            let mut outcomes = Vec::with_capacity(batches.len());
            for batch in batches {
                let (latest, plan) = plan_batch(&mut conn, batch, now).await?;
                if plan != Plan::Unchanged {
                    outcomes.clear();
                    break;
                }
                outcomes.push(unchanged(batch, latest.as_ref()));
            }
            if outcomes.len() == batches.len() {
                return Ok(outcomes);
            }
        }
        // Something changes: decide again under the write lock (another
        // request may have committed in between) and write.
        let mut tx = self.writer.begin().await?;
        let mut outcomes = Vec::with_capacity(batches.len());
        for batch in batches {
            let (latest, plan) = plan_batch(&mut tx, batch, now).await?;
            let outcome = match plan {
                Plan::Unchanged => unchanged(batch, latest.as_ref()),
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
        sqlx::query("SELECT 1").execute(&self.writer).await?;
        Ok(())
    }

    async fn recover_inflight(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 'pending', reconcile = CASE WHEN kind = 'post' THEN 1 ELSE reconcile END
             WHERE state = 'sending'",
        )
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    async fn pending_channels(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT channel FROM outbox WHERE state = 'pending'")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| r.try_get("channel").map_err(StoreError::from))
            .collect()
    }

    async fn next_op(&self, channel: &str, now: DateTime<Utc>) -> Result<NextOp, StoreError> {
        let mut conn = self.reader.acquire().await?;
        let row = sqlx::query(
            "SELECT o.id, o.kind, o.channel, o.events, o.recipient, o.attempts, o.reconcile, c.id AS card_id, c.ts,
                 c.opened_at
             FROM outbox o JOIN cards c ON c.seq = o.card_seq
             WHERE o.channel = ? AND o.state = 'pending' AND o.not_before <= ?
               AND (o.kind = 'post' OR c.ts IS NOT NULL)
             ORDER BY o.id LIMIT 1",
        )
        .bind(channel)
        .bind(ms(now))
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            let mut op = op_from_row(&row)?;
            if op.kind == OpKind::Reply {
                let rows =
                    sqlx::query("SELECT event FROM thread_events WHERE op_id = ? ORDER BY id")
                        .bind(op.id)
                        .fetch_all(&mut *conn)
                        .await?;
                op.events = rows
                    .iter()
                    .map(|r| from_json(r.try_get("event")?))
                    .collect::<Result<_, StoreError>>()?;
            }
            return Ok(NextOp::Ready(op));
        }
        let next: Option<i64> = sqlx::query(
            "SELECT MIN(o.not_before) AS next FROM outbox o JOIN cards c ON c.seq = o.card_seq
             WHERE o.channel = ? AND o.state = 'pending' AND (o.kind = 'post' OR c.ts IS NOT NULL)",
        )
        .bind(channel)
        .fetch_one(&mut *conn)
        .await?
        .try_get("next")?;
        Ok(match next {
            Some(at) => NextOp::WaitUntil(from_ms(at)?),
            None => NextOp::Idle,
        })
    }

    async fn begin_attempt(&self, op_id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = ? WHERE id = ?")
            .bind(ms(now))
            .bind(op_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn complete(
        &self,
        op: &OutboxOp,
        completion: Completion,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        match completion {
            Completion::Posted { ts, refresh } => {
                sqlx::query("UPDATE cards SET ts = ? WHERE id = ? AND ts IS NULL")
                    .bind(&ts)
                    .bind(&op.card.0)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM outbox WHERE id = ?")
                    .bind(op.id)
                    .execute(&mut *tx)
                    .await?;
                if refresh {
                    let seq: i64 = sqlx::query("SELECT seq FROM cards WHERE id = ?")
                        .bind(&op.card.0)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get("seq")?;
                    push_update(&mut tx, seq, &op.channel, now).await?;
                }
            }
            Completion::Done => {
                sqlx::query("DELETE FROM outbox WHERE id = ?")
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
                    "UPDATE outbox SET state = 'pending', not_before = ?, last_error = ?, updated_at = ?,
                         attempts = attempts - ?, reconcile = CASE WHEN ? AND kind = 'post' THEN 1 ELSE reconcile END
                     WHERE id = ?",
                )
                .bind(ms(not_before))
                .bind(&error)
                .bind(ms(now))
                .bind(if counts { 0 } else { 1 })
                .bind(outcome_unknown)
                .bind(op.id)
                .execute(&mut *tx)
                .await?;
            }
            Completion::Dead { error } => {
                sqlx::query(
                    "UPDATE outbox SET state = 'dead', last_error = ?, updated_at = ? WHERE id = ?",
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
                        "UPDATE outbox SET state = 'dead', last_error = ?, updated_at = ?
                         WHERE card_seq = (SELECT seq FROM cards WHERE id = ?) AND state = 'pending'",
                    )
                    .bind(format!("card was never posted: {error}"))
                    .bind(ms(now))
                    .bind(&op.card.0)
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
        let mut conn = self.reader.acquire().await?;
        let Some(row) = sqlx::query("SELECT * FROM cards WHERE id = ?")
            .bind(&card.0)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let seq: i64 = row.try_get("seq")?;
        let state: String = row.try_get("state")?;
        let alert_rows = sqlx::query(
            "SELECT fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, occurrences,
                 last_seen_at FROM alerts
             WHERE card_seq = ?
             ORDER BY CASE status WHEN 'firing' THEN 0 ELSE 1 END, updated_at DESC, starts_at, fingerprint
             LIMIT ?",
        )
        .bind(seq)
        .bind(i64::from(max_alerts))
        .fetch_all(&mut *conn)
        .await?;
        let mut alerts = Vec::with_capacity(alert_rows.len());
        for a in &alert_rows {
            let status: String = a.try_get("status")?;
            alerts.push(CardAlert {
                fingerprint: Fingerprint(a.try_get::<i64, _>("fingerprint")? as u64),
                status: AlertStatus::from_str(&status).map_err(StoreError::Corrupt)?,
                labels: from_json::<Labels>(a.try_get("labels")?)?,
                annotations: from_json::<Labels>(a.try_get("annotations")?)?,
                starts_at: from_ms(a.try_get("starts_at")?)?,
                ends_at: a
                    .try_get::<Option<i64>, _>("ends_at")?
                    .map(from_ms)
                    .transpose()?,
                generator_url: a.try_get("generator_url")?,
                occurrences: occurrences_from_row(a)?,
            });
        }
        Ok(Some(CardView {
            id: card.clone(),
            key: row.try_get("card_key")?,
            route: row.try_get("route")?,
            channel: row.try_get("channel")?,
            state: CardState::from_str(&state).map_err(StoreError::Corrupt)?,
            opened_at: from_ms(row.try_get("opened_at")?)?,
            resolved_at: row
                .try_get::<Option<i64>, _>("resolved_at")?
                .map(from_ms)
                .transpose()?,
            group_labels: from_json(row.try_get("group_labels")?)?,
            common_labels: from_json(row.try_get("common_labels")?)?,
            common_annotations: from_json(row.try_get("common_annotations")?)?,
            external_url: row.try_get("external_url")?,
            key_labels: Vec::new(),
            alerts,
            firing_count: row.try_get::<i64, _>("firing_count")? as u64,
            resolved_count: row.try_get::<i64, _>("resolved_count")? as u64,
            acknowledged: match (
                row.try_get::<Option<String>, _>("acked_by")?,
                row.try_get::<Option<i64>, _>("acked_at")?,
            ) {
                (Some(by), Some(at)) => Some(Acknowledgement {
                    by,
                    at: from_ms(at)?,
                }),
                _ => None,
            },
            escalation_level: row.try_get::<i64, _>("escalation_level")? as u32,
            manual_resolve: row.try_get::<i64, _>("manual_resolve")? != 0,
        }))
    }

    async fn outbox_summary(&self) -> Result<OutboxSummary, StoreError> {
        let row = sqlx::query(
            "SELECT
                (SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')) AS pending,
                (SELECT COUNT(*) FROM outbox WHERE state = 'dead') AS dead,
                (SELECT COUNT(*) FROM cards WHERE state = 'firing') AS firing",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(OutboxSummary {
            pending: row.try_get::<i64, _>("pending")? as u64,
            dead: row.try_get::<i64, _>("dead")? as u64,
            cards_firing: row.try_get::<i64, _>("firing")? as u64,
        })
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id, o.kind, o.channel, o.attempts, o.last_error, c.id AS card_id
             FROM outbox o JOIN cards c ON c.seq = o.card_seq WHERE o.state = 'dead' ORDER BY o.id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get("id")?,
                    kind: OpKind::parse(r.try_get("kind")?)?,
                    card: CardId(r.try_get("card_id")?),
                    channel: r.try_get("channel")?,
                    attempts: r.try_get::<i64, _>("attempts")? as u32,
                    error: r
                        .try_get::<Option<String>, _>("last_error")?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn retry_dead_letter(&self, op_id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query("SELECT card_seq, kind FROM outbox WHERE id = ? AND state = 'dead'")
            .bind(op_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let card_seq: i64 = row.try_get("card_seq")?;
        let kind = OpKind::parse(row.try_get("kind")?)?;
        let revive =
            "UPDATE outbox SET state = 'pending', attempts = 0, not_before = ?, updated_at = ?";
        if kind == OpKind::Post {
            sqlx::query(&format!("{revive} WHERE card_seq = ? AND state = 'dead'"))
                .bind(ms(now))
                .bind(ms(now))
                .bind(card_seq)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(&format!("{revive} WHERE id = ?"))
                .bind(ms(now))
                .bind(ms(now))
                .bind(op_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn card_brief(&self, card: &CardId) -> Result<Option<CardBrief>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        brief(&mut conn, card)
            .await
            .map(|b| b.map(|(_, brief)| brief))
    }

    async fn act(
        &self,
        card: &CardId,
        action: Action,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, StoreError> {
        let mut tx = self.writer.begin().await?;
        let Some((seq, current)) = brief(&mut tx, card).await? else {
            return Ok(ActionOutcome::NotFound);
        };
        let firing = current.state == CardState::Firing;
        let (applies, event) = match &action {
            Action::Acknowledge { by } => (
                firing && current.acked_by.is_none(),
                ThreadEvent::Acknowledged {
                    by: by.clone(),
                    at: now,
                },
            ),
            Action::Unacknowledge { by, .. } => (
                firing && current.acked_by.is_some(),
                ThreadEvent::Unacknowledged {
                    by: by.clone(),
                    at: now,
                },
            ),
            // Cards of sources that resolve themselves cannot be resolved by
            // hand: the next notification would contradict it.
            Action::Resolve { by } => (
                firing && current.manual_resolve,
                ThreadEvent::ResolvedBy {
                    by: by.clone(),
                    at: now,
                    duration_secs: (now - current.opened_at).num_seconds().max(0),
                },
            ),
            Action::Note { event } => (true, event.clone()),
            Action::Escalate {
                from_level,
                notify,
                by,
                ..
            } => (
                firing && current.acked_by.is_none() && current.escalation_level == *from_level,
                ThreadEvent::Escalated {
                    level: from_level + 1,
                    notify: notify.clone(),
                    by: by.clone(),
                    at: now,
                },
            ),
        };
        if !applies {
            return Ok(ActionOutcome::NoChange(current));
        }
        let update = match &action {
            Action::Acknowledge { by } => Some(sqlx::query(
                "UPDATE cards SET acked_by = ?, acked_at = ?, next_escalation_at = NULL, updated_at = ? WHERE seq = ?",
            )
            .bind(by)
            .bind(ms(now))
            .bind(ms(now))
            .bind(seq)),
            Action::Unacknowledge { next_escalation_at, .. } => Some(sqlx::query(
                "UPDATE cards SET acked_by = NULL, acked_at = NULL, next_escalation_at = ?, updated_at = ?
                 WHERE seq = ?",
            )
            .bind(next_escalation_at.map(ms))
            .bind(ms(now))
            .bind(seq)),
            Action::Resolve { .. } => {
                // Digest 0 matches no alert: the source's next report of one
                // of these alerts, firing or not, is a change (a re-fire
                // reopens the card within the reopen window).
                sqlx::query(
                    "UPDATE alerts SET status = 'resolved', ends_at = ?, digest = 0, updated_at = ?
                     WHERE card_seq = ? AND status = 'firing'",
                )
                .bind(ms(now))
                .bind(ms(now))
                .bind(seq)
                .execute(&mut *tx)
                .await?;
                Some(
                    sqlx::query(
                        "UPDATE cards SET state = 'resolved', resolved_at = ?, resolved_count = resolved_count + firing_count,
                             firing_count = 0, next_escalation_at = NULL, updated_at = ?
                         WHERE seq = ?",
                    )
                    .bind(ms(now))
                    .bind(ms(now))
                    .bind(seq),
                )
            }
            Action::Note { .. } => None,
            Action::Escalate { next_escalation_at, .. } => Some(sqlx::query(
                "UPDATE cards SET escalation_level = escalation_level + 1, next_escalation_at = ?, updated_at = ?
                 WHERE seq = ?",
            )
            .bind(next_escalation_at.map(ms))
            .bind(ms(now))
            .bind(seq)),
        };
        // A status question changes nothing on the card: only the reply.
        if let Some(update) = update {
            update.execute(&mut *tx).await?;
            push_update(&mut tx, seq, &current.channel, now).await?;
        }
        // Actions are answers to a person: reply at once rather than after
        // the batching window meant for alert storms.
        if let Action::Escalate { dm, .. } = &action {
            let events = json(&[&event]);
            for user in dm {
                sqlx::query(
                    "INSERT INTO outbox (card_seq, channel, kind, state, events, recipient, not_before, created_at,
                         updated_at)
                     VALUES (?, ?, 'dm', 'pending', ?, ?, ?, ?, ?)",
                )
                .bind(seq)
                .bind(&current.channel)
                .bind(&events)
                .bind(user)
                .bind(ms(now))
                .bind(ms(now))
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
            }
        }
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
        let rows = sqlx::query(
            "SELECT id, route, channel, ts, common_labels, group_labels, firing_count, acked_by, escalation_level,
                 opened_at
             FROM cards WHERE state = 'firing' ORDER BY opened_at LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let common: Labels = from_json(r.try_get("common_labels")?)?;
                let group: Labels = from_json(r.try_get("group_labels")?)?;
                let title = common
                    .get("alertname")
                    .or_else(|| group.get("alertname"))
                    .cloned()
                    .unwrap_or_else(|| "Alert".to_owned());
                Ok(CardSummary {
                    id: CardId(r.try_get("id")?),
                    route: r.try_get("route")?,
                    channel: r.try_get("channel")?,
                    ts: r.try_get("ts")?,
                    title,
                    firing_count: r.try_get::<i64, _>("firing_count")? as u64,
                    acked_by: r.try_get("acked_by")?,
                    escalation_level: r.try_get::<i64, _>("escalation_level")? as u32,
                    opened_at: from_ms(r.try_get("opened_at")?)?,
                })
            })
            .collect()
    }

    async fn cards_by_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<CardId>, StoreError> {
        // Card ids are hex; anything else cannot match (and keeps LIKE
        // wildcards out of the pattern).
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query("SELECT id FROM cards WHERE id LIKE ? ORDER BY seq DESC LIMIT ?")
            .bind(format!("{}%", prefix.to_ascii_lowercase()))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|r| Ok(CardId(r.try_get("id")?))).collect()
    }

    async fn card_by_message(&self, channel: &str, ts: &str) -> Result<Option<CardId>, StoreError> {
        let row = sqlx::query("SELECT id FROM cards WHERE channel = ? AND ts = ? LIMIT 1")
            .bind(channel)
            .bind(ts)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| Ok(CardId(r.try_get("id")?))).transpose()
    }

    async fn due_escalations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueEscalation>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, route, escalation_level, opened_at FROM cards
             WHERE next_escalation_at IS NOT NULL AND next_escalation_at <= ?
               AND state = 'firing' AND acked_by IS NULL
             ORDER BY next_escalation_at LIMIT ?",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueEscalation {
                    card: CardId(r.try_get("id")?),
                    route: r.try_get("route")?,
                    level: r.try_get::<i64, _>("escalation_level")? as u32,
                    opened_at: from_ms(r.try_get("opened_at")?)?,
                })
            })
            .collect()
    }

    async fn next_escalation_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query(
            "SELECT MIN(next_escalation_at) AS next FROM cards
             WHERE next_escalation_at IS NOT NULL AND state = 'firing' AND acked_by IS NULL",
        )
        .fetch_one(&self.reader)
        .await?
        .try_get("next")?;
        next.map(from_ms).transpose()
    }

    async fn quiet_alerts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<QuietCard>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.card_key, c.route, c.channel, c.group_labels, c.common_labels, c.common_annotations,
                 c.external_url, a.card_seq, a.fingerprint, a.labels, a.annotations, a.starts_at,
                 a.generator_url, a.occurrences, a.last_seen_at
             FROM alerts a JOIN cards c ON c.seq = a.card_seq
             WHERE a.expires_at IS NOT NULL AND a.expires_at <= ? AND a.status = 'firing'
             ORDER BY a.card_seq, a.expires_at LIMIT ?",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        let mut cards: Vec<(i64, QuietCard)> = Vec::new();
        for row in &rows {
            let seq: i64 = row.try_get("card_seq")?;
            if cards.last().is_none_or(|(s, _)| *s != seq) {
                cards.push((
                    seq,
                    QuietCard {
                        key: row.try_get("card_key")?,
                        route: row.try_get("route")?,
                        channel: row.try_get("channel")?,
                        group_labels: from_json(row.try_get("group_labels")?)?,
                        common_labels: from_json(row.try_get("common_labels")?)?,
                        common_annotations: from_json(row.try_get("common_annotations")?)?,
                        external_url: row.try_get("external_url")?,
                        alerts: Vec::new(),
                    },
                ));
            }
            let occurrences = occurrences_from_row(row)?;
            let Some((_, card)) = cards.last_mut() else {
                continue;
            };
            card.alerts.push(Alert {
                fingerprint: Fingerprint(row.try_get::<i64, _>("fingerprint")? as u64),
                status: AlertStatus::Resolved,
                labels: from_json(row.try_get("labels")?)?,
                annotations: from_json(row.try_get("annotations")?)?,
                starts_at: from_ms(row.try_get("starts_at")?)?,
                ends_at: occurrences.map(|o| o.last_seen),
                generator_url: row.try_get("generator_url")?,
                occurrences,
            });
        }
        Ok(cards.into_iter().map(|(_, card)| card).collect())
    }

    async fn next_quiet_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query(
            "SELECT MIN(expires_at) AS next FROM alerts WHERE expires_at IS NOT NULL AND status = 'firing'",
        )
        .fetch_one(&self.reader)
        .await?
        .try_get("next")?;
        next.map(from_ms).transpose()
    }

    async fn prune(&self, resolved_before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM cards c WHERE c.state = 'resolved' AND c.resolved_at < ?
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.card_seq = c.seq AND o.state <> 'dead')
             ORDER BY c.resolved_at LIMIT ?",
        )
        .bind(ms(resolved_before))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if seqs.is_empty() {
            return Ok(0);
        }
        let placeholders = vec!["?"; seqs.len()].join(",");
        // Children first: foreign keys are enforced (thread events go with
        // their outbox rows by cascade).
        for table in ["alerts", "outbox"] {
            let sql = format!("DELETE FROM {table} WHERE card_seq IN ({placeholders})");
            let mut q = sqlx::query(&sql);
            for seq in &seqs {
                q = q.bind(seq);
            }
            q.execute(&mut *tx).await?;
        }
        let sql = format!("DELETE FROM cards WHERE seq IN ({placeholders})");
        let mut q = sqlx::query(&sql);
        for seq in &seqs {
            q = q.bind(seq);
        }
        q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(seqs.len() as u64)
    }

    async fn first_seen(&self, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let day_ago = now - chrono::Duration::days(1);
        sqlx::query("DELETE FROM requests_seen WHERE at < ?")
            .bind(ms(day_ago))
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO requests_seen (key, at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }

    async fn card_by_key(
        &self,
        key: &str,
    ) -> Result<Option<(CardId, CardState, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, state, ts FROM cards WHERE card_key = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let state: String = row.try_get("state")?;
        Ok(Some((
            CardId(row.try_get("id")?),
            CardState::from_str(&state).map_err(StoreError::Corrupt)?,
            row.try_get("ts")?,
        )))
    }
}
