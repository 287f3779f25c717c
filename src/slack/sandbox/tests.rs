//! Client <-> emulator round trips over real loopback HTTP.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::slack::api::{HistoryRequest, Retry, SlackClient, SlackError};
use crate::slack::blocks::{Message, Metadata};

const CH: &str = "C0ALERTS01";
const OTHER: &str = "C0OTHER001";
const TOKEN: &str = "xoxb-sandbox-test-token";

fn text(t: &str) -> Message {
    Message {
        text: t.to_owned(),
        blocks: Vec::new(),
        metadata: None,
    }
}

fn with_meta(t: &str, key: &str) -> Message {
    Message {
        metadata: Some(Metadata {
            event_type: "ackbar_card".to_owned(),
            event_payload: json!({"card_key": key}),
        }),
        ..text(t)
    }
}

fn options() -> SandboxOptions {
    SandboxOptions {
        token: Some(TOKEN.to_owned()),
        post_per_channel: RateLimit::UNLIMITED,
        update_limit: RateLimit::UNLIMITED,
        ..SandboxOptions::with_channels([CH, OTHER])
    }
}

struct Harness {
    sandbox: Sandbox,
    client: SlackClient,
    base: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(opts: SandboxOptions) -> Harness {
    let sandbox = Sandbox::new(opts);
    let (base, task) = spawn_standalone(sandbox.clone()).await.expect("bind");
    let client = SlackClient::new(&base, TOKEN, Duration::from_secs(5)).expect("client");
    Harness {
        sandbox,
        client,
        base,
        task,
    }
}

async fn raw_post_json(base: &str, method: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/{method}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

async fn raw_get(base: &str, method: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{base}/{method}"))
        .bearer_auth(TOKEN)
        .query(query)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn post_update_permalink_and_auth_round_trip() {
    let h = start(options()).await;
    let me = h.client.auth_test().await.expect("auth.test");
    assert_eq!(me.team_id, "T0SANDBOX");
    assert_eq!(me.user_id, "U0ACKBAR");
    assert_eq!(me.bot_id.as_deref(), Some("B0ACKBAR"));

    let posted = h
        .client
        .post_message(CH, &with_meta("firing", "k1"), None)
        .await
        .expect("post");
    assert_eq!(posted.channel, CH);
    assert_eq!(posted.ts.len(), "1700000000.000100".len());

    h.client
        .update_message(CH, &posted.ts, &text("resolved"))
        .await
        .expect("update");
    let link = h
        .client
        .get_permalink(CH, &posted.ts)
        .await
        .expect("permalink");
    assert_eq!(
        link,
        format!(
            "http://sandbox.invalid/archives/{CH}/p{}",
            posted.ts.replace('.', "")
        )
    );

    let state = h.sandbox.state();
    let msgs = state.messages(CH);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].text, "resolved");
    assert!(msgs[0].edited);
    assert_eq!(msgs[0].update_count, 1);
    // Update without metadata keeps it.
    assert_eq!(
        msgs[0].metadata.as_ref().map(|m| m.event_payload.clone()),
        Some(json!({"card_key": "k1"}))
    );
    assert_eq!(state.count("chat.postMessage").ok, 1);
    assert_eq!(state.count("chat.update").ok, 1);
    assert_eq!(state.count("auth.test").ok, 1);
    assert_eq!(state.retry_after_violations, 0);

    let err = h
        .client
        .update_message(CH, "1.000001", &text("x"))
        .await
        .expect_err("unknown ts");
    assert_eq!(err.api_error(), Some("message_not_found"));
    assert_eq!(err.retry(), Retry::Never);
}

#[tokio::test]
async fn ts_values_are_unique_and_increasing() {
    let h = start(options()).await;
    let mut last = String::new();
    for i in 0..20 {
        let p = h
            .client
            .post_message(CH, &text(&format!("m{i}")), None)
            .await
            .expect("post");
        let (a, b) = (
            p.ts.parse::<f64>().unwrap_or(0.0),
            last.parse::<f64>().unwrap_or(0.0),
        );
        assert!(p.ts > last && a >= b, "{} after {last}", p.ts);
        last = p.ts;
    }
}

#[tokio::test]
async fn thread_replies_are_stored_under_the_parent() {
    let h = start(options()).await;
    let parent = h
        .client
        .post_message(CH, &text("card"), None)
        .await
        .expect("post");
    for i in 0..3 {
        h.client
            .post_message(CH, &text(&format!("reply {i}")), Some(&parent.ts))
            .await
            .expect("reply");
    }
    let err = h
        .client
        .post_message(CH, &text("orphan"), Some("1600000000.000001"))
        .await
        .expect_err("no such thread");
    assert_eq!(err.api_error(), Some("thread_not_found"));

    let state = h.sandbox.state();
    let msgs = state.messages(CH);
    assert_eq!(msgs.len(), 1, "replies are not top-level");
    assert_eq!(msgs[0].reply_count, 3);
    assert_eq!(msgs[0].replies.len(), 3);
    assert_eq!(msgs[0].replies[2].text, "reply 2");
    assert_eq!(
        msgs[0].replies[0].thread_ts.as_deref(),
        Some(parent.ts.as_str())
    );

    // History lists only the parent, marked as a thread.
    let page = h
        .client
        .conversations_history(&HistoryRequest {
            channel: CH.to_owned(),
            limit: 10,
            ..HistoryRequest::default()
        })
        .await
        .expect("history");
    assert_eq!(page.messages.len(), 1);
    assert_eq!(
        page.messages[0].thread_ts.as_deref(),
        Some(parent.ts.as_str())
    );
}

#[tokio::test]
async fn metadata_round_trips_through_history_with_pagination() {
    let h = start(options()).await;
    let mut posted = Vec::new();
    for i in 0..5 {
        let p = h
            .client
            .post_message(CH, &with_meta(&format!("card {i}"), &format!("k{i}")), None)
            .await
            .expect("post");
        posted.push(p.ts);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = h
            .client
            .conversations_history(&HistoryRequest {
                channel: CH.to_owned(),
                oldest: Some(posted[0].clone()),
                limit: 2,
                cursor,
            })
            .await
            .expect("history");
        assert!(page.messages.len() <= 2);
        seen.extend(page.messages);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // Newest first, strictly after `oldest`.
    let ts: Vec<&str> = seen.iter().map(|m| m.ts.as_str()).collect();
    let want: Vec<&str> = posted[1..].iter().rev().map(String::as_str).collect();
    assert_eq!(ts, want);
    assert_eq!(
        seen[0].metadata,
        Some(Metadata {
            event_type: "ackbar_card".to_owned(),
            event_payload: json!({"card_key": "k4"}),
        })
    );
    assert_eq!(seen[0].text, "card 4");

    // Without include_all_metadata Slack leaves metadata out.
    let (_, raw) = raw_get(&h.base, "conversations.history", &[("channel", CH)]).await;
    assert_eq!(raw["ok"], json!(true));
    assert_eq!(raw["messages"].as_array().map(Vec::len), Some(5));
    assert!(raw["messages"][0].get("metadata").is_none(), "{raw}");
    let (_, raw) = raw_get(
        &h.base,
        "conversations.history",
        &[("channel", CH), ("include_all_metadata", "true")],
    )
    .await;
    assert_eq!(
        raw["messages"][0]["metadata"]["event_type"],
        json!("ackbar_card")
    );
}

#[tokio::test]
async fn invalid_messages_are_rejected_like_slack() {
    let h = start(options()).await;
    let header =
        json!([{"type": "header", "text": {"type": "plain_text", "text": "h".repeat(151)}}]);
    let (status, body) = raw_post_json(
        &h.base,
        "chat.postMessage",
        json!({"channel": CH, "text": "t", "blocks": header}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["error"], json!("invalid_blocks"));
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap_or("")
            .contains("/blocks/0/text/text"),
        "{body}"
    );

    let (_, body) = raw_post_json(&h.base, "chat.postMessage", json!({"channel": CH})).await;
    assert_eq!(body["error"], json!("no_text"));

    let err = h
        .client
        .post_message(CH, &text(&"x".repeat(40_001)), None)
        .await
        .expect_err("too long");
    assert_eq!(err.api_error(), Some("msg_too_long"));
    assert_eq!(err.retry(), Retry::Never);

    let err = h
        .client
        .post_message(CH, &text(""), None)
        .await
        .expect_err("empty");
    assert_eq!(err.api_error(), Some("no_text"));
    assert!(h.sandbox.state().messages(CH).is_empty());
}

#[tokio::test]
async fn form_bodies_with_json_string_fields_are_accepted() {
    let h = start(options()).await;
    let blocks =
        json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]).to_string();
    let metadata = json!({"event_type": "t", "event_payload": {"a": 1}}).to_string();
    let resp = reqwest::Client::new()
        .post(format!("{}/chat.postMessage", h.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={TOKEN}&channel={CH}&text=hello+there&blocks={}&metadata={}",
            urlencode(&blocks),
            urlencode(&metadata)
        ))
        .send()
        .await
        .expect("send");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["ok"], json!(true), "{body}");
    let state = h.sandbox.state();
    let m = &state.messages(CH)[0];
    assert_eq!(m.text, "hello there");
    assert_eq!(m.blocks[0]["text"]["text"], json!("*hi*"));
    assert_eq!(
        m.metadata.as_ref().map(|m| m.event_type.as_str()),
        Some("t")
    );
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

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_and_counts_violations() {
    let h = start(SandboxOptions {
        post_per_channel: RateLimit {
            max: 2,
            per: Duration::from_secs(3),
        },
        ..options()
    })
    .await;
    h.client
        .post_message(CH, &text("1"), None)
        .await
        .expect("1");
    h.client
        .post_message(CH, &text("2"), None)
        .await
        .expect("2");
    let err = h
        .client
        .post_message(CH, &text("3"), None)
        .await
        .expect_err("limited");
    let SlackError::RateLimited { retry_after } = err else {
        panic!("want RateLimited, got {err:?}");
    };
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(3)).contains(&retry_after),
        "{retry_after:?}"
    );
    assert_eq!(err.retry(), Retry::After(retry_after));
    assert!(!err.outcome_unknown());
    // Other channels have their own window.
    h.client
        .post_message(OTHER, &text("x"), None)
        .await
        .expect("other channel");

    let state = h.sandbox.state();
    assert_eq!(state.count("chat.postMessage").ratelimited, 1);
    assert_eq!(state.retry_after_violations, 0);
    assert_eq!(state.messages(CH).len(), 2);

    // Calling the limited channel again right away is a violation.
    let again = h.client.post_message(CH, &text("4"), None).await;
    assert!(
        matches!(again, Err(SlackError::RateLimited { .. })),
        "{again:?}"
    );
    assert_eq!(h.sandbox.state().retry_after_violations, 1);
}

