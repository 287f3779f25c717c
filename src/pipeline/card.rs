//! The card state machine, as a pure function.
//!
//! A store hands [`plan`] what it holds for a card key (the latest card and
//! the known state of the incoming alerts) and gets back either
//! [`Plan::Unchanged`] (dedupe: no write, no Slack call) or a [`Change`] to
//! write, together with the Slack operations it causes, in one transaction.
//! Keeping the decision pure means it is tested without a database and is the
//! same for every store implementation.
//!
//! States: `Firing -> Resolved`, and `Resolved -> Firing` again when an alert
//! re-fires within the route's `reopen_window` (same card, same thread);
//! after the window a re-fire opens a new card.

use std::collections::HashMap;
use std::hash::Hasher;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::ReplyConfig;
use crate::model::{
    Alert, AlertStatus, CardId, CardState, Fingerprint, Labels, ThreadEvent, digest_hasher,
    write_labels,
};

/// Alerts of one notification that belong to one card key, with what the
/// route says about them.
#[derive(Debug, Clone)]
pub struct CardBatch {
    pub key: String,
    pub route: String,
    pub channel: String,
    pub reopen_window: Duration,
    pub replies: ReplyConfig,
    /// How long a new thread reply waits for more events to batch.
    pub reply_batch_window: Duration,
    /// Delay of the route's first escalation step, if it has a policy: a
    /// new or reopened card's first step is due this long after it (re)opens.
    pub first_escalation: Option<Duration>,
    /// Set when the source cannot resolve its alerts (see
    /// [`Source::resolves_itself`]): how long an alert stays firing after
    /// its last occurrence (the route's `quiet_period`). Such cards also
    /// offer a Resolve button ([`CardBatch::manual_resolve`]).
    ///
    /// [`Source::resolves_itself`]: crate::model::Source::resolves_itself
    pub quiet_period: Option<Duration>,
    pub group_labels: Labels,
    pub common_labels: Labels,
    pub common_annotations: Labels,
    pub external_url: Option<String>,
    pub alerts: Vec<Alert>,
}

impl CardBatch {
    /// The card offers Resolve: its source never says its alerts are over.
    pub fn manual_resolve(&self) -> bool {
        self.quiet_period.is_some()
    }

    /// When an event-sourced alert of this batch resolves unless it occurs
    /// again: its last occurrence plus the quiet period. `None` for alerts
    /// that are not firing or whose source reports their end itself.
    pub fn expires_at(&self, alert: &Alert) -> Option<DateTime<Utc>> {
        let quiet = chrono::Duration::from_std(self.quiet_period?).ok()?;
        let seen = alert.occurrences?.last_seen;
        (alert.status == AlertStatus::Firing).then(|| seen.checked_add_signed(quiet))?
    }

    /// Digest of the group-level data a card shows. Computed for every
    /// batch of every re-send, like the alerts' digests and with the same
    /// hasher.
    pub fn group_digest(&self) -> u64 {
        let mut h = digest_hasher();
        for labels in [
            &self.group_labels,
            &self.common_labels,
            &self.common_annotations,
        ] {
            write_labels(&mut h, labels);
        }
        if let Some(url) = &self.external_url {
            h.write(url.as_bytes());
        }
        h.finish()
    }
}

/// What the store holds about the latest card of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSnapshot {
    pub id: CardId,
    pub state: CardState,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub group_digest: u64,
    pub firing_count: u64,
    pub resolved_count: u64,
}

/// What the store holds about one alert of that card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownAlert {
    pub status: AlertStatus,
    pub digest: u64,
    /// When a firing event-sourced alert resolves unless it occurs again.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing a card shows would change: count it, write nothing.
    Unchanged,
    Apply(Change),
}

/// Which card the change lands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A new card: post it.
    New(CardId),
    /// The latest card of the key (firing, or resolved and staying so).
    Existing(CardId),
    /// The latest card was resolved and fires again inside the window.
    Reopen(CardId),
}

