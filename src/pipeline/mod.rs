//! From decoded notifications to card transitions: routing, grouping into
//! cards, the card state machine and dedupe.
//!
//! [`Pipeline::ingest`] splits a notification's alerts by route and card key
//! into [`card::CardBatch`]es and hands them to the store, which decides (with
//! [`card::plan`]) and writes every change with its outbox operations in one
//! transaction.

pub mod card;
pub mod digest;
pub mod escalation;
pub mod oncall;
pub mod quiet;
pub mod resend;
pub mod route;
pub mod timer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::counter;

use crate::config::RouteConfig;
use crate::metrics as m;
use crate::model::{Alert, Labels, Notification, Source};
use crate::store::{ApplyOutcome, Store, StoreError};
use card::CardBatch;
use resend::{Resends, Resent, Stamps};
use route::Router;

/// Quiet alerts resolved per store transaction.
const QUIET_BATCH: u32 = 500;

pub struct Pipeline {
    router: Arc<Router>,
    store: Arc<dyn Store>,
    reply_batch_window: Duration,
    resends: Resends,
}

/// What one notification did.
#[derive(Debug, Default)]
pub struct IngestReport {
    pub outcomes: Vec<ApplyOutcome>,
    pub unrouted: u64,
}

impl IngestReport {
    /// Channels that got new outbox work.
    pub fn channels_to_wake(&self) -> impl Iterator<Item = &str> {
        self.outcomes
            .iter()
            .filter(|o| o.changed)
            .map(|o| o.channel.as_str())
    }
}

impl Pipeline {
    pub fn new(
        router: Arc<Router>,
        store: Arc<dyn Store>,
        reply_batch_window: Duration,
    ) -> Pipeline {
        Pipeline {
            router,
            store,
            reply_batch_window,
            resends: Resends::default(),
        }
    }

    /// Splits the notification into per-card batches, in the order their
    /// first alert appears. The alerts move into the batches: this is the
    /// ingest hot path, and nothing needs the notification afterwards.
    pub fn batches(&self, mut notification: Notification) -> (Vec<CardBatch>, u64) {
        let resolves_itself = notification.source.resolves_itself();
        let mut batches: Vec<CardBatch> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut unrouted = 0;
        // The batch of the last route whose key is the notification's own
        // (see `route::key_depends_on_alert`): its other alerts join it
        // without a key being built.
        let mut shared: Option<(&RouteConfig, usize)> = None;
        for alert in std::mem::take(&mut notification.alerts) {
            let Some(route) = self.router.route(&alert.labels) else {
                unrouted += 1;
                continue;
            };
            if let Some((_, i)) = shared.filter(|(r, _)| std::ptr::eq(*r, route)) {
                batches[i].alerts.push(alert);
                continue;
            }
            let key = route::card_key(route, &notification, &alert);
            let shares_key = !route::key_depends_on_alert(route, &notification);
            // Most alerts join a batch already started: no key copy for them.
            let i = match index.get(&key) {
                Some(&i) => i,
                None => {
                    let group_labels = if resolves_itself {
                        Labels::new() // the notification's, below
                    } else {
                        event_group_labels(route, &alert)
                    };
                    index.insert(key.clone(), batches.len());
                    batches.push(CardBatch {
                        group_labels,
                        ..self.empty_batch(route, key, resolves_itself)
                    });
                    batches.len() - 1
                }
            };
            if shares_key {
                shared = Some((route, i));
            }
            batches[i].alerts.push(alert);
        }
        // The notification's group data goes to every batch: copies for all
        // but the last, which takes the originals (most notifications make
        // one batch).
        let mut external_url = notification.source.external_url().map(str::to_owned);
        let count = batches.len();
        for (i, batch) in batches.iter_mut().enumerate() {
            let last = i + 1 == count;
            if resolves_itself {
                batch.group_labels = take_or_clone(last, &mut notification.group_labels);
            }
            batch.common_labels = take_or_clone(last, &mut notification.common_labels);
            batch.common_annotations = take_or_clone(last, &mut notification.common_annotations);
            batch.external_url = take_or_clone(last, &mut external_url);
        }
        (batches, unrouted)
    }

