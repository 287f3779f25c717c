//! Webhook routes: a route with `webhook_url` delivers through the
//! sandbox's incoming-webhook endpoint: one new top-level message per card
//! change, without threads, buttons or metadata, paced and coalesced, with
//! Slack's answers mapped (429 waits, 404 dead-letters with the reason), and
//! the URL (a secret) shown nowhere.

mod common;

use std::time::Duration;

use ackbar::slack::sandbox::{RateLimit, SandboxState};
use ackbar::store::Store;
use common::*;
use serde_json::{Value, json};

const HOOK_CHANNEL: &str = "C0HOOKCH01";
/// Stands in for the secret part of a Slack webhook URL.
const HOOK_KEY: &str = "hookkey-5b7e1c";
const WAIT: Duration = Duration::from_secs(20);

fn hook_url(slack: &Slack, channel: &str) -> String {
    format!("{}/_hooks/{channel}/{HOOK_KEY}", slack.api_url)
}

/// One route for everything, delivered through the webhook into `channel`.
fn hook_config(slack: &Slack, channel: &str, db: &std::path::Path) -> Value {
    let mut config = test_config(&slack.api_url, db);
    config["routes"] = json!([{
        "name": "hooked",
        "channel": channel,
        "webhook_url": hook_url(slack, channel),
        "reopen_window": "1h"
    }]);
    config
}

