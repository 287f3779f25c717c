//! Escalation policies with controlled time, on the real SQLite store: the
//! clock is an argument, so steps are checked at exact instants instead of
//! by sleeping.

use std::time::Duration;

use ackbar::config::{Config, RouteConfig};
use ackbar::model::{Alert, AlertStatus, Fingerprint, Labels, ThreadEvent};
use ackbar::pipeline::card::CardBatch;
use ackbar::pipeline::escalation::{next_step, resume_at};
use ackbar::pipeline::oncall::Rotations;
use ackbar::store::sqlite::SqliteStore;
use ackbar::store::{Action, ActionOutcome, NextOp, OpKind, Store};
use chrono::{DateTime, TimeZone, Utc};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).single().unwrap()
}

fn route() -> RouteConfig {
    Config::from_json(
        r#"{"routes": [{"name": "db", "channel": "C0ESCALATE", "escalation": [
              {"after": "1m", "notify": ["U0FIRST01"]},
              {"after": "5m", "notify": ["U0SECOND1"]},
              {"after": "15m", "notify": ["S0LEADS01"]}]}]}"#,
    )
    .unwrap()
    .routes
    .remove(0)
}

fn batch(route: &RouteConfig, status: AlertStatus) -> CardBatch {
    let mut labels = Labels::new();
    labels.insert("alertname".into(), "Down".into());
    CardBatch {
        key: "db-card".into(),
        route: route.name.clone(),
        channel: route.channel.clone(),
        reopen_window: route.reopen_window,
        replies: route.replies,
        reply_batch_window: Duration::from_secs(2),
        first_escalation: route.escalation.first().map(|s| s.after),
        quiet_period: None,
        group_labels: Labels::new(),
        common_labels: labels.clone(),
        common_annotations: Labels::new(),
        external_url: None,
        alerts: vec![Alert {
            fingerprint: Fingerprint(7),
            status,
            labels,
            annotations: Labels::new(),
            starts_at: t(0),
            ends_at: None,
            generator_url: None,
            occurrences: None,
        }],
    }
}

async fn open(dir: &tempfile::TempDir) -> SqliteStore {
    let url = format!("sqlite://{}", dir.path().join("e.db").display());
    SqliteStore::open(&url, Duration::from_secs(5))
        .await
        .unwrap()
}

/// What the escalation timer does at `now`: apply every due step.
async fn tick(store: &SqliteStore, route: &RouteConfig, now: DateTime<Utc>) -> Vec<u32> {
    let rotations = Rotations::new(&[]).unwrap();
    let mut fired = Vec::new();
    for due in store.due_escalations(now, 100).await.unwrap() {
        let action = next_step(route, &rotations, due.level, due.opened_at, None, now).unwrap();
        if let ActionOutcome::Applied { .. } = store.act(&due.card, action, now).await.unwrap() {
            fired.push(due.level + 1);
        }
    }
    fired
}

#[tokio::test]
async fn steps_fire_in_order_at_their_times_and_stop_on_acknowledge() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let route = route();
    let out = store
        .apply(&[batch(&route, AlertStatus::Firing)], t(0))
        .await
        .unwrap();
    let card = out[0].card.clone().unwrap();

    assert_eq!(store.next_escalation_at().await.unwrap(), Some(t(60)));
    assert!(
        tick(&store, &route, t(59)).await.is_empty(),
        "not before its time"
    );
    assert_eq!(tick(&store, &route, t(60)).await, vec![1]);
    assert!(
        tick(&store, &route, t(61)).await.is_empty(),
        "each step fires once"
    );
    assert_eq!(store.next_escalation_at().await.unwrap(), Some(t(300)));
    assert_eq!(tick(&store, &route, t(300)).await, vec![2]);

    let ack = store
        .act(
            &card,
            Action::Acknowledge {
                by: "U0ACKER01".into(),
            },
            t(400),
        )
        .await
        .unwrap();
    assert!(matches!(ack, ActionOutcome::Applied { .. }));
    assert_eq!(store.next_escalation_at().await.unwrap(), None);
    assert!(
        tick(&store, &route, t(10_000)).await.is_empty(),
        "an acknowledged card never escalates"
    );

    // Taking the acknowledgement back resumes the policy at the next step.
    let resume = resume_at(&route, 2, t(0), t(500));
    assert_eq!(resume, Some(t(900)));
    store
        .act(
            &card,
            Action::Unacknowledge {
                by: "U0ACKER01".into(),
                next_escalation_at: resume,
            },
            t(500),
        )
        .await
        .unwrap();
    assert!(tick(&store, &route, t(899)).await.is_empty());
    assert_eq!(tick(&store, &route, t(900)).await, vec![3]);
    assert_eq!(
        store.next_escalation_at().await.unwrap(),
        None,
        "no step after the last"
    );
}

