//! Route templates end to end: ackbar renders a route's card and reply
//! templates into the Slack sandbox, its own buttons keep working on a
//! templated card, and a template that fails for some alerts sends the
//! default card instead, counted in `/metrics`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "test-signing-secret";
const ALICE: &str = "U0ALICE01";
const FAILURES: &str = "ackbar_template_failures_total";

/// Sandbox and ackbar with one route `route` into [`CHANNEL`] whose
/// templates are `template`.
async fn setup(route: &str, template: Value) -> (Slack, Ackbar, tempfile::TempDir) {
    let mut options = sandbox_options(&[CHANNEL]);
    options.signing_secret = Some(SECRET.to_owned());
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("t.db"));
    config["slack"]["signing_secret"] = json!(SECRET);
    config["routes"] = json!([{"name": route, "channel": CHANNEL, "template": template}]);
    let ackbar = start_ackbar(&config).await;
    slack.sandbox.set_app_url(Some(ackbar.base()));
    (slack, ackbar, dir)
}

async fn fire(ackbar: &Ackbar, group: &str, alerts: &[TestAlert]) {
    let r = post_webhook(
        &http(),
        &ackbar.url("/webhook/alertmanager"),
        &webhook(group, alerts),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
}

/// The card of the alert named `name` once it is in the channel: its
/// fallback text says `[FIRING:N] NAME (severity)`.
async fn card_of(slack: &Slack, name: &str) -> (String, Value) {
    let find = || {
        cards(&slack.sandbox.state(), CHANNEL)
            .into_iter()
            .find(|(_, _, m)| {
                m["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(&format!("] {name} (")))
            })
    };
    eventually(Duration::from_secs(10), "card posted", || find().is_some()).await;
    let (ts, _, message) = find().unwrap();
    (ts, message)
}

fn block<'a>(message: &'a Value, block_id: &str) -> Option<&'a Value> {
    message["blocks"]
        .as_array()?
        .iter()
        .find(|b| b["block_id"] == block_id)
}

fn has_button(message: &Value, action_id: &str) -> bool {
    message["blocks"].as_array().is_some_and(|blocks| {
        blocks.iter().any(|b| {
            b["type"] == "actions"
                && b["elements"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|el| el["action_id"] == action_id))
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_templated_card_and_reply_reach_slack_and_the_buttons_still_work() {
    let card = r#"[{"type": "section", "block_id": "custom_summary", "text": {"type": "mrkdwn",
        "text": {{ "Custom: *" ~ title ~ "* in " ~ common_labels.group ~ " · " ~ counts.firing ~ " firing" ~ (" · acked by " ~ acked_by if acked_by else "") }}}}]"#;
    let reply = r#"[{"type": "section", "block_id": "custom_reply", "text": {"type": "mrkdwn",
        "text": {{ "Custom reply: " ~ events | map(attribute="kind") | join(", ") }}}}]"#;
    let (slack, ackbar, _dir) = setup(
        "custom",
        json!({"card": {"inline": card}, "reply": {"inline": reply}}),
    )
    .await;

    fire(&ackbar, "payments", &[firing("A", "1"), firing("A", "2")]).await;
    let (ts, message) = card_of(&slack, "A").await;
    let summary = block(&message, "custom_summary").expect("the template's block");
    assert_eq!(
        summary["text"]["text"], "Custom: *A* in payments · 2 firing",
        "{message:#}"
    );
    assert!(
        block(&message, "ackbar_header").is_none(),
        "not the default card"
    );
    assert!(has_button(&message, "ackbar_acknowledge"), "{message:#}");
    assert_eq!(
        message["text"].as_str().unwrap(),
        "[FIRING:2] A (critical) — A on 1"
    );

    // The appended Acknowledge button acts on the card like the default's.
    let clicked = slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_acknowledge", ALICE)
        .await
        .unwrap();
    assert_eq!(clicked.status, 200);
    eventually(
        Duration::from_secs(10),
        "card re-rendered as acknowledged",
        || {
            let (_, _, m) = cards(&slack.sandbox.state(), CHANNEL).remove(0);
            has_button(&m, "ackbar_unacknowledge")
        },
    )
    .await;
    let (_, _, message) = cards(&slack.sandbox.state(), CHANNEL).remove(0);
    assert_eq!(
        block(&message, "custom_summary").unwrap()["text"]["text"],
        format!("Custom: *A* in payments · 2 firing · acked by <@{ALICE}>")
    );
    eventually(
        Duration::from_secs(10),
        "templated reply in the thread",
        || {
            replies(&slack.sandbox.state(), CHANNEL, &ts)
                .iter()
                .any(|r| {
                    block(r, "custom_reply")
                        .is_some_and(|b| b["text"]["text"] == "Custom reply: acknowledged")
                })
        },
    )
    .await;
    assert_eq!(metric(&ackbar.base(), FAILURES).await, 0.0);
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_fallback_sends_the_default_card_and_counts_each_failure() {
    // Fine for group "good"; group "fuel" loops until the fuel runs out;
    // group "long" writes a header longer than Slack's 150 chars.
    let card = r#"{% if common_labels.group == "fuel" %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif -%}
        [{"type": "header", "block_id": "custom_header", "text": {"type": "plain_text",
          "text": {{ "Custom · " ~ title ~ " · " ~ alerts[0].labels.instance }}}}]"#;
    let (slack, ackbar, _dir) = setup("fallback", json!({"card": {"inline": card}})).await;

    let long_instance = "i".repeat(200);
    fire(&ackbar, "good", &[firing("A", "1")]).await;
    fire(&ackbar, "fuel", &[firing("B", "1")]).await;
    fire(&ackbar, "long", &[firing("C", &long_instance)]).await;

    let (_, good) = card_of(&slack, "A").await;
    assert_eq!(
        block(&good, "custom_header").unwrap()["text"]["text"],
        "Custom · A · 1"
    );
    for (group, name) in [("fuel", "B"), ("long", "C")] {
        let (_, message) = card_of(&slack, name).await;
        assert!(
            block(&message, "custom_header").is_none(),
            "{group}: {message:#}"
        );
        let header = block(&message, "ackbar_header").expect("the default card's header");
        assert!(
            header["text"]["text"]
                .as_str()
                .unwrap()
                .contains("CRITICAL"),
            "{group}: {header}"
        );
        assert!(has_button(&message, "ackbar_acknowledge"), "{group}");
    }
    assert_eq!(
        metric_where(&ackbar.base(), FAILURES, r#"route="fallback""#).await,
        2.0
    );
    assert_eq!(
        metric_where(&ackbar.base(), FAILURES, r#"kind="card""#).await,
        2.0
    );
    ackbar.stop().await;
}