impl Target {
    pub fn card_id(&self) -> &CardId {
        match self {
            Target::New(id) | Target::Existing(id) | Target::Reopen(id) => id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub target: Target,
    pub state: CardState,
    /// Unchanged for existing cards; `now` for new ones.
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub firing_count: u64,
    pub resolved_count: u64,
    pub group_digest: u64,
    /// Indexes into the batch's alerts whose stored row must be written.
    pub alert_writes: Vec<usize>,
    /// Whether the posted card must be updated (`chat.update`).
    pub update_card: bool,
    /// Thread replies, already filtered by the route's reply settings.
    pub events: Vec<ThreadEvent>,
    /// Alerts new to the card / resolved by this change, for metrics.
    pub alerts_fired: u64,
    pub alerts_resolved: u64,
}

impl Change {
    pub fn card_resolved(&self) -> bool {
        self.state == CardState::Resolved && !matches!(self.target, Target::New(_))
    }
}

/// Decides what a batch does to the latest card of its key.
///
/// `known` holds the stored status and digest of the batch's alerts on
/// `current` (alerts the card never saw are absent).
pub fn plan(
    current: Option<&CardSnapshot>,
    known: &HashMap<Fingerprint, KnownAlert>,
    batch: &CardBatch,
    now: DateTime<Utc>,
) -> Plan {
    let empty = HashMap::new();
    let refires = |known: &HashMap<Fingerprint, KnownAlert>| {
        batch.alerts.iter().any(|a| {
            a.status == AlertStatus::Firing
                && known
                    .get(&a.fingerprint)
                    .is_none_or(|k| k.status != AlertStatus::Firing)
        })
    };
    let any_firing = batch.alerts.iter().any(|a| a.status == AlertStatus::Firing);

    let (target, known, base) = match current {
        None if !any_firing => return Plan::Unchanged, // resolves for a card never seen
        None => (Target::New(CardId::random()), &empty, None),
        Some(card) if card.state == CardState::Firing => {
            (Target::Existing(card.id.clone()), known, Some(card))
        }
        Some(card) if !refires(known) => (Target::Existing(card.id.clone()), known, Some(card)),
        Some(card) => {
            let resolved_at = card.resolved_at.unwrap_or(card.opened_at);
            let window =
                chrono::Duration::from_std(batch.reopen_window).unwrap_or(chrono::Duration::MAX);
            if now.signed_duration_since(resolved_at) <= window {
                (Target::Reopen(card.id.clone()), known, Some(card))
            } else {
                (Target::New(CardId::random()), &empty, None)
            }
        }
    };
    let is_new = matches!(target, Target::New(_));

    let mut firing = base.map_or(0, |c| c.firing_count);
    let mut resolved = base.map_or(0, |c| c.resolved_count);
    let mut alert_writes = Vec::new();
    let mut events = Vec::new();
    let (mut fired, mut resolved_now) = (0, 0);
    // A notification should not list one alert twice; if it does, the last
    // copy wins and the earlier ones are skipped.
    let last: HashMap<Fingerprint, usize> = batch
        .alerts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.fingerprint, i))
        .collect();
    for (i, alert) in batch.alerts.iter().enumerate() {
        if last.get(&alert.fingerprint) != Some(&i) {
            continue;
        }
        let stored = known.get(&alert.fingerprint);
        let before = stored.map(|k| (k.status, k.digest));
        if alert.occurrences.is_some() {
            // Every occurrence counts on the card, so none is a duplicate;
            // but a quiet-period resolve decided before a later occurrence
            // committed is stale.
            let stale = |k: &KnownAlert| {
                k.status != AlertStatus::Firing || k.expires_at.is_some_and(|at| at > now)
            };
            if alert.status == AlertStatus::Resolved && stored.is_none_or(stale) {
                continue;
            }
        } else if before.is_some_and(|(_, d)| d == alert.digest()) {
            continue;
        }
        alert_writes.push(i);
        match (before.map(|(s, _)| s), alert.status) {
            (None, AlertStatus::Firing) => {
                firing += 1;
                fired += 1;
                // A new card shows its alerts; an event's details (fields,
                // span context) are too long for it and go in the thread.
                if !is_new || alert.annotations.contains_key(DETAILS) {
                    events.push(firing_event(alert, now));
                }
            }
            (None, AlertStatus::Resolved) => resolved += 1,
            (Some(AlertStatus::Firing), AlertStatus::Resolved) => {
                firing = firing.saturating_sub(1);
                resolved += 1;
                resolved_now += 1;
                events.push(ThreadEvent::AlertResolved {
                    fingerprint: alert.fingerprint.to_string(),
                    name: alert_name(alert),
                    at: alert.ends_at.unwrap_or(now),
                });
            }
            (Some(AlertStatus::Resolved), AlertStatus::Firing) => {
                resolved = resolved.saturating_sub(1);
                firing += 1;
                fired += 1;
                events.push(firing_event(alert, now));
            }
            // Same status: another occurrence, or other details changed
            // (annotations, ...). The card shows it; the thread does not.
            (Some(_), _) => {}
        }
    }
    let group_digest = batch.group_digest();
    let group_changed = base.is_none_or(|c| c.group_digest != group_digest);
    if !is_new && alert_writes.is_empty() && !group_changed {
        return Plan::Unchanged;
    }

