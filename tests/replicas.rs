//! Several `ackbar serve` replicas on one PostgreSQL database, and the
//! readiness of a server whose database goes away.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use ackbar::store::Store;
use ackbar::store::postgres::PgStore;
use common::postgres::PgDatabase;
use common::*;
use serde_json::Value;

const GROUPS: usize = 12;

fn config_on(slack: &Slack, db: &PgDatabase) -> Value {
    let mut config = test_config(&slack.api_url, std::path::Path::new("unused.db"));
    config["store"]["url"] = Value::from(db.url.clone());
    config
}

/// Sends a notification to both replicas at once, as a pair of clustered
/// Alertmanagers does, and expects both to accept it.
async fn to_both(client: &reqwest::Client, a: &Ackbar, b: &Ackbar, body: &Value) {
    let (url_a, url_b) = (
        a.url("/webhook/alertmanager"),
        b.url("/webhook/alertmanager"),
    );
    let (ra, rb) = tokio::join!(
        post_webhook(client, &url_a, body),
        post_webhook(client, &url_b, body),
    );
    assert!(ra.status().is_success(), "replica a: {}", ra.status());
    assert!(rb.status().is_success(), "replica b: {}", rb.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_pair_on_one_database_posts_one_card_per_group() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let config = config_on(&slack, &db);
    let a = start_ackbar(&config).await;
    let b = start_ackbar(&config).await;
    let client = http();

    for g in 0..GROUPS {
        let group = format!("g{g}");
        let alerts = [firing("Disk", "h1"), firing("Disk", "h2")];
        to_both(&client, &a, &b, &webhook(&group, &alerts)).await;
    }
    eventually(Duration::from_secs(30), "a card per group", || {
        cards(&slack.sandbox.state(), CHANNEL).len() >= GROUPS
    })
    .await;
    for g in 0..GROUPS {
        let group = format!("g{g}");
        let alerts = [resolved("Disk", "h1"), resolved("Disk", "h2")];
        to_both(&client, &a, &b, &webhook(&group, &alerts)).await;
    }
    eventually(Duration::from_secs(30), "every card resolved", || {
        let state = slack.sandbox.state();
        let cards = cards(&state, CHANNEL);
        cards.len() >= GROUPS && cards.iter().all(|(_, _, card)| is_resolved(card))
    })
    .await;
    // Nothing is left to send, so nothing more can be posted.
    let store = PgStore::open(&db.url, Duration::from_secs(5))
        .await
        .unwrap();
    eventually_async(Duration::from_secs(30), "outbox drained", || async {
        store.outbox_summary().await.unwrap().pending == 0
    })
    .await;
    store.close().await;

    let state = slack.sandbox.state();
    let posted = cards(&state, CHANNEL);
    let ids: HashSet<_> = posted.iter().map(|(_, id, _)| id.clone()).collect();
    assert_eq!(posted.len(), GROUPS, "one card per group, none twice");
    assert_eq!(ids.len(), GROUPS);
    for (ts, _, _) in &posted {
        let resolves = replies(&state, CHANNEL, ts)
            .iter()
            .filter(|r| message_text(r).to_lowercase().contains("resolved"))
            .count();
        assert!(
            resolves <= 1,
            "card {ts}: the resolve was threaded {resolves} times"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_the_database_is_unreachable_and_recovers() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let ackbar = start_ackbar(&config_on(&slack, &db)).await;
    let client = http();
    let ready = || async {
        client
            .get(ackbar.url("/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(ready().await, 200);

    db.admin(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
        db.name
    ))
    .await;
    db.admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        db.name
    ))
    .await;
    eventually_async(Duration::from_secs(20), "/readyz answers 503", || async {
        ready().await == 503
    })
    .await;
    // Ingest refuses too, so that Alertmanager retries.
    let refused = post_webhook(
        &client,
        &ackbar.url("/webhook/alertmanager"),
        &webhook("g", &[firing("Disk", "h1")]),
    )
    .await;
    assert_eq!(refused.status().as_u16(), 503);

    db.admin(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
        db.name
    ))
    .await;
    eventually_async(
        Duration::from_secs(20),
        "/readyz answers 200 again",
        || async { ready().await == 200 },
    )
    .await;
    ackbar.stop().await;
}
