//! The quiet-period timer: event sources (the `tracing` Layer, OTLP) never
//! say an alert is over, so an alert that has not occurred for its route's
//! `quiet_period` is resolved here, through the same store transaction and
//! outbox as any resolve. The deadline lives in the store (`expires_at`), so
//! it survives restarts, and a later occurrence moves it (see
//! [`super::card::plan`], which drops a resolve that lost that race).

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::watch;
use tracing::warn;

use super::Pipeline;
use crate::deliver::Deliverer;

/// Resolves quiet alerts until `stop` turns true.
pub async fn run_timer(
    pipeline: Arc<Pipeline>,
    deliverer: Deliverer,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        match pipeline.resolve_quiet(Utc::now()).await {
            Ok(report) => {
                for channel in report.channels_to_wake() {
                    deliverer.wake(channel);
                }
            }
            Err(e) => warn!(error = %e, "cannot resolve quiet alerts; will retry"),
        }
        super::timer::wait_for_next(pipeline.next_quiet_at().await, &mut stop).await;
    }
}
