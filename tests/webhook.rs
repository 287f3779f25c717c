//! `POST /webhook/alertmanager` straight from the test: bad input is refused
//! with the right status and nothing is stored; the card lifecycle
//! (reopen window) end to end against the sandbox.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let mut config = test_config(&slack.api_url, &db);
    config["ingest"] = json!({ "max_body_bytes": 4096, "auth": { "bearer": "s3cret-token" } });
    let ackbar = start_ackbar(&config).await;
    let url = ackbar.url("/webhook/alertmanager");
    let client = http();
    let good = webhook("g1", &[firing("A", "i1")]).to_string();

    struct Case {
        what: &'static str,
        auth: Option<&'static str>,
        content_type: Option<&'static str>,
        body: String,
        status: u16,
        message: &'static str,
    }
    let cases = [
        Case {
            what: "no credentials",
            auth: None,
            content_type: Some("application/json"),
            body: good.clone(),
            status: 401,
            message: "credentials",
        },
        Case {
            what: "wrong bearer token",
            auth: Some("Bearer wrong"),
            content_type: Some("application/json"),
            body: good.clone(),
            status: 401,
            message: "credentials",
        },
        Case {
            what: "basic auth when bearer is configured",
            auth: Some("Basic dXNlcjpzM2NyZXQtdG9rZW4="),
            content_type: Some("application/json"),
            body: good.clone(),
            status: 401,
            message: "credentials",
        },
        Case {
            what: "wrong content type",
            auth: Some("Bearer s3cret-token"),
            content_type: Some("text/plain"),
            body: good.clone(),
            status: 415,
            message: "application/json",
        },
        Case {
            what: "missing content type",
            auth: Some("Bearer s3cret-token"),
            content_type: None,
            body: good.clone(),
            status: 415,
            message: "application/json",
        },
        Case {
            what: "malformed JSON",
            auth: Some("Bearer s3cret-token"),
            content_type: Some("application/json"),
            body: r#"{"version": "4", "alerts": [ }"#.to_owned(),
            status: 400,
            message: "line 1",
        },
        Case {
            what: "wrong payload version",
            auth: Some("Bearer s3cret-token"),
            content_type: Some("application/json"),
            body: good.replace(r#""version":"4""#, r#""version":"3""#),
            status: 400,
            message: "version",
        },
        Case {
            what: "oversized body",
            auth: Some("Bearer s3cret-token"),
            content_type: Some("application/json"),
            body: webhook(
                "g1",
                &(0..40)
                    .map(|i| firing("A", &format!("instance-{i}")))
                    .collect::<Vec<_>>(),
            )
            .to_string(),
            status: 413,
            message: "max_body_bytes",
        },
    ];
    for case in &cases {
        let mut req = client.post(&url).body(case.body.clone());
        if let Some(a) = case.auth {
            req = req.header("authorization", a);
        }
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct);
        }
        let response = req.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, case.status, "{}: {text}", case.what);
        assert!(
            text.contains(case.message),
            "{}: message {text:?} should mention {:?}",
            case.what,
            case.message
        );
    }
    assert!(good.len() < 4096, "the good payload fits the limit");

    tokio::time::sleep(Duration::from_millis(300)).await;
    for table in ["cards", "alerts", "outbox"] {
        assert_eq!(
            count_rows(&db, table).await,
            0,
            "{table} must be empty after rejected requests"
        );
    }
    assert!(
        slack.sandbox.state().calls.is_empty(),
        "no Slack call for rejected requests"
    );

    // The same good payload with the right credentials is accepted.
    let ok = client
        .post(&url)
        .header("authorization", "Bearer s3cret-token")
        .header("content-type", "application/json")
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(count_rows(&db, "cards").await, 1);
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_accepted_when_configured() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("a.db"));
    config["ingest"] = json!({ "auth": { "basic": { "username": "am", "password": "pw" } } });
    let ackbar = start_ackbar(&config).await;
    let body = webhook("g1", &[firing("A", "i1")]).to_string();
    let send = |auth: &'static str| {
        http()
            .post(ackbar.url("/webhook/alertmanager"))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    // "am:pw" and "am:px"
    assert_eq!(send("Basic YW06cHc=").await.unwrap().status().as_u16(), 200);
    assert_eq!(send("Basic YW06cHg=").await.unwrap().status().as_u16(), 401);
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refire_inside_reopen_window_reuses_the_card_and_after_it_opens_a_new_one() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("a.db"));
    config["routes"][0]["reopen_window"] = json!("2s");
    let ackbar = start_ackbar(&config).await;
    let url = ackbar.url("/webhook/alertmanager");
    let client = http();
    let send = |alerts: Vec<TestAlert>| {
        let body = webhook("flappy", &alerts);
        let client = client.clone();
        let url = url.clone();
        async move {
            let r = post_webhook(&client, &url, &body).await;
            assert_eq!(r.status().as_u16(), 200);
        }
    };

    send(vec![firing("Flap", "x")]).await;
    eventually(Duration::from_secs(10), "first card", || {
        cards(&slack.sandbox.state(), CHANNEL).len() == 1
    })
    .await;
    send(vec![resolved("Flap", "x")]).await;
    send(vec![firing("Flap", "x")]).await;
    eventually(
        Duration::from_secs(10),
        "reopen noted in the thread",
        || {
            let state = slack.sandbox.state();
            let all = cards(&state, CHANNEL);
            all.len() == 1
                && replies(&state, CHANNEL, &all[0].0)
                    .iter()
                    .any(|r| message_text(r).to_lowercase().contains("reopen"))
        },
    )
    .await;

    send(vec![resolved("Flap", "x")]).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    send(vec![firing("Flap", "x")]).await;
    eventually(
        Duration::from_secs(10),
        "a second card after the window",
        || cards(&slack.sandbox.state(), CHANNEL).len() == 2,
    )
    .await;
    let state = slack.sandbox.state();
    let all = cards(&state, CHANNEL);
    assert_ne!(all[0].1, all[1].1, "different card ids");
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_answer() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&test_config(&slack.api_url, &dir.path().join("a.db"))).await;
    let client = http();
    assert_eq!(
        client
            .get(ackbar.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        client
            .get(ackbar.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let r = post_webhook(
        &client,
        &ackbar.url("/webhook/alertmanager"),
        &webhook("g", &[firing("A", "1")]),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    eventually(Duration::from_secs(10), "card posted", || {
        cards(&slack.sandbox.state(), CHANNEL).len() == 1
    })
    .await;
    eventually_async(
        Duration::from_secs(10),
        "metrics count the card and the call",
        || async {
            metric(&ackbar.base(), "ackbar_cards_opened_total").await >= 1.0
                && metric(&ackbar.base(), "ackbar_slack_calls_total").await >= 1.0
                && metric(&ackbar.base(), "ackbar_outbox_popped_total").await >= 1.0
        },
    )
    .await;
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_slack_error_becomes_a_visible_dead_letter() {
    // The sandbox knows no such channel: channel_not_found is permanent.
    let slack = start_slack(sandbox_options(&["C0OTHERCHN"])).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&test_config(&slack.api_url, &dir.path().join("a.db"))).await;
    let client = http();
    let r = post_webhook(
        &client,
        &ackbar.url("/webhook/alertmanager"),
        &webhook("g", &[firing("A", "1")]),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    eventually_async(
        Duration::from_secs(10),
        "a dead letter in metrics",
        || async {
            metric(&ackbar.base(), "ackbar_outbox_dead").await == 1.0
                && metric(&ackbar.base(), "ackbar_outbox_dead_letters_total").await == 1.0
        },
    )
    .await;
    let calls = slack.sandbox.state().calls.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        slack.sandbox.state().calls.len(),
        calls,
        "a dead letter is not retried"
    );
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_keeps_undelivered_work_for_the_next_start() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("a.db"));
    // One card per second and a short shutdown deadline: five cards cannot
    // all go out before the process stops.
    config["delivery"]["post_interval"] = json!("1s");
    config["delivery"]["post_burst"] = json!(1);
    config["delivery"]["shutdown_deadline"] = json!("500ms");
    let ackbar = start_ackbar(&config).await;
    let client = http();
    for g in 0..5 {
        let r = post_webhook(
            &client,
            &ackbar.url("/webhook/alertmanager"),
            &webhook(&format!("g{g}"), &[firing("A", "1")]),
        )
        .await;
        assert_eq!(r.status().as_u16(), 200);
    }
    ackbar.stop().await;
    let delivered = cards(&slack.sandbox.state(), CHANNEL).len();
    assert!(
        delivered < 5,
        "shutdown should have left work behind (delivered {delivered})"
    );

    let ackbar = start_ackbar(&config).await;
    eventually(
        Duration::from_secs(20),
        "the rest delivered after restart",
        || cards(&slack.sandbox.state(), CHANNEL).len() == 5,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cards(&slack.sandbox.state(), CHANNEL).len(),
        5,
        "no card posted twice"
    );
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_that_cannot_commit_answers_503_and_the_retry_succeeds() {
    use sqlx::Connection;
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let ackbar = start_ackbar(&test_config(&slack.api_url, &db)).await;
    let client = http();
    let body = webhook("locked", &[firing("A", "1")]);

    // Another process holds SQLite's write lock past ackbar's busy timeout.
    let mut blocker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let r = post_webhook(&client, &ackbar.url("/webhook/alertmanager"), &body).await;
    assert_eq!(
        r.status().as_u16(),
        503,
        "not durable, so Alertmanager must retry"
    );
    assert!(r.headers().contains_key("retry-after"));
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    blocker.close().await.unwrap();
    assert_eq!(count_rows(&db, "cards").await, 0, "nothing half-written");

    // Alertmanager's retry is accepted and makes the card.
    let r = post_webhook(&client, &ackbar.url("/webhook/alertmanager"), &body).await;
    assert_eq!(r.status().as_u16(), 200);
    eventually(Duration::from_secs(10), "card posted", || {
        cards(&slack.sandbox.state(), CHANNEL).len() == 1
    })
    .await;
    ackbar.stop().await;
}
