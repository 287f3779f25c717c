//! The store's invariants (src/store/mod.rs), on a real SQLite file.

use std::time::Duration;

use ackbar::config::ReplyConfig;
use ackbar::model::{Alert, AlertStatus, CardState, Fingerprint, Labels, Occurrences, ThreadEvent};
use ackbar::pipeline::card::CardBatch;
use ackbar::store::sqlite::SqliteStore;
use ackbar::store::{Completion, NextOp, OpKind, Store};
use chrono::{DateTime, TimeZone, Utc};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).single().unwrap()
}

fn alert(fp: u64, status: AlertStatus) -> Alert {
    let mut labels = Labels::new();
    labels.insert("alertname".into(), "Disk".into());
    labels.insert("instance".into(), format!("h{fp}"));
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

fn batch(key: &str, alerts: Vec<Alert>) -> CardBatch {
    CardBatch {
        key: key.into(),
        route: "r".into(),
        channel: "C0STORETST".into(),
        reopen_window: Duration::from_secs(600),
        replies: ReplyConfig::default(),
        reply_batch_window: Duration::from_secs(2),
        first_escalation: None,
        manual_resolve: false,
        quiet_period: None,
        group_labels: Labels::new(),
        common_labels: Labels::new(),
        common_annotations: Labels::new(),
        external_url: None,
        alerts,
    }
}

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = SqliteStore::open(&url, Duration::from_secs(5))
        .await
        .unwrap();
    (dir, store)
}

async fn ready(store: &SqliteStore, now: DateTime<Utc>) -> ackbar::store::OutboxOp {
    match store.next_op("C0STORETST", now).await.unwrap() {
        NextOp::Ready(op) => op,
        other => panic!("expected a ready op, got {other:?}"),
    }
}

#[tokio::test]
async fn new_card_writes_one_post_and_dedupes_the_repeat() {
    let (_dir, store) = open().await;
    let b = batch("k", vec![alert(1, AlertStatus::Firing)]);
    let out = store.apply(std::slice::from_ref(&b), t(0)).await.unwrap();
    assert!(out[0].opened && out[0].changed);
    assert_eq!(out[0].ops_pushed, vec![OpKind::Post]);
    let again = store.apply(&[b], t(5)).await.unwrap();
    assert!(!again[0].changed, "identical notification is deduped");
    assert_eq!(store.outbox_summary().await.unwrap().pending, 1);
}

#[tokio::test]
async fn updates_wait_for_the_post_and_coalesce() {
    let (_dir, store) = open().await;
    store
        .apply(&[batch("k", vec![alert(1, AlertStatus::Firing)])], t(0))
        .await
        .unwrap();
    // While the post is pending, a change needs no update (the post renders
    // the latest state).
    let out = store
        .apply(
            &[batch(
                "k",
                vec![alert(1, AlertStatus::Firing), alert(2, AlertStatus::Firing)],
            )],
            t(1),
        )
        .await
        .unwrap();
    assert!(!out[0].ops_pushed.contains(&OpKind::Update));
    assert_eq!(out[0].ops_pushed, vec![OpKind::Reply]);

    let post = ready(&store, t(1)).await;
    assert_eq!(post.kind, OpKind::Post);
    store.begin_attempt(post.id, t(1)).await.unwrap();
    // A change while the post is in flight does need an update, which is not
    // handed out before the card has a ts.
    store
        .apply(
            &[batch(
                "k",
                vec![
                    alert(1, AlertStatus::Firing),
                    alert(2, AlertStatus::Firing),
                    alert(3, AlertStatus::Firing),
                ],
            )],
            t(1),
        )
        .await
        .unwrap();
    assert_eq!(
        store.next_op("C0STORETST", t(1)).await.unwrap(),
        NextOp::Idle
    );
    store
        .complete(
            &post,
            Completion::Posted {
                ts: "1.000001".into(),
                refresh: false,
            },
            t(1),
        )
        .await
        .unwrap();
    let update = ready(&store, t(1)).await;
    assert_eq!(update.kind, OpKind::Update);
    assert_eq!(update.card_ts.as_deref(), Some("1.000001"));
    // Two more changes while the update is pending add no second update.
    for n in 4..6 {
        let alerts = (1..=n).map(|i| alert(i, AlertStatus::Firing)).collect();
        let out = store.apply(&[batch("k", alerts)], t(2)).await.unwrap();
        assert!(!out[0].ops_pushed.contains(&OpKind::Update));
    }
}