/// Top-level messages in `channel`.
fn messages(state: &SandboxState, channel: &str) -> Vec<Value> {
    state
        .channels
        .get(channel)
        .map(|ch| {
            ch.messages
                .iter()
                .map(|m| serde_json::to_value(m).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// A webhook message: no thread, no buttons, no metadata.
fn assert_degraded(message: &Value) {
    assert_eq!(message["reply_count"], 0, "no thread: {message}");
    assert!(message["metadata"].is_null(), "no metadata: {message}");
    let blocks = message["blocks"].as_array().expect("blocks");
    assert!(!blocks.is_empty(), "the card's blocks are kept: {message}");
    assert!(
        blocks.iter().all(|b| b["type"] != "actions"),
        "no buttons: {message}"
    );
}

async fn dead_letters(db: &std::path::Path) -> Vec<ackbar::store::DeadLetter> {
    let store = ackbar::store::sqlite::SqliteStore::open(
        &format!("sqlite://{}", db.display()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    store.dead_letters(10).await.unwrap()
}

#[tokio::test]
async fn a_new_card_and_its_resolve_are_one_message_each() {
    let slack = start_slack(sandbox_options(&[HOOK_CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&hook_config(&slack, HOOK_CHANNEL, &dir.path().join("a.db"))).await;
    let client = http();
    let ingest = ackbar.url("/webhook/alertmanager");

    let r = post_webhook(
        &client,
        &ingest,
        &webhook("g1", &[firing("DiskFull", "db-1")]),
    )
    .await;
    assert!(r.status().is_success());
    eventually(WAIT, "the new card's message", || {
        messages(&slack.sandbox.state(), HOOK_CHANNEL).len() == 1
    })
    .await;
    let r = post_webhook(
        &client,
        &ingest,
        &webhook("g1", &[resolved("DiskFull", "db-1")]),
    )
    .await;
    assert!(r.status().is_success());
    eventually(WAIT, "the resolve's message", || {
        messages(&slack.sandbox.state(), HOOK_CHANNEL).len() == 2
    })
    .await;
    // Past the reply batching window: the resolve's reply sends nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let state = slack.sandbox.state();
    let sent = messages(&state, HOOK_CHANNEL);
    assert_eq!(sent.len(), 2, "one message per change: {sent:#?}");
    sent.iter().for_each(assert_degraded);
    assert!(!is_resolved(&sent[0]) && is_resolved(&sent[1]), "{sent:#?}");
    assert_eq!(state.counts["incoming_webhook"].ok, 2);
    assert!(
        dead_letters(&dir.path().join("a.db")).await.is_empty(),
        "the resolve's reply is skipped, not dead"
    );
    assert!(
        !state.counts.contains_key("chat.postMessage") && !state.counts.contains_key("chat.update"),
        "no Web API call for a webhook route: {:?}",
        state.counts
    );

    let metrics = http()
        .get(ackbar.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metric_in(&metrics, "ackbar_slack_calls_total", "incoming_webhook") >= 2.0);
    assert!(
        !metrics.contains(HOOK_KEY),
        "/metrics shows the webhook URL"
    );
    ackbar.stop().await;
}

#[tokio::test]
async fn a_storm_becomes_a_few_coalesced_messages() {
    let slack = start_slack(sandbox_options(&[HOOK_CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&hook_config(&slack, HOOK_CHANNEL, &dir.path().join("a.db"))).await;
    let client = http();
    let ingest = ackbar.url("/webhook/alertmanager");
    const STEPS: usize = 40;
    for n in 1..=STEPS {
        let alerts: Vec<_> = (0..n)
            .map(|i| firing("Storm", &format!("host-{i:02}")))
            .collect();
        let r = post_webhook(&client, &ingest, &webhook("storm", &alerts)).await;
        assert!(r.status().is_success());
    }
    let db = dir.path().join("a.db");
    eventually_async(WAIT, "the outbox drained", || async {
        count_rows(&db, "outbox").await == 0
    })
    .await;
    let sent = messages(&slack.sandbox.state(), HOOK_CHANNEL);
    // A message per second at most, each showing the card as it is then:
    // far fewer than the changes.
    assert!(
        !sent.is_empty() && sent.len() <= STEPS / 4,
        "{} messages for {STEPS} changes",
        sent.len()
    );
    sent.iter().for_each(assert_degraded);
    let last = message_text(sent.last().unwrap());
    assert!(
        last.contains(&STEPS.to_string()),
        "the last shows every alert: {last}"
    );
    ackbar.stop().await;
}

#[tokio::test]
async fn a_429_is_waited_out() {
    let mut options = sandbox_options(&[HOOK_CHANNEL]);
    options.post_per_channel = RateLimit {
        max: 1,
        per: Duration::from_secs(3),
    };
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&hook_config(&slack, HOOK_CHANNEL, &dir.path().join("a.db"))).await;
    let client = http();
    let ingest = ackbar.url("/webhook/alertmanager");
    post_webhook(
        &client,
        &ingest,
        &webhook("g1", &[firing("DiskFull", "db-1")]),
    )
    .await;
    eventually(WAIT, "the card's message", || {
        messages(&slack.sandbox.state(), HOOK_CHANNEL).len() == 1
    })
    .await;
    post_webhook(
        &client,
        &ingest,
        &webhook("g1", &[resolved("DiskFull", "db-1")]),
    )
    .await;
    eventually(WAIT, "the resolve's message after the 429", || {
        messages(&slack.sandbox.state(), HOOK_CHANNEL).len() == 2
    })
    .await;
    let state = slack.sandbox.state();
    assert!(
        state.counts["incoming_webhook"].ratelimited >= 1,
        "the sandbox answered 429: {:?}",
        state.counts
    );
    assert_eq!(state.retry_after_violations, 0, "Retry-After was honoured");
    assert!(dead_letters(&dir.path().join("a.db")).await.is_empty());
    ackbar.stop().await;
}

#[tokio::test]
async fn an_unknown_channel_dead_letters_with_the_reason_not_the_url() {
    // The sandbox knows only CHANNEL: the hook's channel answers 404.
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let ackbar = start_ackbar(&hook_config(&slack, HOOK_CHANNEL, &db)).await;
    post_webhook(
        &http(),
        &ackbar.url("/webhook/alertmanager"),
        &webhook("g1", &[firing("DiskFull", "db-1")]),
    )
    .await;
    eventually_async(WAIT, "a dead letter", || async {
        !dead_letters(&db).await.is_empty()
    })
    .await;
    let letters = dead_letters(&db).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].attempts, 1, "a 404 is not retried: {letters:?}");
    assert!(
        letters[0].error.contains("channel_not_found"),
        "{letters:?}"
    );
    assert!(!letters[0].error.contains(HOOK_KEY), "{letters:?}");
    assert_eq!(slack.sandbox.state().counts["incoming_webhook"].error, 1);
    ackbar.stop().await;
}

#[tokio::test]
async fn bot_token_and_webhook_routes_each_deliver_their_way() {
    let slack = start_slack(sandbox_options(&[CHANNEL, HOOK_CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("a.db"));
    config["routes"] = json!([
        {
            "name": "hooked",
            "matchers": ["group=hooked"],
            "channel": HOOK_CHANNEL,
            "webhook_url": hook_url(&slack, HOOK_CHANNEL)
        },
        { "name": "bot", "channel": CHANNEL }
    ]);
    let ackbar = start_ackbar(&config).await;
    let client = http();
    let ingest = ackbar.url("/webhook/alertmanager");
    for group in ["hooked", "botted"] {
        post_webhook(
            &client,
            &ingest,
            &webhook(group, &[firing("DiskFull", "db-1")]),
        )
        .await;
    }
    eventually(WAIT, "both cards", || {
        let state = slack.sandbox.state();
        cards(&state, CHANNEL).len() == 1 && messages(&state, HOOK_CHANNEL).len() == 1
    })
    .await;
    let state = slack.sandbox.state();
    let (_, _, bot_card) = cards(&state, CHANNEL).remove(0);
    assert!(
        bot_card["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "actions"),
        "the bot-token card keeps its buttons: {bot_card}"
    );
    assert!(message_text(&bot_card).contains("route bot"), "{bot_card}");
    let hooked = &messages(&state, HOOK_CHANNEL)[0];
    assert_degraded(hooked);
    assert!(message_text(hooked).contains("route hooked"), "{hooked}");
    assert_eq!(state.counts["chat.postMessage"].ok, 1);
    assert_eq!(state.counts["incoming_webhook"].ok, 1);
    ackbar.stop().await;
}