#[tokio::test]
async fn injected_429_blocks_its_scope_for_one_second_and_is_logged_with_retry_after() {
    let h = start(SandboxOptions {
        faults: Faults {
            ratelimit_rate: 1.0,
            seed: Some(3),
            ..Faults::default()
        },
        ..options()
    })
    .await;
    let err = h
        .client
        .post_message(CH, &text("1"), None)
        .await
        .expect_err("injected 429");
    assert_eq!(
        err,
        SlackError::RateLimited {
            retry_after: Duration::from_secs(INJECTED_RETRY_AFTER_SECS)
        }
    );
    assert!(h.sandbox.state().messages(CH).is_empty(), "nothing applied");
    // Methods without a rate-limit scope are never refused.
    h.client.auth_test().await.expect("auth.test");

    h.sandbox.set_faults(Faults::default()).expect("faults");
    // The scope stays refused for the Retry-After, as after a real 429.
    h.client
        .post_message(CH, &text("2"), None)
        .await
        .expect("a 429 is no longer drawn");
    let state = h.sandbox.state();
    assert_eq!(state.retry_after_violations, 1);
    let limited = &state.calls[0];
    assert_eq!(limited.outcome, Outcome::RateLimited);
    assert_eq!(limited.retry_after, Some(INJECTED_RETRY_AFTER_SECS));
    assert_eq!(state.calls.last().map(|c| c.retry_after), Some(None));
}