    /// A batch for `route` with no alerts and no group data yet.
    fn empty_batch(&self, route: &RouteConfig, key: String, resolves_itself: bool) -> CardBatch {
        CardBatch {
            key,
            route: route.name.clone(),
            channel: route.channel.clone(),
            reopen_window: route.reopen_window,
            replies: route.replies,
            reply_batch_window: self.reply_batch_window,
            first_escalation: route.escalation.first().map(|step| step.after),
            quiet_period: (!resolves_itself).then_some(route.quiet_period),
            group_labels: Labels::new(),
            common_labels: Labels::new(),
            common_annotations: Labels::new(),
            external_url: None,
            alerts: Vec::new(),
        }
    }

    /// Resolves event-sourced alerts whose quiet period ended by `now`, like
    /// a source's resolves: thread replies, the card resolving when it was
    /// the last firing alert. A route removed from the config since still
    /// resolves its cards (with default reply settings).
    pub async fn resolve_quiet(&self, now: DateTime<Utc>) -> Result<IngestReport, StoreError> {
        let quiet = self.store.quiet_alerts(now, QUIET_BATCH).await?;
        if quiet.is_empty() {
            return Ok(IngestReport::default());
        }
        let fallback = RouteConfig::catch_all();
        let batches: Vec<CardBatch> = quiet
            .into_iter()
            .map(|card| {
                let route = self.router.by_name(&card.route).unwrap_or(&fallback);
                CardBatch {
                    route: card.route,
                    channel: card.channel,
                    group_labels: card.group_labels,
                    common_labels: card.common_labels,
                    common_annotations: card.common_annotations,
                    external_url: card.external_url,
                    alerts: card.alerts,
                    ..self.empty_batch(route, card.key, false)
                }
            })
            .collect();
        let outcomes = self
            .store
            .apply(&batches, now)
            .await
            .inspect_err(|_| m::store_error())?;
        count_outcomes(&outcomes);
        Ok(IngestReport {
            outcomes,
            unrouted: 0,
        })
    }

    /// When [`Pipeline::resolve_quiet`] next has work.
    pub async fn next_quiet_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.store.next_quiet_at().await
    }

    /// Applies a notification. `Ok` means every change it causes is durable.
    pub async fn ingest(
        &self,
        notification: Notification,
        now: DateTime<Utc>,
    ) -> Result<IngestReport, StoreError> {
        self.ingest_from(None, notification, now).await
    }

    /// [`Pipeline::ingest`] of the Alertmanager notification decoded from
    /// `body`, which [`Pipeline::recognise_resend`] then recognises while
    /// it would change nothing (see [`resend`]).
    pub async fn ingest_resendable(
        &self,
        body: &[u8],
        notification: Notification,
        now: DateTime<Utc>,
    ) -> Result<IngestReport, StoreError> {
        self.ingest_from(Some(body), notification, now).await
    }

    /// The answer to `body` when it is byte for byte an Alertmanager
    /// notification that changed nothing, and nothing it touched changed
    /// since: it would change nothing again. Counted like an applied
    /// re-send.
    pub fn recognise_resend(&self, body: &[u8]) -> Option<Resent> {
        let resent = self.resends.recognise(body, &*self.store)?;
        count_received(
            Source::ALERTMANAGER_KIND,
            resent.alerts,
            resent.unrouted,
            &[],
        );
        counter!(m::RESENDS_RECOGNISED).increment(1);
        Some(resent)
    }

    /// Applies `notification`, remembering `body` (what it was decoded
    /// from) when it changed nothing and its decision does not depend on
    /// the time: other sources' alerts resolve by quiet periods.
    async fn ingest_from(
        &self,
        body: Option<&[u8]>,
        notification: Notification,
        now: DateTime<Utc>,
    ) -> Result<IngestReport, StoreError> {
        let body = body.filter(|_| notification.source.resolves_itself());
        let alerts = notification.alerts.len() as u64;
        let source = notification.source.kind();
        let (batches, unrouted) = self.batches(notification);
        let before = body.and_then(|_| Stamps::of(&batches, &*self.store));
        let outcomes = self.apply(batches, now).await?;
        count_received(source, alerts, unrouted, &outcomes);
        if let Some((body, before)) = body.zip(before)
            && outcomes.iter().all(|o| !o.changed)
        {
            let answer = Resent { alerts, unrouted };
            self.resends.remember(body, before, answer, &*self.store);
        }
        Ok(IngestReport { outcomes, unrouted })
    }

    async fn apply(
        &self,
        batches: Vec<CardBatch>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        self.store
            .apply_owned(batches, now)
            .await
            .inspect_err(|_| m::store_error())
    }
}

