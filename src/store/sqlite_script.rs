//! Several SQL statements sent to SQLite as one command.
//!
//! sqlx runs a SQLite connection's statements on the connection's own worker
//! thread: every `execute` or `fetch` is a round trip over a channel with two
//! thread wake-ups, which on a small machine costs far more than the
//! statement itself (about 60 µs against a few). A query string holding
//! several statements runs them all in one such command, each statement
//! taking the next of the anonymous `?` binds in order (sqlx-sqlite's
//! `ExecuteIter`). A [`Script`] builds that string and its binds statement
//! by statement, so the code deciding what to write stays as readable as
//! one query per statement.
//!
//! SQLite's limit on parameters holds per statement, not per script.
//!
//! sqlx 0.8 marks several statements in one prepared query as deprecated
//! (launchbadge/sqlx#3108: only its SQLite driver runs them, and a later
//! version may refuse them). The store's tests run every script, so an
//! upgrade that drops it fails them rather than the data.

use futures_util::TryStreamExt;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Either, Encode, Sqlite, SqliteConnection, Type};

use super::StoreError;

/// Statements and their binds, run in one round trip.
#[derive(Default)]
pub(super) struct Script<'q> {
    sql: String,
    args: SqliteArguments<'q>,
    /// The first value that could not be encoded (none of the types the
    /// store binds can fail; sqlx's own queries defer the error likewise).
    bind_error: Option<sqlx::error::BoxDynError>,
}

impl<'q> Script<'q> {
    /// Appends a statement; its `?` parameters take the binds that follow.
    pub fn push(&mut self, statement: &str) -> &mut Self {
        if !self.sql.is_empty() {
            self.sql.push_str(";\n");
        }
        self.sql.push_str(statement);
        self
    }

    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: Encode<'q, Sqlite> + Type<Sqlite> + 'q,
    {
        if let Err(e) = self.args.add(value) {
            self.bind_error.get_or_insert(e);
        }
        self
    }

    /// Runs every statement; an empty script costs nothing.
    pub async fn execute(self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        self.fetch(conn).await.map(drop)
    }

    /// Runs every statement and returns the rows of each, in order (one
    /// entry per statement).
    pub async fn fetch(
        self,
        conn: &mut SqliteConnection,
    ) -> Result<Vec<Vec<SqliteRow>>, StoreError> {
        if self.sql.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(e) = self.bind_error {
            return Err(sqlx::Error::Encode(e).into());
        }
        // A bind too few would read as NULL, silently (sqlx binds what it
        // has); the statements hold no `?` inside string literals.
        debug_assert_eq!(
            self.sql.matches('?').count(),
            self.args.len(),
            "binds of {}",
            self.sql
        );
        // Deprecated by sqlx (see the module docs) but what sqlx 0.8 does.
        #[allow(deprecated)]
        let mut results = sqlx::query_with(&self.sql, self.args).fetch_many(conn);
        let (mut statements, mut rows) = (Vec::new(), Vec::new());
        while let Some(result) = results.try_next().await? {
            match result {
                Either::Right(row) => rows.push(row),
                // Each statement ends with its result.
                Either::Left(_) => statements.push(std::mem::take(&mut rows)),
            }
        }
        Ok(statements)
    }
}
