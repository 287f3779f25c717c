//! SQLite store: WAL journal, one writer at a time, a small reader pool.
//!
//! Writes are serialized so transactions never fight over SQLite's write
//! lock (no `SQLITE_BUSY` upgrades): notifications are written by the group
//! writer's own connection (`super::sqlite_group`) while it holds the one
//! sqlx writer connection, which everything else that writes uses. Reads
//! (rendering, listings) use the reader pool and run beside writes thanks
//! to WAL; re-sent notifications are decided by `super::state_cache`, or
//! else by the group writer, which teaches the cache what it read.
//! A commit is on disk before ingest answers 2xx: the sqlx connections
//! commit with `synchronous = FULL`, the group writer flushes the log
//! itself before it answers.
//!
//! The group writer runs SQLite on its own thread, statement by statement;
//! on the sqlx connections each statement is a round trip to the
//! connection's worker thread, dearer than most statements themselves, so
//! what they write in one transaction goes as one `super::sqlite_script`
//! script where it can.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool};

use super::decisions::{
    self, action_event, escalation_due, posted_card, reply_events_to_keep, unchanged,
};
use super::digest_runs;
use super::installs;
use super::reads::{self, AlertnameSql};
use super::retry;
use super::rows::{self, Columns, json, ms};
use super::sqlite_group::GroupWriter;
use super::sqlite_script::Script;
use super::state_cache::StateCache;
use super::{
    Action, ActionOutcome, ApplyOutcome, CardBrief, CardSummary, Completion, DeadLetter,
    DigestLimits, DueEscalation, Installation, Lease, NextOp, OAuthState, OpKind, OutboxEntry,
    OutboxOp, OutboxSummary, QuietCard, RetryOutcome, Store, StoreError,
};
use crate::model::{CardId, CardState, CardView, Digest, DigestFigures, Fingerprint, ThreadEvent};
use crate::pipeline::card::{self, CardBatch, CardSnapshot, KnownAlert, Plan, Target};

/// Fingerprints per `IN (...)` query (SQLite's default limit is 32,766
/// parameters; stay far below).
const IN_CHUNK: usize = 500;

/// Bytes of the database file the group writer reads through a memory map.
/// Only the group writer maps it: each mapping's pages count in the
/// process's resident memory (with the map on every connection too, RSS
/// after the load harness's new-alert run was 217 MiB instead of 70 MiB).
const MMAP_SIZE: i64 = 256 << 20;

/// Alert rows per `INSERT` (13 parameters each).
const ALERT_ROWS_PER_INSERT: usize = 200;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    cache: Arc<StateCache>,
    group: GroupWriter,
}

impl SqliteStore {
    /// Every batch's outcome when the cache knows that none of them changes
    /// anything; `None` when one may (the group writer then decides).
    fn decide_unchanged(
        &self,
        batches: &[CardBatch],
        now: DateTime<Utc>,
    ) -> Option<Vec<ApplyOutcome>> {
        batches
            .iter()
            .map(|batch| {
                let card = self.cache.unchanged(batch, now)?;
                Some(unchanged(batch, card.as_ref()))
            })
            .collect()
    }
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
                .connect_with(options.clone().read_only(true))
                .await
                .map_err(|e| open_err(e.to_string()))?
        };
        let cache = Arc::new(StateCache::default());
        let group_conn = open_group_connection(&options, memory, busy_timeout)
            .map_err(|e| open_err(e.to_string()))?;
        // SQLite names the log after the database file.
        let log = (!memory).then(|| {
            let mut name = options.get_filename().as_os_str().to_owned();
            name.push("-wal");
            PathBuf::from(name)
        });
        Ok(SqliteStore {
            group: GroupWriter::start(writer.clone(), group_conn, log, cache.clone())?,
            writer,
            reader,
            cache,
        })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// The group writer's own connection (`super::sqlite_group`) to the
/// database `options` name, set up as the sqlx connections are. An
/// in-memory database is sqlx's shared-cache one, reached by its name.
fn open_group_connection(
    options: &SqliteConnectOptions,
    memory: bool,
    busy_timeout: Duration,
) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if memory {
        flags |= OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_MEMORY
            | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
    }
    let conn = rusqlite::Connection::open_with_flags(options.get_filename(), flags)?;
    conn.busy_timeout(busy_timeout)?;
    // Its commits write the log without flushing it: the group writer's
    // flusher does that, once for several commits, before answering.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Reads of pages another connection wrote since (SQLite then drops its
    // own page cache) come from the mapped file instead of a read call each:
    // +15 % new alerts/s at one alert per request. Writes still go through
    // the log; an I/O error reading the map ends the process (SIGBUS), which
    // loses nothing committed.
    conn.pragma_update(None, "mmap_size", MMAP_SIZE)?;
    // Every shape of statement the writer runs stays prepared: the reads
    // and inserts take one shape per count of alerts (up to their chunk).
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// Held by the one server process a SQLite database serves: the store's
/// cache of card state (`super::state_cache`) is exact only while no other
/// process writes cards. Released when dropped or when the process ends.
#[derive(Debug)]
pub struct ServingLock {
    _file: std::fs::File,
}

