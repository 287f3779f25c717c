//! End to end with the real Alertmanager (Debian's `prometheus-alertmanager`)
//! notifying ackbar, which delivers to the Slack sandbox.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_fires_joins_and_resolves_as_one_threaded_card() {
    let Some(binary) = alertmanager_binary() else {
        return;
    };
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&test_config(&slack.api_url, &dir.path().join("a.db"))).await;
    let am = start_alertmanager(&binary, &ackbar.url("/webhook/alertmanager"), "1h").await;

    am.post_alerts(&[firing("DiskFull", "db-1")], "storage")
        .await;
    eventually(Duration::from_secs(20), "one card", || {
        cards(&slack.sandbox.state(), CHANNEL).len() == 1
    })
    .await;
    let (ts, _, card) = cards(&slack.sandbox.state(), CHANNEL).remove(0);
    assert!(message_text(&card).contains("DiskFull"));
    assert!(
        replies(&slack.sandbox.state(), CHANNEL, &ts).is_empty(),
        "the first alert is the card itself"
    );

    am.post_alerts(
        &[firing("DiskFull", "db-1"), firing("DiskFull", "db-2")],
        "storage",
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "a reply for the joining alert and an updated card",
        || {
            let state = slack.sandbox.state();
            let card = &cards(&state, CHANNEL)[0].2;
            replies(&state, CHANNEL, &ts).len() == 1 && message_text(card).contains("db-2")
        },
    )
    .await;
    let reply = replies(&slack.sandbox.state(), CHANNEL, &ts).remove(0);
    assert!(
        message_text(&reply).contains("db-2"),
        "reply names the new alert: {reply}"
    );

    am.post_alerts(
        &[resolved("DiskFull", "db-1"), resolved("DiskFull", "db-2")],
        "storage",
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "card resolved with one more reply",
        || {
            let state = slack.sandbox.state();
            let card = &cards(&state, CHANNEL)[0].2;
            replies(&state, CHANNEL, &ts).len() == 2 && is_resolved(card)
        },
    )
    .await;
    let state = slack.sandbox.state();
    let all = cards(&state, CHANNEL);
    assert_eq!(all.len(), 1, "exactly one card");
    assert!(
        !all[0].2.to_string().contains("ackbar_acknowledge"),
        "a resolved card has no buttons"
    );
    assert_eq!(state.retry_after_violations, 0);

    am.stop().await;
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_resend_makes_no_slack_call() {
    let Some(binary) = alertmanager_binary() else {
        return;
    };
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&test_config(&slack.api_url, &dir.path().join("a.db"))).await;
    // Alertmanager re-sends the unchanged group every group_interval once
    // repeat_interval (2 s) has passed.
    let am = start_alertmanager(&binary, &ackbar.url("/webhook/alertmanager"), "2s").await;

    am.post_alerts(
        &[
            firing("HighLatency", "api-1"),
            firing("HighLatency", "api-2"),
        ],
        "api",
    )
    .await;
    eventually(Duration::from_secs(20), "one card", || {
        cards(&slack.sandbox.state(), CHANNEL).len() == 1
    })
    .await;
    // Alertmanager may flush the group before both alerts are in it (their
    // startsAt lies in the past), so the second can arrive as a change a
    // moment later: wait until the card lists both and delivery is idle,
    // then count Slack calls across several re-sends.
    eventually(
        Duration::from_secs(20),
        "the card lists both alerts",
        || message_text(&cards(&slack.sandbox.state(), CHANNEL)[0].2).contains("api-2"),
    )
    .await;
    eventually_async(Duration::from_secs(20), "delivery idle", || async {
        metric(&ackbar.base(), "ackbar_outbox_pending").await == 0.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls_before = slack.sandbox.state().calls.len();
    let deduped_before = metric(&ackbar.base(), "ackbar_notifications_deduped_total").await;
    eventually_async(
        Duration::from_secs(20),
        "Alertmanager re-sent the group at least twice",
        || async {
            metric(&ackbar.base(), "ackbar_notifications_deduped_total").await
                >= deduped_before + 2.0
        },
    )
    .await;
    // Alertmanager's re-sends of an unchanged group are the same bytes
    // each time, so once one was decided unchanged from the state cache,
    // the next ones are recognised without decoding.
    eventually_async(
        Duration::from_secs(20),
        "a re-send recognised by its bytes",
        || async { metric(&ackbar.base(), "ackbar_resends_recognised_total").await >= 1.0 },
    )
    .await;
    let calls = slack.sandbox.state().calls;
    assert_eq!(
        calls.len(),
        calls_before,
        "re-sends made no Slack call: {:?}",
        &calls[calls_before.min(calls.len())..]
    );
    assert_eq!(cards(&slack.sandbox.state(), CHANNEL).len(), 1);

    am.stop().await;
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_alertmanagers_notifying_the_same_group_make_one_card() {
    let Some(binary) = alertmanager_binary() else {
        return;
    };
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&test_config(&slack.api_url, &dir.path().join("a.db"))).await;
    let webhook_url = ackbar.url("/webhook/alertmanager");
    let (am1, am2) = tokio::join!(
        start_alertmanager(&binary, &webhook_url, "1h"),
        start_alertmanager(&binary, &webhook_url, "1h")
    );

    let alerts = [firing("NodeDown", "node-7")];
    tokio::join!(
        am1.post_alerts(&alerts, "nodes"),
        am2.post_alerts(&alerts, "nodes")
    );
    eventually(Duration::from_secs(20), "one card", || {
        cards(&slack.sandbox.state(), CHANNEL).len() == 1
    })
    .await;
    eventually_async(
        Duration::from_secs(20),
        "both peers' notifications received",
        || async { metric(&ackbar.base(), "ackbar_notifications_received_total").await >= 2.0 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let state = slack.sandbox.state();
    assert_eq!(
        cards(&state, CHANNEL).len(),
        1,
        "HA duplicates make one card"
    );
    let ts = &cards(&state, CHANNEL)[0].0;
    assert!(
        replies(&state, CHANNEL, ts).is_empty(),
        "the duplicate added no reply"
    );

    am1.stop().await;
    am2.stop().await;
    ackbar.stop().await;
}