/// Counts an accepted notification of `alerts` alerts from `source`.
fn count_received(source: &'static str, alerts: u64, unrouted: u64, outcomes: &[ApplyOutcome]) {
    counter!(m::NOTIFICATIONS_RECEIVED, "source" => source).increment(1);
    counter!(m::ALERTS_RECEIVED).increment(alerts);
    if unrouted > 0 {
        counter!(m::ALERTS_UNROUTED).increment(unrouted);
    }
    if outcomes.iter().all(|o| !o.changed) {
        counter!(m::NOTIFICATIONS_DEDUPED).increment(1);
    }
    count_outcomes(outcomes);
}

/// `value` itself for its last user, a copy for the others.
fn take_or_clone<T: Clone + Default>(last: bool, value: &mut T) -> T {
    if last {
        std::mem::take(value)
    } else {
        value.clone()
    }
}

/// What an event source's card is about, since the source has no groups of
/// its own: the values of the route's `group_by`, or (one alert per card)
/// the alert's own labels. Both are the same for every alert of the card,
/// so the card's group data stays put.
fn event_group_labels(route: &RouteConfig, alert: &Alert) -> Labels {
    if route.group_by.is_empty() {
        return alert.labels.clone();
    }
    route
        .group_by
        .iter()
        .filter_map(|name| Some((name.clone(), alert.labels.get(name)?.clone())))
        .collect()
}

fn count_outcomes(outcomes: &[ApplyOutcome]) {
    for o in outcomes {
        if o.opened {
            counter!(m::CARDS_OPENED).increment(1);
        }
        if o.reopened {
            counter!(m::CARDS_REOPENED).increment(1);
        }
        if o.resolved {
            counter!(m::CARDS_RESOLVED).increment(1);
        }
        for kind in &o.ops_pushed {
            counter!(m::OUTBOX_PUSHED, "kind" => kind.as_str()).increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::store::sqlite::SqliteStore;

    /// A notification whose alerts go to two routes makes two batches, and
    /// both carry the notification's group data (the last one takes it, the
    /// first gets a copy).
    #[tokio::test]
    async fn every_batch_of_a_notification_gets_its_group_data() {
        let config = Config::from_json(
            r#"{"routes": [
                {"name": "db", "matchers": ["team=db"], "channel": "C0DBPAGES1"},
                {"name": "web", "matchers": ["team=web"], "channel": "C0WEBPAGE1"}
            ]}"#,
        )
        .unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open("sqlite::memory:", Duration::from_secs(5))
                .await
                .unwrap(),
        );
        let router = Arc::new(Router::new(config.effective_routes()));
        let pipeline = Pipeline::new(router, store, Duration::from_secs(2));
        let body = br#"{"version": "4", "receiver": "r", "groupKey": "g", "status": "firing",
            "groupLabels": {"alertname": "Down"},
            "commonLabels": {"alertname": "Down"},
            "commonAnnotations": {"summary": "down"},
            "externalURL": "http://am:9093",
            "alerts": [
                {"status": "firing", "labels": {"alertname": "Down", "team": "db"},
                 "startsAt": "2026-11-29T00:00:00Z"},
                {"status": "firing", "labels": {"alertname": "Down", "team": "web"},
                 "startsAt": "2026-11-29T00:00:00Z"}
            ]}"#;
        let notification = crate::ingest::alertmanager::decode(body).unwrap();
        let (batches, unrouted) = pipeline.batches(notification);
        assert_eq!(unrouted, 0);
        let routes: Vec<&str> = batches.iter().map(|b| b.route.as_str()).collect();
        assert_eq!(routes, ["db", "web"]);
        for batch in &batches {
            assert_eq!(batch.group_labels["alertname"], "Down", "{}", batch.route);
            assert_eq!(batch.common_labels["alertname"], "Down", "{}", batch.route);
            assert_eq!(
                batch.common_annotations["summary"], "down",
                "{}",
                batch.route
            );
            assert_eq!(batch.external_url.as_deref(), Some("http://am:9093"));
        }
    }
}
