//! Several SQL statements with their binds, run on either SQLite driver.
//!
//! The store reaches SQLite two ways. sqlx runs a connection's statements on
//! the connection's own worker thread: every `execute` or `fetch` is a round
//! trip over a channel with two thread wake-ups, which on a small machine
//! costs far more than the statement itself (about 60 µs against a few). A
//! query string holding several statements runs them all in one such
//! command, each statement taking the next of the anonymous `?` binds in
//! order (sqlx-sqlite's `ExecuteIter`): [`Script::execute`]. The group
//! writer (`super::sqlite_group`) instead owns a rusqlite connection on its
//! own thread, where a statement costs only itself:
//! [`Script::fetch_blocking`] runs each statement prepared once and kept in
//! the connection's statement cache.
//!
//! A [`Script`] is built statement by statement, so the code deciding what to
//! write reads as one query per statement, and it does not know which
//! driver will run it.
//!
//! SQLite's limit on parameters holds per statement, not per script.
//!
//! sqlx 0.8 marks several statements in one prepared query as deprecated
//! (launchbadge/sqlx#3108: only its SQLite driver runs them, and a later
//! version may refuse them). The store's tests run every script, so an
//! upgrade that drops it fails them rather than the data.

use std::borrow::Cow;
use std::sync::Arc;

use futures_util::TryStreamExt;
use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, SqliteConnection};

use super::StoreError;
use super::rows::Columns;

/// A value bound to a statement: the store writes integers, text and NULL.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value<'q> {
    Null,
    Int(i64),
    Text(Cow<'q, str>),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Int(v.into())
    }
}

impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Text(Cow::Owned(v))
    }
}

impl<'q> From<&'q str> for Value<'q> {
    fn from(v: &'q str) -> Self {
        Value::Text(Cow::Borrowed(v))
    }
}

impl<'q> From<&'q String> for Value<'q> {
    fn from(v: &'q String) -> Self {
        Value::Text(Cow::Borrowed(v))
    }
}

impl<'q, T: Into<Value<'q>>> From<Option<T>> for Value<'q> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl<'q> From<&'q Option<String>> for Value<'q> {
    fn from(v: &'q Option<String>) -> Self {
        v.as_ref().into()
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
        }))
    }
}

/// Statements and their binds.
#[derive(Default)]
pub(super) struct Script<'q> {
    /// Each statement with the index of its first value in `values`.
    statements: Vec<(String, usize)>,
    values: Vec<Value<'q>>,
}

impl<'q> Script<'q> {
    /// Appends a statement; its `?` parameters take the binds that follow.
    pub fn push(&mut self, statement: &str) -> &mut Self {
        self.statements
            .push((statement.to_owned(), self.values.len()));
        self
    }

    pub fn bind(&mut self, value: impl Into<Value<'q>>) -> &mut Self {
        self.values.push(value.into());
        self
    }