/// Takes the serving lock of the SQLite database `url` names (a file beside
/// it, `<database>.lock`); `None` for an in-memory database.
pub fn lock_for_serving(url: &str) -> Result<Option<ServingLock>, StoreError> {
    let open_err = |reason: String| StoreError::Open {
        url: url.to_owned(),
        reason,
    };
    if url.contains(":memory:") {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(url).map_err(|e| open_err(e.to_string()))?;
    let mut path = options.get_filename().as_os_str().to_owned();
    path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| open_err(format!("cannot open {}: {e}", path.to_string_lossy())))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(ServingLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Err(open_err(format!(
            "another ackbar serve is using this database (it holds {}); a SQLite database \
             serves one process: several replicas need PostgreSQL",
            path.to_string_lossy()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(open_err(format!(
            "cannot lock {}: {e}",
            path.to_string_lossy()
        ))),
    }
}

/// The latest card of a key with its row sequence number and its pending
/// operations.
pub(super) struct LatestCard {
    pub seq: i64,
    pub snapshot: CardSnapshot,
    pub pending: PendingOps,
}

/// What a card's pending outbox rows mean for its next update and thread
/// events (invariant 4). Read inside the writer's transaction it stays exact
/// until the commit: no one else writes, and the push functions keep it
/// current with what they add.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PendingOps {
    /// A post or an update is pending: either renders the latest state.
    update_covered: bool,
    /// Events held by the newest pending reply, which takes new ones; `None`
    /// when the card has no pending reply.
    reply_held: Option<usize>,
}

/// The latest card of a key (the highest seq) as a subquery, so that every
/// statement of a script can name it before its seq is known.
const LATEST_OF_KEY: &str = "(SELECT seq FROM cards WHERE card_key = ? ORDER BY seq DESC LIMIT 1)";

/// The id of the newest pending reply of the card whose seq is the SQL
/// expression `card_seq`: the reply new thread events go to.
fn newest_pending_reply(card_seq: &str) -> String {
    format!(
        "(SELECT MAX(id) FROM outbox WHERE card_seq = {card_seq} AND state = 'pending' AND kind = 'reply')"
    )
}

/// `columns` of the cards `c` matching `condition`, with the columns of
/// their [`PendingOps`] (see [`pending_ops`]).
fn select_with_pending_ops(columns: &str, condition: &str) -> String {
    format!(
        "SELECT {columns},
             EXISTS (SELECT 1 FROM outbox WHERE card_seq = c.seq AND state = 'pending'
                 AND kind IN ('post', 'update')) AS update_covered,
             r.events_held AS reply_held
         FROM cards c LEFT JOIN outbox r ON r.id = {reply}
         WHERE {condition}",
        reply = newest_pending_reply("c.seq"),
    )
}

fn pending_ops(row: &impl Columns) -> Result<PendingOps, StoreError> {
    Ok(PendingOps {
        update_covered: row.flag("update_covered")?,
        reply_held: row.opt_int("reply_held")?.map(|held| held as usize),
    })
}

/// What a batch's read found: its key's latest card (with its pending
/// operations) and which of the batch's alerts that card holds.
pub(super) type KeyRead = (Option<LatestCard>, HashMap<Fingerprint, KnownAlert>);

/// Adds a batch's read to `script`: the latest card of its key, then its
/// known alerts, [`IN_CHUNK`] fingerprints per statement.
fn push_key_read<'q>(script: &mut Script<'q>, batch: &'q CardBatch) {
    script
        .push(&select_with_pending_ops(
            "c.seq, c.id, c.state, c.opened_at, c.resolved_at, c.group_digest, c.firing_count,
                 c.resolved_count",
            &format!("c.seq = {LATEST_OF_KEY}"),
        ))
        .bind(&batch.key);
    for chunk in batch.alerts.chunks(IN_CHUNK) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        script
            .push(&format!(
                "SELECT fingerprint, status, digest, expires_at FROM alerts
                 WHERE card_seq = {LATEST_OF_KEY} AND fingerprint IN ({placeholders})"
            ))
            .bind(&batch.key);
        for a in chunk {
            script.bind(a.fingerprint.0 as i64);
        }
    }
}

