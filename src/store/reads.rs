//! Queries that only read, the same text on both backends: SQLite accepts
//! PostgreSQL's `$N` parameters, and the schemas agree (see [`super::rows`]).
//! Each runs on whatever executor the backend passes (its reader pool).

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::decisions;
use super::rows::{self, Columns, ms};
use super::{
    CardSummary, DeadLetter, DigestLimits, DueEscalation, OutboxEntry, OutboxSummary, QuietCard,
    StoreError,
};
use crate::model::{CardId, CardState, DigestFigures};

pub(crate) async fn pending_channels<'e, DB, E>(exec: E) -> Result<Vec<String>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>("SELECT DISTINCT channel FROM outbox WHERE state = 'pending'")
        .fetch_all(exec)
        .await?
        .iter()
        .map(|r| r.text("channel"))
        .collect()
}

pub(crate) async fn outbox_summary<'e, DB, E>(exec: E) -> Result<OutboxSummary, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    let row = sqlx::query::<DB>(
        "SELECT
            (SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')) AS pending,
            (SELECT COUNT(*) FROM outbox WHERE state = 'dead') AS dead,
            (SELECT COUNT(*) FROM cards WHERE state = 'firing') AS firing",
    )
    .fetch_one(exec)
    .await?;
    rows::outbox_summary(&row)
}

pub(crate) async fn dead_letters<'e, DB, E>(
    exec: E,
    limit: u32,
) -> Result<Vec<DeadLetter>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    let entries = outbox_entries(exec, true, limit).await?;
    Ok(entries.into_iter().map(DeadLetter::from).collect())
}

pub(crate) async fn outbox_entries<'e, DB, E>(
    exec: E,
    dead_only: bool,
    limit: u32,
) -> Result<Vec<OutboxEntry>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>(
        "SELECT o.id, o.kind, o.channel, o.state, o.attempts, o.last_error, o.recipient, o.created_at,
             o.not_before, c.id AS card_id
         FROM outbox o LEFT JOIN cards c ON c.seq = o.card_seq
         WHERE $1 = 0 OR o.state = 'dead' ORDER BY o.id LIMIT $2",
    )
    .bind(i64::from(dead_only))
    .bind(i64::from(limit))
    .fetch_all(exec)
    .await?
    .iter()
    .map(rows::outbox_entry)
    .collect()
}

pub(crate) async fn firing_cards<'e, DB, E>(
    exec: E,
    limit: u32,
) -> Result<Vec<CardSummary>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>(
        "SELECT id, route, channel, ts, common_labels, group_labels, firing_count, acked_by, escalation_level,
             opened_at
         FROM cards WHERE state = 'firing' ORDER BY opened_at LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(exec)
    .await?
    .iter()
    .map(rows::card_summary)
    .collect()
}

pub(crate) async fn cards_by_prefix<'e, DB, E>(
    exec: E,
    prefix: &str,
    limit: u32,
) -> Result<Vec<CardId>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    let Some(pattern) = decisions::card_id_pattern(prefix) else {
        return Ok(Vec::new());
    };
    sqlx::query::<DB>("SELECT id FROM cards WHERE id LIKE $1 ORDER BY seq DESC LIMIT $2")
        .bind(pattern)
        .bind(i64::from(limit))
        .fetch_all(exec)
        .await?
        .iter()
        .map(|r| Ok(CardId(r.text("id")?)))
        .collect()
}

pub(crate) async fn card_by_message<'e, DB, E>(
    exec: E,
    channel: &str,
    ts: &str,
) -> Result<Option<CardId>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>("SELECT id FROM cards WHERE channel = $1 AND ts = $2 LIMIT 1")
        .bind(channel.to_owned())
        .bind(ts.to_owned())
        .fetch_optional(exec)
        .await?
        .map(|r| Ok(CardId(r.text("id")?)))
        .transpose()
}

pub(crate) async fn card_by_key<'e, DB, E>(
    exec: E,
    key: &str,
) -> Result<Option<(CardId, CardState, Option<String>)>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>(
        "SELECT id, state, ts FROM cards WHERE card_key = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(key.to_owned())
    .fetch_optional(exec)
    .await?
    .map(|r| rows::card_identity(&r))
    .transpose()
}

pub(crate) async fn due_escalations<'e, DB, E>(
    exec: E,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<DueEscalation>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>(
        "SELECT id, route, escalation_level, opened_at FROM cards
         WHERE next_escalation_at IS NOT NULL AND next_escalation_at <= $1
           AND state = 'firing' AND acked_by IS NULL
         ORDER BY next_escalation_at LIMIT $2",
    )
    .bind(ms(now))
    .bind(i64::from(limit))
    .fetch_all(exec)
    .await?
    .iter()
    .map(rows::due_escalation)
    .collect()
}

pub(crate) async fn next_escalation_at<'e, DB, E>(
    exec: E,
) -> Result<Option<DateTime<Utc>>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>(
        "SELECT MIN(next_escalation_at) AS next FROM cards
         WHERE next_escalation_at IS NOT NULL AND state = 'firing' AND acked_by IS NULL",
    )
    .fetch_one(exec)
    .await?
    .opt_instant("next")
}

