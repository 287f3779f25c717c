//! Byte-identical re-sends, recognised without decoding them again.
//!
//! While a group fires, Alertmanager sends its notification again every
//! `repeat_interval`, and every HA peer that did not see the others' send
//! sends it too. When nothing changed, that body is the same bytes as the
//! last one: firing alerts carry Go's zero time as `endsAt` (Alertmanager
//! hides an end that has not been reached), the alerts and the label maps
//! come in a stable order, and nothing else in the payload moves
//! (`tests/alertmanager.rs` checks this against the real Alertmanager).
//!
//! [`Resends`] remembers bodies that changed nothing, each with the state
//! cache's stamp of every card key it touched ([`Store::cache_stamp`]). A
//! later request with exactly those bytes, while every one of those keys
//! still has its stamp, would be decided the same way again: the decision
//! depends only on
//!
//! * the body: the same bytes (compared in full, not only their hash);
//! * the routes: fixed for the life of the process;
//! * what the store holds for the keys: the stamps say it is what it was;
//! * not on the time, for Alertmanager's alerts: [`card::plan`] reads the
//!   clock only for alerts that resolve by a quiet period or a card that
//!   reopens, and neither is "unchanged". Bodies of other sources are not
//!   remembered.
//!
//! So it is answered "unchanged" at the cost of a hash and a comparison,
//! instead of a JSON decode, routing and the cache's decision.
//!
//! The stamps are taken before the body is applied, and a re-send is
//! recognised only while every key still has them: then nothing about the
//! keys changed between the stamps and the decision either, whichever way
//! the store made it (from its cache or from the database).
//!
//! Memory is bounded: past [`MAX_BYTES`] of remembered bodies it starts
//! over empty.
//!
//! [`Store::cache_stamp`]: crate::store::Store::cache_stamp
//! [`card::plan`]: super::card::plan

use std::collections::HashMap;
use std::sync::RwLock;

use super::card::CardBatch;
use crate::store::Store;

/// Bytes of remembered bodies held in all.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;
/// Larger bodies are not remembered (a handful would fill the memo).
pub const MAX_BODY_BYTES: usize = MAX_BYTES / 8;

/// What a recognised re-send is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resent {
    /// Alerts in the notification.
    pub alerts: u64,
    /// Of those, alerts no route took.
    pub unrouted: u64,
}

/// The card keys a notification touched, with their stamps.
pub struct Stamps(Vec<(String, u64)>);

impl Stamps {
    /// The stamps of every batch's key, or `None` when the store does not
    /// hold one of them (it would decide from the database).
    pub fn of(batches: &[CardBatch], store: &dyn Store) -> Option<Stamps> {
        // All stamps first: most notifications are not stamped at all
        // (no cache, or a key not yet held), and they pay no key copies.
        let stamps: Vec<u64> = batches
            .iter()
            .map(|b| store.cache_stamp(&b.key))
            .collect::<Option<_>>()?;
        Some(Stamps(
            batches.iter().map(|b| b.key.clone()).zip(stamps).collect(),
        ))
    }

    /// Every key still has the stamp it had.
    fn hold(&self, store: &dyn Store) -> bool {
        self.0
            .iter()
            .all(|(key, stamp)| store.cache_stamp(key) == Some(*stamp))
    }
}

/// Remembered bodies that changed nothing.
#[derive(Default)]
pub struct Resends {
    memo: RwLock<Memo>,
}

#[derive(Default)]
struct Memo {
    /// By the body's length: most bodies that reach the webhook are not
    /// re-sends, and only one of a remembered length is hashed.
    bodies: HashMap<usize, Vec<Remembered>>,
    bytes: usize,
}

struct Remembered {
    hash: u64,
    body: Box<[u8]>,
    stamps: Stamps,
    answer: Resent,
}

impl Remembered {
    fn is(&self, hash: u64, body: &[u8]) -> bool {
        self.hash == hash && *self.body == *body
    }
}