    let previous_state = base.map(|c| c.state);
    let opened_at = base.map_or(now, |c| c.opened_at);
    let (state, resolved_at) = if firing == 0 {
        (
            CardState::Resolved,
            base.and_then(|c| c.resolved_at)
                .filter(|_| previous_state == Some(CardState::Resolved))
                .or(Some(now)),
        )
    } else {
        (CardState::Firing, None)
    };
    if matches!(target, Target::Reopen(_)) {
        events.insert(0, ThreadEvent::CardReopened { at: now });
    }
    if state == CardState::Resolved && previous_state == Some(CardState::Firing) {
        events.push(ThreadEvent::CardResolved {
            at: now,
            duration_secs: now.signed_duration_since(opened_at).num_seconds().max(0),
        });
    }
    events.retain(|e| wanted(&batch.replies, e));

    Plan::Apply(Change {
        update_card: !is_new,
        target,
        state,
        opened_at,
        resolved_at,
        firing_count: firing,
        resolved_count: resolved,
        group_digest,
        alert_writes,
        events,
        alerts_fired: fired,
        alerts_resolved: resolved_now,
    })
}

fn wanted(replies: &ReplyConfig, event: &ThreadEvent) -> bool {
    match event {
        ThreadEvent::AlertFiring { .. } => replies.alert_firing,
        ThreadEvent::AlertResolved { .. } => replies.alert_resolved,
        ThreadEvent::CardResolved { .. } => replies.card_resolved,
        ThreadEvent::CardReopened { .. } => replies.card_reopened,
        // What people do always gets its line in the thread.
        ThreadEvent::Acknowledged { .. }
        | ThreadEvent::Unacknowledged { .. }
        | ThreadEvent::Escalated { .. }
        | ThreadEvent::StatusAsked { .. }
        | ThreadEvent::Silenced { .. }
        | ThreadEvent::ResolvedBy { .. } => true,
    }
}

fn alert_name(alert: &Alert) -> String {
    let name = alert
        .labels
        .get("alertname")
        .map_or("alert", String::as_str);
    match alert
        .labels
        .get("instance")
        .or_else(|| alert.labels.get("pod"))
    {
        Some(instance) => format!("{name} {instance}"),
        None => name.to_owned(),
    }
}

/// The annotation event sources fill with what the card has no room for:
/// an event's fields and span context, a span's attributes.
pub const DETAILS: &str = "details";

