//! What the SQLite store last read of each card key's latest card and of
//! its alerts, so that a re-sent notification (Alertmanager repeats firing
//! alerts every `group_interval`, and HA peers send every notification
//! twice) is recognised as unchanged without a query.
//!
//! The cache only ever answers "nothing changes": a batch it cannot decide
//! that way (an unknown alert, a new status or digest) goes to the write
//! path, which decides again from the database under the write lock. So a
//! stale entry could at worst drop a change, and entries are kept exact:
//!
//! * only the group writer (`super::sqlite_group`) changes entries: once
//!   a group's commit is on disk, before the requests in it are answered,
//!   it forgets the keys the group wrote and records what the group read
//!   of the keys it did not write, group after group in commit order;
//! * writes that change cards by id (actions from Slack, retention) forget
//!   everything, and a read made before such a forget is not recorded
//!   after it ([`StateCache::epoch`]).
//!
//! So the cache never holds a state older than one a request was answered
//! on, nor one newer than what is on disk: a re-send it decides
//! "unchanged" is answered on durable state.
//!
//! This relies on this process being the only writer of cards and alerts,
//! which holds for SQLite (one `ackbar serve` per database file; the CLI's
//! outbox commands write outbox rows only). The PostgreSQL store, shared by
//! replicas, has no such cache.
//!
//! The cache is bounded: past [`MAX_ENTRIES`] alert entries it starts over
//! empty, so memory does not grow with the number of alerts ever seen.
//!
//! Every entry carries a stamp, new each time the entry is created or
//! changed (stamps are never reused): a caller that saw a key decided
//! "unchanged" under one stamp knows that, while the key still has that
//! stamp, the same batch would be decided the same way
//! ([`StateCache::stamp`], used to recognise byte-identical re-sends).
//!
//! Lookups share a read lock: re-sends on every worker thread decide in
//! parallel; only the group writer takes the write lock.

use std::collections::{HashMap, HashSet};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};

use crate::model::{CardId, Fingerprint};
use crate::pipeline::card::{self, CardBatch, CardSnapshot, KnownAlert, Plan};

/// Alert entries (known or known to be absent) held in all: a few MiB.
pub const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub(super) struct StateCache {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    keys: HashMap<String, CachedKey>,
    entries: usize,
    /// Counts the times everything was forgotten.
    epoch: u64,
    /// The last stamp given out.
    last_stamp: u64,
}

/// One card key as the store holds it.
struct CachedKey {
    /// New whenever the entry is created or changed.
    stamp: u64,
    /// The key's latest card and its row sequence number; `None`: no card.
    latest: Option<(i64, CardSnapshot)>,
    /// Stored alerts of the latest card, by fingerprint.
    known: HashMap<Fingerprint, KnownAlert>,
    /// Fingerprints the latest card does not hold.
    absent: HashSet<Fingerprint>,
}