impl Resends {
    /// The answer to `body` when it is a remembered body and nothing it
    /// touched changed since.
    pub fn recognise(&self, body: &[u8], store: &dyn Store) -> Option<Resent> {
        let memo = self.memo.read().ok()?;
        let same_length = memo.bodies.get(&body.len())?;
        let hash = hash(body);
        let remembered = same_length.iter().find(|r| r.is(hash, body))?;
        remembered.stamps.hold(store).then_some(remembered.answer)
    }

    /// Remembers `body`, which changed nothing, with the stamps its keys
    /// had before it was applied (`before`). Should a key have changed
    /// since, the body would never be recognised (stamps are not reused),
    /// so it is not kept at all.
    pub fn remember(&self, body: &[u8], before: Stamps, answer: Resent, store: &dyn Store) {
        if body.len() > MAX_BODY_BYTES || !before.hold(store) {
            return;
        }
        let Ok(mut memo) = self.memo.write() else {
            return;
        };
        if memo.bytes + body.len() > MAX_BYTES {
            *memo = Memo::default();
        }
        let hash = hash(body);
        let remembered = Remembered {
            hash,
            body: body.into(),
            stamps: before,
            answer,
        };
        let Memo { bodies, bytes } = &mut *memo;
        let same_length = bodies.entry(body.len()).or_default();
        match same_length.iter_mut().find(|r| r.is(hash, body)) {
            Some(old) => *old = remembered,
            None => {
                same_length.push(remembered);
                *bytes += body.len();
            }
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.memo.read().unwrap().bytes
    }
}

fn hash(body: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(body)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::Utc;

    use super::*;
    use crate::config::Config;
    use crate::ingest::alertmanager;
    use crate::pipeline::Pipeline;
    use crate::pipeline::route::Router;
    use crate::store::sqlite::SqliteStore;

    fn body(status: &str, instance: &str) -> Vec<u8> {
        format!(
            r#"{{"version": "4", "receiver": "r", "groupKey": "{{}}:{{alertname=\"Down\"}}",
            "status": "{status}", "groupLabels": {{"alertname": "Down"}},
            "commonLabels": {{"alertname": "Down"}}, "commonAnnotations": {{}},
            "externalURL": "http://am:9093",
            "alerts": [{{"status": "{status}",
                "labels": {{"alertname": "Down", "instance": "{instance}"}},
                "startsAt": "2026-11-29T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z"}}]}}"#
        )
        .into_bytes()
    }

    /// A pipeline on the default (catch-all) route, which has no
    /// `group_by`: each Alertmanager group is its own card key.
    async fn pipeline() -> (Pipeline, Arc<dyn Store>) {
        let config = Config::from_json("{}").unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open("sqlite::memory:", Duration::from_secs(5))
                .await
                .unwrap(),
        );
        let router = Arc::new(Router::new(config.effective_routes()));
        (
            Pipeline::new(router, store.clone(), Duration::from_secs(2)),
            store,
        )
    }

    /// Sends `body` the way the webhook does: recognised, or decoded and
    /// applied (and remembered when it changed nothing). True when it was
    /// recognised.
    async fn send(pipeline: &Pipeline, body: &[u8]) -> bool {
        if pipeline.recognise_resend(body).is_some() {
            return true;
        }
        let notification = alertmanager::decode(body).unwrap();
        pipeline
            .ingest_resendable(body, notification, Utc::now())
            .await
            .unwrap();
        false
    }

    /// Sends `body` until it is recognised: the first send applies it, the
    /// second is decided from the database, the third from the cache,
    /// which remembers it.
    async fn until_recognised(pipeline: &Pipeline, body: &[u8]) {
        for _ in 0..3 {
            send(pipeline, body).await;
        }
        assert!(send(pipeline, body).await, "recognised at the fourth send");
    }

    #[tokio::test]
    async fn an_unchanged_body_is_recognised_until_its_card_changes() {
        let (pipeline, _) = pipeline().await;
        let firing = body("firing", "db-1");
        assert!(!send(&pipeline, &firing).await, "opens the card");
        assert!(!send(&pipeline, &firing).await, "decided by the database");
        assert!(!send(&pipeline, &firing).await, "decided by the cache");
        assert!(send(&pipeline, &firing).await, "recognised");
        assert!(send(&pipeline, &firing).await, "recognised");

        // The card changes: the remembered firing body no longer stands.
        assert!(!send(&pipeline, &body("resolved", "db-1")).await);
        assert_eq!(pipeline.recognise_resend(&firing), None, "the card changed");
    }

    /// The stamps taken before a body was applied no longer hold when its
    /// key changed meanwhile: the body is not remembered.
    #[tokio::test]
    async fn a_body_whose_key_changed_while_it_was_applied_is_not_remembered() {
        let (pipeline, store) = pipeline().await;
        let firing = body("firing", "db-1");
        for _ in 0..2 {
            send(&pipeline, &firing).await;
        }
        let (batches, _) = pipeline.batches(alertmanager::decode(&firing).unwrap());
        let before = Stamps::of(&batches, &*store).expect("the cache holds the key");
        send(&pipeline, &body("resolved", "db-1")).await;
        let answer = Resent {
            alerts: 1,
            unrouted: 0,
        };
        pipeline.resends.remember(&firing, before, answer, &*store);
        assert_eq!(pipeline.recognise_resend(&firing), None);
    }

    #[tokio::test]
    async fn a_change_to_another_key_does_not_forget_a_body() {
        let (pipeline, _) = pipeline().await;
        let db = body("firing", "db-1");
        until_recognised(&pipeline, &db).await;
        // Another group: another card key.
        let other = br#"{"version": "4", "groupKey": "other", "status": "firing",
            "alerts": [{"status": "firing", "labels": {"alertname": "Other"},
                "startsAt": "2026-11-29T00:00:00Z"}]}"#;
        assert!(!send(&pipeline, other).await);
        assert!(send(&pipeline, &db).await);
    }

    #[tokio::test]
    async fn bodies_that_differ_in_one_byte_are_decided() {
        let (pipeline, _) = pipeline().await;
        let db = body("firing", "db-1");
        until_recognised(&pipeline, &db).await;
        let mut spaced = db.clone();
        spaced.push(b' ');
        assert!(!send(&pipeline, &spaced).await);
    }

    #[tokio::test]
    async fn remembered_bodies_of_one_length_are_told_apart() {
        let (_, store) = pipeline().await;
        let resends = Resends::default();
        let answer = |alerts| Resent {
            alerts,
            unrouted: 0,
        };
        resends.remember(b"body-a", Stamps(Vec::new()), answer(1), &*store);
        resends.remember(b"body-b", Stamps(Vec::new()), answer(2), &*store);
        // Remembering a body again replaces it and counts it once.
        resends.remember(b"body-a", Stamps(Vec::new()), answer(3), &*store);
        assert_eq!(resends.recognise(b"body-a", &*store), Some(answer(3)));
        assert_eq!(resends.recognise(b"body-b", &*store), Some(answer(2)));
        assert_eq!(resends.recognise(b"body-c", &*store), None);
        assert_eq!(resends.bytes(), 12);
    }

    #[tokio::test]
    async fn remembered_bodies_stay_within_the_bound() {
        let (_, store) = pipeline().await;
        let resends = Resends::default();
        let big = vec![b' '; MAX_BODY_BYTES];
        for i in 0..(MAX_BYTES / MAX_BODY_BYTES + 3) {
            let mut body = big.clone();
            body[0] = i as u8;
            let answer = Resent {
                alerts: 0,
                unrouted: 0,
            };
            resends.remember(&body, Stamps(Vec::new()), answer, &*store);
            assert!(resends.bytes() <= MAX_BYTES, "{}", resends.bytes());
            assert_eq!(resends.recognise(&body, &*store), Some(answer));
        }
        let too_big = vec![b' '; MAX_BODY_BYTES + 1];
        let answer = Resent {
            alerts: 0,
            unrouted: 0,
        };
        resends.remember(&too_big, Stamps(Vec::new()), answer, &*store);
        assert_eq!(resends.recognise(&too_big, &*store), None);
    }
}
