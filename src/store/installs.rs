//! OAuth installs: pending `state`s and the installations they lead to.
//! The same SQL on both backends (SQLite accepts PostgreSQL's `$N`
//! parameters and `RETURNING`), run on whichever pool the backend passes.
//!
//! A state is taken with one `DELETE ... RETURNING`, so of two callbacks
//! racing with the same state (on one replica or two) exactly one gets it.

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Type};

use super::rows::{Columns, ms};
use super::{Installation, OAuthState, StoreError};

/// Installs in progress (unexpired states) at most; more are refused until
/// some finish or expire.
pub const MAX_PENDING_STATES: i64 = 1_000;

pub(crate) async fn save_state<DB>(
    pool: &Pool<DB>,
    state_hash: &str,
    browser_hash: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError>
where
    DB: Database,
    for<'e> &'e Pool<DB>: Executor<'e, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    // Abandoned installs leave their state behind; each new one sweeps the
    // expired, so the table stays as small as the installs in progress.
    sqlx::query::<DB>("DELETE FROM oauth_states WHERE expires_at <= $1")
        .bind(ms(now))
        .execute(pool)
        .await?;
    // Anyone can open the install page, so the states in progress are
    // capped: a flood of visits cannot grow the table without bound.
    let saved = sqlx::query::<DB>(
        "INSERT INTO oauth_states (state_hash, browser_hash, expires_at)
         SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM oauth_states) < $4
         RETURNING state_hash",
    )
    .bind(state_hash.to_owned())
    .bind(browser_hash.to_owned())
    .bind(ms(expires_at))
    .bind(MAX_PENDING_STATES)
    .fetch_optional(pool)
    .await?;
    Ok(saved.is_some())
}

pub(crate) async fn take_state<DB>(
    pool: &Pool<DB>,
    state_hash: &str,
) -> Result<Option<OAuthState>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    for<'e> &'e Pool<DB>: Executor<'e, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>(
        "DELETE FROM oauth_states WHERE state_hash = $1 RETURNING browser_hash, expires_at",
    )
    .bind(state_hash.to_owned())
    .fetch_optional(pool)
    .await?
    .map(|row| {
        Ok(OAuthState {
            browser_hash: row.text("browser_hash")?,
            expires_at: row.instant("expires_at")?,
        })
    })
    .transpose()
}

pub(crate) async fn save_installation<DB>(
    pool: &Pool<DB>,
    installation: &Installation,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'e> &'e Pool<DB>: Executor<'e, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    // A reinstall (new scopes, a new token) replaces the row.
    sqlx::query::<DB>(
        "INSERT INTO installations (team_id, team_name, bot_token, bot_user_id, scopes, installed_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (team_id) DO UPDATE SET team_name = excluded.team_name,
             bot_token = excluded.bot_token, bot_user_id = excluded.bot_user_id,
             scopes = excluded.scopes, installed_at = excluded.installed_at",
    )
    .bind(installation.team_id.clone())
    .bind(installation.team_name.clone())
    .bind(installation.bot_token.clone())
    .bind(installation.bot_user_id.clone())
    .bind(installation.scopes.join(","))
    .bind(ms(installation.installed_at))
    .execute(pool)
    .await?;
    Ok(())
}

const COLUMNS: &str = "team_id, team_name, bot_token, bot_user_id, scopes, installed_at";

fn installation(row: &impl Columns) -> Result<Installation, StoreError> {
    Ok(Installation {
        team_id: row.text("team_id")?,
        team_name: row.text("team_name")?,
        bot_token: row.text("bot_token")?,
        bot_user_id: row.text("bot_user_id")?,
        scopes: row
            .text("scopes")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        installed_at: row.instant("installed_at")?,
    })
}

pub(crate) async fn installation_of<DB>(
    pool: &Pool<DB>,
    team_id: &str,
) -> Result<Option<Installation>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    for<'e> &'e Pool<DB>: Executor<'e, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>(&format!(
        "SELECT {COLUMNS} FROM installations WHERE team_id = $1"
    ))
    .bind(team_id.to_owned())
    .fetch_optional(pool)
    .await?
    .map(|row| installation(&row))
    .transpose()
}

pub(crate) async fn installations<DB>(
    pool: &Pool<DB>,
    limit: u32,
) -> Result<Vec<Installation>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    for<'e> &'e Pool<DB>: Executor<'e, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>(&format!(
        "SELECT {COLUMNS} FROM installations ORDER BY team_id LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?
    .iter()
    .map(installation)
    .collect()
}

pub(crate) async fn remove_installation<DB>(
    pool: &Pool<DB>,
    team_id: &str,
) -> Result<bool, StoreError>
where
    DB: Database,
    for<'e> &'e Pool<DB>: Executor<'e, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    let removed =
        sqlx::query::<DB>("DELETE FROM installations WHERE team_id = $1 RETURNING team_id")
            .bind(team_id.to_owned())
            .fetch_optional(pool)
            .await?;
    Ok(removed.is_some())
}