#[tokio::test]
async fn call_log_ties_each_call_to_its_message_on_the_sandbox_clock() {
    let h = start(options()).await;
    let before = h.sandbox.elapsed();
    let card = h
        .client
        .post_message(CH, &text("card"), None)
        .await
        .expect("post");
    h.client
        .post_message(CH, &text("reply"), Some(&card.ts))
        .await
        .expect("reply");
    h.client
        .update_message(CH, &card.ts, &text("card, updated"))
        .await
        .expect("update");
    let after = h.sandbox.elapsed();
    let calls = h.sandbox.state().calls;
    let tied: Vec<_> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.ts.as_deref(), c.thread_ts.as_deref()))
        .collect();
    let card_ts = Some(card.ts.as_str());
    assert_eq!(tied[0], ("chat.postMessage", card_ts, None));
    assert_eq!(tied[1].2, card_ts, "the reply names its thread");
    assert_ne!(tied[1].1, card_ts, "the reply is a message of its own");
    assert_eq!(tied[2], ("chat.update", card_ts, None));
    for c in &calls {
        let at = Duration::from_micros(c.at_us);
        assert!(
            before <= at && at <= after,
            "{at:?} not in {before:?}..{after:?}"
        );
        assert_eq!(c.at_ms, c.at_us / 1000);
    }
}

