//! Retrying a dead letter, the same statements on both backends (SQLite
//! accepts PostgreSQL's `$N` parameters). [`super::decisions::retry_plan`]
//! decides; this carries the plan out inside the caller's transaction.

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::decisions::{CardOp, RetryStep, retry_plan};
use super::rows::{Columns, ms};
use super::{OpKind, OpState, RetryOutcome, StoreError};

/// Retries dead letter `op_id` on `conn`, which must be in a transaction
/// (PostgreSQL: holding the card's lock).
pub(crate) async fn retry_dead_letter<DB>(
    conn: &mut DB::Connection,
    op_id: i64,
    now: DateTime<Utc>,
) -> Result<RetryOutcome, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    let ops = sqlx::query::<DB>(
        "SELECT id, kind, state FROM outbox
         WHERE id = $1 OR card_seq = (SELECT card_seq FROM outbox WHERE id = $1) ORDER BY id",
    )
    .bind(op_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(CardOp {
            id: r.int("id")?,
            kind: OpKind::parse(&r.text("kind")?)?,
            state: OpState::parse(&r.text("state")?)?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let steps = match retry_plan(op_id, &ops) {
        Ok(steps) => steps,
        Err(refusal) => return Ok(refusal),
    };
    let (mut revived, mut absorbed) = (Vec::new(), Vec::new());
    for step in steps {
        match step {
            RetryStep::Revive(id) => {
                sqlx::query::<DB>(
                    "UPDATE outbox SET state = 'pending', attempts = 0, not_before = $1, updated_at = $1
                     WHERE id = $2",
                )
                .bind(ms(now))
                .bind(id)
                .execute(&mut *conn)
                .await?;
                revived.push(id);
            }
            RetryStep::Drop(id) => {
                delete_op::<DB>(conn, id).await?;
                absorbed.push(id);
            }
            RetryStep::MergeReply { from, into } => {
                sqlx::query::<DB>(
                    "UPDATE outbox SET events_held = events_held +
                         (SELECT events_held FROM outbox WHERE id = $1), updated_at = $2
                     WHERE id = $3",
                )
                .bind(from)
                .bind(ms(now))
                .bind(into)
                .execute(&mut *conn)
                .await?;
                sqlx::query::<DB>("UPDATE thread_events SET op_id = $1 WHERE op_id = $2")
                    .bind(into)
                    .bind(from)
                    .execute(&mut *conn)
                    .await?;
                delete_op::<DB>(conn, from).await?;
                absorbed.push(from);
            }
        }
    }
    Ok(RetryOutcome::Retried { revived, absorbed })
}

async fn delete_op<DB>(conn: &mut DB::Connection, id: i64) -> Result<(), StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>("DELETE FROM outbox WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
