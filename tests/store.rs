//! The store's invariants (src/store/mod.rs), on a real SQLite file and a
//! real PostgreSQL database: every test runs once per backend
//! (`sqlite::NAME`, `postgres::NAME`).

mod common;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use ackbar::config::ReplyConfig;
use ackbar::model::{Alert, AlertStatus, CardState, Fingerprint, Labels, Occurrences, ThreadEvent};
use ackbar::pipeline::card::CardBatch;
use ackbar::store::postgres::PgStore;
use ackbar::store::sqlite::SqliteStore;
use ackbar::store::{
    Action, ActionOutcome, Completion, Installation, Lease, NextOp, OAuthState, OpKind, OpState,
    OutboxOp, RetryOutcome, Store,
};
use chrono::{DateTime, TimeZone, Utc};
use common::postgres::PgDatabase;

const CHANNEL: &str = "C0STORETST";
const LEASE_TTL: Duration = Duration::from_secs(15);

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
        channel: CHANNEL.into(),
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

/// A store on a database of its own, removed when the test ends.
struct TestStore {
    store: Arc<dyn Store>,
    backend: Backend,
}

enum Backend {
    Sqlite {
        dir: Arc<tempfile::TempDir>,
        handle: Arc<SqliteStore>,
    },
    Postgres {
        db: Arc<PgDatabase>,
        handle: Arc<PgStore>,
    },
}

impl TestStore {
    async fn sqlite() -> TestStore {
        TestStore::open_sqlite(Arc::new(tempfile::tempdir().unwrap())).await
    }

    async fn open_sqlite(dir: Arc<tempfile::TempDir>) -> TestStore {
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let handle = Arc::new(
            SqliteStore::open(&url, Duration::from_secs(5))
                .await
                .unwrap(),
        );
        TestStore {
            store: handle.clone(),
            backend: Backend::Sqlite { dir, handle },
        }
    }

    /// `None` (the test skips) when no PostgreSQL server answers.
    async fn postgres() -> Option<TestStore> {
        Some(TestStore::open_postgres(Arc::new(PgDatabase::create().await?)).await)
    }

    async fn open_postgres(db: Arc<PgDatabase>) -> TestStore {
        let handle = Arc::new(
            PgStore::open(&db.url, Duration::from_secs(5))
                .await
                .unwrap(),
        );
        TestStore {
            store: handle.clone(),
            backend: Backend::Postgres { db, handle },
        }
    }

    /// What a second replica uses: another store on the same PostgreSQL
    /// database. SQLite serves one process (its write lock is not meant for
    /// several), so there the "replica" shares this store.
    async fn replica(&self) -> TestStore {
        match &self.backend {
            Backend::Sqlite { dir, handle } => TestStore {
                store: handle.clone(),
                backend: Backend::Sqlite {
                    dir: dir.clone(),
                    handle: handle.clone(),
                },
            },
            Backend::Postgres { db, .. } => TestStore::open_postgres(db.clone()).await,
        }
    }

    async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { handle, .. } => handle.close().await,
            Backend::Postgres { handle, .. } => handle.close().await,
        }
    }

    /// Closes this store (a process ending) and opens the database again.
    async fn reopen(self) -> TestStore {
        self.close().await;
        match &self.backend {
            Backend::Sqlite { dir, .. } => TestStore::open_sqlite(dir.clone()).await,
            Backend::Postgres { db, .. } => TestStore::open_postgres(db.clone()).await,
        }
    }
}

impl Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

/// Generates, for each test function `NAME(store: TestStore)`, the tests
/// `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::TestStore::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(store) = super::TestStore::postgres().await {
                        super::$name(store).await;
                    }
                }
            )*
        }
    };
}

async fn ready(store: &dyn Store, now: DateTime<Utc>) -> ackbar::store::OutboxOp {
    match store.next_op(CHANNEL, now).await.unwrap() {
        NextOp::Ready(op) => op,
        other => panic!("expected a ready op, got {other:?}"),
    }
}

async fn new_card_writes_one_post_and_dedupes_the_repeat(store: TestStore) {
    let b = batch("k", vec![alert(1, AlertStatus::Firing)]);
    let out = store.apply(std::slice::from_ref(&b), t(0)).await.unwrap();
    assert!(out[0].opened && out[0].changed);
    assert_eq!(out[0].ops_pushed, vec![OpKind::Post]);
    let again = store.apply(&[b], t(5)).await.unwrap();
    assert!(!again[0].changed, "identical notification is deduped");
    assert_eq!(store.outbox_summary().await.unwrap().pending, 1);
}

async fn updates_wait_for_the_post_and_coalesce(store: TestStore) {
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

    let post = ready(&*store, t(1)).await;
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
    assert_eq!(store.next_op(CHANNEL, t(1)).await.unwrap(), NextOp::Idle);
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
    // Caused by alerts, the update waits for the batching window, with the
    // reply.
    assert_eq!(
        store.next_op(CHANNEL, t(1)).await.unwrap(),
        NextOp::WaitUntil(t(3))
    );
    assert_eq!(
        pending_kinds(&*store).await,
        [OpKind::Reply, OpKind::Update]
    );
    // Two more changes while the update is pending add no second update
    // and do not put it off.
    for n in 4..6 {
        let alerts = (1..=n).map(|i| alert(i, AlertStatus::Firing)).collect();
        let out = store.apply(&[batch("k", alerts)], t(2)).await.unwrap();
        assert!(!out[0].ops_pushed.contains(&OpKind::Update));
    }
    send(&*store, t(3), Completion::Done).await;
    let update = ready(&*store, t(3)).await;
    assert_eq!(update.kind, OpKind::Update);
    assert_eq!(update.card_ts.as_deref(), Some("1.000001"));
}

async fn an_actions_update_brings_the_cards_waiting_update_forward(store: TestStore) {
    store.apply(&[batch("k", firing(1))], t(0)).await.unwrap();
    let posted = Completion::Posted {
        ts: "1.000001".into(),
        refresh: false,
    };
    let post = send(&*store, t(0), posted).await;
    let card = post.card.unwrap();
    store.apply(&[batch("k", firing(2))], t(1)).await.unwrap();
    assert_eq!(
        store.next_op(CHANNEL, t(1)).await.unwrap(),
        NextOp::WaitUntil(t(3)),
        "the alerts' update and reply wait for the batching window"
    );
    let by = "U0ONCALL1".to_owned();
    let acked = store
        .act(&card, Action::Acknowledge { by }, t(2))
        .await
        .unwrap();
    assert!(matches!(acked, ActionOutcome::Applied { .. }), "{acked:?}");
    // One update, due now, shows the acknowledgement (and the alerts).
    let update = ready(&*store, t(2)).await;
    assert_eq!(update.kind, OpKind::Update);
    let kinds = pending_kinds(&*store).await;
    assert_eq!(kinds.iter().filter(|k| **k == OpKind::Update).count(), 1);
}

