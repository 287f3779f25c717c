//! Scheduled digests: every day or week, at a local time, a summary of a
//! channel's cards posted to that channel.
//!
//! # Once per scheduled instant
//!
//! The timer computes, for each configured digest, the latest scheduled
//! instant at or before now ([`Schedule::latest_at_or_before`]). If the
//! store's last run of that digest is older, the timer counts the figures
//! and claims the instant with a compare-and-set in the same transaction
//! that enqueues the digest into the channel's outbox
//! ([`Store::claim_digest`]), so delivery's pacing, retries and dead
//! letters apply as to any message. Consequences:
//!
//! * A restart neither skips nor repeats: the last run is durable, and an
//!   instant is claimed by exactly one of the replicas and restarts that
//!   race for it.
//! * After downtime spanning several instants, only the latest is sent; its
//!   message names the period it covers (the one day or week before it),
//!   and "firing now" is as of when it was counted.
//! * A digest seen for the first time (new in the config, or its channel,
//!   schedule or time zone changed: [`key`]) starts counting there and sends
//!   at its next scheduled instant, not at once for an instant before it
//!   existed.

pub mod schedule;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use metrics::counter;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::DigestConfig;
use crate::deliver::Deliverer;
use crate::model::Digest;
use crate::store::{DigestLimits, OpKind, Store, StoreError};
pub use schedule::{Schedule, ScheduleError};

/// What a digest lists by name: enough to act on, well within a message.
pub const LIMITS: DigestLimits = DigestLimits {
    noisiest: 5,
    oldest_firing: 5,
};

/// The durable identity of a digest: its channel and schedule, such as
/// `C0123ABCD week mon 09:00 Europe/Berlin`. A changed schedule is a new
/// digest (it starts counting afresh) rather than one whose last run means
/// something else now. Spelled from the parsed schedule, so `"monday"` and
/// `"mon"`, or `"09:00"` and `"09:00:00"`, are the same digest.
pub fn key(channel: &str, schedule: &Schedule) -> String {
    format!("{channel} {schedule}")
}

/// A configured digest, validated.
#[derive(Debug, Clone)]
pub struct ScheduledDigest {
    pub key: String,
    pub channel: String,
    pub schedule: Schedule,
}

impl ScheduledDigest {
    pub fn new(config: &DigestConfig) -> Result<ScheduledDigest, ScheduleError> {
        let schedule = Schedule::new(config)?;
        Ok(ScheduledDigest {
            key: key(&config.channel, &schedule),
            channel: config.channel.clone(),
            schedule,
        })
    }

    /// The digest for the scheduled instant `instant`, counted at `now`.
    async fn count(
        &self,
        store: &dyn Store,
        instant: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Digest, StoreError> {
        // A period always has a start: instants exist every day or week.
        let start = self.schedule.previous(instant).unwrap_or(instant);
        let figures = store
            .digest_figures(&self.channel, start, instant, LIMITS)
            .await?;
        Ok(Digest {
            key: self.key.clone(),
            channel: self.channel.clone(),
            every: self.schedule.every(),
            time_zone: self.schedule.time_zone().name().to_owned(),
            period_start: start,
            period_end: instant,
            as_of: now,
            figures,
        })
    }
}

/// The configured digests; the config was validated, so none is refused
/// here (one that is would be skipped with an error in the log).
pub fn from_config(configs: &[DigestConfig]) -> Vec<ScheduledDigest> {
    configs
        .iter()
        .filter_map(|c| {
            ScheduledDigest::new(c)
                .inspect_err(|e| {
                    warn!(
                        channel = c.channel,
                        field = e.field,
                        error = e.message,
                        "digest skipped"
                    )
                })
                .ok()
        })
        .collect()
}

/// Claims and enqueues every digest due at `now`. Returns the channels
/// that got a digest (to wake their delivery).
pub async fn tick(
    store: &dyn Store,
    digests: &[ScheduledDigest],
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut enqueued = Vec::new();
    for digest in digests {
        let Some(instant) = digest.schedule.latest_at_or_before(now) else {
            continue;
        };
        let Some(last) = store.last_digest(&digest.key).await? else {
            store.claim_digest(&digest.key, instant, None, now).await?;
            continue;
        };
        if instant <= last {
            continue;
        }
        let report = digest.count(store, instant, now).await?;
        if store
            .claim_digest(&digest.key, instant, Some(&report), now)
            .await?
        {
            info!(channel = digest.channel, %instant, "digest enqueued");
            counter!(crate::metrics::OUTBOX_PUSHED, "kind" => OpKind::Digest.as_str()).increment(1);
            enqueued.push(digest.channel.clone());
        }
    }
    Ok(enqueued)
}

/// The earliest scheduled instant after `now` of any digest.
pub fn next_due(digests: &[ScheduledDigest], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    digests
        .iter()
        .filter_map(|d| d.schedule.next_after(now))
        .min()
}

/// Sends digests when they are due until `stop` turns true. `clock` is the
/// time the schedule is read against (tests replace it).
pub async fn run_timer(
    store: Arc<dyn Store>,
    digests: Vec<ScheduledDigest>,
    deliverer: Deliverer,
    clock: impl Fn() -> DateTime<Utc> + Send + 'static,
    mut stop: watch::Receiver<bool>,
) {
    if digests.is_empty() {
        return;
    }
    loop {
        if *stop.borrow() {
            return;
        }
        let now = clock();
        match tick(&*store, &digests, now).await {
            Ok(channels) => channels.iter().for_each(|c| deliverer.wake(c)),
            Err(e) => warn!(error = %e, "cannot run due digests; will retry"),
        }
        super::timer::wait_until(Ok(next_due(&digests, now)), now, &mut stop).await;
    }
}
