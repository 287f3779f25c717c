//! Socket Mode end to end: ackbar (configured with `slack.app_token`)
//! opens a WebSocket to the sandbox, which then delivers clicks, slash
//! commands and events over it instead of HTTP. The sandbox has no app URL
//! and no signing secret here, so nothing can reach ackbar another way.

mod common;

use std::time::Duration;

use ackbar::slack::sandbox::{ActError, SandboxOptions};
use common::*;
use serde_json::{Value, json};

const APP_TOKEN: &str = "xapp-1-A0SANDBOX-1-test";
const ALICE: &str = "U0ALICE01";
const BOB: &str = "U0BOBBY01";

async fn setup(app_timeout: Duration) -> (Slack, Ackbar, tempfile::TempDir) {
    let options = SandboxOptions {
        app_token: Some(APP_TOKEN.to_owned()),
        app_timeout,
        ..sandbox_options(&[CHANNEL])
    };
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("a.db"));
    config["slack"]["app_token"] = json!(APP_TOKEN);
    config["oncall"] = json!([{ "name": "primary", "members": [BOB], "shift": "7d",
        "handoff": "09:00", "timezone": "Europe/Berlin", "start": "2026-01-05" }]);
    let ackbar = start_ackbar(&config).await;
    eventually(
        Duration::from_secs(10),
        "ackbar opened a Socket Mode connection",
        || slack.sandbox.socket_state().open == 1,
    )
    .await;
    (slack, ackbar, dir)
}

/// Fires one alert per group and waits for the cards; returns their ts.
async fn cards_for(slack: &Slack, ackbar: &Ackbar, groups: &[&str]) -> Vec<String> {
    for group in groups {
        let r = post_webhook(
            &http(),
            &ackbar.url("/webhook/alertmanager"),
            &webhook(group, &[firing("A", group)]),
        )
        .await;
        assert_eq!(r.status().as_u16(), 200);
    }
    eventually(Duration::from_secs(10), "cards posted", || {
        cards(&slack.sandbox.state(), CHANNEL).len() == groups.len()
    })
    .await;
    cards(&slack.sandbox.state(), CHANNEL)
        .into_iter()
        .map(|(ts, _, _)| ts)
        .collect()
}

fn card_at(slack: &Slack, ts: &str) -> Value {
    cards(&slack.sandbox.state(), CHANNEL)
        .into_iter()
        .find(|(t, _, _)| t == ts)
        .map(|(_, _, m)| m)
        .expect("card exists")
}

fn thread(slack: &Slack, ts: &str) -> Vec<String> {
    replies(&slack.sandbox.state(), CHANNEL, ts)
        .iter()
        .map(message_text)
        .collect()
}

fn acknowledged(slack: &Slack, ts: &str) -> bool {
    card_at(slack, ts)
        .to_string()
        .contains("\"action_id\":\"ackbar_unacknowledge\"")
}

