//! Acting on cards from Slack, end to end: the sandbox clicks buttons and
//! sends signed requests exactly as Slack would; ackbar changes the card,
//! replies in its thread and drives escalation policies.

mod common;

use std::time::Duration;

use ackbar::slack::sandbox::Signing;
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "test-signing-secret";
const ALICE: &str = "U0ALICE01";
const BOB: &str = "U0BOBBY01";
const MALLORY: &str = "U0MALLORY";

fn action_config(api_url: &str, db: &std::path::Path) -> Value {
    let mut config = test_config(api_url, db);
    config["slack"]["signing_secret"] = json!(SECRET);
    config
}

async fn setup(config_edit: impl FnOnce(&mut Value)) -> (Slack, Ackbar, tempfile::TempDir) {
    let mut options = sandbox_options(&[CHANNEL]);
    options.signing_secret = Some(SECRET.to_owned());
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = action_config(&slack.api_url, &dir.path().join("a.db"));
    config_edit(&mut config);
    let ackbar = start_ackbar(&config).await;
    slack.sandbox.set_app_url(Some(ackbar.base()));
    (slack, ackbar, dir)
}

/// Fires one alert and waits for its card; returns the card's ts.
async fn one_card(slack: &Slack, ackbar: &Ackbar) -> String {
    let r = post_webhook(
        &http(),
        &ackbar.url("/webhook/alertmanager"),
        &webhook("g", &[firing("A", "1")]),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    eventually(Duration::from_secs(10), "card posted", || {
        cards(&slack.sandbox.state(), CHANNEL).len() == 1
    })
    .await;
    cards(&slack.sandbox.state(), CHANNEL).remove(0).0
}

fn card(slack: &Slack) -> Value {
    cards(&slack.sandbox.state(), CHANNEL).remove(0).2
}

fn thread(slack: &Slack, ts: &str) -> Vec<String> {
    replies(&slack.sandbox.state(), CHANNEL, ts)
        .iter()
        .map(message_text)
        .collect()
}

fn has_button(card: &Value, action_id: &str) -> bool {
    card.to_string()
        .contains(&format!("\"action_id\":\"{action_id}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_wrongly_signed_stale_and_future_requests_are_refused_and_change_nothing() {
    let (slack, ackbar, _dir) = setup(|_| {}).await;
    let ts = one_card(&slack, &ackbar).await;
    let card_id = cards(&slack.sandbox.state(), CHANNEL)[0].1.clone();
    let payload = json!({
        "type": "block_actions",
        "user": { "id": ALICE },
        "actions": [{ "action_id": "ackbar_acknowledge", "value": card_id }]
    });
    let body = format!("payload={}", urlencode(&payload.to_string()));
    let event = json!({"type": "url_verification", "challenge": "c"}).to_string();
    let command = "command=%2Fackbar&text=ack&user_id=U0ALICE01&channel_id=C0TESTCHAN".to_owned();
    for (path, content_type, body) in [
        (
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            &body,
        ),
        (
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &command,
        ),
        ("/slack/events", "application/json", &event),
    ] {
        for signing in [
            Signing::None,
            Signing::WrongSecret,
            Signing::Stale,
            Signing::Future,
        ] {
            let r = slack
                .sandbox
                .send_raw(path, content_type, body.as_bytes(), signing)
                .await
                .unwrap();
            assert_eq!(r.status, 401, "{path} {signing:?}: {}", r.body);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !has_button(&card(&slack), "ackbar_unacknowledge"),
        "no acknowledgement happened"
    );
    assert!(thread(&slack, &ts).is_empty());
    // The same body, correctly signed, is accepted.
    let r = slack
        .sandbox
        .send_raw(
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            body.as_bytes(),
            Signing::Valid,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    ackbar.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledge_shows_who_replies_once_and_unacknowledge_takes_it_back() {
    let (slack, ackbar, _dir) = setup(|_| {}).await;
    let ts = one_card(&slack, &ackbar).await;

    // A double click: two clicks on the same rendering.
    let first = slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_acknowledge", ALICE)
        .await
        .unwrap();
    let second = slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_acknowledge", ALICE)
        .await
        .unwrap();
    assert_eq!((first.status, second.status), (200, 200));
    eventually(
        Duration::from_secs(10),
        "card shows the acknowledgement",
        || {
            let c = card(&slack);
            has_button(&c, "ackbar_unacknowledge")
                && message_text(&c).contains(&format!("<@{ALICE}>"))
        },
    )
    .await;
    eventually(Duration::from_secs(10), "one thread reply", || {
        thread(&slack, &ts).len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let replies = thread(&slack, &ts);
    assert_eq!(
        replies.len(),
        1,
        "a double click acknowledges once: {replies:?}"
    );
    assert!(replies[0].contains("Acknowledged by") && replies[0].contains(ALICE));

    slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_unacknowledge", BOB)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "Acknowledge button back", || {
        has_button(&card(&slack), "ackbar_acknowledge") && thread(&slack, &ts).len() == 2
    })
    .await;
    assert!(thread(&slack, &ts)[1].contains(BOB));
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_user_is_refused_ephemerally_and_nothing_changes() {
    let (slack, ackbar, _dir) = setup(|c| {
        c["routes"][0]["allowed"] = json!({ "acknowledge": [ALICE], "escalate": [ALICE] });
    })
    .await;
    let ts = one_card(&slack, &ackbar).await;
    let r = slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_acknowledge", MALLORY)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    eventually(
        Duration::from_secs(10),
        "an ephemeral refusal for the clicking user",
        || has_ephemeral(&slack, MALLORY, "not allowed"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        has_button(&card(&slack), "ackbar_acknowledge"),
        "still unacknowledged"
    );
    let refused = metric_where(
        &ackbar.base(),
        "ackbar_card_actions_total",
        "outcome=\"refused\"",
    )
    .await;
    assert!(refused >= 1.0, "the refusal is counted");
    assert!(thread(&slack, &ts).is_empty());

    slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_acknowledge", ALICE)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the allowed user acknowledges",
        || has_button(&card(&slack), "ackbar_unacknowledge"),
    )
    .await;
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalate_button_jumps_to_the_next_step_once_per_rendering() {
    let (slack, ackbar, _dir) = setup(|c| {
        c["routes"][0]["escalation"] = json!([
            { "after": "1h", "notify": [BOB] },
            { "after": "2h", "notify": ["S0OPSTEAM"] }
        ]);
    })
    .await;
    let ts = one_card(&slack, &ackbar).await;
    slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_escalate", ALICE)
        .await
        .unwrap();
    slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_escalate", ALICE)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "step 1 notified in the thread",
        || {
            thread(&slack, &ts)
                .iter()
                .any(|r| r.contains(&format!("<@{BOB}>")))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        thread(&slack, &ts).len(),
        1,
        "the second click on the same rendering changed nothing"
    );
    eventually(Duration::from_secs(10), "card shows step 1", || {
        message_text(&card(&slack)).contains("escalated to step 1")
    })
    .await;
    // A click on the updated card climbs to step 2 (a user group).
    slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_escalate", ALICE)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "step 2 notified", || {
        thread(&slack, &ts)
            .iter()
            .any(|r| r.contains("<!subteam^S0OPSTEAM>"))
    })
    .await;
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_card_climbs_by_itself_and_stops_when_acknowledged() {
    let (slack, ackbar, _dir) = setup(|c| {
        c["routes"][0]["escalation"] = json!([
            { "after": "1s", "notify": [ALICE] },
            { "after": "2s", "notify": [BOB] },
            { "after": "4s", "notify": ["S0OPSTEAM"] }
        ]);
    })
    .await;
    let ts = one_card(&slack, &ackbar).await;
    eventually(
        Duration::from_secs(10),
        "steps 1 and 2 fired in order",
        || {
            let t = thread(&slack, &ts).join("\n");
            let (a, b) = (t.find(&format!("<@{ALICE}>")), t.find(&format!("<@{BOB}>")));
            matches!((a, b), (Some(a), Some(b)) if a < b)
        },
    )
    .await;
    slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_acknowledge", BOB)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "acknowledged", || {
        has_button(&card(&slack), "ackbar_unacknowledge")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let t = thread(&slack, &ts).join("\n");
    assert!(
        !t.contains("S0OPSTEAM"),
        "an acknowledged card never escalates: {t}"
    );
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_card_never_escalates() {
    let (slack, ackbar, _dir) = setup(|c| {
        c["routes"][0]["escalation"] = json!([{ "after": "2s", "notify": [ALICE] }]);
    })
    .await;
    let ts = one_card(&slack, &ackbar).await;
    let r = post_webhook(
        &http(),
        &ackbar.url("/webhook/alertmanager"),
        &webhook("g", &[resolved("A", "1")]),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    eventually(Duration::from_secs(10), "resolved", || {
        is_resolved(&card(&slack))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !thread(&slack, &ts).join("\n").contains(ALICE),
        "a resolved card never escalates"
    );
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_escalation_step_fires_after_a_restart() {
    let mut options = sandbox_options(&[CHANNEL]);
    options.signing_secret = Some(SECRET.to_owned());
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = action_config(&slack.api_url, &dir.path().join("a.db"));
    config["routes"][0]["escalation"] = json!([{ "after": "3s", "notify": [ALICE] }]);
    let ackbar = start_ackbar(&config).await;
    let ts = one_card(&slack, &ackbar).await;
    ackbar.stop().await;
    assert!(
        thread(&slack, &ts).is_empty(),
        "the step was not due before the stop"
    );

    let ackbar = start_ackbar(&config).await;
    eventually(
        Duration::from_secs(15),
        "the step fires after the restart",
        || {
            thread(&slack, &ts)
                .iter()
                .any(|r| r.contains(&format!("<@{ALICE}>")))
        },
    )
    .await;
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_command_lists_acknowledges_and_tells_who_is_on_call() {
    let (slack, ackbar, _dir) = setup(|c| {
        c["oncall"] = json!([{ "name": "primary", "members": [BOB], "shift": "7d", "handoff": "09:00",
                               "timezone": "Europe/Berlin", "start": "2026-01-05" }]);
    })
    .await;
    let ts = one_card(&slack, &ackbar).await;
    let card_id = cards(&slack.sandbox.state(), CHANNEL)[0].1.clone();
    let short = &card_id[..8];

    let help = slack
        .sandbox
        .slash_command("/ackbar", "help", CHANNEL, ALICE)
        .await
        .unwrap();
    assert_eq!(help.status, 200);
    assert!(
        help.body.contains("list") && help.body.contains("oncall"),
        "{}",
        help.body
    );

    let list = slack
        .sandbox
        .slash_command("/ackbar", "list", CHANNEL, ALICE)
        .await
        .unwrap();
    assert_eq!(list.status, 200);
    eventually(
        Duration::from_secs(10),
        "the list arrives through response_url",
        || has_ephemeral(&slack, ALICE, short),
    )
    .await;

    let ack = slack
        .sandbox
        .slash_command("/ackbar", &format!("ack {short}"), CHANNEL, ALICE)
        .await
        .unwrap();
    assert!(ack.body.contains("Acknowledged"), "{}", ack.body);
    eventually(Duration::from_secs(10), "card acknowledged", || {
        has_button(&card(&slack), "ackbar_unacknowledge")
    })
    .await;
    eventually(Duration::from_secs(10), "thread says so", || {
        thread(&slack, &ts).len() == 1
    })
    .await;

    let oncall = slack
        .sandbox
        .slash_command("/ackbar", "oncall", CHANNEL, ALICE)
        .await
        .unwrap();
    assert!(
        oncall.body.contains("primary") && oncall.body.contains(BOB),
        "{}",
        oncall.body
    );

    let unknown = slack
        .sandbox
        .slash_command("/ackbar", "frobnicate", CHANNEL, ALICE)
        .await
        .unwrap();
    assert!(
        unknown.body.contains("Unknown subcommand"),
        "{}",
        unknown.body
    );

    let probe = slack
        .sandbox
        .send_raw(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            b"ssl_check=1&token=x",
            Signing::Valid,
        )
        .await
        .unwrap();
    assert_eq!(probe.status, 200);
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_verify_the_url_and_answer_a_mention_once_across_retries() {
    let (slack, ackbar, _dir) = setup(|_| {}).await;
    let ts = one_card(&slack, &ackbar).await;

    let challenge = slack.sandbox.url_verification("abc123").await.unwrap();
    assert_eq!(challenge.status, 200);
    assert!(challenge.body.contains("abc123"), "{}", challenge.body);

    let mention = json!({
        "type": "app_mention", "user": ALICE, "channel": CHANNEL, "text": "<@U0ACKBAR> status?",
        "ts": "1800000000.000200", "thread_ts": ts
    });
    let first = slack
        .sandbox
        .send_event(mention.clone(), Some("Ev0MENTION1"), None)
        .await
        .unwrap();
    let retry = slack
        .sandbox
        .send_event(mention, Some("Ev0MENTION1"), Some(1))
        .await
        .unwrap();
    assert_eq!((first.status, retry.status), (200, 200));
    eventually(
        Duration::from_secs(10),
        "a status reply in the thread",
        || {
            thread(&slack, &ts)
                .iter()
                .any(|r| r.contains("not acknowledged"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        thread(&slack, &ts).len(),
        1,
        "the retried delivery was handled once"
    );
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_step_with_dm_messages_each_user_a_link_to_the_card() {
    let (slack, ackbar, _dir) = setup(|c| {
        c["routes"][0]["escalation"] =
            json!([{ "after": "1h", "notify": [BOB, "S0OPSTEAM"], "dm": true }]);
    })
    .await;
    let ts = one_card(&slack, &ackbar).await;
    slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_escalate", ALICE)
        .await
        .unwrap();
    let dms = |state: &ackbar::slack::sandbox::SandboxState| -> Vec<String> {
        state
            .channels
            .iter()
            .filter(|(id, _)| id.starts_with('D'))
            .flat_map(|(_, ch)| {
                ch.messages
                    .iter()
                    .map(|m| message_text(&serde_json::to_value(m).unwrap()))
            })
            .collect()
    };
    eventually(
        Duration::from_secs(10),
        "a direct message to the user",
        || !dms(&slack.sandbox.state()).is_empty(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state = slack.sandbox.state();
    let messages = dms(&state);
    assert_eq!(
        messages.len(),
        1,
        "one DM: the user, not the user group: {messages:?}"
    );
    assert!(
        messages[0].contains("You were paged") && messages[0].contains("/archives/"),
        "{}",
        messages[0]
    );
    ackbar.stop().await;
}
