//! Embedded mode end to end: a host's `tracing` errors go through the Layer
//! into an in-process Bridge, which posts cards to its own sandbox.

mod common;

use std::time::Duration;

use ackbar::config::Config;
use ackbar::slack::sandbox::SandboxState;
use ackbar::{Bridge, layer};
use serde_json::{Value, json};
use tracing_subscriber::prelude::*;

use common::{cards, eventually_async, get_json, http, is_resolved, message_text, replies};

/// The catch-all route's channel in sandbox mode.
const CHANNEL: &str = ackbar::config::DEFAULT_CHANNEL;

/// Fast pacing so that a run takes seconds; sandbox mode (no token).
fn config(quiet: &str) -> Config {
    let config = json!({
        "delivery": {
            "post_interval": "20ms",
            "update_interval": "250ms",
            "update_burst": 1,
            "reply_batch_window": "200ms",
            "backoff_base": "50ms",
            "backoff_max": "500ms",
            "shutdown_deadline": "2s"
        },
        "routes": [ { "name": "service", "channel": CHANNEL, "quiet_period": quiet } ]
    });
    Config::from_json(&config.to_string()).unwrap()
}

async fn state(bridge_url: &str) -> SandboxState {
    get_json(&format!("{bridge_url}/sandbox/api/state")).await
}

fn card_with(state: &SandboxState, text: &str) -> Option<(String, Value)> {
    cards(state, CHANNEL)
        .into_iter()
        .find(|(_, _, m)| message_text(m).contains(text))
        .map(|(ts, _, m)| (ts, m))
}

async fn thread_has(url: &str, ts: &str, text: &str) -> bool {
    replies(&state(url).await, CHANNEL, ts)
        .iter()
        .any(|r| message_text(r).contains(text))
}

async fn wait_for_card(url: &str, text: &str, what: &str) -> (String, Value) {
    eventually_async(Duration::from_secs(20), what, || async {
        card_with(&state(url).await, text).is_some()
    })
    .await;
    card_with(&state(url).await, text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_error_is_one_card_counting_every_occurrence() {
    let bridge = Bridge::builder()
        .config(config("1h"))
        .store_in_memory()
        .build()
        .unwrap();
    let url = bridge.url();
    let (layer, guard) = layer().queue_capacity(4096).build_with(bridge).unwrap();
    // The subscriber owns the layer: it stays installed for the whole test
    // (dropping it would close the queue and stop the bridge).
    let _installed = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    for order in 0..1000 {
        tracing::error!(order, "payment failed");
    }
    tracing::error!("inventory unavailable");
    // Below the layer's level: no card.
    tracing::warn!("slow payment");

    let (ts, card) =
        wait_for_card(&url, "seen 1000 times", "the card counts 1,000 occurrences").await;
    let text = message_text(&card);
    assert!(text.contains("payment failed"), "{text}");
    let now = state(&url).await;
    assert_eq!(cards(&now, CHANNEL).len(), 2, "one card per distinct error");
    assert!(card_with(&now, "inventory unavailable").is_some());
    assert!(card_with(&now, "slow payment").is_none());
    let updates = now.counts.get("chat.update").map_or(0, |c| c.total());
    assert!(
        updates < 50,
        "occurrences coalesce into paced updates, not one per event: {updates}"
    );
    // The first occurrence's fields are in the thread.
    eventually_async(
        Duration::from_secs(10),
        "the first occurrence's fields in the thread",
        || thread_has(&url, &ts, "order = 0"),
    )
    .await;

    // Resolve from Slack: the card offers it because a service's errors
    // never say they are over.
    let clicked = http()
        .post(format!("{url}/sandbox/api/_act/click"))
        .json(&json!({
            "channel": CHANNEL,
            "message_ts": ts,
            "action_id": "ackbar_resolve",
            "user": "U0ONCALL01"
        }))
        .send()
        .await
        .unwrap();
    assert!(clicked.status().is_success(), "{:?}", clicked.text().await);
    eventually_async(Duration::from_secs(10), "the card resolves", || async {
        card_with(&state(&url).await, "payment failed").is_some_and(|(_, m)| is_resolved(&m))
    })
    .await;
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_that_stays_away_for_the_quiet_period_resolves_its_card() {
    let bridge = Bridge::builder()
        .config(config("1s"))
        .store_in_memory()
        .build()
        .unwrap();
    let url = bridge.url();
    let (layer, guard) = layer().build_with(bridge).unwrap();
    let _installed = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    tracing::error!(attempt = 1, "cache unreachable");
    let (ts, card) = wait_for_card(&url, "cache unreachable", "the card is posted").await;
    assert!(!is_resolved(&card));
    eventually_async(
        Duration::from_secs(15),
        "the quiet card resolves",
        || async {
            card_with(&state(&url).await, "cache unreachable").is_some_and(|(_, m)| is_resolved(&m))
        },
    )
    .await;
    eventually_async(
        Duration::from_secs(10),
        "the thread says it resolved",
        || thread_has(&url, &ts, "resolved"),
    )
    .await;
    drop(guard);
}

#[test]
fn the_guard_flushes_into_the_bridge_in_a_host_without_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("embedded.db");
    let bridge = Bridge::builder()
        .config(config("1h"))
        .store_path(&db)
        .build()
        .unwrap();
    let (layer, guard) = layer().build_with(bridge).unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::error!("disk full");
    });
    // Dropping the guard flushes the queue into the store before the bridge
    // stops: the card is durable even though nobody waited for it.
    drop(guard);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cards = runtime.block_on(async {
        let store = ackbar::store::open(
            &format!("sqlite://{}", db.display()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        store.firing_cards(10).await.unwrap()
    });
    assert_eq!(cards.len(), 1);
    assert!(cards[0].title.contains("disk full"), "{:?}", cards[0]);
}