#[tokio::test]
async fn changes_wake_a_waiter_once_a_call_was_answered() {
    let h = start(options()).await;
    let mut changes = h.sandbox.changes();
    changes.borrow_and_update();
    h.client
        .post_message(CH, &text("x"), None)
        .await
        .expect("post");
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("woken within 5 s")
        .expect("sandbox alive");
}

#[tokio::test]
async fn drop_after_apply_leaves_the_message_and_the_outcome_unknown() {
    let h = start(SandboxOptions {
        faults: Faults {
            drop_rate: 1.0,
            seed: Some(7),
            ..Faults::default()
        },
        ..options()
    })
    .await;
    for i in 0..12 {
        let err = h
            .client
            .post_message(CH, &text(&format!("m{i}")), None)
            .await
            .expect_err("dropped");
        assert!(
            matches!(
                err,
                SlackError::Connect {
                    maybe_sent: true,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.outcome_unknown(), "{err:?}");
        assert_eq!(err.retry(), Retry::Backoff);
    }
    let state = h.sandbox.state();
    let applied = state.calls.iter().filter(|c| c.applied).count();
    assert!(state.calls.iter().all(|c| c.outcome == Outcome::FaultDrop));
    assert!(applied > 0 && applied < 12, "both halves drawn: {applied}");
    assert_eq!(state.messages(CH).len(), applied);
    assert_eq!(state.count("chat.postMessage").fault, 12);

    // Reconciliation finds exactly the applied posts once faults stop.
    h.sandbox.set_faults(Faults::default()).expect("faults");
    let page = h
        .client
        .conversations_history(&HistoryRequest {
            channel: CH.to_owned(),
            limit: 100,
            ..HistoryRequest::default()
        })
        .await
        .expect("history");
    assert_eq!(page.messages.len(), applied);
}

#[tokio::test]
async fn server_errors_are_backoff_and_bad_channels_are_never() {
    let h = start(SandboxOptions {
        faults: Faults {
            error_rate: 1.0,
            seed: Some(1),
            ..Faults::default()
        },
        ..options()
    })
    .await;
    let err = h
        .client
        .post_message(CH, &text("x"), None)
        .await
        .expect_err("5xx");
    assert!(
        matches!(
            err,
            SlackError::Status {
                status: 500 | 503,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.retry(), Retry::Backoff);
    assert!(err.outcome_unknown());
    assert!(h.sandbox.state().messages(CH).is_empty());

    h.sandbox.set_faults(Faults::default()).expect("faults");
    let err = h
        .client
        .post_message("C0NOSUCH01", &text("x"), None)
        .await
        .expect_err("no channel");
    assert_eq!(err.api_error(), Some("channel_not_found"));
    assert_eq!(err.retry(), Retry::Never);
    assert!(!err.outcome_unknown());
}

#[tokio::test]
async fn slow_answers_time_out_with_unknown_outcome() {
    let sandbox = Sandbox::new(SandboxOptions {
        faults: Faults {
            delay: Duration::from_secs(2),
            delay_rate: 1.0,
            ..Faults::default()
        },
        ..options()
    });
    let (base, task) = spawn_standalone(sandbox).await.expect("bind");
    let client = SlackClient::new(&base, TOKEN, Duration::from_millis(200)).expect("client");
    let err = client.auth_test().await.expect_err("timeout");
    task.abort();
    assert_eq!(
        err,
        SlackError::Timeout {
            method: "auth.test"
        }
    );
    assert_eq!(err.retry(), Retry::Backoff);
    assert!(err.outcome_unknown());
}

#[tokio::test]
async fn token_is_checked_and_never_shown_in_errors() {
    let h = start(options()).await;
    let secret = "xoxb-wrong-secret-42";
    let client = SlackClient::new(&h.base, secret, Duration::from_secs(5)).expect("client");
    let err = client
        .post_message(CH, &text("x"), None)
        .await
        .expect_err("bad token");
    assert_eq!(err.api_error(), Some("invalid_auth"));
    assert_eq!(err.retry(), Retry::Never);
    let shown = format!("{err} {err:?} {client:?}");
    assert!(!shown.contains("secret-42"), "{shown}");

    // No bearer at all.
    let resp = reqwest::Client::new()
        .post(format!("{}/auth.test", h.base))
        .send()
        .await
        .expect("send");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], json!("not_authed"));

    // Transport errors do not show it either.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let dead = SlackClient::new(
        &format!("http://127.0.0.1:{port}/api"),
        secret,
        Duration::from_secs(5),
    )
    .expect("client");
    let err = dead.auth_test().await.expect_err("nobody listens");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("secret-42"), "{shown}");
}