    /// Each statement with its values.
    fn statements(&self) -> impl Iterator<Item = (&str, &[Value<'q>])> {
        let ends = self
            .statements
            .iter()
            .skip(1)
            .map(|(_, start)| *start)
            .chain([self.values.len()]);
        self.statements
            .iter()
            .zip(ends)
            .map(|((sql, start), end)| (sql.as_str(), &self.values[*start..end]))
    }

    /// Runs every statement on a sqlx connection, in one round trip; an
    /// empty script costs nothing.
    pub async fn execute(self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        if self.statements.is_empty() {
            return Ok(());
        }
        let sql = self
            .statements
            .iter()
            .map(|(sql, _)| sql.as_str())
            .collect::<Vec<_>>()
            .join(";\n");
        // A bind too few would read as NULL, silently (sqlx binds what it
        // has); the statements hold no `?` inside string literals.
        debug_assert_eq!(
            sql.matches('?').count(),
            self.values.len(),
            "binds of {sql}"
        );
        let mut args = SqliteArguments::default();
        for value in self.values {
            // Integers, text and NULL always encode.
            let added = match value {
                Value::Null => args.add(None::<i64>),
                Value::Int(v) => args.add(v),
                Value::Text(v) => args.add(v),
            };
            added.map_err(sqlx::Error::Encode)?;
        }
        // Deprecated by sqlx (see the module docs) but what sqlx 0.8 does:
        // each statement in turn, until the stream ends.
        #[allow(deprecated)]
        let mut results = sqlx::query_with(&sql, args).fetch_many(conn);
        while results.try_next().await?.is_some() {}
        Ok(())
    }

    /// Runs every statement on a rusqlite connection, each prepared once
    /// per connection (its statement cache), and returns the rows of each,
    /// in order.
    pub fn fetch_blocking(
        &self,
        conn: &rusqlite::Connection,
    ) -> Result<Vec<Vec<ScriptRow>>, StoreError> {
        let mut results = Vec::with_capacity(self.statements.len());
        for (sql, values) in self.statements() {
            let mut statement = conn.prepare_cached(sql)?;
            debug_assert_eq!(statement.parameter_count(), values.len(), "binds of {sql}");
            for (i, value) in values.iter().enumerate() {
                statement.raw_bind_parameter(i + 1, value)?;
            }
            let columns: Arc<[String]> = statement
                .column_names()
                .into_iter()
                .map(str::to_owned)
                .collect();
            let mut rows = statement.raw_query();
            let mut fetched = Vec::new();
            while let Some(row) = rows.next()? {
                let values = (0..columns.len())
                    .map(|i| owned(row.get_ref(i)?))
                    .collect::<Result<_, StoreError>>()?;
                fetched.push(ScriptRow {
                    columns: columns.clone(),
                    values,
                });
            }
            results.push(fetched);
        }
        Ok(results)
    }

    /// [`Script::fetch_blocking`] without the rows.
    pub fn execute_blocking(&self, conn: &rusqlite::Connection) -> Result<(), StoreError> {
        self.fetch_blocking(conn).map(drop)
    }
}

fn owned(value: ValueRef<'_>) -> Result<Value<'static>, StoreError> {
    match value {
        ValueRef::Null => Ok(Value::Null),
        ValueRef::Integer(v) => Ok(Value::Int(v)),
        ValueRef::Text(v) => String::from_utf8(v.to_vec())
            .map(Value::from)
            .map_err(|e| StoreError::Corrupt(format!("text that is not UTF-8: {e}"))),
        ValueRef::Real(_) | ValueRef::Blob(_) => Err(StoreError::Corrupt(format!(
            "a {:?} value where the store keeps integers and text",
            value.data_type()
        ))),
    }
}

/// A row [`Script::fetch_blocking`] read.
#[derive(Debug)]
pub(super) struct ScriptRow {
    columns: Arc<[String]>,
    values: Vec<Value<'static>>,
}

impl ScriptRow {
    fn get(&self, column: &str) -> Result<&Value<'static>, StoreError> {
        self.columns
            .iter()
            .position(|c| c == column)
            .map(|i| &self.values[i])
            .ok_or_else(|| StoreError::Corrupt(format!("no column {column}")))
    }
}

fn mistyped(column: &str, value: &Value<'_>) -> StoreError {
    StoreError::Corrupt(format!("column {column} holds {value:?}"))
}

impl Columns for ScriptRow {
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.opt_int(column)?
            .ok_or_else(|| mistyped(column, &Value::Null))
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        match self.get(column)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(mistyped(column, other)),
        }
    }
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.opt_text(column)?
            .ok_or_else(|| mistyped(column, &Value::Null))
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        match self.get(column)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone().into_owned())),
            other => Err(mistyped(column, other)),
        }
    }
    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        self.int(column).map(|v| v != 0)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnIndex(_)
            | rusqlite::Error::InvalidColumnName(_)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::Utf8Error(_) => StoreError::Corrupt(e.to_string()),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}
