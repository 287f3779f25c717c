//! Rate limiting as the emulator models it, and the bookkeeping that proves
//! a client honours `Retry-After`.
//!
//! Model: a scope (one channel for `chat.postMessage`, the workspace for
//! `chat.update`) admits at most `max` calls in any sliding window of `per`.
//! A refused call gets `Retry-After: N`, N whole seconds (at least 1) until
//! the window has room again. Any call to that scope before those N seconds
//! have passed is a violation, whoever makes it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// At most `max` calls per scope in any sliding window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub per: Duration,
}

impl RateLimit {
    /// No limit at all.
    pub const UNLIMITED: RateLimit = RateLimit {
        max: u32::MAX,
        per: Duration::ZERO,
    };

    /// Default for `chat.postMessage` per channel: about one per second
    /// with bursts, loose enough for ackbar's default pacing (burst 3, then
    /// one per second) and tight enough to catch a client that ignores it.
    pub const POST_PER_CHANNEL: RateLimit = RateLimit {
        max: 10,
        per: Duration::from_secs(5),
    };

    /// Default for `chat.update` across the workspace (tier 3, ~50/min).
    pub const UPDATE_WORKSPACE: RateLimit = RateLimit {
        max: 60,
        per: Duration::from_secs(60),
    };

    fn is_unlimited(&self) -> bool {
        self.max == u32::MAX || self.per.is_zero()
    }
}

#[derive(Debug, Default)]
pub(super) struct Limiter {
    /// Admitted calls per scope inside the current window, oldest first.
    /// Never longer than the scope's `max`.
    windows: HashMap<String, VecDeque<Instant>>,
    /// Scopes that answered 429, and until when the client must wait.
    blocked_until: HashMap<String, Instant>,
}

impl Limiter {
    /// Note a call to `scope`; true when it comes before an earlier 429's
    /// `Retry-After` elapsed.
    pub(super) fn violates_retry_after(&mut self, scope: &str, now: Instant) -> bool {
        match self.blocked_until.get(scope) {
            Some(until) if now < *until => true,
            Some(_) => {
                self.blocked_until.remove(scope);
                false
            }
            None => false,
        }
    }

    /// Admit a call (and count it), or refuse it with the whole seconds the
    /// client must wait.
    pub(super) fn admit(&mut self, scope: &str, limit: RateLimit, now: Instant) -> Result<(), u64> {
        if limit.is_unlimited() {
            return Ok(());
        }
        let window = self.windows.entry(scope.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limit.per)
        {
            window.pop_front();
        }
        if (window.len() as u64) < u64::from(limit.max) {
            window.push_back(now);
            return Ok(());
        }
        let wait = window
            .front()
            .map(|oldest| (*oldest + limit.per).saturating_duration_since(now))
            .unwrap_or(limit.per);
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = secs.max(1);
        let until = now + Duration::from_secs(secs);
        let entry = self.blocked_until.entry(scope.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
        Err(secs)
    }

    /// Refuse `scope` for `secs` from `now`, as a full window would (an
    /// injected 429).
    pub(super) fn block(&mut self, scope: &str, secs: u64, now: Instant) {
        let until = now + Duration::from_secs(secs);
        let entry = self.blocked_until.entry(scope.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }

    pub(super) fn clear(&mut self) {
        self.windows.clear();
        self.blocked_until.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_refuses_with_whole_seconds_and_tracks_violations() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let lim = RateLimit {
            max: 2,
            per: Duration::from_millis(1500),
        };
        assert_eq!(l.admit("c", lim, t0), Ok(()));
        assert_eq!(l.admit("c", lim, t0 + Duration::from_millis(100)), Ok(()));
        // Window frees at t0+1.5s: 1.3s away, rounded up to 2.
        let at = t0 + Duration::from_millis(200);
        assert_eq!(l.admit("c", lim, at), Err(2));
        // Another scope is independent.
        assert_eq!(l.admit("d", lim, at), Ok(()));
        assert!(!l.violates_retry_after("d", at));
        assert!(l.violates_retry_after("c", at + Duration::from_millis(1999)));
        assert!(!l.violates_retry_after("c", at + Duration::from_secs(2)));
        assert_eq!(l.admit("c", lim, at + Duration::from_secs(2)), Ok(()));
    }

    #[test]
    fn unlimited_admits_everything() {
        let mut l = Limiter::default();
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(l.admit("c", RateLimit::UNLIMITED, now), Ok(()));
        }
        assert!(l.windows.is_empty());
    }
}
