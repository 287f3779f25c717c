//! Capped exponential backoff with jitter, shared by every sender that
//! retries: Slack delivery and the `tracing` Layer's forwarding mode.

use std::time::Duration;

/// `base * 2^(attempt-1)`, at most `max`, then a random factor in
/// [0.5, 1.0] so that retries of many senders spread out. `attempt` counts
/// from 1.
pub fn jittered(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    exp.mul_f64(0.5 + fastrand::f64() * 0.5)
}