#[tokio::test]
async fn resolving_stops_the_policy_and_a_reopened_card_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let route = route();
    store
        .apply(&[batch(&route, AlertStatus::Firing)], t(0))
        .await
        .unwrap();
    assert_eq!(tick(&store, &route, t(60)).await, vec![1]);
    store
        .apply(&[batch(&route, AlertStatus::Resolved)], t(100))
        .await
        .unwrap();
    assert_eq!(store.next_escalation_at().await.unwrap(), None);
    assert!(
        tick(&store, &route, t(10_000)).await.is_empty(),
        "a resolved card never escalates"
    );

    // Fires again inside the reopen window (1h): same card, policy from step 1.
    let out = store
        .apply(&[batch(&route, AlertStatus::Firing)], t(200))
        .await
        .unwrap();
    assert!(out[0].reopened);
    assert_eq!(store.next_escalation_at().await.unwrap(), Some(t(260)));
    assert_eq!(tick(&store, &route, t(260)).await, vec![1]);
}

#[tokio::test]
async fn a_pending_step_fires_after_a_restart_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let route = route();
    {
        let store = open(&dir).await;
        store
            .apply(&[batch(&route, AlertStatus::Firing)], t(0))
            .await
            .unwrap();
        store.close().await; // the process stops before the step is due
    }
    let store = open(&dir).await;
    assert_eq!(tick(&store, &route, t(120)).await, vec![1]);
    // Two timers racing (a second replica, a manual click): the step applies
    // once, because the action names the level it climbs from.
    let due_card = store.card_by_key("db-card").await.unwrap().unwrap().0;
    let rotations = Rotations::new(&[]).unwrap();
    let stale = next_step(&route, &rotations, 0, t(0), None, t(121)).unwrap();
    assert!(matches!(
        store.act(&due_card, stale, t(121)).await.unwrap(),
        ActionOutcome::NoChange(_)
    ));
}

#[tokio::test]
async fn each_step_threads_one_reply_naming_whom_it_notifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let route = route();
    store
        .apply(&[batch(&route, AlertStatus::Firing)], t(0))
        .await
        .unwrap();
    // Deliver the card's post so that its replies become ready.
    let NextOp::Ready(post) = store.next_op("C0ESCALATE", t(0)).await.unwrap() else {
        panic!("the post is ready");
    };
    store.begin_attempt(post.id, t(0)).await.unwrap();
    store
        .complete(
            &post,
            ackbar::store::Completion::Posted {
                ts: "1.000001".into(),
                refresh: false,
            },
            t(0),
        )
        .await
        .unwrap();
    tick(&store, &route, t(60)).await;
    let mut replies = Vec::new();
    while let NextOp::Ready(op) = store.next_op("C0ESCALATE", t(60)).await.unwrap() {
        store.begin_attempt(op.id, t(60)).await.unwrap();
        if op.kind == OpKind::Reply {
            replies.push(op.events.clone());
        }
        store
            .complete(&op, ackbar::store::Completion::Done, t(60))
            .await
            .unwrap();
    }
    assert_eq!(replies.len(), 1);
    assert!(matches!(
        replies[0].as_slice(),
        [ThreadEvent::Escalated { level: 1, notify, by: None, .. }] if notify == &vec!["U0FIRST01".to_owned()]
    ));
}
