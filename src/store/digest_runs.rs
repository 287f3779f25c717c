//! Claiming a scheduled digest (invariant 10 in [`super`]), the same SQL on
//! both backends, run inside the backend's write transaction.

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::StoreError;
use super::rows::{json, ms};
use crate::model::Digest;

/// Claims `key` for `instant` and enqueues `digest` in the transaction
/// `conn` is in; see [`super::Store::claim_digest`]. The compare-and-set is
/// one upsert: a concurrent claim of the same key waits on the row (or its
/// insert) and then sees the instant already taken.
pub(crate) async fn claim<DB>(
    conn: &mut DB::Connection,
    key: &str,
    instant: DateTime<Utc>,
    digest: Option<&Digest>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    let upsert = match digest {
        // Where a new digest starts counting: never over an existing run.
        None => {
            "INSERT INTO digest_runs (digest_key, last_instant, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (digest_key) DO NOTHING RETURNING digest_key"
        }
        Some(_) => {
            "INSERT INTO digest_runs (digest_key, last_instant, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (digest_key) DO UPDATE
                 SET last_instant = excluded.last_instant, updated_at = excluded.updated_at
                 WHERE digest_runs.last_instant < excluded.last_instant
             RETURNING digest_key"
        }
    };
    let claimed = sqlx::query::<DB>(upsert)
        .bind(key.to_owned())
        .bind(ms(instant))
        .bind(ms(now))
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    if let (true, Some(digest)) = (claimed, digest) {
        sqlx::query::<DB>(
            "INSERT INTO outbox (card_seq, channel, kind, state, digest, not_before, created_at, updated_at)
             VALUES (NULL, $1, 'digest', 'pending', $2, $3, $3, $3)",
        )
        .bind(digest.channel.clone())
        .bind(json(digest))
        .bind(ms(now))
        .execute(&mut *conn)
        .await?;
    }
    Ok(claimed)
}
