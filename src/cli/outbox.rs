//! `ackbar outbox`: what waits to be sent to Slack and what failed for good,
//! and `ackbar outbox retry ID` to send a dead letter again.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use serde_json::json;

use super::{EXIT_FAILED, EXIT_USAGE};
use crate::config::{Config, redact_url};
use crate::slack::cards::format_duration;
use crate::store::{self, OpState, OutboxEntry, RetryOutcome, Store};

/// How long a CLI command waits for SQLite's write lock (a running server
/// holds it only briefly).
const STORE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the configured store, or says why not (exit 1).
pub(super) async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ExitCode> {
    store::open(&config.store.url, STORE_BUSY_TIMEOUT)
        .await
        .map_err(|e| {
            eprintln!(
                "cannot open the store {} (check \"store.url\" in the config): {e}",
                redact_url(&config.store.url)
            );
            ExitCode::from(EXIT_FAILED)
        })
}

pub(super) async fn list(config: Config, dead_only: bool, as_json: bool, limit: u32) -> ExitCode {
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let entries = match store.outbox_entries(dead_only, limit).await {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("cannot read the outbox: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    if as_json {
        let rows: Vec<_> = entries.iter().map(entry_json).collect();
        println!("{}", serde_json::Value::Array(rows));
        return ExitCode::SUCCESS;
    }
    if entries.is_empty() {
        let what = if dead_only {
            "no dead letters"
        } else {
            "the outbox is empty"
        };
        println!("{what}");
        return ExitCode::SUCCESS;
    }
    let now = Utc::now();
    println!(
        "{:<8} {:<8} {:<7} {:<12} {:<12} {:>8} {:>8}  LAST ERROR",
        "ID", "STATE", "KIND", "CHANNEL", "CARD", "ATTEMPTS", "AGE"
    );
    for e in &entries {
        println!(
            "{:<8} {:<8} {:<7} {:<12} {:<12} {:>8} {:>8}  {}",
            e.id,
            e.state.as_str(),
            e.kind.as_str(),
            e.channel,
            e.card
                .as_ref()
                .map_or("-", |c| c.0.get(..12).unwrap_or(&c.0)),
            e.attempts,
            format_duration((now - e.created_at).num_seconds().max(0)),
            e.last_error.as_deref().unwrap_or("-"),
        );
    }
    if entries.iter().any(|e| e.state == OpState::Dead) {
        println!("\nsend a dead letter again with: ackbar outbox retry ID");
    }
    ExitCode::SUCCESS
}

fn entry_json(e: &OutboxEntry) -> serde_json::Value {
    json!({
        "id": e.id,
        "state": e.state.as_str(),
        "kind": e.kind.as_str(),
        "channel": e.channel,
        "card": e.card.as_ref().map(|c| &c.0),
        "recipient": e.recipient,
        "attempts": e.attempts,
        "last_error": e.last_error,
        "created_at": e.created_at.to_rfc3339(),
        "not_before": e.not_before.to_rfc3339(),
    })
}

pub(super) async fn retry(config: Config, id: i64) -> ExitCode {
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    match store.retry_dead_letter(id, Utc::now()).await {
        Ok(RetryOutcome::Retried { revived, absorbed }) => {
            let others: Vec<String> = revived
                .iter()
                .filter(|r| **r != id)
                .map(ToString::to_string)
                .collect();
            print!("operation {id} is pending again");
            if !others.is_empty() {
                print!(" (with {} of the same card)", others.join(", "));
            }
            println!(".");
            if !absorbed.is_empty() {
                let ids: Vec<String> = absorbed.iter().map(ToString::to_string).collect();
                println!(
                    "{} merged into pending operations of the card, which carry their content.",
                    ids.join(", ")
                );
            }
            println!("A running `ackbar serve` on this store sends it within seconds.");
            ExitCode::SUCCESS
        }
        Ok(RetryOutcome::NotDead(state)) => {
            eprintln!(
                "operation {id} is {}, not a dead letter: delivery still owns it, nothing to retry",
                state.as_str()
            );
            ExitCode::from(EXIT_USAGE)
        }
        Ok(RetryOutcome::NotFound) => {
            eprintln!(
                "no outbox operation {id} (sent already, or pruned with its card); `ackbar outbox --dead` lists the dead letters"
            );
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("cannot retry operation {id}: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
