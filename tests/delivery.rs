//! Delivery under load and faults: storms, rate limits, 5xx and dropped
//! connections. After each: one card per group, every final state right.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use ackbar::slack::sandbox::{Faults, RateLimit, SandboxState};
use ackbar::store::Store;
use common::*;
use serde_json::json;

const GROUPS: usize = 20;
const ALERTS_PER_GROUP: usize = 100;
const CHANNEL_B: &str = "C0TESTCHB2";

fn group(i: usize) -> String {
    format!("storm-{i:02}")
}

/// Routes even groups to CHANNEL and odd ones to CHANNEL_B.
fn storm_config(api_url: &str, db: &std::path::Path) -> serde_json::Value {
    let mut config = test_config(api_url, db);
    config["routes"] = json!([
        { "name": "even", "matchers": ["group=~storm-.[02468]"], "channel": CHANNEL },
        { "name": "odd", "matchers": [], "channel": CHANNEL_B }
    ]);
    config
}

/// Sends every group's alerts in cumulative steps (as Alertmanager does when
/// a group grows), all groups concurrently, then resolves everything.
async fn storm(url: &str) {
    let client = http();
    let steps = [25, 50, 100];
    let mut tasks = Vec::new();
    for g in 0..GROUPS {
        let client = client.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            for &n in &steps {
                let alerts: Vec<_> = (0..n)
                    .map(|i| firing("StormAlert", &format!("host-{i:03}")))
                    .collect();
                send_until_accepted(&client, &url, &webhook(&group(g), &alerts)).await;
            }
            let alerts: Vec<_> = (0..ALERTS_PER_GROUP)
                .map(|i| resolved("StormAlert", &format!("host-{i:03}")))
                .collect();
            send_until_accepted(&client, &url, &webhook(&group(g), &alerts)).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// What Alertmanager does: retry until a 2xx.
async fn send_until_accepted(client: &reqwest::Client, url: &str, body: &serde_json::Value) {
    for _ in 0..100 {
        match client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("webhook never accepted");
}

/// Every group has exactly one card, resolved, without buttons, and its
/// thread holds the resolve.
fn assert_final_state(state: &SandboxState) {
    let mut by_group: BTreeMap<String, usize> = BTreeMap::new();
    for channel in [CHANNEL, CHANNEL_B] {
        for (ts, _, card) in cards(state, channel) {
            let text = message_text(&card);
            let key = card["metadata"]["event_payload"]["card_key"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let g = (0..GROUPS)
                .map(group)
                .find(|g| key.contains(&format!("\"{g}\"")));
            let g = g.unwrap_or_else(|| panic!("card key names no storm group: {key}"));
            *by_group.entry(g.clone()).or_default() += 1;
            assert!(is_resolved(&card), "{g}: card is not resolved: {text}");
            assert!(
                !card.to_string().contains("ackbar_acknowledge"),
                "{g}: resolved card keeps its buttons"
            );
            let thread: Vec<String> = replies(state, channel, &ts)
                .iter()
                .map(message_text)
                .collect();
            assert!(
                thread.iter().any(|r| r.to_lowercase().contains("resolved")),
                "{g}: no resolve reply in the thread: {thread:?}"
            );
        }
    }
    assert_eq!(by_group.len(), GROUPS, "one card per group: {by_group:?}");
    assert!(
        by_group.values().all(|&n| n == 1),
        "duplicate cards: {by_group:?}"
    );
}

/// Waits until every card of the storm shows resolved, then until the
/// ackbar at `base` has nothing left to send (the last replies).
async fn settled_and_drained(slack: &Slack, base: &str) {
    eventually(Duration::from_secs(120), "every card resolved", || {
        settled(&slack.sandbox.state())
    })
    .await;
    eventually_async(Duration::from_secs(60), "outbox drained", || async {
        metric(base, "ackbar_outbox_pending").await == 0.0
    })
    .await;
}

fn settled(state: &SandboxState) -> bool {
    let resolved_cards = [CHANNEL, CHANNEL_B]
        .iter()
        .flat_map(|c| cards(state, c))
        .filter(|(_, _, card)| is_resolved(card))
        .count();
    resolved_cards >= GROUPS
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_2000_alerts_in_20_groups_is_paced_and_honours_429() {
    let mut options = sandbox_options(&[CHANNEL, CHANNEL_B]);
    // Stricter than ackbar's test pacing (50/s), so 429s happen.
    options.post_per_channel = RateLimit {
        max: 10,
        per: Duration::from_secs(1),
    };
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&storm_config(&slack.api_url, &dir.path().join("a.db"))).await;

    storm(&ackbar.url("/webhook/alertmanager")).await;
    settled_and_drained(&slack, &ackbar.base()).await;
    let state = slack.sandbox.state();
    assert_final_state(&state);
    assert_eq!(
        state.retry_after_violations, 0,
        "a request was sent before its Retry-After elapsed"
    );
    let ratelimited = metric(&ackbar.base(), "ackbar_slack_ratelimited_total").await;
    assert!(
        ratelimited > 0.0,
        "the storm should have met the sandbox's rate limit"
    );
    // Batching: far fewer replies than alert changes (2,000 resolves).
    let mut replies_total = 0;
    for channel in [CHANNEL, CHANNEL_B] {
        for (ts, _, _) in cards(&state, channel) {
            replies_total += replies(&state, channel, &ts).len();
        }
    }
    assert!(
        replies_total <= GROUPS * 4,
        "replies were not batched: {replies_total}"
    );
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_failing_one_call_in_five_reaches_the_same_final_state_without_duplicates() {
    let mut options = sandbox_options(&[CHANNEL, CHANNEL_B]);
    options.faults = Faults {
        error_rate: 0.1,
        drop_rate: 0.1,
        ..Faults::default()
    };
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&storm_config(&slack.api_url, &dir.path().join("a.db"))).await;

    storm(&ackbar.url("/webhook/alertmanager")).await;
    settled_and_drained(&slack, &ackbar.base()).await;
    let state = slack.sandbox.state();
    assert_final_state(&state);
    assert_eq!(
        metric(&ackbar.base(), "ackbar_outbox_dead").await,
        0.0,
        "no dead letters"
    );
    ackbar.stop().await;
}

/// Slack answering some calls only after ackbar's client gave up: the call
/// still happens (the sandbox applies it apart from the closed connection,
/// as Slack does), so a timed-out card post may exist although ackbar saw
/// no ts. Retries wait a timeout's length, then reconcile it from the
/// channel's history instead of posting the card again. (A call applied
/// later than twice the timeout after its sending can still show twice:
/// Slack's API has no idempotency key for chat.postMessage.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_answering_after_the_client_timeout_reaches_the_same_final_state_without_duplicates()
{
    let mut options = sandbox_options(&[CHANNEL, CHANNEL_B]);
    options.faults = Faults {
        delay: Duration::from_millis(900),
        delay_rate: 0.15,
        ..Faults::default()
    };
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = storm_config(&slack.api_url, &dir.path().join("a.db"));
    config["slack"]["request_timeout"] = json!("500ms");
    let ackbar = start_ackbar(&config).await;

    storm(&ackbar.url("/webhook/alertmanager")).await;
    settled_and_drained(&slack, &ackbar.base()).await;
    assert!(
        metric_where(
            &ackbar.base(),
            "ackbar_slack_calls_total",
            "outcome=\"retry\""
        )
        .await
            > 0.0,
        "some calls timed out and were retried"
    );
    let state = slack.sandbox.state();
    assert_final_state(&state);
    assert_eq!(
        metric(&ackbar.base(), "ackbar_outbox_dead").await,
        0.0,
        "no dead letters"
    );
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_storm_then_restart_loses_nothing_and_duplicates_nothing() {
    let mut options = sandbox_options(&[CHANNEL, CHANNEL_B]);
    // Slow Slack down so that the kill lands with work in flight and queued.
    options.post_per_channel = RateLimit {
        max: 5,
        per: Duration::from_secs(1),
    };
    options.faults = Faults {
        delay: Duration::from_millis(150),
        delay_rate: 0.5,
        ..Faults::default()
    };
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let config = storm_config(&slack.api_url, &dir.path().join("a.db"));
    let port = free_port();
    let mut first = start_ackbar_process(&config, dir.path(), port).await;
    let url = first.url("/webhook/alertmanager");

    // The storm retries refused or failed requests, as Alertmanager does.
    let storm_task = tokio::spawn(async move { storm(&url).await });
    eventually(Duration::from_secs(30), "some cards posted", || {
        let state = slack.sandbox.state();
        cards(&state, CHANNEL).len() + cards(&state, CHANNEL_B).len() >= 4
    })
    .await;
    first.kill().await;
    let posted_before_kill = {
        let state = slack.sandbox.state();
        cards(&state, CHANNEL).len() + cards(&state, CHANNEL_B).len()
    };
    assert!(
        posted_before_kill < GROUPS,
        "the kill should land mid-storm"
    );

    let second = start_ackbar_process(&config, dir.path(), port).await;
    tokio::time::timeout(Duration::from_secs(90), storm_task)
        .await
        .expect("storm finished")
        .unwrap();
    settled_and_drained(&slack, &format!("http://{}", second.addr)).await;
    assert_final_state(&slack.sandbox.state());
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_a_full_outbox_delivers_everything_once() {
    let mut options = sandbox_options(&[CHANNEL, CHANNEL_B]);
    // Slack is down while the storm arrives: everything waits in the outbox.
    options.faults = Faults {
        error_rate: 1.0,
        ..Faults::default()
    };
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let config = storm_config(&slack.api_url, &db);
    let ackbar = start_ackbar(&config).await;
    storm(&ackbar.url("/webhook/alertmanager")).await;
    ackbar.stop().await;

    let store = ackbar::store::sqlite::SqliteStore::open(
        &format!("sqlite://{}", db.display()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let full = store.outbox_summary().await.unwrap();
    assert!(
        full.pending >= GROUPS as u64,
        "every card still waits to be posted: {full:?}"
    );
    assert!(cards(&slack.sandbox.state(), CHANNEL).is_empty());

    // Slack is back; a new process on the same database delivers it all.
    slack.sandbox.set_faults(Faults::default()).unwrap();
    let ackbar = start_ackbar(&config).await;
    eventually(Duration::from_secs(90), "every card resolved", || {
        settled(&slack.sandbox.state())
    })
    .await;
    eventually_async(Duration::from_secs(60), "outbox drained", || async {
        store.outbox_summary().await.unwrap().pending == 0
    })
    .await;
    assert_eq!(
        store.outbox_summary().await.unwrap().dead,
        0,
        "no dead letters"
    );
    assert_final_state(&slack.sandbox.state());
    store.close().await;
    ackbar.stop().await;
}

/// `chat.update` is one scope for the whole workspace: when cards of
/// several channels change at once, their updates leave one at a time, so
/// the 429 one of them meets pauses the others before they are sent (none
/// is already on its way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_of_several_channels_go_out_one_at_a_time_so_a_429_holds_the_others() {
    const CHANNELS: [&str; 4] = ["C0UPDATE01", "C0UPDATE02", "C0UPDATE03", "C0UPDATE04"];
    let mut options = sandbox_options(&CHANNELS);
    // One update per second: the second of a burst is refused.
    options.update_limit = ackbar::slack::sandbox::RateLimit {
        max: 1,
        per: Duration::from_secs(1),
    };
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("a.db"));
    config["routes"] = CHANNELS
        .iter()
        .enumerate()
        .map(|(i, channel)| json!({ "name": format!("r{i}"), "matchers": [format!("group=u-{i}")], "channel": channel }))
        .collect();
    let ackbar = start_ackbar(&config).await;
    let url = ackbar.url("/webhook/alertmanager");
    let client = http();
    let send_all = |alerts: Vec<TestAlert>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let sends = (0..CHANNELS.len()).map(|i| {
                let body = webhook(&format!("u-{i}"), &alerts);
                let (client, url) = (client.clone(), url.clone());
                async move { send_until_accepted(&client, &url, &body).await }
            });
            futures_util::future::join_all(sends).await;
        }
    };
    send_all(vec![firing("Disk", "h1")]).await;
    eventually(Duration::from_secs(20), "a card in every channel", || {
        let state = slack.sandbox.state();
        CHANNELS.iter().all(|c| cards(&state, c).len() == 1)
    })
    .await;
    // Every card changes at once: their updates fall due together.
    send_all(vec![firing("Disk", "h1"), firing("Disk", "h2")]).await;
    eventually(Duration::from_secs(30), "every card updated", || {
        let state = slack.sandbox.state();
        CHANNELS.iter().all(|c| {
            cards(&state, c).iter().all(|(_, _, card)| {
                card["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("[FIRING:2]"))
            })
        })
    })
    .await;
    let state = slack.sandbox.state();
    assert!(
        state.count("chat.update").ratelimited > 0,
        "the updates should have met the limit: {:?}",
        state.count("chat.update")
    );
    assert_eq!(
        state.retry_after_violations, 0,
        "an update left before the Retry-After another one was given"
    );
    ackbar.stop().await;
}
