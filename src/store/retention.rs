//! Keeps the store bounded: a resolved card, its alerts and its thread go
//! once they are older than `store.retention`. Every replica may run this;
//! deleting is idempotent, so they never conflict in meaning.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tracing::warn;

use super::Store;

/// How often pruning looks for old cards; retention is measured in hours or
/// days, so a minute late is nothing.
const INTERVAL: Duration = Duration::from_secs(60);
/// Cards deleted per transaction, so pruning never holds the write lock
/// long. A full batch is followed by another at once.
const BATCH: u32 = 500;

/// Prunes until `stop` turns true.
pub async fn run_pruner(
    store: Arc<dyn Store>,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match Utc::now()
            .checked_sub_signed(retention)
            .map(|before| store.prune(before, BATCH))
        {
            Some(prune) => match prune.await {
                Ok(n) => {
                    crate::metrics::cards_pruned(n);
                    if n == u64::from(BATCH) {
                        Duration::ZERO
                    } else {
                        INTERVAL
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot prune resolved cards; will retry");
                    INTERVAL
                }
            },
            None => INTERVAL,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}