#[tokio::test]
async fn thread_events_batch_into_one_pending_reply() {
    let (_dir, store) = open().await;
    let first: Vec<_> = (0..3).map(|i| alert(i, AlertStatus::Firing)).collect();
    store
        .apply(&[batch("k", first.clone())], t(0))
        .await
        .unwrap();
    let post = ready(&store, t(0)).await;
    store.begin_attempt(post.id, t(0)).await.unwrap();
    store
        .complete(
            &post,
            Completion::Posted {
                ts: "9.1".into(),
                refresh: false,
            },
            t(0),
        )
        .await
        .unwrap();

    for i in 0..3 {
        let mut alerts = first.clone();
        for a in alerts.iter_mut().take(i + 1) {
            a.status = AlertStatus::Resolved;
        }
        store.apply(&[batch("k", alerts)], t(1)).await.unwrap();
    }
    // The update is due now; the reply waits for the batching window.
    let update = ready(&store, t(1)).await;
    assert_eq!(update.kind, OpKind::Update);
    store.begin_attempt(update.id, t(1)).await.unwrap();
    store
        .complete(&update, Completion::Done, t(1))
        .await
        .unwrap();
    assert!(matches!(
        store.next_op("C0STORETST", t(1)).await.unwrap(),
        NextOp::WaitUntil(_)
    ));
    let reply = ready(&store, t(4)).await;
    assert_eq!(reply.kind, OpKind::Reply);
    let resolved = reply
        .events
        .iter()
        .filter(|e| matches!(e, ThreadEvent::AlertResolved { .. }))
        .count();
    assert_eq!(
        resolved, 3,
        "three resolves in one reply: {:?}",
        reply.events
    );
    assert!(
        reply
            .events
            .iter()
            .any(|e| matches!(e, ThreadEvent::CardResolved { .. }))
    );
}

#[tokio::test]
async fn dead_post_takes_the_cards_other_operations_with_it_and_can_be_retried() {
    let (_dir, store) = open().await;
    store
        .apply(&[batch("k", vec![alert(1, AlertStatus::Firing)])], t(0))
        .await
        .unwrap();
    store
        .apply(
            &[batch(
                "k",
                vec![alert(1, AlertStatus::Firing), alert(2, AlertStatus::Firing)],
            )],
            t(0),
        )
        .await
        .unwrap();
    let post = ready(&store, t(0)).await;
    store.begin_attempt(post.id, t(0)).await.unwrap();
    store
        .complete(
            &post,
            Completion::Dead {
                error: "channel_not_found".into(),
            },
            t(0),
        )
        .await
        .unwrap();
    let summary = store.outbox_summary().await.unwrap();
    assert_eq!((summary.pending, summary.dead), (0, 2));
    assert_eq!(
        store.next_op("C0STORETST", t(100)).await.unwrap(),
        NextOp::Idle
    );
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 2);
    let post_letter = letters.iter().find(|l| l.kind == OpKind::Post).unwrap();
    assert!(store.retry_dead_letter(post_letter.id, t(5)).await.unwrap());
    assert_eq!(store.outbox_summary().await.unwrap().pending, 2);
}

#[tokio::test]
async fn inflight_post_is_recovered_for_reconciliation_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    {
        let store = SqliteStore::open(&url, Duration::from_secs(5))
            .await
            .unwrap();
        store
            .apply(&[batch("k", vec![alert(1, AlertStatus::Firing)])], t(0))
            .await
            .unwrap();
        let post = ready(&store, t(0)).await;
        store.begin_attempt(post.id, t(0)).await.unwrap();
        store.close().await; // the process dies here, mid-call
    }
    let store = SqliteStore::open(&url, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(store.recover_inflight().await.unwrap(), 1);
    let post = ready(&store, t(1)).await;
    assert!(
        post.reconcile,
        "a post of unknown outcome is reconciled before posting again"
    );
    assert_eq!(post.attempts, 1);
}

#[tokio::test]
async fn resolved_card_reopens_inside_window_and_renders_latest_state() {
    let (_dir, store) = open().await;
    store
        .apply(&[batch("k", vec![alert(1, AlertStatus::Firing)])], t(0))
        .await
        .unwrap();
    let out = store
        .apply(&[batch("k", vec![alert(1, AlertStatus::Resolved)])], t(10))
        .await
        .unwrap();
    assert!(out[0].resolved);
    let (id, state, _) = store.card_by_key("k").await.unwrap().unwrap();
    assert_eq!(state, CardState::Resolved);
    let out = store
        .apply(&[batch("k", vec![alert(1, AlertStatus::Firing)])], t(20))
        .await
        .unwrap();
    assert!(out[0].reopened);
    assert_eq!(out[0].card.as_ref(), Some(&id));
    let view = store.card_view(&id, 10).await.unwrap().unwrap();
    assert_eq!(view.state, CardState::Firing);
    assert_eq!((view.firing_count, view.resolved_count), (1, 0));
    assert_eq!(view.alerts.len(), 1);
}