fn firing_event(alert: &Alert, now: DateTime<Utc>) -> ThreadEvent {
    ThreadEvent::AlertFiring {
        fingerprint: alert.fingerprint.to_string(),
        name: alert_name(alert),
        summary: alert.annotations.get("summary").cloned(),
        details: alert.annotations.get(DETAILS).cloned(),
        at: now,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).single().unwrap()
    }

    pub(crate) fn alert(fp: u64, status: AlertStatus) -> Alert {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), "HighLatency".into());
        labels.insert("instance".into(), format!("host-{fp}"));
        Alert {
            fingerprint: Fingerprint(fp),
            status,
            labels,
            annotations: Labels::new(),
            starts_at: t(0),
            ends_at: None,
            generator_url: None,
            occurrences: None,
        }
    }

    pub(crate) fn batch(alerts: Vec<Alert>) -> CardBatch {
        CardBatch {
            key: "k".into(),
            route: "r".into(),
            channel: "C0123ABCD".into(),
            reopen_window: Duration::from_secs(600),
            replies: ReplyConfig::default(),
            reply_batch_window: Duration::from_secs(2),
            first_escalation: None,
            quiet_period: None,
            group_labels: Labels::new(),
            common_labels: Labels::new(),
            common_annotations: Labels::new(),
            external_url: None,
            alerts,
        }
    }

    /// Applies a plan to a tiny in-test model of what a store holds, so that
    /// sequences can be checked.
    struct Held {
        card: Option<CardSnapshot>,
        alerts: HashMap<Fingerprint, KnownAlert>,
    }

    impl Held {
        fn new() -> Self {
            Held {
                card: None,
                alerts: HashMap::new(),
            }
        }

        fn step(&mut self, b: &CardBatch, now: DateTime<Utc>) -> Plan {
            let p = plan(self.card.as_ref(), &self.alerts, b, now);
            if let Plan::Apply(c) = &p {
                if matches!(c.target, Target::New(_)) {
                    self.alerts.clear();
                }
                for &i in &c.alert_writes {
                    let a = &b.alerts[i];
                    self.alerts.insert(
                        a.fingerprint,
                        KnownAlert {
                            status: a.status,
                            digest: a.digest(),
                            expires_at: b.expires_at(a),
                        },
                    );
                }
                self.card = Some(CardSnapshot {
                    id: c.target.card_id().clone(),
                    state: c.state,
                    opened_at: c.opened_at,
                    resolved_at: c.resolved_at,
                    group_digest: c.group_digest,
                    firing_count: c.firing_count,
                    resolved_count: c.resolved_count,
                });
            }
            p
        }
    }

    fn change(p: Plan) -> Change {
        match p {
            Plan::Apply(c) => c,
            Plan::Unchanged => panic!("expected a change"),
        }
    }

    /// An event source's occurrence (`count` of them, the last at `seen`),
    /// on a route with a 60 s quiet period.
    fn occurrence(fp: u64, status: AlertStatus, count: u64, seen: i64) -> CardBatch {
        let mut a = alert(fp, status);
        a.annotations.insert(DETAILS.into(), "user_id = 7".into());
        a.occurrences = Some(crate::model::Occurrences {
            count,
            last_seen: t(seen),
        });
        let mut b = batch(vec![a]);
        b.quiet_period = Some(Duration::from_secs(60));
        b
    }

    #[test]
    fn every_occurrence_updates_the_card_and_only_the_first_is_threaded() {
        let mut held = Held::new();
        let first = change(held.step(&occurrence(1, AlertStatus::Firing, 1, 0), t(0)));
        assert!(matches!(first.target, Target::New(_)));
        assert!(
            matches!(&first.events[..], [ThreadEvent::AlertFiring { details: Some(d), .. }] if d == "user_id = 7"),
            "the first occurrence's details go in the thread: {:?}",
            first.events
        );
        // The same occurrence again is not a duplicate: it counts.
        let again = change(held.step(&occurrence(1, AlertStatus::Firing, 1, 5), t(5)));
        assert!(matches!(again.target, Target::Existing(_)));
        assert_eq!(again.alert_writes, vec![0]);
        assert!(again.update_card);
        assert!(again.events.is_empty());
        assert_eq!(again.firing_count, 1);
        assert_eq!(
            held.alerts[&Fingerprint(1)].expires_at,
            Some(t(65)),
            "the quiet period runs from the last occurrence"
        );
    }

    #[test]
    fn quiet_resolve_applies_only_once_the_quiet_period_has_passed() {
        let mut held = Held::new();
        held.step(&occurrence(1, AlertStatus::Firing, 3, 10), t(10));
        // A resolve decided before a later occurrence committed is stale.
        assert_eq!(
            held.step(&occurrence(1, AlertStatus::Resolved, 3, 10), t(69)),
            Plan::Unchanged
        );
        let resolved = change(held.step(&occurrence(1, AlertStatus::Resolved, 3, 10), t(70)));
        assert_eq!(resolved.state, CardState::Resolved);
        assert!(resolved.card_resolved());
        // Resolving it twice (two timers, a manual Resolve first) is nothing.
        assert_eq!(
            held.step(&occurrence(1, AlertStatus::Resolved, 3, 10), t(80)),
            Plan::Unchanged
        );
        // A later occurrence inside the reopen window reopens the card.
        let again = change(held.step(&occurrence(1, AlertStatus::Firing, 1, 90), t(90)));
        assert!(matches!(again.target, Target::Reopen(_)));
    }

    #[test]
    fn first_firing_alert_opens_a_new_card_without_thread_events() {
        let mut held = Held::new();
        let c = change(held.step(&batch(vec![alert(1, AlertStatus::Firing)]), t(0)));
        assert!(matches!(c.target, Target::New(_)));
        assert_eq!(c.state, CardState::Firing);
        assert!(c.events.is_empty());
        assert!(!c.update_card);
    }

    #[test]
    fn resolved_alerts_for_an_unknown_card_change_nothing() {
        let mut held = Held::new();
        assert_eq!(
            held.step(&batch(vec![alert(1, AlertStatus::Resolved)]), t(0)),
            Plan::Unchanged
        );
    }

    #[test]
    fn identical_notification_is_deduped() {
        let mut held = Held::new();
        let b = batch(vec![
            alert(1, AlertStatus::Firing),
            alert(2, AlertStatus::Firing),
        ]);
        held.step(&b, t(0));
        assert_eq!(held.step(&b, t(60)), Plan::Unchanged);
    }

    #[test]
    fn firing_ends_at_moving_forward_is_not_a_change() {
        let mut held = Held::new();
        let mut a = alert(1, AlertStatus::Firing);
        held.step(&batch(vec![a.clone()]), t(0));
        a.ends_at = Some(t(300));
        assert_eq!(held.step(&batch(vec![a]), t(60)), Plan::Unchanged);
    }

    #[test]
    fn second_alert_joins_with_update_and_one_event() {
        let mut held = Held::new();
        let id = change(held.step(&batch(vec![alert(1, AlertStatus::Firing)]), t(0)))
            .target
            .card_id()
            .clone();
        let c = change(held.step(
            &batch(vec![
                alert(1, AlertStatus::Firing),
                alert(2, AlertStatus::Firing),
            ]),
            t(10),
        ));
        assert_eq!(c.target, Target::Existing(id));
        assert!(c.update_card);
        assert_eq!(c.alert_writes, vec![1]);
        assert_eq!(c.firing_count, 2);
        assert!(matches!(
            c.events.as_slice(),
            [ThreadEvent::AlertFiring { .. }]
        ));
    }

    #[test]
    fn all_resolved_resolves_the_card_with_duration() {
        let mut held = Held::new();
        held.step(
            &batch(vec![
                alert(1, AlertStatus::Firing),
                alert(2, AlertStatus::Firing),
            ]),
            t(0),
        );
        let c = change(held.step(
            &batch(vec![
                alert(1, AlertStatus::Resolved),
                alert(2, AlertStatus::Resolved),
            ]),
            t(90),
        ));
        assert_eq!(c.state, CardState::Resolved);
        assert_eq!(c.resolved_at, Some(t(90)));
        assert!(c.card_resolved());
        assert_eq!(c.events.len(), 3);
        assert_eq!(
            c.events[2],
            ThreadEvent::CardResolved {
                at: t(90),
                duration_secs: 90
            }
        );
    }

    #[test]
    fn refire_inside_reopen_window_reopens_the_same_card() {
        let mut held = Held::new();
        let id = change(held.step(&batch(vec![alert(1, AlertStatus::Firing)]), t(0)))
            .target
            .card_id()
            .clone();
        held.step(&batch(vec![alert(1, AlertStatus::Resolved)]), t(10));
        let c = change(held.step(&batch(vec![alert(1, AlertStatus::Firing)]), t(300)));
        assert_eq!(c.target, Target::Reopen(id));
        assert_eq!(c.state, CardState::Firing);
        assert!(matches!(
            c.events.first(),
            Some(ThreadEvent::CardReopened { .. })
        ));
    }

    #[test]
    fn refire_after_reopen_window_opens_a_new_card() {
        let mut held = Held::new();
        let id = change(held.step(&batch(vec![alert(1, AlertStatus::Firing)]), t(0)))
            .target
            .card_id()
            .clone();
        held.step(&batch(vec![alert(1, AlertStatus::Resolved)]), t(10));
        let c = change(held.step(&batch(vec![alert(1, AlertStatus::Firing)]), t(10 + 601)));
        assert!(matches!(&c.target, Target::New(new) if *new != id));
        assert_eq!(c.firing_count, 1);
    }

    #[test]
    fn repeated_resolve_of_a_resolved_card_is_deduped() {
        let mut held = Held::new();
        held.step(&batch(vec![alert(1, AlertStatus::Firing)]), t(0));
        let mut r = alert(1, AlertStatus::Resolved);
        r.ends_at = Some(t(10));
        held.step(&batch(vec![r.clone()]), t(10));
        assert_eq!(held.step(&batch(vec![r]), t(20)), Plan::Unchanged);
    }

    #[test]
    fn disabled_reply_kinds_are_dropped() {
        let mut held = Held::new();
        held.step(&batch(vec![alert(1, AlertStatus::Firing)]), t(0));
        let mut b = batch(vec![
            alert(1, AlertStatus::Firing),
            alert(2, AlertStatus::Firing),
        ]);
        b.replies.alert_firing = false;
        let c = change(held.step(&b, t(5)));
        assert!(c.events.is_empty());
        assert!(c.update_card);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the sequence, the counts match the held alerts, the
            /// state is Resolved exactly when nothing fires, and replaying the
            /// last notification changes nothing.
            #[test]
            fn counts_and_state_stay_consistent(steps in proptest::collection::vec(
                (proptest::collection::vec((0u64..6, any::<bool>()), 1..6), 0i64..400), 1..30)) {
                let mut held = Held::new();
                let mut now = 0;
                for (alerts, dt) in steps {
                    now += dt;
                    let b = batch(alerts.iter().map(|&(fp, firing)| alert(fp, if firing { AlertStatus::Firing } else { AlertStatus::Resolved })).collect());
                    held.step(&b, t(now));
                    if let Some(card) = &held.card {
                        let firing = held.alerts.values().filter(|k| k.status == AlertStatus::Firing).count() as u64;
                        prop_assert_eq!(card.firing_count, firing);
                        prop_assert_eq!(card.resolved_count, held.alerts.len() as u64 - firing);
                        prop_assert_eq!(card.state == CardState::Resolved, firing == 0);
                    }
                    prop_assert_eq!(held.step(&b, t(now)), Plan::Unchanged);
                }
            }
        }
    }
}