impl StateCache {
    /// `None` after a panic under the write lock: the cache may be
    /// inconsistent, so it answers nothing until the next write starts over.
    fn read(&self) -> Option<RwLockReadGuard<'_, Inner>> {
        self.inner.read().ok()
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        // Nothing panics while holding the lock; should it, the cache may be
        // inconsistent, so start over.
        self.inner.write().unwrap_or_else(|poisoned| {
            let mut inner = poisoned.into_inner();
            inner.forget_all();
            self.inner.clear_poison();
            inner
        })
    }

    /// `Some(card)` when the cache knows every alert of `batch` and the
    /// batch changes nothing (`card`: the key's latest card, if any);
    /// `None` when the database has to decide.
    pub fn unchanged(&self, batch: &CardBatch, now: DateTime<Utc>) -> Option<Option<CardId>> {
        let inner = self.read()?;
        let cached = inner.keys.get(&batch.key)?;
        let complete = batch.alerts.iter().all(|a| {
            cached.known.contains_key(&a.fingerprint) || cached.absent.contains(&a.fingerprint)
        });
        if !complete {
            return None;
        }
        let latest = cached.latest.as_ref().map(|(_, snapshot)| snapshot);
        match card::plan(latest, &cached.known, batch, now) {
            Plan::Unchanged => Some(latest.map(|s| s.id.clone())),
            Plan::Apply(_) => None,
        }
    }

    /// Records what the database holds for `batch`'s key, as read while
    /// no one else could write it: its latest card and, of the batch's
    /// alerts, those the card holds (`known`); the others it does not hold.
    /// `read_in` is the [`epoch`](Self::epoch) the read began in: when
    /// everything was forgotten since, the read may be stale and is not
    /// recorded.
    pub fn fill(
        &self,
        batch: &CardBatch,
        latest: Option<(i64, &CardSnapshot)>,
        known: &HashMap<Fingerprint, KnownAlert>,
        read_in: u64,
    ) {
        let mut inner = self.write();
        if inner.epoch != read_in {
            return;
        }
        if inner.entries + batch.alerts.len() > MAX_ENTRIES {
            inner.forget_all();
        }
        inner.last_stamp += 1;
        let stamp = inner.last_stamp;
        let fresh = || CachedKey {
            stamp,
            latest: latest.map(|(seq, snapshot)| (seq, snapshot.clone())),
            known: HashMap::new(),
            absent: HashSet::new(),
        };
        let inner = &mut *inner;
        let cached = inner.keys.entry(batch.key.clone()).or_insert_with(fresh);
        // Conservatively a change even when it only learns new alerts.
        cached.stamp = stamp;
        if cached.latest.as_ref().map(|(seq, _)| *seq) != latest.map(|(seq, _)| seq) {
            // A new card for the key: what was known is of the old one.
            inner.entries -= cached.known.len() + cached.absent.len();
            *cached = fresh();
        }
        for alert in &batch.alerts {
            let fp = alert.fingerprint;
            // A fingerprint is in at most one of the two sets.
            let new_entry = !cached.known.contains_key(&fp) && !cached.absent.contains(&fp);
            match known.get(&fp) {
                Some(k) => {
                    cached.absent.remove(&fp);
                    cached.known.insert(fp, *k);
                }
                None => {
                    cached.known.remove(&fp);
                    cached.absent.insert(fp);
                }
            }
            inner.entries += usize::from(new_entry);
        }
    }

    /// A commit changed these keys' cards or alerts.
    pub fn forget<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.write();
        for key in keys {
            if let Some(gone) = inner.keys.remove(key) {
                inner.entries -= gone.known.len() + gone.absent.len();
            }
        }
    }

    /// A commit changed cards the cache cannot name by key.
    pub fn forget_all(&self) {
        self.write().forget_all();
    }

    /// Changes each time everything is forgotten: a read that began in
    /// another epoch may have missed a write by id.
    pub fn epoch(&self) -> u64 {
        match self.read() {
            Some(inner) => inner.epoch,
            None => self.write().epoch,
        }
    }

    /// The current stamp of `key`'s entry; `None` when the key is not held.
    pub fn stamp(&self, key: &str) -> Option<u64> {
        Some(self.read()?.keys.get(key)?.stamp)
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.write().entries
    }
}

impl Inner {
    fn forget_all(&mut self) {
        self.keys.clear();
        self.entries = 0;
        self.epoch += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertStatus, CardState};
    use crate::pipeline::card::tests::{alert, t};

    fn now() -> DateTime<Utc> {
        t(0)
    }

    fn batch(key: &str, fingerprints: std::ops::Range<u64>) -> CardBatch {
        let alerts = fingerprints.map(|fp| alert(fp, AlertStatus::Firing));
        CardBatch {
            key: key.to_owned(),
            ..crate::pipeline::card::tests::batch(alerts.collect())
        }
    }