async fn thread_events_batch_into_one_pending_reply(store: TestStore) {
    let first: Vec<_> = (0..3).map(|i| alert(i, AlertStatus::Firing)).collect();
    store
        .apply(&[batch("k", first.clone())], t(0))
        .await
        .unwrap();
    let post = ready(&*store, t(0)).await;
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
    // The update and the reply both wait for the batching window.
    assert_eq!(
        store.next_op(CHANNEL, t(1)).await.unwrap(),
        NextOp::WaitUntil(t(3))
    );
    let update = send(&*store, t(3), Completion::Done).await;
    assert_eq!(update.kind, OpKind::Update);
    let reply = ready(&*store, t(4)).await;
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

async fn dead_post_takes_the_cards_other_operations_with_it_and_can_be_retried(store: TestStore) {
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
    let post = ready(&*store, t(0)).await;
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
    assert_eq!(store.next_op(CHANNEL, t(100)).await.unwrap(), NextOp::Idle);
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 2);
    let post_letter = letters.iter().find(|l| l.kind == OpKind::Post).unwrap();
    assert!(matches!(
        store.retry_dead_letter(post_letter.id, t(5)).await.unwrap(),
        RetryOutcome::Retried { ref revived, .. } if revived.len() == 2
    ));
    assert_eq!(store.outbox_summary().await.unwrap().pending, 2);
}

fn firing(n: u64) -> Vec<Alert> {
    (1..=n).map(|i| alert(i, AlertStatus::Firing)).collect()
}

/// Hands out the next operation at `now` and ends it with `completion`.
async fn send(store: &dyn Store, now: DateTime<Utc>, completion: Completion) -> OutboxOp {
    let op = ready(store, now).await;
    let op = store.begin_attempt(op.id, now).await.unwrap().unwrap();
    store.complete(&op, completion, now).await.unwrap();
    op
}

fn dead(error: &str) -> Completion {
    Completion::Dead {
        error: error.into(),
    }
}

/// The fingerprints of the alerts a reply announces, in order.
fn announced(events: &[ThreadEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ThreadEvent::AlertFiring { fingerprint, .. } => Some(fingerprint.clone()),
            _ => None,
        })
        .collect()
}

async fn pending_kinds(store: &dyn Store) -> Vec<OpKind> {
    let entries = store.outbox_entries(false, 100).await.unwrap();
    assert!(
        entries.iter().all(|e| e.state == OpState::Pending),
        "{entries:?}"
    );
    entries.iter().map(|e| e.kind).collect()
}

async fn the_outbox_lists_pending_operations_and_dead_letters(store: TestStore) {
    store.apply(&[batch("k", firing(1))], t(0)).await.unwrap();
    let all = store.outbox_entries(false, 10).await.unwrap();
    assert_eq!(all.len(), 1);
    let post = &all[0];
    assert_eq!(
        (post.kind, post.state, post.channel.as_str(), post.attempts),
        (OpKind::Post, OpState::Pending, CHANNEL, 0)
    );
    assert_eq!((post.created_at, post.last_error.as_deref()), (t(0), None));
    assert!(store.outbox_entries(true, 10).await.unwrap().is_empty());

    send(&*store, t(3), dead("channel_not_found")).await;
    let dead_only = store.outbox_entries(true, 10).await.unwrap();
    assert_eq!(dead_only.len(), 1);
    assert_eq!(
        (dead_only[0].id, dead_only[0].state, dead_only[0].attempts),
        (post.id, OpState::Dead, 1)
    );
    assert_eq!(
        dead_only[0].last_error.as_deref(),
        Some("channel_not_found")
    );
    assert_eq!(dead_only[0].card, post.card);
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(
        (letters[0].id, letters[0].error.as_str()),
        (post.id, "channel_not_found")
    );
}

async fn retrying_an_operation_that_is_not_a_dead_letter_is_refused(store: TestStore) {
    store.apply(&[batch("k", firing(1))], t(0)).await.unwrap();
    let post = ready(&*store, t(0)).await;
    assert_eq!(
        store.retry_dead_letter(post.id, t(1)).await.unwrap(),
        RetryOutcome::NotDead(OpState::Pending)
    );
    store.begin_attempt(post.id, t(1)).await.unwrap().unwrap();
    assert_eq!(
        store.retry_dead_letter(post.id, t(1)).await.unwrap(),
        RetryOutcome::NotDead(OpState::Sending)
    );
    assert_eq!(
        store.retry_dead_letter(post.id + 1000, t(1)).await.unwrap(),
        RetryOutcome::NotFound
    );
}

async fn a_retried_update_or_reply_joins_the_pending_one_of_its_card(store: TestStore) {
    store.apply(&[batch("k", firing(1))], t(0)).await.unwrap();
    let posted = Completion::Posted {
        ts: "1.000001".into(),
        refresh: false,
    };
    send(&*store, t(0), posted).await;
    store.apply(&[batch("k", firing(2))], t(10)).await.unwrap();
    let update = send(&*store, t(12), dead("msg_too_long")).await;
    let reply = send(&*store, t(20), dead("invalid_blocks")).await;
    assert_eq!((update.kind, reply.kind), (OpKind::Update, OpKind::Reply));
    // Newer changes queue their own update and reply meanwhile.
    store.apply(&[batch("k", firing(3))], t(30)).await.unwrap();

    let retried = store.retry_dead_letter(update.id, t(31)).await.unwrap();
    assert_eq!(
        retried,
        RetryOutcome::Retried {
            revived: vec![],
            absorbed: vec![update.id]
        },
        "the pending update renders the latest state"
    );
    let retried = store.retry_dead_letter(reply.id, t(31)).await.unwrap();
    assert_eq!(
        retried,
        RetryOutcome::Retried {
            revived: vec![],
            absorbed: vec![reply.id]
        }
    );
    assert_eq!(
        pending_kinds(&*store).await,
        [OpKind::Update, OpKind::Reply]
    );
    send(&*store, t(40), Completion::Done).await;
    let merged = ready(&*store, t(40)).await;
    let merged = store
        .begin_attempt(merged.id, t(40))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        announced(&merged.events),
        [Fingerprint(2).to_string(), Fingerprint(3).to_string()],
        "the dead reply's events come first, in their order"
    );
}

