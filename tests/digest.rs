//! Scheduled digests end to end: alerts fired, acknowledged and resolved
//! through the real paths (webhook, a signed button click), then ackbar
//! restarted with a daily digest due a few seconds later (UTC, `HH:MM:SS`)
//! posts the channel's figures to the sandbox, once.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "test-signing-secret";
const ALICE: &str = "U0ALICE01";

/// A webhook for one group whose alerts all share `name`, starting now (a
/// digest counts alerts by when they started).
fn group(group: &str, name: &str, instances: &[&str], firing_now: bool) -> Value {
    let alerts: Vec<TestAlert> = instances
        .iter()
        .map(|i| {
            if firing_now {
                firing(name, i)
            } else {
                resolved(name, i)
            }
        })
        .collect();
    let mut body = webhook(group, &alerts);
    body["commonLabels"]["alertname"] = json!(name);
    let now = chrono::Utc::now().to_rfc3339();
    for alert in body["alerts"].as_array_mut().unwrap() {
        alert["startsAt"] = json!(now);
    }
    body
}

fn digests(slack: &Slack) -> Vec<String> {
    let state = slack.sandbox.state();
    state
        .channels
        .get(CHANNEL)
        .map(|ch| {
            ch.messages
                .iter()
                .map(|m| message_text(&serde_json::to_value(m).unwrap()))
                .filter(|text| text.starts_with("Daily digest"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_digest_reports_the_channels_figures_once() {
    let mut options = sandbox_options(&[CHANNEL]);
    options.signing_secret = Some(SECRET.to_owned());
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("d.db"));
    config["slack"]["signing_secret"] = json!(SECRET);

    // First run, no digest configured: three cards, one acknowledged by a
    // click, one resolved by Alertmanager.
    let ackbar = start_ackbar(&config).await;
    slack.sandbox.set_app_url(Some(ackbar.base()));
    let client = http();
    for body in [
        group("disk", "DiskFull", &["a", "b"], true),
        group("latency", "HighLatency", &["a"], true),
        group("cpu", "CpuHot <!channel>", &["a"], true),
    ] {
        let r = post_webhook(&client, &ackbar.url("/webhook/alertmanager"), &body).await;
        assert_eq!(r.status().as_u16(), 200);
    }
    eventually(Duration::from_secs(10), "three cards posted", || {
        cards(&slack.sandbox.state(), CHANNEL).len() == 3
    })
    .await;
    let disk = cards(&slack.sandbox.state(), CHANNEL)
        .into_iter()
        .find(|(_, _, m)| message_text(m).contains("DiskFull"))
        .unwrap()
        .0;
    let click = slack
        .sandbox
        .click(CHANNEL, &disk, "ackbar_acknowledge", ALICE)
        .await
        .unwrap();
    assert_eq!(click.status, 200);
    let r = post_webhook(
        &client,
        &ackbar.url("/webhook/alertmanager"),
        &group("latency", "HighLatency", &["a"], false),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    eventually(Duration::from_secs(10), "acknowledged and resolved", || {
        let state = slack.sandbox.state();
        let cards = cards(&state, CHANNEL);
        cards.iter().any(|(_, _, m)| is_resolved(m))
            && cards
                .iter()
                .any(|(_, _, m)| message_text(m).contains(ALICE))
    })
    .await;
    ackbar.stop().await;

    // Restart with a daily digest due a few seconds from now.
    let due = chrono::Utc::now() + chrono::Duration::seconds(4);
    config["digests"] = json!([{
        "channel": CHANNEL,
        "every": "day",
        "at": due.format("%H:%M:%S").to_string(),
    }]);
    let ackbar = start_ackbar(&config).await;
    eventually(Duration::from_secs(20), "the digest is posted", || {
        !digests(&slack).is_empty()
    })
    .await;
    let digest = digests(&slack).remove(0);
    for expected in [
        "*Fired*\n3",
        "*Resolved*\n1",
        "*Acknowledged*\n1",
        "*Firing now*\n2",
        "• DiskFull ×2",
        "• HighLatency ×1",
        "|DiskFull> · firing for",
    ] {
        assert!(
            digest.contains(expected),
            "{expected:?} missing from {digest}"
        );
    }
    assert!(
        !digest.contains("<!channel>"),
        "alert text never pings: {digest}"
    );
    assert!(digest.contains("CpuHot &lt;!channel&gt;"), "{digest}");

    // Polled again after its instant, the timer sends nothing more.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(digests(&slack).len(), 1);
    ackbar.stop().await;
}

/// A digest post whose answer was lost after Slack applied it (a dropped
/// connection) is found in the channel's history by its metadata, not
/// posted a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_whose_answer_was_lost_is_reconciled_not_posted_twice() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("r.db"));
    let due = chrono::Utc::now() + chrono::Duration::seconds(3);
    config["digests"] = json!([{
        "channel": CHANNEL,
        "every": "day",
        "at": due.format("%H:%M:%S").to_string(),
    }]);
    let ackbar = start_ackbar(&config).await;
    // Every call's connection is cut, half of them after Slack applied it;
    // with seed 1 the first (the digest's post) is cut after. From then on
    // the digest is flagged for reconciling, and history reads are cut too.
    slack
        .sandbox
        .set_faults(ackbar::slack::sandbox::Faults {
            drop_rate: 1.0,
            seed: Some(1),
            ..Default::default()
        })
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "a digest posted whose answer was lost",
        || {
            slack.sandbox.state().calls.iter().any(|c| {
                c.method == "chat.postMessage"
                    && c.applied
                    && c.outcome == ackbar::slack::sandbox::Outcome::FaultDrop
            })
        },
    )
    .await;
    assert_eq!(digests(&slack).len(), 1);
    slack.sandbox.set_faults(Default::default()).unwrap();
    eventually(Duration::from_secs(20), "a call answered again", || {
        let calls = slack.sandbox.state().calls;
        calls
            .iter()
            .any(|c| c.outcome == ackbar::slack::sandbox::Outcome::Ok)
    })
    .await;
    // Time for a second post, were one coming (the test config's backoff
    // is at most 500 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(digests(&slack).len(), 1, "posted once");
    let history_read = slack.sandbox.state().calls.iter().any(|c| {
        c.method == "conversations.history" && c.outcome == ackbar::slack::sandbox::Outcome::Ok
    });
    assert!(history_read, "found by reconciling");
    ackbar.stop().await;
}