/// The rows of one [`push_key_read`], its statements in order.
fn key_read<R: Columns>(
    statements: impl IntoIterator<Item = Vec<R>>,
) -> Result<KeyRead, StoreError> {
    let mut statements = statements.into_iter();
    let latest = statements
        .next()
        .unwrap_or_default()
        .first()
        .map(|row| {
            Ok::<_, StoreError>(LatestCard {
                seq: row.int("seq")?,
                snapshot: rows::card_snapshot(row)?,
                pending: pending_ops(row)?,
            })
        })
        .transpose()?;
    let mut known = HashMap::new();
    for row in statements.flatten() {
        let (fingerprint, alert) = rows::known_alert(&row)?;
        known.insert(fingerprint, alert);
    }
    Ok((latest, known))
}

fn insert_op<'q>(
    script: &mut Script<'q>,
    card_seq: i64,
    channel: &'q str,
    kind: OpKind,
    not_before: DateTime<Utc>,
    now: DateTime<Utc>,
) {
    script
        .push(
            "INSERT INTO outbox (card_seq, channel, kind, state, not_before, created_at, updated_at)
             VALUES (?, ?, ?, 'pending', ?, ?, ?)",
        )
        .bind(card_seq)
        .bind(channel)
        .bind(kind.as_str())
        .bind(ms(not_before))
        .bind(ms(now))
        .bind(ms(now));
}

/// Enqueues an update due at `due` unless one is already pending, or the
/// post is (either will render the latest state when sent); a pending update
/// due later than an immediate one asked now is brought forward. Returns
/// whether a row was added.
fn push_update<'q>(
    script: &mut Script<'q>,
    pending: &mut PendingOps,
    card_seq: i64,
    channel: &'q str,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    if pending.update_covered {
        if due <= now {
            script
                .push(
                    "UPDATE outbox SET not_before = ? WHERE card_seq = ? AND state = 'pending' AND kind = 'update'
                       AND not_before > ?",
                )
                .bind(ms(due))
                .bind(card_seq)
                .bind(ms(due));
        }
        return false;
    }
    insert_op(script, card_seq, channel, OpKind::Update, due, now);
    pending.update_covered = true;
    true
}

/// Appends events to the card's pending reply, or starts one that waits for
/// the batching window. Returns whether a row was added.
fn push_reply<'q>(
    script: &mut Script<'q>,
    pending: &mut PendingOps,
    card_seq: i64,
    channel: &'q str,
    events: &[ThreadEvent],
    window: Duration,
    now: DateTime<Utc>,
) -> bool {
    let created = pending.reply_held.is_none();
    if created {
        let not_before = decisions::reply_due(window, now);
        insert_op(script, card_seq, channel, OpKind::Reply, not_before, now);
    }
    let held = pending.reply_held.unwrap_or(0);
    let kept = reply_events_to_keep(events, held);
    pending.reply_held = Some(held + kept.len());
    // A reply at its cap takes nothing more: a storm's later alerts cost
    // no statement here.
    if kept.is_empty() {
        return created;
    }
    // The reply is named by its card: one started in this script has no
    // id yet.
    let reply = format!("WITH reply (id) AS {}", newest_pending_reply("?"));
    let added = kept.len() as i64;
    let mut kept = kept.into_iter().peekable();
    while kept.peek().is_some() {
        let chunk: Vec<String> = kept.by_ref().take(IN_CHUNK / 2).collect();
        let rows = vec!["((SELECT id FROM reply), ?)"; chunk.len()].join(", ");
        script
            .push(&format!(
                "{reply} INSERT INTO thread_events (op_id, event) VALUES {rows}"
            ))
            .bind(card_seq);
        for event in chunk {
            script.bind(event);
        }
    }
    script
        .push(&format!(
            "{reply} UPDATE outbox SET events_held = events_held + ?, updated_at = ?
             WHERE id = (SELECT id FROM reply)"
        ))
        .bind(card_seq)
        .bind(added)
        .bind(ms(now));
    created
}

/// Binds what a change sets on its card, in this order: `state, resolved_at,
/// group_labels, common_labels, common_annotations, external_url,
/// group_digest, firing_count, resolved_count, updated_at`.
fn bind_card_columns<'s, 'q>(
    script: &'s mut Script<'q>,
    batch: &'q CardBatch,
    change: &card::Change,
    now: DateTime<Utc>,
) -> &'s mut Script<'q> {
    script
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
}

