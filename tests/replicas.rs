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

/// Waits (at most `timeout`) until nothing is left to deliver from `db`'s
/// outbox, and returns how many operations ended as dead letters.
async fn drained(db: &PgDatabase, timeout: Duration) -> u64 {
    let store = PgStore::open(&db.url, Duration::from_secs(5))
        .await
        .unwrap();
    eventually_async(timeout, "the outbox drains", || async {
        store.outbox_summary().await.unwrap().pending == 0
    })
    .await;
    let dead = store.outbox_summary().await.unwrap().dead;
    store.close().await;
    dead
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
    drained(&db, Duration::from_secs(30)).await;

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

/// Sends `body` to the live replicas in turn until one accepts it, as an
/// Alertmanager cluster pointed at all of them does. Returns the attempts.
async fn to_any(client: &reqwest::Client, urls: &[String], body: &Value, start: usize) -> usize {
    for attempt in 0..300 {
        let url = &urls[(start + attempt) % urls.len()];
        let accepted = client
            .post(url)
            .json(body)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if accepted {
            return attempt + 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no replica accepted a notification in 300 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_replica_of_three_mid_storm_loses_nothing_and_duplicates_nothing() {
    use ackbar::slack::sandbox::{Faults, RateLimit};
    const STORM_GROUPS: usize = 16;
    const CHANNEL_B: &str = "C0TESTCHB2";
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let mut options = sandbox_options(&[CHANNEL, CHANNEL_B]);
    // A slow Slack, so that the kill lands with work queued and in flight.
    options.post_per_channel = RateLimit {
        max: 3,
        per: Duration::from_secs(1),
    };
    options.faults = Faults {
        delay: Duration::from_millis(150),
        delay_rate: 0.5,
        ..Faults::default()
    };
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_on(&slack, &db);
    config["routes"] = serde_json::json!([
        { "name": "even", "matchers": ["group=~g.*[02468]"], "channel": CHANNEL },
        { "name": "odd", "matchers": [], "channel": CHANNEL_B }
    ]);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(start_ackbar_process(&config, dir.path(), free_port()).await);
    }
    let urls: Vec<String> = replicas
        .iter()
        .map(|r| r.url("/webhook/alertmanager"))
        .collect();
    let posted = || {
        let state = slack.sandbox.state();
        cards(&state, CHANNEL).len() + cards(&state, CHANNEL_B).len()
    };

    // The storm: every group fires on some replica, round robin.
    let storm_started = std::time::Instant::now();
    let client = http();
    let storm = {
        let (client, urls) = (client.clone(), urls.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            for round in 0..3 {
                for g in 0..STORM_GROUPS {
                    let alerts: Vec<_> = (0..5 * (round + 1))
                        .map(|i| firing("Storm", &format!("h{i}")))
                        .collect();
                    to_any(
                        &client,
                        &urls,
                        &webhook(&format!("g{g:02}"), &alerts),
                        g + round,
                    )
                    .await;
                    sent += 1;
                }
            }
            sent
        })
    };
    eventually(Duration::from_secs(60), "some cards posted", || {
        posted() >= 3
    })
    .await;
    // Kill a replica that is delivering: one holding a channel's lease
    // (holders are named after their process id).
    let holders: Vec<String> = {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT holder FROM channel_leases")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    };
    let victim = replicas
        .iter()
        .position(|r| {
            let pid = r.child.id().unwrap_or_default().to_string();
            holders
                .iter()
                .any(|h| h.split('-').next() == Some(pid.as_str()))
        })
        .unwrap_or_else(|| panic!("no replica holds a lease mid-storm: {holders:?}"));
    replicas[victim].kill().await;
    let killed_at = std::time::Instant::now();
    assert!(posted() < STORM_GROUPS, "the kill should land mid-storm");

    let sent = tokio::time::timeout(Duration::from_secs(120), storm)
        .await
        .expect("the storm finished")
        .unwrap();
    let storm_secs = storm_started.elapsed().as_secs_f64();
    eventually(Duration::from_secs(120), "a card for every group", || {
        posted() >= STORM_GROUPS
    })
    .await;
    let takeover = killed_at.elapsed();

    // Resolve everything through the survivors.
    let survivors: Vec<String> = urls
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, u)| u.clone())
        .collect();
    for g in 0..STORM_GROUPS {
        let alerts: Vec<_> = (0..15)
            .map(|i| resolved("Storm", &format!("h{i}")))
            .collect();
        to_any(
            &client,
            &survivors,
            &webhook(&format!("g{g:02}"), &alerts),
            g,
        )
        .await;
    }
    let dead = drained(&db, Duration::from_secs(120)).await;

    let state = slack.sandbox.state();
    let mut ids = HashSet::new();
    for channel in [CHANNEL, CHANNEL_B] {
        for (ts, id, card) in cards(&state, channel) {
            assert!(ids.insert(id), "card {ts} posted twice");
            assert!(is_resolved(&card), "card {ts} ends resolved");
            let resolves = replies(&state, channel, &ts)
                .iter()
                .filter(|r| message_text(r).contains("card resolved"))
                .count();
            assert!(
                resolves <= 1,
                "card {ts}: resolved {resolves} times in its thread"
            );
        }
    }
    assert_eq!(
        ids.len(),
        STORM_GROUPS,
        "one card per group: nothing lost, nothing twice"
    );
    assert_eq!(dead, 0, "no dead letters");
    eprintln!(
        "FIGURES: {sent} notifications in {storm_secs:.1} s ({:.1}/s) across 3 replicas, one SIGKILLed; \
         every card posted {:.1} s after the kill",
        sent as f64 / storm_secs,
        takeover.as_secs_f64()
    );
    drop(replicas);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_mid_storm_loses_nothing_and_duplicates_nothing() {
    use ackbar::slack::sandbox::RateLimit;
    const STORM_GROUPS: usize = 12;
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let mut options = sandbox_options(&[CHANNEL]);
    // A slow Slack, so that the outage lands with work queued.
    options.post_per_channel = RateLimit {
        max: 3,
        per: Duration::from_secs(1),
    };
    let slack = start_slack(options).await;
    let ackbar = start_ackbar(&config_on(&slack, &db)).await;
    let urls = vec![ackbar.url("/webhook/alertmanager")];
    let posted = || cards(&slack.sandbox.state(), CHANNEL).len();

    // Fire every group in growing steps, then resolve everything, at a
    // steady pace so that the outage hits ingest too; refused requests are
    // retried, as Alertmanager does. Returns (requests, attempts).
    let storm = {
        let urls = urls.clone();
        tokio::spawn(async move {
            let client = http();
            let (mut requests, mut attempts) = (0, 0);
            for round in 1..=3 {
                for g in 0..STORM_GROUPS {
                    let alerts: Vec<_> = (0..4 * round)
                        .map(|i| firing("Storm", &format!("h{i}")))
                        .collect();
                    attempts +=
                        to_any(&client, &urls, &webhook(&format!("g{g:02}"), &alerts), 0).await;
                    requests += 1;
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            }
            for g in 0..STORM_GROUPS {
                let alerts: Vec<_> = (0..12)
                    .map(|i| resolved("Storm", &format!("h{i}")))
                    .collect();
                attempts += to_any(&client, &urls, &webhook(&format!("g{g:02}"), &alerts), 0).await;
                requests += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            (requests, attempts)
        })
    };
    eventually(Duration::from_secs(60), "some cards posted", || {
        posted() >= 2
    })
    .await;
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(posted() < STORM_GROUPS, "the outage should land mid-storm");
    db.admin(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
        db.name
    ))
    .await;

    let (requests, attempts) = tokio::time::timeout(Duration::from_secs(120), storm)
        .await
        .expect("the storm finished")
        .unwrap();
    assert!(
        attempts > requests,
        "the outage refused some notifications ({attempts} attempts for {requests})"
    );
    let dead = drained(&db, Duration::from_secs(120)).await;

    let state = slack.sandbox.state();
    let posted = cards(&state, CHANNEL);
    let ids: HashSet<_> = posted.iter().map(|(_, id, _)| id.clone()).collect();
    assert_eq!(
        posted.len(),
        STORM_GROUPS,
        "one card per group: nothing lost, nothing twice"
    );
    assert_eq!(ids.len(), STORM_GROUPS);
    assert!(
        posted.iter().all(|(_, _, card)| is_resolved(card)),
        "every card ends resolved"
    );
    assert_eq!(dead, 0, "no dead letters");
    ackbar.stop().await;
}