#[tokio::test]
async fn unknown_methods_answer_404() {
    let h = start(options()).await;
    let (status, body) = raw_post_json(&h.base, "dialog.open", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"ok": false, "error": "unknown_method"}));
    assert_eq!(h.sandbox.state().count("unknown").error, 1);
}

#[tokio::test]
async fn state_and_faults_are_served_when_mounted_under_sandbox() {
    let sandbox = Sandbox::new(SandboxOptions::serve_mode());
    // Mounted as `ackbar serve` mounts it.
    let app = mount(axum::Router::new(), "/sandbox", sandbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}/sandbox/api");
    let client = SlackClient::new(&base, "xoxb-any", Duration::from_secs(5)).expect("client");

    // serve mode creates channels on first use.
    let posted = client
        .post_message("C0NEWCHAN1", &text("hello"), None)
        .await
        .expect("post");
    let err = client
        .post_message("#not-an-id", &text("hello"), None)
        .await
        .expect_err("names are not ids");
    assert_eq!(err.api_error(), Some("channel_not_found"));

    let http = reqwest::Client::new();
    let state: SandboxState = http
        .get(format!("{base}/state"))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("decode state");
    assert_eq!(state.messages("C0NEWCHAN1")[0].ts, posted.ts);
    assert_eq!(state.calls.len(), 2);
    assert_eq!(state.calls[0].outcome, Outcome::Ok);
    assert_eq!(
        state.calls[1].outcome,
        Outcome::Error("channel_not_found".into())
    );

    let resp = http
        .post(format!("{base}/_faults"))
        .json(&json!({"error_rate": 1.0, "seed": 3}))
        .send()
        .await
        .expect("faults");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(sandbox.faults().error_rate, 1.0);
    let bad = http
        .post(format!("{base}/_faults"))
        .json(&json!({"drop_rate": 2.0}))
        .send()
        .await
        .expect("faults");
    assert_eq!(bad.status().as_u16(), 400);
    let err = client.auth_test().await.expect_err("fault");
    assert_eq!(err.retry(), Retry::Backoff);

    let resp = http
        .post(format!("{base}/_reset"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("reset");
    assert_eq!(resp.status().as_u16(), 200);
    let state = sandbox.state();
    assert!(state.calls.is_empty());
    assert!(state.messages("C0NEWCHAN1").is_empty());
    task.abort();
}

#[test]
fn call_log_is_bounded() {
    let sandbox = Sandbox::new(SandboxOptions::default());
    let extra = 5;
    for _ in 0..state::MAX_CALL_LOG + extra {
        sandbox.record("auth.test", "auth.test", None, Outcome::Ok, false);
    }
    let state = sandbox.state();
    assert_eq!(state.calls.len(), state::MAX_CALL_LOG);
    assert_eq!(
        state.count("auth.test").ok,
        (state::MAX_CALL_LOG + extra) as u64
    );
}

#[test]
fn invalid_faults_are_refused() {
    let sandbox = Sandbox::new(SandboxOptions::default());
    for f in [
        Faults {
            error_rate: -0.1,
            ..Faults::default()
        },
        Faults {
            delay_rate: f64::NAN,
            ..Faults::default()
        },
        Faults {
            delay: MAX_FAULT_DELAY + Duration::from_secs(1),
            ..Faults::default()
        },
    ] {
        assert!(sandbox.set_faults(f).is_err());
    }
    let parsed: Faults =
        serde_json::from_value(json!({"drop_rate": 0.5, "delay_ms": 250})).expect("faults json");
    assert_eq!(parsed.delay, Duration::from_millis(250));
    assert!(serde_json::from_value::<Faults>(json!({"drop": 1})).is_err());
}

#[tokio::test]
async fn incoming_webhooks_answer_like_slack() {
    let h = start(options()).await;
    let hook = |channel: &str| format!("{}/_hooks/{channel}/key", h.base);
    let post = |url: String, body: &'static [u8]| async move {
        let resp = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        (resp.status().as_u16(), resp.text().await.expect("text"))
    };
    assert_eq!(
        post(hook(CH), br#"{"text": "hi"}"#).await,
        (200, "ok".into())
    );
    assert_eq!(
        post(hook(CH), br#"{"blocks": []}"#).await,
        (400, "no_text".into())
    );
    assert_eq!(
        post(hook(CH), b"not json").await,
        (400, "invalid_payload".into())
    );
    assert_eq!(
        post(hook("C0NOSUCH01"), br#"{"text": "hi"}"#).await,
        (404, "channel_not_found".into())
    );
    // Through the client: applied as a top-level message without metadata.
    h.client
        .post_incoming_webhook(&hook(CH), &with_meta("card", "k"))
        .await
        .expect("posted");
    let err = h
        .client
        .post_incoming_webhook(&hook("C0NOSUCH01"), &text("x"))
        .await
        .expect_err("404");
    assert_eq!(err.api_error(), Some("channel_not_found"));
    assert_eq!(err.retry(), Retry::Never);
    let messages = h.sandbox.state().messages(CH).to_vec();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages.iter().all(|m| m.metadata.is_none()));
    assert_eq!(h.sandbox.state().count("incoming_webhook").ok, 2);
}