fn mention(ts: &str) -> Value {
    json!({
        "type": "app_mention", "user": ALICE, "channel": CHANNEL, "text": "<@U0ACKBAR> status?",
        "ts": "1800000000.000200", "thread_ts": ts
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledge_button_works_over_socket_mode() {
    let (slack, ackbar, _dir) = setup(Duration::from_secs(3)).await;
    let ts = cards_for(&slack, &ackbar, &["g"]).await.remove(0);

    let r = slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_acknowledge", ALICE)
        .await
        .expect("the click is acked over the socket");
    assert_eq!(r.status, 200);
    eventually(Duration::from_secs(10), "card acknowledged", || {
        acknowledged(&slack, &ts) && message_text(&card_at(&slack, &ts)).contains(ALICE)
    })
    .await;
    eventually(Duration::from_secs(10), "one thread reply", || {
        thread(&slack, &ts).len() == 1
    })
    .await;
    assert!(thread(&slack, &ts)[0].contains("Acknowledged by"));

    let state = slack.sandbox.state();
    assert!(
        state
            .acts
            .iter()
            .any(|a| a.path == "socket:/slack/interactions" && a.status == Some(200)),
        "delivered over the socket: {:?}",
        state.acts
    );
    assert_eq!(state.socket.acks, 1);
    assert_eq!(state.socket.redeliveries, 0);
    assert_eq!(
        state.counts.get("apps.connections.open").map(|c| c.ok),
        Some(1)
    );
    ackbar.stop().await;
    eventually(Duration::from_secs(5), "socket closed on shutdown", || {
        slack.sandbox.socket_state().open == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_command_reply_comes_back_in_the_ack_payload() {
    let (slack, ackbar, _dir) = setup(Duration::from_secs(3)).await;
    let ts = cards_for(&slack, &ackbar, &["g"]).await.remove(0);
    let card_id = cards(&slack.sandbox.state(), CHANNEL)[0].1.clone();

    let oncall = slack
        .sandbox
        .slash_command("/ackbar", "oncall", CHANNEL, ALICE)
        .await
        .unwrap();
    assert_eq!(oncall.status, 200);
    assert!(
        oncall.body.contains("primary") && oncall.body.contains(BOB),
        "{}",
        oncall.body
    );
    assert!(
        slack
            .sandbox
            .state()
            .ephemerals
            .iter()
            .any(|e| e.user == ALICE && e.source == "slash_command" && e.text.contains(BOB)),
        "the reply is shown to the user as Slack shows a command answer"
    );

    let ack = slack
        .sandbox
        .slash_command("/ackbar", &format!("ack {}", &card_id[..8]), CHANNEL, ALICE)
        .await
        .unwrap();
    assert!(ack.body.contains("Acknowledged"), "{}", ack.body);
    eventually(Duration::from_secs(10), "card acknowledged", || {
        acknowledged(&slack, &ts) && thread(&slack, &ts).len() == 1
    })
    .await;
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mention_event_is_handled_once_over_socket_mode() {
    let (slack, ackbar, _dir) = setup(Duration::from_secs(3)).await;
    let ts = cards_for(&slack, &ackbar, &["g"]).await.remove(0);

    let first = slack
        .sandbox
        .send_event(mention(&ts), Some("Ev0SOCKET01"), None)
        .await
        .unwrap();
    // Slack's own retry of the same event (a new envelope, same event_id).
    let retry = slack
        .sandbox
        .send_event(mention(&ts), Some("Ev0SOCKET01"), Some(1))
        .await
        .unwrap();
    assert_eq!((first.status, retry.status), (200, 200));
    eventually(Duration::from_secs(10), "a status reply", || {
        thread(&slack, &ts)
            .iter()
            .any(|r| r.contains("not acknowledged"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(thread(&slack, &ts).len(), 1, "handled once");
    assert!(
        slack
            .sandbox
            .state()
            .acts
            .iter()
            .all(|a| a.path.starts_with("socket:")),
        "nothing went over HTTP"
    );
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_warning_mid_stream_loses_no_envelope() {
    let (slack, ackbar, _dir) = setup(Duration::from_secs(3)).await;
    let ts = cards_for(&slack, &ackbar, &["g0", "g1", "g2", "g3", "g4"]).await;

    for t in &ts[..2] {
        let r = slack
            .sandbox
            .click(CHANNEL, t, "ackbar_acknowledge", ALICE)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    // Acts race the handover: some land on the old connection, some on the
    // new one, some on the old one as it closes (and are redelivered).
    let sandbox = slack.sandbox.clone();
    let acts = {
        let ts = ts.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            for (i, t) in ts[2..4].iter().enumerate() {
                results.push(
                    sandbox
                        .click(CHANNEL, t, "ackbar_acknowledge", ALICE)
                        .await
                        .map(|r| r.status),
                );
                if i == 0 {
                    results.push(
                        sandbox
                            .send_event(mention(&ts[4]), Some("Ev0HANDOVER"), None)
                            .await
                            .map(|r| r.status),
                    );
                }
            }
            results
        })
    };
    assert_eq!(slack.sandbox.socket_disconnect("warning"), 1);
    let results = acts.await.unwrap();
    assert!(
        results.iter().all(|r| r == &Ok(200)),
        "every act was acked: {results:?}"
    );

    for t in &ts[..4] {
        eventually(Duration::from_secs(10), "card acknowledged once", || {
            acknowledged(&slack, t) && thread(&slack, t).len() == 1
        })
        .await;
    }
    eventually(Duration::from_secs(10), "the mention answered", || {
        thread(&slack, &ts[4]).len() == 1
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the new connection replaced the old",
        || {
            let s = slack.sandbox.socket_state();
            s.connections_opened == 2 && s.open == 1
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    for t in &ts[..4] {
        assert_eq!(thread(&slack, t).len(), 1, "handled once");
    }
    assert_eq!(thread(&slack, &ts[4]).len(), 1, "handled once");
    let state = slack.sandbox.socket_state();
    assert_eq!(state.undelivered, 0, "{state:?}");
    assert_eq!(state.disconnects_sent, 1);
    assert_eq!(
        state.gaps, 0,
        "the new connection was up before the old closed"
    );

    // The new connection carries on.
    let r = slack
        .sandbox
        .click(CHANNEL, &ts[0], "ackbar_unacknowledge", BOB)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    eventually(Duration::from_secs(10), "unacknowledged", || {
        !acknowledged(&slack, &ts[0])
    })
    .await;
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_envelope_is_redelivered_and_the_action_happens_once() {
    // A longer ack window than the other tests: on a loaded machine a
    // redelivery acked after the window is redelivered again, which is
    // correct but not what this test counts.
    let (slack, ackbar, _dir) = setup(Duration::from_secs(3)).await;
    let ts = cards_for(&slack, &ackbar, &["g"]).await.remove(0);

    slack.sandbox.socket_drop_next_ack(1);
    let first = slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_acknowledge", ALICE)
        .await;
    assert!(
        matches!(first, Err(ActError::NotAcked { .. })),
        "the dropped ack looks like no ack: {first:?}"
    );
    eventually(Duration::from_secs(10), "redelivered and acked", || {
        let s = slack.sandbox.socket_state();
        s.redeliveries >= 1 && s.acks >= 1 && s.acks_dropped == 1
    })
    .await;
    eventually(Duration::from_secs(10), "acknowledged", || {
        acknowledged(&slack, &ts) && thread(&slack, &ts).len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        thread(&slack, &ts).len(),
        1,
        "the redelivery changed nothing: {:?}",
        thread(&slack, &ts)
    );
    assert_eq!(slack.sandbox.socket_state().undelivered, 0);
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_disabled_stops_the_socket_client_but_not_ackbar() {
    let (slack, ackbar, _dir) = setup(Duration::from_secs(1)).await;
    assert_eq!(slack.sandbox.socket_disconnect("link_disabled"), 1);
    eventually(Duration::from_secs(5), "connection closed", || {
        slack.sandbox.socket_state().open == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        slack.sandbox.socket_state().connections_opened,
        1,
        "no reconnect after link_disabled"
    );
    wait_http_ok(&ackbar.url("/healthz")).await;
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_connections_open_wants_the_app_token() {
    let slack = start_slack(SandboxOptions {
        app_token: Some(APP_TOKEN.to_owned()),
        ..sandbox_options(&[CHANNEL])
    })
    .await;
    let open = |token: Option<&'static str>| {
        let url = format!("{}/apps.connections.open", slack.api_url);
        async move {
            let mut request = http().post(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    assert_eq!(open(None).await["error"], "not_authed");
    assert_eq!(open(Some(TOKEN)).await["error"], "not_allowed_token_type");
    assert_eq!(open(Some("xapp-1-other")).await["error"], "invalid_auth");
    let ok = open(Some(APP_TOKEN)).await;
    assert_eq!(ok["ok"], true, "{ok}");
    let url = ok["url"].as_str().unwrap();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.contains("/socket/"),
        "{url}"
    );

    // The URL is single use: a second upgrade with the same ticket fails.
    let http_url = url.replacen("ws://", "http://", 1);
    let r = http()
        .get(&http_url)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 101, "first use upgrades");
    let r = http()
        .get(&http_url)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "a used ticket is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_declared_dead_and_replaced() {
    let options = SandboxOptions {
        app_token: Some(APP_TOKEN.to_owned()),
        ..sandbox_options(&[CHANNEL])
    };
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("a.db"));
    config["slack"]["app_token"] = json!(APP_TOKEN);
    config["slack"]["socket_mode"] = json!({ "ping_interval": "200ms", "dead_after": "1s" });
    let ackbar = start_ackbar(&config).await;
    eventually(Duration::from_secs(10), "a Socket Mode connection", || {
        slack.sandbox.socket_state().open == 1
    })
    .await;
    let ts = cards_for(&slack, &ackbar, &["quiet"]).await.remove(0);

    // The connection stops answering pings without closing, as a dead link does.
    assert_eq!(slack.sandbox.socket_freeze(), 1);
    eventually(
        Duration::from_secs(10),
        "ackbar replaced the silent connection",
        || slack.sandbox.socket_state().connections_opened >= 2,
    )
    .await;
    let r = slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_acknowledge", ALICE)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(
        Duration::from_secs(10),
        "acknowledged over the new connection",
        || acknowledged(&slack, &ts),
    )
    .await;
    ackbar.stop().await;
}
