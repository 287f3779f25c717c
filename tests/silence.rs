//! Silencing a card's alerts from Slack, end to end: the sandbox clicks the
//! card's Silence button and submits the modal as Slack would; ackbar
//! creates the silence in the real Alertmanager (Debian's
//! `prometheus-alertmanager`) and threads who silenced it, until when, and
//! the silence id.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "test-signing-secret";
const ALICE: &str = "U0ALICE01";
const MALLORY: &str = "U0MALLORY";
const DURATION_BLOCK: &str = "ackbar_silence_duration";
const COMMENT_BLOCK: &str = "ackbar_silence_comment";

async fn setup(alertmanager_url: Option<&str>, config_edit: impl FnOnce(&mut Value)) -> Setup {
    let mut options = sandbox_options(&[CHANNEL]);
    options.signing_secret = Some(SECRET.to_owned());
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("a.db"));
    config["slack"]["signing_secret"] = json!(SECRET);
    if let Some(url) = alertmanager_url {
        config["routes"][0]["alertmanager_url"] = json!(url);
    }
    config_edit(&mut config);
    let ackbar = start_ackbar(&config).await;
    slack.sandbox.set_app_url(Some(ackbar.base()));
    Setup {
        slack,
        ackbar,
        _dir: dir,
    }
}

struct Setup {
    slack: Slack,
    ackbar: Ackbar,
    _dir: tempfile::TempDir,
}

/// Fires one alert (group `g`) and waits for its card; returns (ts, card id).
async fn one_card(s: &Setup) -> (String, String) {
    let r = post_webhook(
        &http(),
        &s.ackbar.url("/webhook/alertmanager"),
        &webhook("g", &[firing("DiskFull", "db-1")]),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    eventually(Duration::from_secs(10), "card posted", || {
        cards(&s.slack.sandbox.state(), CHANNEL).len() == 1
    })
    .await;
    let (ts, id, _) = cards(&s.slack.sandbox.state(), CHANNEL).remove(0);
    (ts, id)
}

fn card(s: &Setup) -> Value {
    cards(&s.slack.sandbox.state(), CHANNEL).remove(0).2
}

fn has_button(card: &Value, action_id: &str) -> bool {
    card.to_string()
        .contains(&format!("\"action_id\":\"{action_id}\""))
}

fn thread(s: &Setup, ts: &str) -> Vec<String> {
    replies(&s.slack.sandbox.state(), CHANNEL, ts)
        .iter()
        .map(message_text)
        .collect()
}

/// The modals the sandbox holds for `user`: (id, view JSON, closed, errors).
fn views_of(s: &Setup, user: &str) -> Vec<(String, Value, bool, Option<Value>)> {
    s.slack
        .sandbox
        .state()
        .views
        .iter()
        .filter(|v| v.user == user)
        .map(|v| (v.id.clone(), v.view.clone(), v.closed, v.errors.clone()))
        .collect()
}

/// Clicks Silence as `user`; returns the id of the modal it opened.
async fn open_modal(s: &Setup, ts: &str, user: &str) -> String {
    let r = s
        .slack
        .sandbox
        .click(CHANNEL, ts, "ackbar_silence", user)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.elapsed_ms < 3000,
        "answered within Slack's 3 s: {}",
        r.elapsed_ms
    );
    let views = views_of(s, user);
    assert_eq!(views.len(), 1, "one modal open: {views:?}");
    let (id, view, closed, _) = views.into_iter().next().unwrap();
    assert!(!closed);
    assert_eq!(view["callback_id"], "ackbar_silence");
    id
}