/// Decides a batch on what its key holds now and writes it: its read, a new
/// card's insert (the rest needs its seq), then the card's other rows and
/// operations. Returns the outcome and, for a batch that changed nothing,
/// what it read (still what its key holds: the cache may learn it).
pub(super) fn write_batch(
    conn: &rusqlite::Connection,
    batch: &CardBatch,
    now: DateTime<Utc>,
) -> Result<(ApplyOutcome, Option<KeyRead>), StoreError> {
    let mut read = Script::default();
    push_key_read(&mut read, batch);
    let (latest, known) = key_read(read.fetch_blocking(conn)?)?;
    let change = match card::plan(latest.as_ref().map(|c| &c.snapshot), &known, batch, now) {
        Plan::Unchanged => {
            let outcome = unchanged(batch, latest.as_ref().map(|c| &c.snapshot.id));
            return Ok((outcome, Some((latest, known))));
        }
        Plan::Apply(change) => change,
    };
    let (seq, pending) = match (&change.target, latest) {
        (Target::New(id), _) => (
            insert_card(conn, batch, id, &change, now)?,
            PendingOps::default(),
        ),
        (Target::Existing(_) | Target::Reopen(_), Some(card)) => (card.seq, card.pending),
        (_, None) => {
            return Err(StoreError::Corrupt(
                "change targets a card that does not exist".into(),
            ));
        }
    };
    let mut script = Script::default();
    let ops_pushed = push_change(&mut script, batch, &change, seq, pending, now);
    script.execute_blocking(conn)?;
    Ok((decisions::changed(batch, &change, ops_pushed), None))
}

/// Inserts the card a change opens; its seq.
fn insert_card(
    conn: &rusqlite::Connection,
    batch: &CardBatch,
    id: &CardId,
    change: &card::Change,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let mut insert = Script::default();
    insert
        .push(
            "INSERT INTO cards (id, card_key, route, channel, opened_at, next_escalation_at, manual_resolve,
                 state, resolved_at, group_labels, common_labels, common_annotations, external_url,
                 group_digest, firing_count, resolved_count, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        )
        .bind(&id.0)
        .bind(&batch.key)
        .bind(&batch.route)
        .bind(&batch.channel)
        .bind(ms(change.opened_at))
        .bind(escalation_due(batch, change, now).map(ms))
        .bind(batch.manual_resolve());
    bind_card_columns(&mut insert, batch, change, now);
    let inserted = insert.fetch_blocking(conn)?;
    inserted
        .first()
        .and_then(|rows| rows.first())
        .ok_or_else(|| StoreError::Corrupt("a card insert returned no seq".into()))?
        .int("seq")
}

/// Adds a planned change's writes to `script`: an existing card's columns
/// (a new one is inserted by [`insert_card`]), its alert rows and its
/// outbox operations. `seq` and `pending` are the card's; the operations
/// added are returned, known from `pending` without a query.
fn push_change<'q>(
    script: &mut Script<'q>,
    batch: &'q CardBatch,
    change: &card::Change,
    seq: i64,
    mut pending: PendingOps,
    now: DateTime<Utc>,
) -> Vec<OpKind> {
    if matches!(change.target, Target::Reopen(_)) {
        // A reopened card starts over: not acknowledged, its policy from the
        // first step.
        script
            .push(
                "UPDATE cards SET acked_by = NULL, acked_at = NULL, escalation_level = 0,
                     next_escalation_at = ? WHERE seq = ?",
            )
            .bind(escalation_due(batch, change, now).map(ms))
            .bind(seq);
    } else if matches!(change.target, Target::Existing(_)) && change.state == CardState::Resolved {
        script
            .push("UPDATE cards SET next_escalation_at = NULL WHERE seq = ?")
            .bind(seq);
    }
    if !matches!(change.target, Target::New(_)) {
        script.push(
            "UPDATE cards SET state = ?, resolved_at = ?, group_labels = ?, common_labels = ?,
                 common_annotations = ?, external_url = ?, group_digest = ?, firing_count = ?,
                 resolved_count = ?, updated_at = ?
             WHERE seq = ?",
        );
        bind_card_columns(script, batch, change, now).bind(seq);
    }

    // Many rows per statement: a storm writes hundreds of alerts per card.
    for chunk in change.alert_writes.chunks(ALERT_ROWS_PER_INSERT) {
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        script.push(&format!(
            "INSERT INTO alerts (card_seq, fingerprint, status, digest, labels, annotations, starts_at, ends_at,
                 generator_url, updated_at, occurrences, last_seen_at, expires_at)
             VALUES {rows}
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
                     THEN max(coalesce(alerts.expires_at, excluded.expires_at), excluded.expires_at) END"
        ));
        for &i in chunk {
            let a = &batch.alerts[i];
            script
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
                .bind(batch.expires_at(a).map(ms));
        }
    }

    let mut ops_pushed = Vec::new();
    if matches!(change.target, Target::New(_)) {
        insert_op(script, seq, &batch.channel, OpKind::Post, now, now);
        pending.update_covered = true;
        ops_pushed.push(OpKind::Post);
    }
    let update_due = decisions::update_due(batch, now);
    if change.update_card && push_update(script, &mut pending, seq, &batch.channel, update_due, now)
    {
        ops_pushed.push(OpKind::Update);
    }
    if !change.events.is_empty()
        && push_reply(
            script,
            &mut pending,
            seq,
            &batch.channel,
            &change.events,
            batch.reply_batch_window,
            now,
        )
    {
        ops_pushed.push(OpKind::Reply);
    }
    ops_pushed
}

