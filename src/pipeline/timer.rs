//! What the store-backed timers (escalation steps, quiet periods, digests)
//! share: sleep until the next due time, but never past a poll interval
//! (another replica or a restart may have added something due sooner) and
//! never in a tight loop, and wake at once when asked to stop.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::store::StoreError;

/// Longest sleep between checks.
pub const POLL: Duration = Duration::from_secs(5);
/// Shortest sleep, so a store that keeps failing is not hammered.
const MIN_WAIT: Duration = Duration::from_millis(200);

/// Sleeps until `next` (the store's answer to "when is the next one due"),
/// bounded by [`POLL`], or until `stop` changes.
pub async fn wait_for_next(
    next: Result<Option<DateTime<Utc>>, StoreError>,
    stop: &mut watch::Receiver<bool>,
) {
    wait_until(next, Utc::now(), stop).await;
}

/// [`wait_for_next`] with the current time read from the caller's clock.
pub async fn wait_until(
    next: Result<Option<DateTime<Utc>>, StoreError>,
    now: DateTime<Utc>,
    stop: &mut watch::Receiver<bool>,
) {
    let wait = match next {
        Ok(Some(at)) => (at - now).to_std().unwrap_or_default().min(POLL),
        _ => POLL,
    };
    tokio::select! {
        _ = tokio::time::sleep(wait.max(MIN_WAIT)) => {}
        _ = stop.changed() => {}
    }
}