#[tokio::test]
async fn batches_of_one_notification_commit_together_and_a_closed_store_refuses() {
    let (_dir, store) = open().await;
    let out = store
        .apply(
            &[
                batch("a", vec![alert(1, AlertStatus::Firing)]),
                batch("b", vec![alert(2, AlertStatus::Firing)]),
            ],
            t(0),
        )
        .await
        .unwrap();
    assert!(out.iter().all(|o| o.opened));
    assert_eq!(store.outbox_summary().await.unwrap().pending, 2);
    store.close().await;
    assert!(
        store
            .apply(&[batch("c", vec![alert(3, AlertStatus::Firing)])], t(1))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn manual_resolve_resolves_every_alert_and_a_refire_reopens() {
    let (_dir, store) = open().await;
    let mut b = batch(
        "svc",
        vec![alert(1, AlertStatus::Firing), alert(2, AlertStatus::Firing)],
    );
    b.manual_resolve = true;
    let card = store.apply(std::slice::from_ref(&b), t(0)).await.unwrap()[0]
        .card
        .clone()
        .unwrap();

    let by = "U0RESOLVR".to_owned();
    let out = store
        .act(
            &card,
            ackbar::store::Action::Resolve { by: by.clone() },
            t(90),
        )
        .await
        .unwrap();
    assert!(matches!(out, ackbar::store::ActionOutcome::Applied { .. }));
    let view = store.card_view(&card, 10).await.unwrap().unwrap();
    assert_eq!(view.state, CardState::Resolved);
    assert_eq!((view.firing_count, view.resolved_count), (0, 2));
    assert!(
        view.alerts
            .iter()
            .all(|a| a.status == AlertStatus::Resolved)
    );
    // Resolving twice changes nothing.
    let again = store
        .act(&card, ackbar::store::Action::Resolve { by }, t(91))
        .await
        .unwrap();
    assert!(matches!(again, ackbar::store::ActionOutcome::NoChange(_)));

    // The source reports the same alert again: the card reopens.
    let out = store.apply(&[b], t(120)).await.unwrap();
    assert!(out[0].reopened, "{out:?}");
}

#[tokio::test]
async fn cards_of_sources_that_resolve_themselves_cannot_be_resolved_by_hand() {
    let (_dir, store) = open().await;
    let card = store
        .apply(&[batch("am", vec![alert(1, AlertStatus::Firing)])], t(0))
        .await
        .unwrap()[0]
        .card
        .clone()
        .unwrap();
    let out = store
        .act(
            &card,
            ackbar::store::Action::Resolve {
                by: "U0RESOLVR".into(),
            },
            t(10),
        )
        .await
        .unwrap();
    assert!(matches!(out, ackbar::store::ActionOutcome::NoChange(_)));
    assert_eq!(
        store.card_view(&card, 10).await.unwrap().unwrap().state,
        CardState::Firing
    );
}

#[tokio::test]
async fn a_storm_reply_is_capped_but_keeps_the_card_resolving() {
    let (_dir, store) = open().await;
    let n = 2_100;
    let firing: Vec<_> = (0..n).map(|i| alert(i, AlertStatus::Firing)).collect();
    store.apply(&[batch("k", firing)], t(0)).await.unwrap();
    let post = ready(&store, t(0)).await;
    store.begin_attempt(post.id, t(0)).await.unwrap();
    store
        .complete(
            &post,
            Completion::Posted {
                ts: "5.5".into(),
                refresh: false,
            },
            t(0),
        )
        .await
        .unwrap();
    // Resolves arrive in two notifications; both land in one pending reply.
    let half: Vec<_> = (0..n)
        .map(|i| {
            alert(
                i,
                if i < 1_500 {
                    AlertStatus::Resolved
                } else {
                    AlertStatus::Firing
                },
            )
        })
        .collect();
    store.apply(&[batch("k", half)], t(1)).await.unwrap();
    let all: Vec<_> = (0..n).map(|i| alert(i, AlertStatus::Resolved)).collect();
    store.apply(&[batch("k", all)], t(1)).await.unwrap();
    loop {
        let op = ready(&store, t(10)).await;
        store.begin_attempt(op.id, t(10)).await.unwrap();
        if op.kind == OpKind::Reply {
            let resolved = op
                .events
                .iter()
                .filter(|e| matches!(e, ThreadEvent::AlertResolved { .. }))
                .count();
            assert_eq!(resolved, 2_000, "capped");
            assert!(
                matches!(op.events.last(), Some(ThreadEvent::CardResolved { .. })),
                "the card-level event is kept"
            );
            break;
        }
        store.complete(&op, Completion::Done, t(10)).await.unwrap();
    }
}

/// An event source's occurrences of alert `fp`, on a route with a 60 s
/// quiet period.
fn occurrences(fp: u64, count: u64, first: i64, last: i64) -> CardBatch {
    let mut a = alert(fp, AlertStatus::Firing);
    a.starts_at = t(first);
    a.occurrences = Some(Occurrences {
        count,
        last_seen: t(last),
    });
    let mut b = batch("events", vec![a]);
    b.manual_resolve = true;
    b.quiet_period = Some(Duration::from_secs(60));
    b
}

#[tokio::test]
async fn occurrences_accumulate_and_a_quiet_alert_resolves_its_card() {
    let (_dir, store) = open().await;
    store.apply(&[occurrences(1, 3, 0, 2)], t(2)).await.unwrap();
    store
        .apply(&[occurrences(1, 4, 10, 12)], t(12))
        .await
        .unwrap();
    let (card, _, _) = store.card_by_key("events").await.unwrap().unwrap();
    let view = store.card_view(&card, 10).await.unwrap().unwrap();
    let a = &view.alerts[0];
    assert_eq!(
        a.occurrences,
        Some(Occurrences {
            count: 7,
            last_seen: t(12)
        })
    );
    assert_eq!(a.starts_at, t(0), "the episode's first occurrence stays");

    assert_eq!(store.next_quiet_at().await.unwrap(), Some(t(72)));
    assert!(store.quiet_alerts(t(71), 10).await.unwrap().is_empty());
    let quiet = store.quiet_alerts(t(72), 10).await.unwrap();
    assert_eq!(quiet.len(), 1);
    assert_eq!(quiet[0].key, "events");
    let resolved = &quiet[0].alerts[0];
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(
        resolved.ends_at,
        Some(t(12)),
        "it ended at its last occurrence"
    );

    // Applied like any resolve, the card resolves and the timer has nothing
    // left.
    let mut b = occurrences(1, 7, 0, 12);
    b.alerts = quiet[0].alerts.clone();
    let out = store.apply(&[b], t(72)).await.unwrap();
    assert!(out[0].resolved);
    assert_eq!(store.next_quiet_at().await.unwrap(), None);
    assert!(store.quiet_alerts(t(999), 10).await.unwrap().is_empty());
    let view = store.card_view(&card, 10).await.unwrap().unwrap();
    assert_eq!(view.state, CardState::Resolved);
    assert_eq!(view.alerts[0].occurrences.map(|o| o.count), Some(7));

    // The next occurrence starts a new episode on the reopened card.
    let out = store
        .apply(&[occurrences(1, 1, 100, 100)], t(100))
        .await
        .unwrap();
    assert!(out[0].reopened);
    let view = store.card_view(&card, 10).await.unwrap().unwrap();
    assert_eq!(view.alerts[0].occurrences.map(|o| o.count), Some(1));
    assert_eq!(view.alerts[0].starts_at, t(100));
}

/// Delivers everything due at `now`, as if Slack accepted every call.
async fn deliver_all(store: &SqliteStore, now: DateTime<Utc>) {
    while let NextOp::Ready(op) = store.next_op("C0STORETST", now).await.unwrap() {
        store.begin_attempt(op.id, now).await.unwrap();
        let done = match op.kind {
            OpKind::Post => Completion::Posted {
                ts: format!("1.{}", op.id),
                refresh: false,
            },
            _ => Completion::Done,
        };
        store.complete(&op, done, now).await.unwrap();
    }
}

#[tokio::test]
async fn pruning_deletes_old_resolved_cards_once_they_have_nothing_to_deliver() {
    let (_dir, store) = open().await;
    for key in ["old", "recent", "firing"] {
        store
            .apply(&[batch(key, vec![alert(1, AlertStatus::Firing)])], t(0))
            .await
            .unwrap();
    }
    store
        .apply(
            &[batch("old", vec![alert(1, AlertStatus::Resolved)])],
            t(10),
        )
        .await
        .unwrap();
    store
        .apply(
            &[batch("recent", vec![alert(1, AlertStatus::Resolved)])],
            t(500),
        )
        .await
        .unwrap();
    // Undelivered work keeps even an old card.
    assert_eq!(store.prune(t(100), 10).await.unwrap(), 0);
    deliver_all(&store, t(600)).await;
    assert_eq!(store.outbox_summary().await.unwrap().pending, 0);

    assert_eq!(store.prune(t(100), 10).await.unwrap(), 1);
    assert!(store.card_by_key("old").await.unwrap().is_none());
    assert!(store.card_by_key("recent").await.unwrap().is_some());
    assert!(store.card_by_key("firing").await.unwrap().is_some());
    assert_eq!(
        store.prune(t(100), 10).await.unwrap(),
        0,
        "nothing left to prune"
    );
    // The pruned key's next alert opens a new card.
    let out = store
        .apply(&[batch("old", vec![alert(1, AlertStatus::Firing)])], t(700))
        .await
        .unwrap();
    assert!(out[0].opened);
}