/// A card's seq, brief and pending operations.
async fn brief(
    conn: &mut SqliteConnection,
    card: &CardId,
) -> Result<Option<(i64, CardBrief, PendingOps)>, StoreError> {
    let row = sqlx::query(&select_with_pending_ops(
        "c.seq, c.route, c.channel, c.state, c.opened_at, c.acked_by, c.escalation_level, c.ts,
             c.manual_resolve",
        "c.id = ?",
    ))
    .bind(&card.0)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok((
            row.int("seq")?,
            rows::card_brief(card, &row)?,
            pending_ops(&row)?,
        ))
    })
    .transpose()
}

/// An outbox row with what delivery needs of its card (none for a digest);
/// callers add the condition.
const OP_SELECT: &str =
    "SELECT o.id, o.kind, o.channel, o.events, o.recipient, o.attempts, o.reconcile,
        o.digest, c.id AS card_id, c.ts, c.opened_at, c.route
    FROM outbox o LEFT JOIN cards c ON c.seq = o.card_seq";

/// The operation of an [`OP_SELECT`] row, with a reply's thread events.
async fn with_events(
    conn: &mut SqliteConnection,
    row: &sqlx::sqlite::SqliteRow,
) -> Result<OutboxOp, StoreError> {
    let mut op = rows::outbox_op(row)?;
    if op.kind == OpKind::Reply {
        let rows = sqlx::query("SELECT event FROM thread_events WHERE op_id = ? ORDER BY id")
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

/// Takes or renews `channel`'s lease for `holder` inside `tx` (see
/// [`Store::acquire_lease`]); the caller commits when it is held.
async fn lease_in(
    tx: &mut SqliteConnection,
    channel: &str,
    holder: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Lease, StoreError> {
    let until = decisions::lease_until(ttl, now);
    let current = sqlx::query("SELECT holder, expires_at FROM channel_leases WHERE channel = ?")
        .bind(channel)
        .fetch_optional(&mut *tx)
        .await?;
    let step = match &current {
        Some(row) => decisions::lease_step(
            &row.text("holder")?,
            row.instant("expires_at")?,
            holder,
            now,
        ),
        None => decisions::LeaseStep::Take,
    };
    let recovered = match step {
        decisions::LeaseStep::Busy { holder, until } => {
            return Ok(Lease::Busy { holder, until });
        }
        decisions::LeaseStep::Renew => 0,
        decisions::LeaseStep::Take => sqlx::query(
            "UPDATE outbox SET state = 'pending',
                 reconcile = CASE WHEN kind IN ('post', 'digest') THEN 1 ELSE reconcile END
             WHERE channel = ? AND state = 'sending'",
        )
        .bind(channel)
        .execute(&mut *tx)
        .await?
        .rows_affected(),
    };
    sqlx::query(
        "INSERT INTO channel_leases (channel, holder, expires_at) VALUES (?, ?, ?)
         ON CONFLICT (channel) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
    )
    .bind(channel)
    .bind(holder)
    .bind(ms(until))
    .execute(&mut *tx)
    .await?;
    Ok(Lease::Held { until, recovered })
}

/// Hands operation `op_id` out inside `tx` (see [`Store::begin_attempt`]);
/// the caller commits when it was.
async fn begin_in(
    tx: &mut SqliteConnection,
    op_id: i64,
    now: DateTime<Utc>,
) -> Result<Option<OutboxOp>, StoreError> {
    let row = sqlx::query(&format!(
        "{OP_SELECT} WHERE o.id = ? AND o.state = 'pending'"
    ))
    .bind(op_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    sqlx::query(
        "UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = ? WHERE id = ?",
    )
    .bind(ms(now))
    .bind(op_id)
    .execute(&mut *tx)
    .await?;
    with_events(tx, &row).await.map(Some)
}

#[async_trait]
impl Store for SqliteStore {
    async fn apply(
        &self,
        batches: &[CardBatch],
        now: DateTime<Utc>,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        // Fast path: re-sends change nothing and are decided from the cache,
        // without the write lock.
        if let Some(outcomes) = self.decide_unchanged(batches, now) {
            return Ok(outcomes);
        }
        // Something may change: decide under the write lock and write, in
        // the next group commit (which teaches the cache what it read).
        self.group.apply(batches.to_vec(), now).await
    }

    async fn apply_owned(
        &self,
        batches: Vec<CardBatch>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        if let Some(outcomes) = self.decide_unchanged(&batches, now) {
            return Ok(outcomes);
        }
        self.group.apply(batches, now).await
    }

    fn cache_stamp(&self, key: &str) -> Option<u64> {
        self.cache.stamp(key)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.group.health()?;
        sqlx::query("SELECT 1").execute(&self.writer).await?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        channel: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        // The single writer connection serializes this read-decide-write.
        let mut tx = self.writer.begin().await?;
        let lease = lease_in(&mut tx, channel, holder, ttl, now).await?;
        if matches!(lease, Lease::Held { .. }) {
            tx.commit().await?;
        }
        Ok(lease)
    }

    async fn begin_attempt_leased(
        &self,
        op_id: i64,
        channel: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(Lease, Option<OutboxOp>), StoreError> {
        let mut tx = self.writer.begin().await?;
        let lease = lease_in(&mut tx, channel, holder, ttl, now).await?;
        if !matches!(lease, Lease::Held { .. }) {
            return Ok((lease, None));
        }
        let op = begin_in(&mut tx, op_id, now).await?;
        tx.commit().await?;
        Ok((lease, op))
    }

    async fn release_lease(&self, channel: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM channel_leases WHERE channel = ? AND holder = ?")
            .bind(channel)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn pending_channels(&self) -> Result<Vec<String>, StoreError> {
        reads::pending_channels(&self.reader).await
    }

    async fn next_op(&self, channel: &str, now: DateTime<Utc>) -> Result<NextOp, StoreError> {
        let mut conn = self.reader.acquire().await?;
        let row = sqlx::query(&format!(
            "{OP_SELECT} WHERE o.channel = ? AND o.state = 'pending' AND o.not_before <= ?
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
             WHERE o.channel = ? AND o.state = 'pending' AND (o.kind IN ('post', 'digest') OR c.ts IS NOT NULL)",
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
        let mut tx = self.writer.begin().await?;
        let op = begin_in(&mut tx, op_id, now).await?;
        if op.is_some() {
            tx.commit().await?;
        }
        Ok(op)
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
                let card = posted_card(op)?;
                sqlx::query("UPDATE cards SET ts = ? WHERE id = ? AND ts IS NULL")
                    .bind(&ts)
                    .bind(&card.0)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM outbox WHERE id = ?")
                    .bind(op.id)
                    .execute(&mut *tx)
                    .await?;
                if refresh {
                    let (seq, _, mut pending) = brief(&mut tx, card)
                        .await?
                        .ok_or(sqlx::Error::RowNotFound)?;
                    let mut script = Script::default();
                    push_update(&mut script, &mut pending, seq, &op.channel, now, now);
                    script.execute(&mut tx).await?;
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
                         attempts = attempts - ?, reconcile = CASE WHEN ? AND kind IN ('post', 'digest') THEN 1 ELSE reconcile END
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
        let mut conn = self.reader.acquire().await?;
        let Some(row) = sqlx::query("SELECT * FROM cards WHERE id = ?")
            .bind(&card.0)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let alert_rows = sqlx::query(
            "SELECT fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, occurrences,
                 last_seen_at FROM alerts
             WHERE card_seq = ?
             ORDER BY CASE status WHEN 'firing' THEN 0 ELSE 1 END, updated_at DESC, starts_at, fingerprint
             LIMIT ?",
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
        reads::outbox_summary(&self.reader).await
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        reads::dead_letters(&self.reader, limit).await
    }

    async fn outbox_entries(
        &self,
        dead_only: bool,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        reads::outbox_entries(&self.reader, dead_only, limit).await
    }

    async fn retry_dead_letter(
        &self,
        op_id: i64,
        now: DateTime<Utc>,
    ) -> Result<RetryOutcome, StoreError> {
        let mut tx = self.writer.begin().await?;
        let outcome = retry::retry_dead_letter::<Sqlite>(&mut tx, op_id, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn card_brief(&self, card: &CardId) -> Result<Option<CardBrief>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        brief(&mut conn, card)
            .await
            .map(|b| b.map(|(_, brief, _)| brief))
    }

    async fn act(
        &self,
        card: &CardId,
        action: Action,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, StoreError> {
        let mut tx = self.writer.begin().await?;
        let Some((seq, current, mut pending)) = brief(&mut tx, card).await? else {
            return Ok(ActionOutcome::NotFound);
        };
        let Some(event) = action_event(&action, &current, now) else {
            return Ok(ActionOutcome::NoChange(current));
        };
        let mut script = Script::default();
        let card_changed = match &action {
            Action::Acknowledge { by } => {
                script.push(
                    "UPDATE cards SET acked_by = ?, acked_at = ?, next_escalation_at = NULL, updated_at = ? WHERE seq = ?",
                )
                .bind(by)
                .bind(ms(now))
                .bind(ms(now))
                .bind(seq);
                true
            }
            Action::Unacknowledge {
                next_escalation_at, ..
            } => {
                script.push(
                    "UPDATE cards SET acked_by = NULL, acked_at = NULL, next_escalation_at = ?, updated_at = ?
                     WHERE seq = ?",
                )
                .bind(next_escalation_at.map(ms))
                .bind(ms(now))
                .bind(seq);
                true
            }
            Action::Resolve { .. } => {
                // Digest 0 matches no alert: the source's next report of one
                // of these alerts, firing or not, is a change (a re-fire
                // reopens the card within the reopen window).
                script.push(
                    "UPDATE alerts SET status = 'resolved', ends_at = ?, digest = 0, updated_at = ?
                     WHERE card_seq = ? AND status = 'firing'",
                )
                .bind(ms(now))
                .bind(ms(now))
                .bind(seq);
                script.push(
                    "UPDATE cards SET state = 'resolved', resolved_at = ?, resolved_count = resolved_count + firing_count,
                         firing_count = 0, next_escalation_at = NULL, updated_at = ?
                     WHERE seq = ?",
                )
                .bind(ms(now))
                .bind(ms(now))
                .bind(seq);
                true
            }
            Action::Note { .. } => false,
            Action::Escalate {
                next_escalation_at, ..
            } => {
                script.push(
                    "UPDATE cards SET escalation_level = escalation_level + 1, next_escalation_at = ?, updated_at = ?
                     WHERE seq = ?",
                )
                .bind(next_escalation_at.map(ms))
                .bind(ms(now))
                .bind(seq);
                true
            }
        };
        // A status question changes nothing on the card: only the reply.
        if card_changed {
            push_update(&mut script, &mut pending, seq, &current.channel, now, now);
        }
        // Actions are answers to a person: reply at once rather than after
        // the batching window meant for alert storms.
        if let Action::Escalate { dm, .. } = &action {
            let events = json(&[&event]);
            for user in dm {
                script.push(
                    "INSERT INTO outbox (card_seq, channel, kind, state, events, recipient, not_before, created_at,
                         updated_at)
                     VALUES (?, ?, 'dm', 'pending', ?, ?, ?, ?, ?)",
                )
                .bind(seq)
                .bind(&current.channel)
                .bind(events.clone())
                .bind(user)
                .bind(ms(now))
                .bind(ms(now))
                .bind(ms(now));
            }
        }
        push_reply(
            &mut script,
            &mut pending,
            seq,
            &current.channel,
            &[event],
            Duration::ZERO,
            now,
        );
        script.execute(&mut tx).await?;
        tx.commit().await?;
        if matches!(action, Action::Resolve { .. }) {
            self.cache.forget_all();
        }
        Ok(ActionOutcome::Applied {
            channel: current.channel,
        })
    }

    async fn firing_cards(&self, limit: u32) -> Result<Vec<CardSummary>, StoreError> {
        reads::firing_cards(&self.reader, limit).await
    }

    async fn cards_by_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<CardId>, StoreError> {
        reads::cards_by_prefix(&self.reader, prefix, limit).await
    }

    async fn card_by_message(&self, channel: &str, ts: &str) -> Result<Option<CardId>, StoreError> {
        reads::card_by_message(&self.reader, channel, ts).await
    }

    async fn due_escalations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueEscalation>, StoreError> {
        reads::due_escalations(&self.reader, now, limit).await
    }

    async fn next_escalation_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        reads::next_escalation_at(&self.reader).await
    }

    async fn quiet_alerts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<QuietCard>, StoreError> {
        reads::quiet_alerts(&self.reader, now, limit).await
    }

    async fn next_quiet_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        reads::next_quiet_at(&self.reader).await
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
        // Digests are about no card: a dead one goes after the same time.
        sqlx::query(
            "DELETE FROM outbox WHERE kind = 'digest' AND state = 'dead' AND updated_at < ?",
        )
        .bind(ms(resolved_before))
        .execute(&mut *tx)
        .await?;
        if seqs.is_empty() {
            tx.commit().await?;
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
        self.cache.forget_all();
        Ok(seqs.len() as u64)
    }

    async fn first_seen(&self, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM requests_seen WHERE at < ?")
            .bind(ms(decisions::seen_expiry(now)))
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

    async fn digest_figures(
        &self,
        channel: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limits: DigestLimits,
    ) -> Result<DigestFigures, StoreError> {
        reads::digest_figures(
            &self.reader,
            AlertnameSql::Sqlite,
            channel,
            from,
            to,
            limits,
        )
        .await
    }

    async fn last_digest(&self, key: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        reads::last_digest(&self.reader, key).await
    }

    async fn claim_digest(
        &self,
        key: &str,
        instant: DateTime<Utc>,
        digest: Option<&Digest>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let claimed =
            digest_runs::claim::<sqlx::Sqlite>(&mut tx, key, instant, digest, now).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn card_by_key(
        &self,
        key: &str,
    ) -> Result<Option<(CardId, CardState, Option<String>)>, StoreError> {
        reads::card_by_key(&self.reader, key).await
    }

    async fn save_oauth_state(
        &self,
        state_hash: &str,
        browser_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        installs::save_state(&self.writer, state_hash, browser_hash, expires_at, now).await
    }

    async fn take_oauth_state(&self, state_hash: &str) -> Result<Option<OAuthState>, StoreError> {
        installs::take_state(&self.writer, state_hash).await
    }

    async fn save_installation(&self, installation: &Installation) -> Result<(), StoreError> {
        installs::save_installation(&self.writer, installation).await
    }

    async fn installation(&self, team_id: &str) -> Result<Option<Installation>, StoreError> {
        installs::installation_of(&self.reader, team_id).await
    }

    async fn installations(&self, limit: u32) -> Result<Vec<Installation>, StoreError> {
        installs::installations(&self.reader, limit).await
    }

    async fn remove_installation(&self, team_id: &str) -> Result<bool, StoreError> {
        installs::remove_installation(&self.writer, team_id).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::model::AlertStatus;
    use crate::pipeline::card::tests::{alert, batch, t};

    /// One notification the database refuses, in a group commit with
    /// others: the group is written again one notification at a time, so
    /// only that one fails and every other one is committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_notification_the_database_refuses_fails_alone_in_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let store = Arc::new(
            SqliteStore::open(&url, Duration::from_secs(5))
                .await
                .unwrap(),
        );
        // A value SQLite refuses, by the database's own rule.
        sqlx::query(
            "CREATE TRIGGER poison BEFORE INSERT ON alerts WHEN NEW.labels LIKE '%poison%'
             BEGIN SELECT RAISE(ABORT, 'poisoned alert'); END",
        )
        .execute(&store.writer)
        .await
        .unwrap();
        const POISONED: usize = 11;
        let notification = |i: usize| {
            let mut a = alert(i as u64, AlertStatus::Firing);
            if i == POISONED {
                a.labels.insert("poison".into(), "yes".into());
            }
            CardBatch {
                key: format!("k{i}"),
                ..batch(vec![a])
            }
        };
        // Holding the write lock while they queue puts them all in one
        // group (the writer takes the first, then everything queued).
        let held = store.writer.acquire().await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.apply(&[notification(i)], t(0)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
        for (i, task) in tasks.into_iter().enumerate() {
            let result = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("answered in time")
                .unwrap();
            match result {
                Err(e) if i == POISONED => assert!(e.to_string().contains("poisoned"), "{e}"),
                Ok(outcomes) if i != POISONED => assert!(outcomes[0].opened, "{i}"),
                other => panic!("notification {i}: {other:?}"),
            }
        }
        // What was answered is committed: the same again changes nothing.
        for i in (0..16).filter(|i| *i != POISONED) {
            let outcomes = store.apply(&[notification(i)], t(1)).await.unwrap();
            assert!(!outcomes[0].changed, "{i}");
        }
    }

    /// A log that cannot be flushed: nothing is answered as written, not
    /// even from the cache, and the store says it is not ready, so that
    /// the process is restarted rather than refusing every notification
    /// unseen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_that_cannot_be_flushed_refuses_notifications_and_fails_readiness() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let url = format!("sqlite://{}", path.display());
        let store = SqliteStore::open(&url, Duration::from_secs(5))
            .await
            .unwrap();
        store.ping().await.unwrap();
        // What the cache had learned of another key (as after a re-send).
        let learned = CardBatch {
            key: "learned".into(),
            ..batch(vec![alert(2, AlertStatus::Firing)])
        };
        let epoch = store.cache.epoch();
        store.cache.fill(&learned, None, &HashMap::new(), epoch);
        assert!(store.cache_stamp("learned").is_some());
        // The flusher opens the log on its first flush: without the file
        // (SQLite keeps writing to the one it holds open) that fails, as a
        // failing disk would.
        let mut log = path.into_os_string();
        log.push("-wal");
        std::fs::remove_file(&log).unwrap();
        let notification = batch(vec![alert(1, AlertStatus::Firing)]);
        for _ in 0..2 {
            let e = store
                .apply(std::slice::from_ref(&notification), t(0))
                .await
                .unwrap_err();
            assert!(e.to_string().contains("could not be flushed"), "{e}");
        }
        let e = store.ping().await.unwrap_err();
        assert!(e.to_string().contains("could not be flushed"), "{e}");
        assert_eq!(
            store.cache_stamp("learned"),
            None,
            "the cache answers nothing"
        );
    }
}