fn values(duration: &str, comment: Option<&str>) -> Value {
    let mut v = json!({
        DURATION_BLOCK: { "duration": { "type": "plain_text_input", "value": duration } },
    });
    if let Some(c) = comment {
        v[COMMENT_BLOCK] = json!({ "comment": { "type": "plain_text_input", "value": c } });
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_creates_an_active_silence_in_alertmanager_and_threads_who_until_and_id() {
    let Some(binary) = alertmanager_binary() else {
        return;
    };
    // Nothing is routed through this Alertmanager: ackbar only creates
    // silences on it, and the test reads them back.
    let am = start_alertmanager(&binary, "http://127.0.0.1:9/unused", "1h").await;
    let s = setup(Some(&am.url), |_| {}).await;
    let (ts, card_id) = one_card(&s).await;
    assert!(has_button(&card(&s), "ackbar_silence"));

    let view_id = open_modal(&s, &ts, ALICE).await;
    let (_, view, _, _) = views_of(&s, ALICE).remove(0);
    assert_eq!(view["private_metadata"], card_id.as_str());
    assert!(
        view.to_string().contains("group=\\\"g\\\""),
        "the modal lists the matchers: {view}"
    );

    let before = chrono::Utc::now();
    let r = s
        .slack
        .sandbox
        .submit_view(
            &view_id,
            ALICE,
            values("90m", Some("disk cleanup in progress")),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.trim().is_empty(), "an empty answer: {}", r.body);
    assert!(r.elapsed_ms < 3000, "{}", r.elapsed_ms);
    let (_, _, closed, errors) = views_of(&s, ALICE).remove(0);
    assert!(closed, "the modal closed");
    assert_eq!(errors, None);

    let silences: Vec<Value> = get_json(&format!("{}/api/v2/silences", am.url)).await;
    let active: Vec<&Value> = silences
        .iter()
        .filter(|x| x["status"]["state"] == "active")
        .collect();
    assert_eq!(active.len(), 1, "{silences:?}");
    let silence = active[0];
    assert_eq!(
        silence["matchers"],
        json!([{ "name": "group", "value": "g", "isRegex": false, "isEqual": true }]),
        "the card's group, as Alertmanager grouped it"
    );
    assert_eq!(silence["comment"], "disk cleanup in progress");
    let created_by = silence["createdBy"].as_str().unwrap();
    assert!(created_by.contains(ALICE), "{created_by}");
    let ends_at: chrono::DateTime<chrono::Utc> =
        silence["endsAt"].as_str().unwrap().parse().unwrap();
    let lasts = ends_at - before;
    assert!(
        lasts >= chrono::Duration::minutes(89) && lasts <= chrono::Duration::minutes(91),
        "{lasts}"
    );
    let silence_id = silence["id"].as_str().unwrap().to_owned();

    // The matchers match the card's alerts: Alertmanager suppresses them.
    am.post_alerts(&[firing("DiskFull", "db-1")], "g").await;
    eventually_async(
        Duration::from_secs(10),
        "the card's alert is silenced by it",
        || async {
            let alerts: Vec<Value> = get_json(&format!("{}/api/v2/alerts", am.url)).await;
            alerts.iter().any(|a| {
                a["labels"]["instance"] == "db-1"
                    && a["status"]["state"] == "suppressed"
                    && a["status"]["silencedBy"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|i| i == silence_id.as_str()))
            })
        },
    )
    .await;

    eventually(
        Duration::from_secs(10),
        "the thread says who, until when, and the id",
        || thread(&s, &ts).len() == 1,
    )
    .await;
    let reply = thread(&s, &ts).remove(0);
    assert!(
        reply.contains(&format!("Silenced by <@{ALICE}>")),
        "{reply}"
    );
    assert!(
        reply.contains(&format!("<!date^{}^", ends_at.timestamp())),
        "{reply}"
    );
    assert!(reply.contains(&silence_id), "{reply}");
    assert!(reply.contains("disk cleanup in progress"), "{reply}");
    assert!(
        has_button(&card(&s), "ackbar_acknowledge"),
        "silencing changes nothing else on the card"
    );
    s.ackbar.stop().await;
    am.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_alertmanager_keeps_the_modal_open_with_the_error_and_threads_nothing() {
    let closed_port = format!("http://127.0.0.1:{}", free_port());
    let s = setup(Some(&closed_port), |_| {}).await;
    let (ts, _) = one_card(&s).await;
    let view_id = open_modal(&s, &ts, ALICE).await;

    let r = s
        .slack
        .sandbox
        .submit_view(&view_id, ALICE, values("2h", None))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.elapsed_ms < 3000, "{}", r.elapsed_ms);
    let answer = r.json.expect("a JSON answer");
    assert_eq!(answer["response_action"], "errors", "{answer}");
    let message = answer["errors"][DURATION_BLOCK]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("unreachable"), "{answer}");
    assert!(
        !message.contains("127.0.0.1"),
        "no internals shown: {message}"
    );

    let (_, _, closed, errors) = views_of(&s, ALICE).remove(0);
    assert!(!closed, "the modal stays open");
    assert_eq!(errors, Some(answer["errors"].clone()));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(thread(&s, &ts).is_empty(), "no thread reply");
    s.ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_duration_is_a_field_error_and_the_modal_stays_open() {
    let closed_port = format!("http://127.0.0.1:{}", free_port());
    let s = setup(Some(&closed_port), |_| {}).await;
    let (ts, _) = one_card(&s).await;
    let view_id = open_modal(&s, &ts, ALICE).await;
    for (duration, expected) in [
        ("forever", "is not a duration"),
        ("2", "is not a duration"),
        ("31d", "at most 30d"),
        ("10s", "at least 1m"),
        ("", "Give a duration"),
    ] {
        let r = s
            .slack
            .sandbox
            .submit_view(&view_id, ALICE, values(duration, None))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let answer = r.json.expect("a JSON answer");
        assert_eq!(answer["response_action"], "errors", "{answer}");
        assert!(
            answer["errors"][DURATION_BLOCK]
                .as_str()
                .is_some_and(|m| m.contains(expected)),
            "{duration:?}: {answer}"
        );
        let (_, _, closed, _) = views_of(&s, ALICE).remove(0);
        assert!(!closed, "{duration:?}: the modal stays open");
    }
    let long = "x".repeat(1001);
    let r = s
        .slack
        .sandbox
        .submit_view(&view_id, ALICE, values("1h", Some(&long)))
        .await
        .unwrap();
    let answer = r.json.expect("a JSON answer");
    assert!(
        answer["errors"][COMMENT_BLOCK]
            .as_str()
            .is_some_and(|m| m.contains("too long")),
        "{answer}"
    );
    assert!(thread(&s, &ts).is_empty());
    s.ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_user_is_refused_ephemerally_and_no_modal_opens() {
    let closed_port = format!("http://127.0.0.1:{}", free_port());
    let s = setup(Some(&closed_port), |c| {
        c["routes"][0]["allowed"] = json!({ "silence": [ALICE] });
    })
    .await;
    let (ts, _) = one_card(&s).await;
    let r = s
        .slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_silence", MALLORY)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(
        Duration::from_secs(10),
        "an ephemeral refusal for the clicking user",
        || has_ephemeral(&s.slack, MALLORY, "not allowed to silence"),
    )
    .await;
    assert!(views_of(&s, MALLORY).is_empty(), "no modal opened");
    let refused = s
        .slack
        .sandbox
        .slash_command(
            "/ackbar",
            &format!("silence {}", &card_id_of(&s)[..8]),
            CHANNEL,
            MALLORY,
        )
        .await
        .unwrap();
    assert!(refused.body.contains("not allowed"), "{}", refused.body);
    assert!(views_of(&s, MALLORY).is_empty(), "no modal opened");
    // The guard is per user, not a blanket refusal.
    open_modal(&s, &ts, ALICE).await;
    s.ackbar.stop().await;
}

fn card_id_of(s: &Setup) -> String {
    cards(&s.slack.sandbox.state(), CHANNEL).remove(0).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_command_opens_the_same_modal_by_short_id() {
    let closed_port = format!("http://127.0.0.1:{}", free_port());
    let s = setup(Some(&closed_port), |_| {}).await;
    let (_, card_id) = one_card(&s).await;
    let short = &card_id[..8];

    let r = s
        .slack
        .sandbox
        .slash_command("/ackbar", &format!("silence {short}"), CHANNEL, ALICE)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.trim().is_empty(),
        "the modal is the answer: {}",
        r.body
    );
    let views = views_of(&s, ALICE);
    assert_eq!(views.len(), 1, "{views:?}");
    assert_eq!(views[0].1["callback_id"], "ackbar_silence");
    assert_eq!(views[0].1["private_metadata"], card_id.as_str());

    for (text, expected) in [
        ("silence ffffffff", "No card with id"),
        ("silence", "Which card?"),
        ("help", "silence CARD"),
    ] {
        let r = s
            .slack
            .sandbox
            .slash_command("/ackbar", text, CHANNEL, ALICE)
            .await
            .unwrap();
        assert!(r.body.contains(expected), "{text}: {}", r.body);
    }
    assert_eq!(views_of(&s, ALICE).len(), 1, "no other modal opened");
    s.ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_alertmanager_there_is_no_silence_button_or_modal() {
    let s = setup(None, |_| {}).await;
    let (_, card_id) = one_card(&s).await;
    let c = card(&s);
    assert!(has_button(&c, "ackbar_acknowledge"));
    assert!(!has_button(&c, "ackbar_silence"), "{c}");
    let r = s
        .slack
        .sandbox
        .slash_command(
            "/ackbar",
            &format!("silence {}", &card_id[..8]),
            CHANNEL,
            ALICE,
        )
        .await
        .unwrap();
    assert!(
        r.body.contains("No Alertmanager is configured"),
        "{}",
        r.body
    );
    assert!(views_of(&s, ALICE).is_empty());
    s.ackbar.stop().await;
}