async fn a_retried_update_is_revived_when_none_is_pending(store: TestStore) {
    store.apply(&[batch("k", firing(1))], t(0)).await.unwrap();
    let posted = Completion::Posted {
        ts: "1.000001".into(),
        refresh: false,
    };
    send(&*store, t(0), posted).await;
    store.apply(&[batch("k", firing(2))], t(10)).await.unwrap();
    let update = send(&*store, t(12), dead("msg_too_long")).await;
    assert_eq!(
        store.retry_dead_letter(update.id, t(13)).await.unwrap(),
        RetryOutcome::Retried {
            revived: vec![update.id],
            absorbed: vec![]
        }
    );
    let again = ready(&*store, t(13)).await;
    assert_eq!((again.id, again.attempts), (update.id, 0));
}

async fn retrying_any_operation_of_a_card_whose_post_is_dead_retries_the_post(store: TestStore) {
    store.apply(&[batch("k", firing(1))], t(0)).await.unwrap();
    store.apply(&[batch("k", firing(2))], t(0)).await.unwrap();
    let post = send(&*store, t(0), dead("channel_not_found")).await;
    // Changes after the post died queue an update and a reply that could
    // never be sent on their own.
    store.apply(&[batch("k", firing(3))], t(5)).await.unwrap();
    let letters = store.dead_letters(10).await.unwrap();
    let dead_reply = letters.iter().find(|l| l.kind == OpKind::Reply).unwrap();

    let RetryOutcome::Retried { revived, absorbed } =
        store.retry_dead_letter(dead_reply.id, t(6)).await.unwrap()
    else {
        panic!("not retried");
    };
    assert_eq!(revived, vec![post.id], "the post goes first");
    assert_eq!(absorbed.len(), 2, "the stale update and the dead reply");
    assert_eq!(pending_kinds(&*store).await, [OpKind::Post, OpKind::Reply]);
    let posted = Completion::Posted {
        ts: "1.000001".into(),
        refresh: false,
    };
    send(&*store, t(7), posted).await;
    let reply = ready(&*store, t(20)).await;
    let reply = store.begin_attempt(reply.id, t(20)).await.unwrap().unwrap();
    assert_eq!(
        announced(&reply.events),
        [Fingerprint(2).to_string(), Fingerprint(3).to_string()]
    );
}

async fn inflight_post_is_recovered_when_its_channel_changes_hands(store: TestStore) {
    store
        .apply(&[batch("k", vec![alert(1, AlertStatus::Firing)])], t(0))
        .await
        .unwrap();
    assert!(matches!(
        store
            .acquire_lease(CHANNEL, "dead", LEASE_TTL, t(0))
            .await
            .unwrap(),
        Lease::Held { recovered: 0, .. }
    ));
    let post = ready(&*store, t(0)).await;
    store.begin_attempt(post.id, t(0)).await.unwrap().unwrap();
    let store = store.reopen().await; // the holder dies here, mid-call

    assert!(
        matches!(
            store.acquire_lease(CHANNEL, "next", LEASE_TTL, t(1)).await.unwrap(),
            Lease::Busy { ref holder, .. } if holder == "dead"
        ),
        "the dead holder's lease runs until it expires"
    );
    assert_eq!(store.next_op(CHANNEL, t(1)).await.unwrap(), NextOp::Idle);
    assert!(matches!(
        store
            .acquire_lease(CHANNEL, "next", LEASE_TTL, t(15))
            .await
            .unwrap(),
        Lease::Held { recovered: 1, .. }
    ));
    let post = ready(&*store, t(15)).await;
    assert!(
        post.reconcile,
        "a post of unknown outcome is reconciled before posting again"
    );
    assert_eq!(post.attempts, 1);
}