    /// What the store holds after `batch` opened a card: every alert firing.
    fn stored(batch: &CardBatch) -> (CardSnapshot, HashMap<Fingerprint, KnownAlert>) {
        let snapshot = CardSnapshot {
            id: CardId("card".into()),
            state: CardState::Firing,
            opened_at: now(),
            resolved_at: None,
            group_digest: batch.group_digest(),
            firing_count: batch.alerts.len() as u64,
            resolved_count: 0,
        };
        let known = batch
            .alerts
            .iter()
            .map(|a| {
                let known = KnownAlert {
                    status: a.status,
                    digest: a.digest(),
                    expires_at: None,
                };
                (a.fingerprint, known)
            })
            .collect();
        (snapshot, known)
    }

    #[test]
    fn a_filled_key_decides_repeats_until_a_write_forgets_it() {
        let cache = StateCache::default();
        let b = batch("k", 0..3);
        assert_eq!(cache.unchanged(&b, now()), None, "nothing known yet");
        let (snapshot, known) = stored(&b);
        cache.fill(&b, Some((1, &snapshot)), &known, cache.epoch());
        assert_eq!(cache.unchanged(&b, now()), Some(Some(snapshot.id.clone())));
        // An alert the cache has not seen: the store decides.
        assert_eq!(cache.unchanged(&batch("k", 0..4), now()), None);
        cache.forget(["k"]);
        assert_eq!(cache.unchanged(&b, now()), None);
        assert_eq!(cache.entries(), 0);
    }

    #[test]
    fn every_change_to_an_entry_gives_it_a_stamp_never_given_before() {
        let cache = StateCache::default();
        let b = batch("k", 0..2);
        let (snapshot, known) = stored(&b);
        assert_eq!(cache.stamp("k"), None);
        let mut seen = Vec::new();
        for step in 0..4 {
            match step {
                2 => cache.forget(["k"]),
                3 => cache.forget_all(),
                _ => {}
            }
            if step >= 2 {
                assert_eq!(cache.stamp("k"), None, "forgotten");
            }
            // Step 1 refills with the same state: still a new stamp.
            cache.fill(&b, Some((1, &snapshot)), &known, cache.epoch());
            let stamp = cache.stamp("k").expect("filled");
            assert!(!seen.contains(&stamp), "stamp {stamp} reused: {seen:?}");
            seen.push(stamp);
        }
        // Another key's fill leaves this one's stamp alone.
        cache.fill(&batch("other", 5..6), None, &HashMap::new(), cache.epoch());
        assert_eq!(cache.stamp("k"), seen.last().copied());
        cache.forget(["k"]);
        assert_eq!(cache.stamp("k"), None);
    }

    #[test]
    fn a_read_made_before_everything_was_forgotten_is_not_recorded() {
        let cache = StateCache::default();
        let b = batch("k", 0..2);
        let (snapshot, known) = stored(&b);
        let read_in = cache.epoch();
        // An action changes a card by id between the read and its record.
        cache.forget_all();
        cache.fill(&b, Some((1, &snapshot)), &known, read_in);
        assert_eq!(cache.unchanged(&b, now()), None);
        assert_eq!(cache.entries(), 0);
        cache.fill(&b, Some((1, &snapshot)), &known, cache.epoch());
        assert_eq!(cache.unchanged(&b, now()), Some(Some(snapshot.id.clone())));
    }

    #[test]
    fn absent_alerts_are_remembered_and_a_change_is_never_unchanged() {
        let cache = StateCache::default();
        let b = batch("k", 0..2);
        cache.fill(&b, None, &HashMap::new(), cache.epoch());
        assert_eq!(cache.entries(), 2);
        // Firing alerts for a key with no card open one: not unchanged.
        assert_eq!(cache.unchanged(&b, now()), None);
    }

    #[test]
    fn the_cache_starts_over_instead_of_growing_past_its_bound() {
        let cache = StateCache::default();
        let per_key = 1_000;
        for k in 0..(MAX_ENTRIES / per_key + 5) as u64 {
            let b = batch(&format!("k{k}"), k * 10_000..k * 10_000 + per_key as u64);
            let (snapshot, known) = stored(&b);
            cache.fill(&b, Some((k as i64, &snapshot)), &known, cache.epoch());
            assert!(cache.entries() <= MAX_ENTRIES, "{}", cache.entries());
        }
        assert!(cache.entries() > 0);
    }
}