pub(crate) async fn quiet_alerts<'e, DB, E>(
    exec: E,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<QuietCard>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    let rows = sqlx::query::<DB>(
        "SELECT c.card_key, c.route, c.channel, c.group_labels, c.common_labels, c.common_annotations,
             c.external_url, a.card_seq, a.fingerprint, a.labels, a.annotations, a.starts_at,
             a.generator_url, a.occurrences, a.last_seen_at
         FROM alerts a JOIN cards c ON c.seq = a.card_seq
         WHERE a.expires_at IS NOT NULL AND a.expires_at <= $1 AND a.status = 'firing'
         ORDER BY a.card_seq, a.expires_at LIMIT $2",
    )
    .bind(ms(now))
    .bind(i64::from(limit))
    .fetch_all(exec)
    .await?;
    rows::quiet_cards(&rows)
}

pub(crate) async fn next_quiet_at<'e, DB, E>(exec: E) -> Result<Option<DateTime<Utc>>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>(
        "SELECT MIN(expires_at) AS next FROM alerts WHERE expires_at IS NOT NULL AND status = 'firing'",
    )
    .fetch_one(exec)
    .await?
    .opt_instant("next")
}

/// The SQL expression of an alert's `alertname` label: JSON functions are
/// the one place the backends' dialects differ here.
pub(crate) enum AlertnameSql {
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
}

impl AlertnameSql {
    fn expr(&self) -> &'static str {
        match self {
            AlertnameSql::Sqlite => "json_extract(a.labels, '$.alertname')",
            #[cfg(feature = "postgres")]
            AlertnameSql::Postgres => "(a.labels::jsonb ->> 'alertname')",
        }
    }
}

/// A digest's figures for `channel` over `from <= t < to` (see
/// [`crate::model::DigestFigures`] for what each counts), and what fires
/// now. Means are whole milliseconds (`CAST`: PostgreSQL's `AVG` of a
/// `BIGINT` is `NUMERIC`).
pub(crate) async fn digest_figures<'e, DB, E>(
    exec: E,
    alertname: AlertnameSql,
    channel: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limits: DigestLimits,
) -> Result<DigestFigures, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB> + Copy,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    let counts = sqlx::query::<DB>(
        "SELECT
            (SELECT COUNT(*) FROM cards WHERE channel = $1 AND opened_at >= $2 AND opened_at < $3) AS fired,
            (SELECT COUNT(*) FROM cards WHERE channel = $1 AND state = 'firing') AS firing,
            (SELECT COUNT(*) FROM cards WHERE channel = $1 AND acked_at >= $2 AND acked_at < $3) AS acked,
            (SELECT CAST(AVG(acked_at - opened_at) AS BIGINT) FROM cards
                WHERE channel = $1 AND acked_at >= $2 AND acked_at < $3) AS mtta,
            (SELECT COUNT(*) FROM cards
                WHERE channel = $1 AND state = 'resolved' AND resolved_at >= $2 AND resolved_at < $3) AS resolved,
            (SELECT CAST(AVG(resolved_at - opened_at) AS BIGINT) FROM cards
                WHERE channel = $1 AND state = 'resolved' AND resolved_at >= $2 AND resolved_at < $3) AS mttr",
    )
    .bind(channel.to_owned())
    .bind(ms(from))
    .bind(ms(to))
    .fetch_one(exec)
    .await?;
    let noisiest = sqlx::query::<DB>(&format!(
        "SELECT COALESCE({name}, '') AS name, COUNT(*) AS n
         FROM alerts a JOIN cards c ON c.seq = a.card_seq
         WHERE c.channel = $1 AND a.starts_at >= $2 AND a.starts_at < $3
         GROUP BY COALESCE({name}, '') ORDER BY n DESC, name LIMIT $4",
        name = alertname.expr()
    ))
    .bind(channel.to_owned())
    .bind(ms(from))
    .bind(ms(to))
    .bind(i64::from(limits.noisiest))
    .fetch_all(exec)
    .await?;
    let oldest = sqlx::query::<DB>(
        "SELECT id, route, channel, ts, common_labels, group_labels, firing_count, acked_by, escalation_level,
             opened_at
         FROM cards WHERE channel = $1 AND state = 'firing' ORDER BY opened_at, seq LIMIT $2",
    )
    .bind(channel.to_owned())
    .bind(i64::from(limits.oldest_firing))
    .fetch_all(exec)
    .await?;
    rows::digest_figures(&counts, &noisiest, &oldest)
}

pub(crate) async fn last_digest<'e, DB, E>(
    exec: E,
    key: &str,
) -> Result<Option<DateTime<Utc>>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    E: Executor<'e, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>("SELECT last_instant FROM digest_runs WHERE digest_key = $1")
        .bind(key.to_owned())
        .fetch_optional(exec)
        .await?
        .map(|r| r.instant("last_instant"))
        .transpose()
}