async fn resolved_card_reopens_inside_window_and_renders_latest_state(store: TestStore) {
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

async fn batches_of_one_notification_commit_together_and_a_closed_store_refuses(store: TestStore) {
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

/// Notifications of one key written in one transaction (the SQLite store's
/// group commit): each is decided on what the ones before it wrote, so the
/// operations they add are exact.
async fn batches_of_one_key_in_one_transaction_see_each_others_rows(store: TestStore) {
    let out = store
        .apply(
            &[
                batch("k", firing(1)),
                batch("k", firing(2)),
                batch("k", firing(3)),
            ],
            t(0),
        )
        .await
        .unwrap();
    assert!(out[0].opened && !out[1].opened && !out[2].opened, "{out:?}");
    assert_eq!(out[1].card, out[0].card);
    // The pending post renders the latest state; the second starts the
    // reply, the third joins it.
    let pushed: Vec<_> = out.iter().map(|o| o.ops_pushed.clone()).collect();
    assert_eq!(pushed, [vec![OpKind::Post], vec![OpKind::Reply], vec![]]);
    assert_eq!(pending_kinds(&*store).await, [OpKind::Post, OpKind::Reply]);
    send(
        &*store,
        t(0),
        Completion::Posted {
            ts: "3.1".into(),
            refresh: false,
        },
    )
    .await;
    let reply = ready(&*store, t(2)).await;
    assert_eq!(reply.kind, OpKind::Reply);
    assert_eq!(reply.events.len(), 2, "{:?}", reply.events);
}

/// Batches of different keys in one transaction (the SQLite store's group
/// commit), new cards between existing ones: each card gets its own alerts
/// and operations.
async fn new_and_existing_cards_in_one_transaction_each_get_their_own_rows(store: TestStore) {
    let instance = |fp: u64| alert(fp, AlertStatus::Firing);
    store
        .apply(&[batch("b", vec![instance(1)])], t(0))
        .await
        .unwrap();
    let out = store
        .apply(
            &[
                batch("a", vec![instance(10), instance(11)]),
                batch("b", vec![instance(1), instance(20)]),
                batch("c", vec![instance(30)]),
            ],
            t(1),
        )
        .await
        .unwrap();
    let opened: Vec<bool> = out.iter().map(|o| o.opened).collect();
    assert_eq!(opened, [true, false, true]);
    let pushed: Vec<_> = out.iter().map(|o| o.ops_pushed.clone()).collect();
    // b's post is still pending: it renders the new alert, which also
    // starts b's thread reply.
    assert_eq!(
        pushed,
        [vec![OpKind::Post], vec![OpKind::Reply], vec![OpKind::Post]]
    );
    for (o, (key, fingerprints)) in
        out.iter()
            .zip([("a", vec![10, 11]), ("b", vec![1, 20]), ("c", vec![30])])
    {
        let card = o.card.as_ref().unwrap();
        let view = store.card_view(card, 10).await.unwrap().unwrap();
        assert_eq!(view.key, key);
        let mut held: Vec<u64> = view.alerts.iter().map(|a| a.fingerprint.0).collect();
        held.sort_unstable();
        assert_eq!(held, fingerprints, "card {key}");
        assert_eq!(view.firing_count, fingerprints.len() as u64, "card {key}");
    }
}

/// One transaction of hundreds of alerts over several keys: every card
/// gets exactly its own alerts, and a key seen again later in the
/// transaction sees the rows written for it earlier.
async fn a_large_transaction_over_several_keys_writes_every_batch(store: TestStore) {
    let alerts = |from: u64| -> Vec<Alert> {
        (from..from + 60)
            .map(|fp| alert(fp, AlertStatus::Firing))
            .collect()
    };
    let batches = [
        batch("a", alerts(0)),
        batch("b", alerts(100)),
        batch("c", alerts(200)),
        batch("a", alerts(300)),
    ];
    let out = store.apply(&batches, t(0)).await.unwrap();
    let opened: Vec<bool> = out.iter().map(|o| o.opened).collect();
    assert_eq!(opened, [true, true, true, false]);
    assert_eq!(out[3].card, out[0].card);
    for (o, (key, firing)) in out[..3].iter().zip([("a", 120), ("b", 60), ("c", 60)]) {
        let view = store
            .card_view(o.card.as_ref().unwrap(), 200)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.key, key);
        assert_eq!(view.firing_count, firing, "card {key}");
        assert_eq!(view.alerts.len() as u64, firing, "card {key}");
    }
}

/// A re-send read in the same transaction as a later batch that changes
/// its key (the SQLite store's group commit learns what unchanged batches
/// read): what the later batch wrote is what counts, so the alert firing
/// again afterwards is a change, every time it is sent.
async fn a_resend_read_before_its_key_changes_in_one_transaction_is_not_remembered(
    store: TestStore,
) {
    store.apply(&[batch("k", firing(1))], t(0)).await.unwrap();
    let resolved = vec![alert(1, AlertStatus::Resolved)];
    let out = store
        .apply(&[batch("k", firing(1)), batch("k", resolved)], t(1))
        .await
        .unwrap();
    assert!(!out[0].changed && out[1].resolved, "{out:?}");
    for (round, now) in [t(2), t(3)].into_iter().enumerate() {
        let out = store.apply(&[batch("k", firing(1))], now).await.unwrap();
        assert_eq!(out[0].changed, round == 0, "round {round}: {out:?}");
    }
}

/// A re-send after a write is decided from the store once, then again
/// the same way however often it comes (the SQLite store's cache learns
/// it), and a change after that is still seen.
async fn repeated_resends_after_a_change_stay_unchanged_until_the_next_change(store: TestStore) {
    let two = |status: AlertStatus| vec![alert(1, AlertStatus::Firing), alert(2, status)];
    store.apply(&[batch("k", firing(2))], t(0)).await.unwrap();
    for round in 0..3 {
        let out = store.apply(&[batch("k", firing(2))], t(1)).await.unwrap();
        assert!(!out[0].changed, "round {round}: {out:?}");
    }
    let out = store
        .apply(&[batch("k", two(AlertStatus::Resolved))], t(2))
        .await
        .unwrap();
    assert!(out[0].changed && out[0].alerts_resolved == 1, "{out:?}");
    for round in 0..3 {
        let out = store
            .apply(&[batch("k", two(AlertStatus::Resolved))], t(3))
            .await
            .unwrap();
        assert!(!out[0].changed, "round {round}: {out:?}");
    }
    let out = store.apply(&[batch("k", firing(2))], t(4)).await.unwrap();
    assert!(out[0].changed && out[0].alerts_fired == 1, "{out:?}");
}

async fn manual_resolve_resolves_every_alert_and_a_refire_reopens(store: TestStore) {
    let mut b = batch(
        "svc",
        vec![alert(1, AlertStatus::Firing), alert(2, AlertStatus::Firing)],
    );
    // A source that cannot resolve its alerts (whose route has a quiet
    // period).
    b.quiet_period = Some(Duration::from_secs(1800));
    let card = store.apply(std::slice::from_ref(&b), t(0)).await.unwrap()[0]
        .card
        .clone()
        .unwrap();
    // Re-sends change nothing; the second is decided from what the first
    // read (the SQLite store's cache), which the resolve below must not
    // leave stale.
    for now in [t(30), t(60)] {
        let out = store.apply(std::slice::from_ref(&b), now).await.unwrap();
        assert!(!out[0].changed, "{out:?}");
    }

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

async fn cards_of_sources_that_resolve_themselves_cannot_be_resolved_by_hand(store: TestStore) {
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

async fn a_storm_reply_is_capped_but_keeps_the_card_resolving(store: TestStore) {
    let n = 2_100;
    let firing: Vec<_> = (0..n).map(|i| alert(i, AlertStatus::Firing)).collect();
    store.apply(&[batch("k", firing)], t(0)).await.unwrap();
    let post = ready(&*store, t(0)).await;
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
        let op = ready(&*store, t(10)).await;
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
    b.quiet_period = Some(Duration::from_secs(60));
    b
}

async fn occurrences_accumulate_and_a_quiet_alert_resolves_its_card(store: TestStore) {
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
async fn deliver_all(store: &dyn Store, now: DateTime<Utc>) {
    while let NextOp::Ready(op) = store.next_op(CHANNEL, now).await.unwrap() {
        let op = store.begin_attempt(op.id, now).await.unwrap().unwrap();
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

async fn pruning_deletes_old_resolved_cards_once_they_have_nothing_to_deliver(store: TestStore) {
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
    deliver_all(&*store, t(600)).await;
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

/// Runs `n` copies of `task` at once, alternately on `store` and a second
/// replica's store, and returns their results in order.
async fn race<T, F, Fut>(store: &TestStore, n: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Store>, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let replica = store.replica().await;
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let on = if i % 2 == 0 {
                &store.store
            } else {
                &replica.store
            };
            let run = task(on.clone(), i);
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                run.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

async fn duplicates_applied_concurrently_by_two_replicas_make_one_card_and_one_post(
    store: TestStore,
) {
    // Alertmanager HA peers send the same notification to both replicas.
    let b = batch(
        "ha",
        vec![alert(1, AlertStatus::Firing), alert(2, AlertStatus::Firing)],
    );
    let outcomes = race(&store, 16, |s, _| {
        let b = b.clone();
        async move { s.apply(&[b], t(0)).await.unwrap() }
    })
    .await;
    let opened = outcomes.iter().filter(|o| o[0].opened).count();
    let changed = outcomes.iter().filter(|o| o[0].changed).count();
    assert_eq!((opened, changed), (1, 1), "{outcomes:?}");
    let cards: std::collections::HashSet<_> = outcomes.iter().map(|o| o[0].card.clone()).collect();
    assert_eq!(cards.len(), 1, "every duplicate names the one card");
    let summary = store.outbox_summary().await.unwrap();
    assert_eq!((summary.pending, summary.cards_firing), (1, 1));
    assert_eq!(ready(&*store, t(0)).await.kind, OpKind::Post);
}

async fn an_operation_is_handed_out_once(store: TestStore) {
    store
        .apply(&[batch("k", vec![alert(1, AlertStatus::Firing)])], t(0))
        .await
        .unwrap();
    let post = ready(&*store, t(0)).await;
    let taken = race(&store, 8, |s, _| async move {
        s.begin_attempt(post.id, t(0)).await.unwrap()
    })
    .await;
    assert_eq!(taken.iter().filter(|op| op.is_some()).count(), 1);
    assert_eq!(store.next_op(CHANNEL, t(0)).await.unwrap(), NextOp::Idle);
}

async fn events_appended_before_the_handout_are_sent_with_the_reply(store: TestStore) {
    let first: Vec<_> = (0..3).map(|i| alert(i, AlertStatus::Firing)).collect();
    store
        .apply(&[batch("k", first.clone())], t(0))
        .await
        .unwrap();
    let post = ready(&*store, t(0)).await;
    store.begin_attempt(post.id, t(0)).await.unwrap().unwrap();
    let posted = Completion::Posted {
        ts: "1.1".into(),
        refresh: false,
    };
    store.complete(&post, posted, t(0)).await.unwrap();
    let mut alerts = first.clone();
    alerts[0].status = AlertStatus::Resolved;
    store
        .apply(&[batch("k", alerts.clone())], t(1))
        .await
        .unwrap();
    let update = ready(&*store, t(3)).await;
    store.begin_attempt(update.id, t(3)).await.unwrap().unwrap();
    store
        .complete(&update, Completion::Done, t(3))
        .await
        .unwrap();

    // Delivery looks at the reply, then (paced) hands it out; a resolve
    // lands in between and must go out with it.
    let peeked = ready(&*store, t(5)).await;
    assert_eq!((peeked.kind, peeked.events.len()), (OpKind::Reply, 1));
    alerts[1].status = AlertStatus::Resolved;
    store.apply(&[batch("k", alerts)], t(5)).await.unwrap();
    let sent = store.begin_attempt(peeked.id, t(5)).await.unwrap().unwrap();
    assert_eq!(sent.events.len(), 2, "{:?}", sent.events);
}

async fn a_first_send_takes_the_lease_with_its_handout(store: TestStore) {
    store.apply(&[batch("k", firing(1))], t(0)).await.unwrap();
    let post = ready(&*store, t(0)).await;
    store
        .acquire_lease(CHANNEL, "other", LEASE_TTL, t(0))
        .await
        .unwrap();
    let (lease, op) = store
        .begin_attempt_leased(post.id, CHANNEL, "me", LEASE_TTL, t(1))
        .await
        .unwrap();
    assert!(matches!(lease, Lease::Busy { .. }), "{lease:?}");
    assert_eq!(op, None, "nothing is handed out under another's lease");
    assert_eq!(pending_kinds(&*store).await, [OpKind::Post]);

    // Once that lease expired, the lease and the hand-out come together.
    let later = t(1) + chrono::Duration::from_std(LEASE_TTL).unwrap();
    let (lease, op) = store
        .begin_attempt_leased(post.id, CHANNEL, "me", LEASE_TTL, later)
        .await
        .unwrap();
    assert!(matches!(lease, Lease::Held { .. }), "{lease:?}");
    assert_eq!(op.map(|o| (o.id, o.attempts)), Some((post.id, 0)));
    let other = store
        .acquire_lease(CHANNEL, "other", LEASE_TTL, later)
        .await
        .unwrap();
    assert!(matches!(other, Lease::Busy { .. }), "{other:?}");
    let (lease, op) = store
        .begin_attempt_leased(post.id, CHANNEL, "me", LEASE_TTL, later)
        .await
        .unwrap();
    assert!(matches!(lease, Lease::Held { .. }), "{lease:?}");
    assert_eq!(op, None, "handed out once");
}

async fn a_channel_lease_has_one_holder_until_it_expires_or_is_released(store: TestStore) {
    let holders = race(&store, 8, |s, i| async move {
        let me = format!("replica-{i}");
        match s
            .acquire_lease(CHANNEL, &me, LEASE_TTL, t(0))
            .await
            .unwrap()
        {
            Lease::Held { .. } => Some(me),
            Lease::Busy { .. } => None,
        }
    })
    .await;
    let winners: Vec<_> = holders.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    let a = winners[0].as_str();

    // The holder renews; anyone else waits for it.
    assert!(matches!(
        store.acquire_lease(CHANNEL, a, LEASE_TTL, t(10)).await.unwrap(),
        Lease::Held { until, .. } if until == t(25)
    ));
    assert_eq!(
        store
            .acquire_lease(CHANNEL, "b", LEASE_TTL, t(24))
            .await
            .unwrap(),
        Lease::Busy {
            holder: a.to_owned(),
            until: t(25)
        }
    );
    // A holder that stops renewing loses the channel when the lease expires.
    assert!(matches!(
        store
            .acquire_lease(CHANNEL, "b", LEASE_TTL, t(25))
            .await
            .unwrap(),
        Lease::Held { .. }
    ));
    assert!(matches!(
        store
            .acquire_lease(CHANNEL, a, LEASE_TTL, t(26))
            .await
            .unwrap(),
        Lease::Busy { .. }
    ));
    // Released, it can be taken at once; releasing another's lease does
    // nothing.
    store.release_lease(CHANNEL, a).await.unwrap();
    store.release_lease(CHANNEL, "b").await.unwrap();
    assert!(matches!(
        store
            .acquire_lease(CHANNEL, a, LEASE_TTL, t(27))
            .await
            .unwrap(),
        Lease::Held { .. }
    ));
    assert!(
        matches!(
            store
                .acquire_lease("C0OTHERCHN", "b", LEASE_TTL, t(27))
                .await
                .unwrap(),
            Lease::Held { .. }
        ),
        "leases are per channel"
    );
}

async fn racing_escalation_timers_climb_once(store: TestStore) {
    let card = store
        .apply(&[batch("k", vec![alert(1, AlertStatus::Firing)])], t(0))
        .await
        .unwrap()[0]
        .card
        .clone()
        .unwrap();
    let outcomes = race(&store, 8, |s, _| {
        let card = card.clone();
        async move {
            let step = Action::Escalate {
                from_level: 0,
                notify: vec!["U0ONCALL1".into()],
                dm: Vec::new(),
                by: None,
                next_escalation_at: None,
            };
            s.act(&card, step, t(60)).await.unwrap()
        }
    })
    .await;
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, ActionOutcome::Applied { .. }))
        .count();
    assert_eq!(applied, 1, "{outcomes:?}");
    let brief = store.card_brief(&card).await.unwrap().unwrap();
    assert_eq!(brief.escalation_level, 1);
}

async fn an_idempotency_key_is_first_seen_once_across_replicas(store: TestStore) {
    let seen = race(&store, 8, |s, _| async move {
        s.first_seen("Ev0RETRIED", t(0)).await.unwrap()
    })
    .await;
    assert_eq!(seen.iter().filter(|first| **first).count(), 1);
}

fn installation(team: &str, token: &str, at: DateTime<Utc>) -> Installation {
    Installation {
        team_id: team.into(),
        team_name: format!("Team {team}"),
        bot_token: token.into(),
        bot_user_id: "U0BOTUSER".into(),
        scopes: vec!["chat:write".into(), "commands".into()],
        installed_at: at,
    }
}

async fn an_oauth_state_is_taken_once_across_replicas(store: TestStore) {
    store
        .save_oauth_state("state-hash", "browser-hash", t(600), t(0))
        .await
        .unwrap()
        .then_some(())
        .expect("saved");
    let taken = race(&store, 8, |s, _| async move {
        s.take_oauth_state("state-hash").await.unwrap()
    })
    .await;
    let won: Vec<_> = taken.into_iter().flatten().collect();
    assert_eq!(
        won,
        vec![OAuthState {
            browser_hash: "browser-hash".into(),
            expires_at: t(600),
        }],
        "exactly one taker gets the state, with its browser and expiry"
    );
    assert_eq!(store.take_oauth_state("state-hash").await.unwrap(), None);
    assert_eq!(store.take_oauth_state("never-saved").await.unwrap(), None);
}

async fn expired_oauth_states_are_swept_by_the_next_install(store: TestStore) {
    store
        .save_oauth_state("old", "b1", t(10), t(0))
        .await
        .unwrap();
    store
        .save_oauth_state("fresh", "b2", t(700), t(0))
        .await
        .unwrap();
    // An install after the first one expired sweeps it, not the second.
    store
        .save_oauth_state("newer", "b3", t(800), t(20))
        .await
        .unwrap();
    assert_eq!(store.take_oauth_state("old").await.unwrap(), None);
    assert!(store.take_oauth_state("fresh").await.unwrap().is_some());
    assert!(store.take_oauth_state("newer").await.unwrap().is_some());
}

/// Anyone can open the install page: the installs in progress are capped,
/// and the cap frees up as states are taken or expire.
async fn installs_in_progress_are_capped(store: TestStore) {
    const CAP: usize = 1_000;
    for i in 0..CAP {
        assert!(
            store
                .save_oauth_state(&format!("s{i}"), "b", t(600), t(0))
                .await
                .unwrap(),
            "state {i} is under the cap"
        );
    }
    assert!(
        !store
            .save_oauth_state("one-too-many", "b", t(600), t(0))
            .await
            .unwrap()
    );
    assert_eq!(store.take_oauth_state("one-too-many").await.unwrap(), None);
    assert!(store.take_oauth_state("s0").await.unwrap().is_some());
    assert!(
        store
            .save_oauth_state("after-one-finished", "b", t(600), t(0))
            .await
            .unwrap()
    );
    // Once they expire, the next install sweeps them all.
    assert!(
        store
            .save_oauth_state("much-later", "b", t(1_300), t(700))
            .await
            .unwrap()
    );
}

async fn installations_are_kept_per_team_replaced_on_reinstall_and_removed(store: TestStore) {
    store
        .save_installation(&installation("T0AAAAAAA", "xoxb-a-1", t(0)))
        .await
        .unwrap();
    store
        .save_installation(&installation("T0BBBBBBB", "xoxb-b-1", t(1)))
        .await
        .unwrap();
    // Reinstalling replaces the team's row (a new token, say).
    store
        .save_installation(&installation("T0AAAAAAA", "xoxb-a-2", t(2)))
        .await
        .unwrap();
    let store = store.reopen().await;
    let a = store.installation("T0AAAAAAA").await.unwrap().unwrap();
    assert_eq!(a, installation("T0AAAAAAA", "xoxb-a-2", t(2)));
    assert!(!format!("{a:?}").contains("xoxb"), "Debug hides the token");
    let all = store.installations(10).await.unwrap();
    assert_eq!(
        all.iter().map(|i| i.team_id.as_str()).collect::<Vec<_>>(),
        ["T0AAAAAAA", "T0BBBBBBB"]
    );
    assert_eq!(store.installations(1).await.unwrap().len(), 1);
    assert!(store.remove_installation("T0AAAAAAA").await.unwrap());
    assert!(!store.remove_installation("T0AAAAAAA").await.unwrap());
    assert_eq!(store.installation("T0AAAAAAA").await.unwrap(), None);
    assert_eq!(store.installations(10).await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// Scheduled digests (invariant 10)
// ---------------------------------------------------------------------------

fn named_alert(fp: u64, name: &str, starts_at: DateTime<Utc>, status: AlertStatus) -> Alert {
    let mut a = alert(fp, status);
    a.labels.insert("alertname".into(), name.into());
    a.starts_at = starts_at;
    if status == AlertStatus::Resolved {
        a.ends_at = Some(starts_at);
    }
    a
}

/// A card batch titled `name` (its common `alertname`) in `channel`.
fn titled(key: &str, name: &str, channel: &str, alerts: Vec<Alert>) -> CardBatch {
    let mut b = batch(key, alerts);
    b.channel = channel.into();
    b.common_labels.insert("alertname".into(), name.into());
    b
}

async fn card_id(store: &dyn Store, key: &str) -> ackbar::model::CardId {
    store.card_by_key(key).await.unwrap().unwrap().0
}

async fn digest_figures_count_one_channels_period(store: TestStore) {
    let (from, to) = (t(1_000), t(100_000));
    let fire =
        |key: &'static str, name: &'static str, channel: &'static str, fps: &[u64], at: i64| {
            let alerts = fps
                .iter()
                .map(|fp| named_alert(*fp, name, t(at), AlertStatus::Firing))
                .collect();
            (titled(key, name, channel, alerts), t(at))
        };
    for (b, at) in [
        fire("before", "Old", CHANNEL, &[1], 0),
        fire("a", "Disk", CHANNEL, &[2, 3], 2_000),
        fire("b", "Cpu", CHANNEL, &[4], 3_000),
        fire("other", "Disk", "C0OTHERCHN", &[5, 6, 7], 2_000),
        fire("late", "Disk", CHANNEL, &[8], 200_000),
    ] {
        store.apply(&[b], at).await.unwrap();
    }
    for (key, at) in [("a", 2_600), ("b", 3_200), ("other", 2_100)] {
        let by = Action::Acknowledge {
            by: "U0ONCALL1".into(),
        };
        let done = store
            .act(&card_id(&*store, key).await, by, t(at))
            .await
            .unwrap();
        assert!(matches!(done, ActionOutcome::Applied { .. }), "{done:?}");
    }
    let resolved = [2, 3].map(|fp| named_alert(fp, "Disk", t(2_000), AlertStatus::Resolved));
    store
        .apply(&[titled("a", "Disk", CHANNEL, resolved.to_vec())], t(5_000))
        .await
        .unwrap();

    let limits = ackbar::store::DigestLimits {
        noisiest: 5,
        oldest_firing: 2,
    };
    let f = store
        .digest_figures(CHANNEL, from, to, limits)
        .await
        .unwrap();
    assert_eq!((f.fired, f.resolved, f.acknowledged), (2, 1, 2), "{f:?}");
    assert_eq!(
        f.mean_time_to_acknowledge,
        Some(Duration::from_secs(400)),
        "(600 s + 200 s) / 2"
    );
    assert_eq!(f.mean_time_to_resolve, Some(Duration::from_secs(3_000)));
    let noisiest: Vec<_> = f
        .noisiest
        .iter()
        .map(|n| (n.name.as_str(), n.count))
        .collect();
    assert_eq!(
        noisiest,
        [("Disk", 2), ("Cpu", 1)],
        "other channels and periods do not count"
    );
    assert_eq!(f.firing_now, 3, "before, b and late fire now");
    let oldest: Vec<_> = f.oldest_firing.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(oldest, ["Old", "Cpu"], "oldest first, at most the limit");

    let empty = store
        .digest_figures(CHANNEL, t(300_000), t(400_000), limits)
        .await
        .unwrap();
    assert_eq!((empty.fired, empty.resolved, empty.acknowledged), (0, 0, 0));
    assert_eq!(empty.mean_time_to_acknowledge, None);
    assert!(empty.noisiest.is_empty());
}

/// 09:00 in Berlin: 08:00 UTC in winter.
fn daily_config() -> ackbar::config::DigestConfig {
    ackbar::config::DigestConfig {
        channel: CHANNEL.into(),
        every: ackbar::model::DigestEvery::Day,
        at: "09:00".into(),
        weekday: None,
        time_zone: "Europe/Berlin".into(),
    }
}

fn daily_digest() -> Vec<ackbar::pipeline::digest::ScheduledDigest> {
    ackbar::pipeline::digest::from_config(&[daily_config()])
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Ticks a freshly built digest timer at `now` and returns the channels it
/// enqueued a digest for.
async fn tick(store: &dyn Store, now: &str) -> Vec<String> {
    ackbar::pipeline::digest::tick(store, &daily_digest(), utc(now))
        .await
        .unwrap()
}

/// Delivers the channel's digests (as delivery would) and returns them.
async fn take_digests(store: &dyn Store, now: &str) -> Vec<ackbar::model::Digest> {
    let mut digests = Vec::new();
    while let NextOp::Ready(op) = store.next_op(CHANNEL, utc(now)).await.unwrap() {
        let op = store.begin_attempt(op.id, utc(now)).await.unwrap().unwrap();
        assert_eq!((op.kind, &op.card), (OpKind::Digest, &None));
        digests.push(*op.digest.clone().unwrap());
        store
            .complete(&op, Completion::Done, utc(now))
            .await
            .unwrap();
    }
    digests
}

/// The period a digest covers, as `(start, end)` RFC 3339 UTC strings.
fn period(d: &ackbar::model::Digest) -> (String, String) {
    let f = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    (f(d.period_start), f(d.period_end))
}

fn day(start: &str, end: &str) -> (String, String) {
    (start.to_owned(), end.to_owned())
}

async fn digest_timing_with_controlled_time_across_a_restart(store: TestStore) {
    // A new digest starts counting when first seen: nothing at once.
    assert!(tick(&*store, "2026-11-30T07:00:00Z").await.is_empty());
    assert!(tick(&*store, "2026-11-30T07:59:59Z").await.is_empty());
    assert_eq!(tick(&*store, "2026-11-30T08:00:00Z").await, [CHANNEL]);
    assert!(tick(&*store, "2026-11-30T08:01:00Z").await.is_empty());
    let sent = take_digests(&*store, "2026-11-30T08:01:00Z").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        period(&sent[0]),
        day("2026-11-29T08:00:00Z", "2026-11-30T08:00:00Z")
    );

    // Restart: a new store handle and a new timer.
    let store = store.reopen().await;
    assert!(
        tick(&*store, "2026-11-30T08:05:00Z").await.is_empty(),
        "not again after a restart"
    );
    assert!(tick(&*store, "2026-12-01T07:59:00Z").await.is_empty());
    assert_eq!(
        tick(&*store, "2026-12-01T08:00:00Z").await,
        [CHANNEL],
        "next day"
    );
    assert_eq!(take_digests(&*store, "2026-12-01T08:00:00Z").await.len(), 1);

    // Down from 08:00 to 10:00 local on Wednesday: sent once, at restart.
    assert!(tick(&*store, "2026-12-02T07:00:00Z").await.is_empty());
    let store = store.reopen().await;
    assert_eq!(tick(&*store, "2026-12-02T09:00:00Z").await, [CHANNEL]);
    assert!(tick(&*store, "2026-12-02T09:00:01Z").await.is_empty());
    let late = take_digests(&*store, "2026-12-02T09:00:01Z").await;
    assert_eq!(late.len(), 1);
    assert_eq!(
        period(&late[0]),
        day("2026-12-01T08:00:00Z", "2026-12-02T08:00:00Z")
    );
    assert_eq!(
        late[0].as_of,
        utc("2026-12-02T09:00:00Z"),
        "counted at restart"
    );

    // Down for three scheduled instants: only the latest is sent, and it
    // names its own period.
    let store = store.reopen().await;
    assert_eq!(tick(&*store, "2026-12-05T09:00:00Z").await, [CHANNEL]);
    let latest = take_digests(&*store, "2026-12-05T09:00:00Z").await;
    assert_eq!(latest.len(), 1);
    assert_eq!(
        period(&latest[0]),
        day("2026-12-04T08:00:00Z", "2026-12-05T08:00:00Z")
    );

    // Two replicas ticking at once: one digest.
    let enqueued = race(&store, 8, |s, _| async move {
        ackbar::pipeline::digest::tick(&*s, &daily_digest(), utc("2026-12-06T08:00:00Z"))
            .await
            .unwrap()
            .len()
    })
    .await;
    assert_eq!(enqueued.iter().sum::<usize>(), 1, "{enqueued:?}");
    assert_eq!(take_digests(&*store, "2026-12-06T08:00:00Z").await.len(), 1);
}

async fn digests_survive_pruning_and_go_through_the_outbox_like_messages(store: TestStore) {
    assert!(tick(&*store, "2026-11-30T07:00:00Z").await.is_empty());
    assert_eq!(tick(&*store, "2026-11-30T08:00:00Z").await, [CHANNEL]);
    assert_eq!(store.pending_channels().await.unwrap(), [CHANNEL]);
    let now = utc("2026-11-30T08:00:00Z");
    let op = ready(&*store, now).await;
    let op = store.begin_attempt(op.id, now).await.unwrap().unwrap();
    let dead = Completion::Dead {
        error: "channel_not_found".into(),
    };
    store.complete(&op, dead, now).await.unwrap();
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(
        (letters.len(), letters[0].kind, &letters[0].card),
        (1, OpKind::Digest, &None)
    );
    assert_eq!(
        store.retry_dead_letter(letters[0].id, now).await.unwrap(),
        RetryOutcome::Retried {
            revived: vec![letters[0].id],
            absorbed: Vec::new()
        }
    );
    let op = ready(&*store, now).await;
    assert_eq!((op.kind, op.reconcile), (OpKind::Digest, false));
    // A post whose outcome is unknown is looked for before it is sent again.
    let op = store.begin_attempt(op.id, now).await.unwrap().unwrap();
    let lost = Completion::Retry {
        not_before: now,
        error: "connection reset".into(),
        counts: true,
        outcome_unknown: true,
    };
    store.complete(&op, lost, now).await.unwrap();
    assert!(ready(&*store, now).await.reconcile);

    // Pruning far in the future keeps the last run (and the pending digest)
    // but not a dead digest older than retention.
    let later = utc("2027-01-01T00:00:00Z");
    store.prune(later, 100).await.unwrap();
    assert_eq!(store.outbox_summary().await.unwrap().pending, 1);
    let op = ready(&*store, now).await;
    let op = store.begin_attempt(op.id, now).await.unwrap().unwrap();
    let dead = Completion::Dead {
        error: "channel_not_found".into(),
    };
    store.complete(&op, dead, now).await.unwrap();
    store.prune(later, 100).await.unwrap();
    assert_eq!(
        store.outbox_summary().await.unwrap().dead,
        0,
        "old dead digest pruned"
    );
    assert_eq!(
        store.last_digest(&daily_digest()[0].key).await.unwrap(),
        Some(now),
        "digest_runs outlive retention"
    );
    assert!(tick(&*store, "2026-11-30T08:30:00Z").await.is_empty());
}

/// Migration 0009 rebuilds the outbox; a reply pending at upgrade keeps its
/// thread events (dropping the old table deletes them by cascade).
#[tokio::test]
async fn sqlite_upgrade_to_digests_keeps_pending_thread_events() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    for entry in std::fs::read_dir("src/store/migrations/sqlite").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0008" {
            std::fs::copy(&path, migrations.join(&name)).unwrap();
        }
    }
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    {
        use sqlx::ConnectOptions;
        let mut conn = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true)
            .connect()
            .await
            .unwrap();
        sqlx::migrate::Migrator::new(migrations.as_path())
            .await
            .unwrap()
            .run(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO cards (id, card_key, route, channel, state, opened_at, ts, group_labels, common_labels,
                 common_annotations, group_digest, firing_count, resolved_count, updated_at)
             VALUES ('c1', 'k', 'r', ?, 'firing', 0, '1.000001', '{}', '{}', '{}', 0, 1, 0, 0)",
        )
        .bind(CHANNEL)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO outbox (card_seq, channel, kind, state, not_before, created_at, updated_at, events_held)
             VALUES (1, ?, 'reply', 'pending', 0, 0, 0, 2)",
        )
        .bind(CHANNEL)
        .execute(&mut conn)
        .await
        .unwrap();
        for by in ["U0FIRST01", "U0SECOND1"] {
            let event = ThreadEvent::Acknowledged {
                by: by.into(),
                at: t(0),
            };
            sqlx::query("INSERT INTO thread_events (op_id, event) VALUES (1, ?)")
                .bind(serde_json::to_string(&event).unwrap())
                .execute(&mut conn)
                .await
                .unwrap();
        }
        sqlx::Connection::close(conn).await.unwrap();
    }
    let store = SqliteStore::open(&url, Duration::from_secs(5))
        .await
        .unwrap();
    let reply = ready(&store, t(10)).await;
    assert_eq!(reply.kind, OpKind::Reply);
    assert_eq!(reply.events.len(), 2, "{:?}", reply.events);
    store.close().await;
}

on_both_backends!(
    new_card_writes_one_post_and_dedupes_the_repeat,
    updates_wait_for_the_post_and_coalesce,
    an_actions_update_brings_the_cards_waiting_update_forward,
    a_first_send_takes_the_lease_with_its_handout,
    thread_events_batch_into_one_pending_reply,
    dead_post_takes_the_cards_other_operations_with_it_and_can_be_retried,
    inflight_post_is_recovered_when_its_channel_changes_hands,
    resolved_card_reopens_inside_window_and_renders_latest_state,
    batches_of_one_notification_commit_together_and_a_closed_store_refuses,
    batches_of_one_key_in_one_transaction_see_each_others_rows,
    new_and_existing_cards_in_one_transaction_each_get_their_own_rows,
    a_large_transaction_over_several_keys_writes_every_batch,
    a_resend_read_before_its_key_changes_in_one_transaction_is_not_remembered,
    repeated_resends_after_a_change_stay_unchanged_until_the_next_change,
    manual_resolve_resolves_every_alert_and_a_refire_reopens,
    cards_of_sources_that_resolve_themselves_cannot_be_resolved_by_hand,
    a_storm_reply_is_capped_but_keeps_the_card_resolving,
    occurrences_accumulate_and_a_quiet_alert_resolves_its_card,
    duplicates_applied_concurrently_by_two_replicas_make_one_card_and_one_post,
    an_operation_is_handed_out_once,
    events_appended_before_the_handout_are_sent_with_the_reply,
    a_channel_lease_has_one_holder_until_it_expires_or_is_released,
    racing_escalation_timers_climb_once,
    an_idempotency_key_is_first_seen_once_across_replicas,
    pruning_deletes_old_resolved_cards_once_they_have_nothing_to_deliver,
    the_outbox_lists_pending_operations_and_dead_letters,
    retrying_an_operation_that_is_not_a_dead_letter_is_refused,
    a_retried_update_or_reply_joins_the_pending_one_of_its_card,
    a_retried_update_is_revived_when_none_is_pending,
    retrying_any_operation_of_a_card_whose_post_is_dead_retries_the_post,
    an_oauth_state_is_taken_once_across_replicas,
    expired_oauth_states_are_swept_by_the_next_install,
    installs_in_progress_are_capped,
    installations_are_kept_per_team_replaced_on_reinstall_and_removed,
    digest_figures_count_one_channels_period,
    digest_timing_with_controlled_time_across_a_restart,
    digests_survive_pruning_and_go_through_the_outbox_like_messages,
);
