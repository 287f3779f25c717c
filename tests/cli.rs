//! The binary's command line: `check-config`, `serve`'s config errors,
//! `manifest`, `preview`, `send-test` and `outbox` (the last two against the
//! Slack sandbox on loopback).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ackbar::slack::sandbox::Faults;
use ackbar::slack::sandbox::validate::validate_message;
use ackbar::slack::scopes::{BOT_EVENTS, METHOD_SCOPES};
use common::{
    CHANNEL, TestAlert, cards, eventually, eventually_async, firing, get_json, http, message_text,
    resolved, sandbox_options, start_ackbar, start_slack, test_config, webhook,
};
use serde_json::{Value, json};

fn ackbar(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ackbar"))
        .args(args)
        .output()
        .expect("run ackbar");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// check-config says how Slack's requests reach ackbar, as the README's
/// "From the sandbox to a real Slack workspace" guide promises.
#[test]
fn check_config_names_the_transport() {
    let dir = tempfile::tempdir().unwrap();
    let base = json!({"slack": {"bot_token": "xoxb-1", "signing_secret": "s"},
                      "store": {"url": format!("sqlite://{}", dir.path().join("a.db").display())}});
    let mut http = base.clone();
    http["public_url"] = json!("https://ackbar.example.com");
    let mut socket = base.clone();
    socket["slack"]["app_token"] = json!("xapp-1");
    for (config, expected) in [
        (
            http,
            "requests over HTTP at https://ackbar.example.com/slack/",
        ),
        (socket, "requests over Socket Mode"),
        (base, "set public_url for the manifest"),
    ] {
        let file = config_file(dir.path(), &config);
        let (code, stdout, stderr) = ackbar(&["check-config", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
}

#[test]
fn check_config_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.json");
    let (code, stdout, stderr) = ackbar(&["check-config", example]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    assert!(stdout.contains("sandbox mode"), "{stdout}");
    assert!(
        stdout.contains("route \"database\" -> C0DBPAGES1"),
        "{stdout}"
    );
    // The shipped example templates pass the sample renders.
    assert!(
        stdout.contains("card template: ok") && stdout.contains("reply template: ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains("otlp:   log records with severityNumber >= 17")
            && stdout.contains("trace links https://jaeger.example/trace/{trace_id}"),
        "{stdout}"
    );
    assert!(
        stdout.contains("digest \"C0ALERTS01 week mon 09:00 Europe/Berlin\": next "),
        "{stdout}"
    );
}

#[test]
fn check_config_names_the_path_of_a_mistake_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"routes": [{"name": "a", "channel": "C0123ABCD", "matchers": ["team=~(unclosed"]}]}"#,
    )
    .unwrap();
    let (code, _, stderr) = ackbar(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("routes[0].matchers[0]"), "{stderr}");
}

#[test]
fn serve_refuses_an_invalid_config_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"listen": "127.0.0.1:0", "delivery": {"post_interval": "soon"}}"#,
    )
    .unwrap();
    let (code, _, stderr) = ackbar(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("delivery.post_interval"), "{stderr}");
}

/// A config of one route `db` with `template`, its card template (if a
/// file) written next to it as `card.json.j2`.
fn template_config(dir: &Path, card_file: Option<&str>, template: Value) -> PathBuf {
    if let Some(text) = card_file {
        std::fs::write(dir.join("card.json.j2"), text).unwrap();
    }
    config_file(
        dir,
        &json!({"routes": [{"name": "db", "channel": "C0DBPAGES1", "template": template}]}),
    )
}

#[test]
fn check_config_names_the_route_file_and_line_of_a_template_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = template_config(
        dir.path(),
        Some("[\n  {\"type\": \"divider\"}\n  {% for a in alerts %}\n]"),
        json!({"card": {"file": "card.json.j2"}}),
    );
    let (code, _, stderr) = ackbar(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("routes[0].template.card"), "{stderr}");
    assert!(stderr.contains("route \"db\""), "{stderr}");
    assert!(stderr.contains("card.json.j2:3"), "{stderr}");
}

#[test]
fn check_config_fails_a_template_that_breaks_a_limit_on_long_labels() {
    let dir = tempfile::tempdir().unwrap();
    let section = |text: &str| {
        format!(r#"[{{"type": "section", "text": {{"type": "mrkdwn", "text": {text}}}}}]"#)
    };
    // Untruncated, a sample card's long cluster label is over 3,000 chars.
    let path = template_config(
        dir.path(),
        Some(&section("{{ common_labels.cluster }}")),
        json!({"card": {"file": "card.json.j2"}}),
    );
    let (code, stdout, stderr) = ackbar(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("card template: FAILS"), "{stdout}");
    assert!(
        stderr.contains("route \"db\": card \"at limits\": message breaks a Block Kit limit")
            && stderr.contains("/blocks/0/text/text"),
        "{stderr}"
    );

    // Truncated, every sample passes.
    let path = template_config(
        dir.path(),
        Some(&section("{{ common_labels.cluster | truncate(300) }}")),
        json!({"card": {"file": "card.json.j2"}, "reply": {"inline": "[]"}}),
    );
    let (code, stdout, stderr) = ackbar(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("card template: ok") && stdout.contains("reply template: ok"),
        "{stdout}"
    );
}

// ---- manifest ------------------------------------------------------------

/// Writes `config` to a file in `dir` and returns its path.
fn config_file(dir: &Path, config: &Value) -> PathBuf {
    let path = dir.join(format!("config-{}.json", fastrand::u32(..)));
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    path
}

fn manifest_of(config: &Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), config);
    let (code, stdout, stderr) = ackbar(&["manifest", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).expect("manifest is JSON")
}

/// Every request URL in a manifest, with the method Slack uses on it.
fn request_urls(manifest: &Value) -> Vec<String> {
    [
        &manifest["settings"]["interactivity"]["request_url"],
        &manifest["settings"]["event_subscriptions"]["request_url"],
        &manifest["features"]["slash_commands"][0]["url"],
    ]
    .into_iter()
    .filter_map(|v| v.as_str().map(str::to_owned))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_points_slack_at_the_routes_a_running_ackbar_serves() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("a.db"));
    config["slack"]["signing_secret"] = json!("manifest-test-secret");
    let server = start_ackbar(&config).await;
    config["public_url"] = json!(server.base());
    config["slack"]["command"] = json!("/pager");

    let manifest = tokio::task::spawn_blocking(move || manifest_of(&config))
        .await
        .unwrap();
    let urls = request_urls(&manifest);
    assert_eq!(urls.len(), 3, "{manifest:#}");
    for url in &urls {
        assert!(url.starts_with(&server.base()), "{url}");
        // Unsigned requests are refused by the handler: the route exists.
        let status = http().post(url).body("x=1").send().await.unwrap().status();
        assert_eq!(status.as_u16(), 401, "{url}");
    }
    let missing = http()
        .post(server.url("/slack/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404, "the check above can fail");
    assert_eq!(
        manifest["oauth_config"]["redirect_urls"][0],
        format!("{}/slack/oauth/callback", server.base())
    );
    assert_eq!(
        manifest["features"]["slash_commands"][0]["command"],
        "/pager"
    );
    assert_eq!(manifest["settings"]["socket_mode_enabled"], false);
    server.stop().await;
}

#[test]
fn manifest_scopes_cover_every_method_and_event_ackbar_uses() {
    let manifest = manifest_of(&json!({"public_url": "https://ackbar.example.com"}));
    let granted: Vec<&str> = manifest["oauth_config"]["scopes"]["bot"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for (what, needs) in METHOD_SCOPES.iter().chain(BOT_EVENTS) {
        for scope in *needs {
            assert!(granted.contains(scope), "{what} needs {scope}: {granted:?}");
        }
    }
    assert!(granted.contains(&"commands"), "the slash command");
    let events: Vec<&str> = manifest["settings"]["event_subscriptions"]["bot_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(events, ["app_mention", "app_uninstalled", "tokens_revoked"]);
    // Slack refuses a manifest whose events lack their scope (this one is
    // Slack's rule, stated here rather than read from ackbar's table).
    assert!(granted.contains(&"app_mentions:read"), "{granted:?}");
    assert_eq!(manifest["settings"]["interactivity"]["is_enabled"], true);
}

#[test]
fn manifest_in_socket_mode_has_no_request_urls() {
    let manifest = manifest_of(&json!({
        "slack": {"bot_token": "xoxb-1", "app_token": "xapp-1"},
    }));
    assert_eq!(manifest["settings"]["socket_mode_enabled"], true);
    assert!(request_urls(&manifest).is_empty(), "{manifest:#}");
    assert!(manifest["oauth_config"].get("redirect_urls").is_none());
    assert_eq!(
        manifest["features"]["slash_commands"][0]["command"],
        "/ackbar"
    );
}

#[test]
fn manifest_without_public_url_or_socket_mode_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &json!({"slack": {"bot_token": "xoxb-1"}}));
    let (code, stdout, stderr) = ackbar(&["manifest", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("public_url") && stderr.contains("slack.app_token"),
        "{stderr}"
    );
}

// ---- preview -------------------------------------------------------------

/// Runs `ackbar preview` on `payloads` with `config`; (exit code, output
/// JSON, stderr).
fn preview(config: &Value, payloads: &Value) -> (i32, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), config);
    let alerts = dir.path().join("alerts.json");
    std::fs::write(&alerts, payloads.to_string()).unwrap();
    let (code, stdout, stderr) = ackbar(&[
        "preview",
        "--config",
        config.to_str().unwrap(),
        alerts.to_str().unwrap(),
    ]);
    let output = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (code, output, stderr)
}

/// Undoes the percent-encoding of a Block Kit Builder link's fragment.
fn builder_blocks(url: &str) -> Value {
    let fragment = url
        .strip_prefix("https://app.slack.com/block-kit-builder/#")
        .expect("a Block Kit Builder link");
    let bytes = fragment.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            decoded.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    serde_json::from_slice::<Value>(&decoded).unwrap()["blocks"].clone()
}

#[test]
fn preview_shows_the_post_update_and_reply_of_a_group_that_fires_then_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never-created.db");
    let config = test_config("http://127.0.0.1:9/api", &db);
    let alerts = [
        firing("DiskFull", "db1"),
        firing("DiskFull", "db2"),
        firing("DiskFull", "db3"),
    ];
    let resolves: Vec<TestAlert> = alerts
        .iter()
        .map(|a| resolved(&a.name, &a.instance))
        .collect();
    let payloads = json!([webhook("disks", &alerts), webhook("disks", &resolves)]);
    let (code, output, stderr) = preview(&config, &payloads);
    assert_eq!(code, 0, "{stderr}");
    assert!(!db.exists(), "preview must not open the configured store");

    let cards = output["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "{output:#}");
    let messages = cards[0]["messages"].as_array().unwrap();
    let shape: Vec<(i64, &str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["after_payload"].as_i64().unwrap(),
                m["kind"].as_str().unwrap(),
                m["method"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (1, "post", "chat.postMessage"),
            (2, "update", "chat.update"),
            (2, "reply", "chat.postMessage"),
        ]
    );
    let post = &messages[0]["request"];
    assert_eq!(post["channel"], CHANNEL);
    assert!(
        post["text"].as_str().unwrap().contains("DiskFull"),
        "{post}"
    );
    assert!(post["metadata"]["event_payload"]["card_id"].is_string());
    let update = &messages[1]["request"];
    let reply = &messages[2]["request"];
    assert!(update["ts"].is_string() && update["ts"] == reply["thread_ts"]);
    for m in messages {
        assert!(m["limit_broken"].is_null(), "{m}");
        let m_blocks = &m["request"]["blocks"];
        assert_eq!(
            builder_blocks(m["block_kit_builder"].as_str().unwrap()),
            *m_blocks
        );
        // The sandbox's validator, as Slack would check it.
        validate_message(m["request"]["text"].as_str(), Some(m_blocks)).unwrap();
    }
}

#[test]
fn preview_truncates_an_oversized_label_value_as_the_card_does() {
    let huge = "x".repeat(10_000);
    let mut payload = webhook("big", &[firing("Huge", "h1")]);
    payload["alerts"][0]["labels"]["instance"] = json!(huge);
    payload["alerts"][0]["annotations"]["summary"] = json!(huge);
    let dir = tempfile::tempdir().unwrap();
    let config = test_config("http://127.0.0.1:9/api", &dir.path().join("a.db"));
    let (code, output, stderr) = preview(&config, &payload);
    assert_eq!(code, 0, "{stderr}");
    let messages = output["cards"][0]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    let request = &messages[0]["request"];
    let shown = request["blocks"].to_string();
    assert!(!shown.contains(&huge[..3_001]), "no text over 3,000 chars");
    assert!(
        shown.contains('…'),
        "truncated with an ellipsis: {shown:.300}"
    );
    validate_message(request["text"].as_str(), Some(&request["blocks"])).unwrap();
}

#[test]
fn preview_names_the_payload_it_cannot_decode() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config("http://127.0.0.1:9/api", &dir.path().join("a.db"));
    let mut broken = webhook("g", &[firing("A", "a")]);
    broken["alerts"][0]["startsAt"] = json!("yesterday");
    let (code, _, stderr) = preview(&config, &json!([webhook("g", &[firing("A", "a")]), broken]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("payload 2") && stderr.contains("startsAt"),
        "{stderr}"
    );
}

// ---- send-test and outbox --------------------------------------------------

/// Runs the binary without blocking the runtime the sandbox runs on.
async fn ackbar_async(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ackbar"))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run ackbar");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_posts_one_labelled_card_through_the_outbox() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &test_config(&slack.api_url, &dir.path().join("a.db")),
    );
    let (code, stdout, stderr) = ackbar_async(&[
        "send-test",
        "--config",
        config.to_str().unwrap(),
        "--channel",
        CHANNEL,
        "--timeout",
        "20s",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    let state = slack.sandbox.state();
    let posted = cards(&state, CHANNEL);
    assert_eq!(posted.len(), 1, "one card");
    let (ts, _, message) = &posted[0];
    assert!(
        stdout.contains(&format!("to {CHANNEL} at ts {ts}")),
        "{stdout}"
    );
    assert!(
        message_text(message).contains("AckbarSendTest"),
        "{message}"
    );
    assert!(
        message_text(message).contains("Nobody is paged"),
        "{message}"
    );
    // Nothing is left to deliver.
    let (_, listed, _) =
        ackbar_async(&["outbox", "--config", config.to_str().unwrap(), "--json"]).await;
    assert_eq!(listed.trim(), "[]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_to_an_unknown_channel_fails_and_says_what_to_check() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &test_config(&slack.api_url, &dir.path().join("a.db")),
    );
    let (code, _, stderr) = ackbar_async(&[
        "send-test",
        "--config",
        config.to_str().unwrap(),
        "--channel",
        "C0NOSUCHCH",
        "--timeout",
        "20s",
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("channel_not_found"), "{stderr}");
    assert!(stderr.contains("check the channel id"), "{stderr}");
    assert!(cards(&slack.sandbox.state(), CHANNEL).is_empty());
}

#[test]
fn send_test_in_sandbox_mode_without_a_running_server_says_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = config_file(
        dir.path(),
        &json!({"listen": format!("127.0.0.1:{port}"),
                "store": {"url": format!("sqlite://{}", dir.path().join("a.db").display())}}),
    );
    let (code, _, stderr) = ackbar(&[
        "send-test",
        "--config",
        config.to_str().unwrap(),
        "--channel",
        CHANNEL,
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("ackbar serve"), "{stderr}");
    assert!(stderr.contains("slack.bot_token"), "{stderr}");
}

/// What a newcomer does after the README's first command: the test card
/// lands in the running server's sandbox, and its Resolve button works
/// there, because both processes share the config's store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_in_sandbox_mode_posts_to_the_running_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let db = dir.path().join("a.db");
    let mut config = test_config("http://unused.invalid", &db);
    config["slack"] = json!({"request_timeout": "2s"});
    config["listen"] = json!(addr.to_string());
    let server = common::start_ackbar_on(listener, &config).await;
    let file = config_file(dir.path(), &config);

    let (code, stdout, stderr) = ackbar_async(&[
        "send-test",
        "--config",
        file.to_str().unwrap(),
        "--channel",
        CHANNEL,
        "--timeout",
        "20s",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    let state: Value = get_json(&server.url("/sandbox/api/state")).await;
    let messages = state["channels"][CHANNEL]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(messages.len(), 1, "{state}");
    let ts = messages[0]["ts"].as_str().unwrap().to_owned();
    assert!(stdout.contains(&ts), "{stdout}");
    assert!(message_text(&messages[0]).contains("AckbarSendTest"));

    // The running server acts on the card the command posted.
    let clicked = http()
        .post(server.url("/sandbox/api/_act/click"))
        .json(&json!({"channel": CHANNEL, "message_ts": ts,
                      "action_id": "ackbar_resolve", "user": "U0ALICE01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(clicked.status().as_u16(), 200);
    eventually_async(
        Duration::from_secs(10),
        "the card shows resolved",
        || async {
            let state: Value = get_json(&server.url("/sandbox/api/state")).await;
            message_text(&state["channels"][CHANNEL]["messages"][0]).contains("RESOLVED")
        },
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_retried_and_delivered_once_the_fault_clears() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    slack
        .sandbox
        .set_faults(Faults {
            error_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("a.db"));
    config["delivery"]["max_attempts"] = json!(1);
    let path = config_file(dir.path(), &config);
    let path = path.to_str().unwrap();
    let (code, _, stderr) = ackbar_async(&[
        "send-test",
        "-c",
        path,
        "--channel",
        CHANNEL,
        "--timeout",
        "20s",
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");

    let (code, listed, stderr) = ackbar_async(&["outbox", "-c", path, "--dead", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let letters = listed.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{listed:#}");
    let letter = &letters[0];
    assert_eq!(
        (&letter["kind"], &letter["state"], &letter["channel"]),
        (&json!("post"), &json!("dead"), &json!(CHANNEL))
    );
    assert!(
        letter["last_error"].as_str().unwrap().contains("HTTP 5"),
        "{letter}"
    );
    let id = letter["id"].as_i64().unwrap().to_string();
    let (_, table, _) = ackbar_async(&["outbox", "-c", path]).await;
    assert!(
        table.contains("dead") && table.contains("HTTP 5"),
        "{table}"
    );

    let (code, stdout, stderr) = ackbar_async(&["outbox", "retry", &id, "-c", path]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("pending again"), "{stdout}");
    let (code, _, stderr) = ackbar_async(&["outbox", "retry", &id, "-c", path]).await;
    assert_eq!(code, 2, "a pending operation is not a dead letter");
    assert!(stderr.contains("is pending, not a dead letter"), "{stderr}");
    let (code, _, stderr) = ackbar_async(&["outbox", "retry", "999999", "-c", path]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("no outbox operation 999999"), "{stderr}");

    slack.sandbox.set_faults(Faults::default()).unwrap();
    let server = start_ackbar(&config).await;
    eventually(
        Duration::from_secs(15),
        "the retried card is posted",
        || cards(&slack.sandbox.state(), CHANNEL).len() == 1,
    )
    .await;
    server.stop().await;
    let (_, listed, _) = ackbar_async(&["outbox", "-c", path, "--json"]).await;
    assert_eq!(listed.trim(), "[]");
}

/// A SQLite database serves one process: a second `serve` on it stops at
/// once and says why (the store's cache of card state relies on it), and
/// the lock goes with the process holding it, also when it is killed.
#[tokio::test]
async fn a_second_serve_on_one_sqlite_database_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ackbar.db");
    let config = json!({"store": {"url": format!("sqlite://{}", db.display())}});
    let mut first = common::start_ackbar_process(&config, dir.path(), common::free_port()).await;

    let mut second = config.clone();
    second["listen"] = json!(format!("127.0.0.1:{}", common::free_port()));
    let path = dir.path().join("second.json");
    std::fs::write(&path, second.to_string()).unwrap();
    let run_second = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ackbar"))
            .args(["serve", "--config"])
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let refused = tokio::time::timeout(Duration::from_secs(20), run_second().wait_with_output())
        .await
        .expect("a second serve on the same database must stop by itself")
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("another ackbar serve is using this database")
            && stderr.contains("PostgreSQL"),
        "{stderr}"
    );

    first.kill().await;
    let _ = first.child.wait().await;
    let mut after = run_second();
    let url = format!("http://{}/healthz", second["listen"].as_str().unwrap());
    common::wait_http_ok(&url).await;
    after.kill().await.unwrap();
}

/// A SIGTERM stops a sandbox-mode server without waiting for
/// `delivery.shutdown_deadline`: its emulated Slack is served by the
/// listener that just closed, so operations due at shutdown could only fail
/// and be retried until the deadline. They stay in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_server_stops_at_once_with_operations_due() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ackbar.db");
    let config = json!({
        "store": {"url": format!("sqlite://{}", db.display())},
        "delivery": {"reply_batch_window": "1s", "shutdown_deadline": "60s"},
    });
    let mut server = common::start_ackbar_process(&config, dir.path(), common::free_port()).await;
    let hook = server.url("/webhook/alertmanager");
    let one = webhook("Down", &[firing("Down", "a")]);
    assert!(
        common::post_webhook(&http(), &hook, &one)
            .await
            .status()
            .is_success()
    );
    eventually_async(Duration::from_secs(20), "the card is posted", || async {
        let state: Value = get_json(&server.url("/sandbox/api/state")).await;
        // No routes configured: the default channel.
        state["channels"][ackbar::config::DEFAULT_CHANNEL]["messages"]
            .as_array()
            .is_some_and(|m| m.len() == 1)
    })
    .await;
    // A second alert: the card's reply and update fall due a second later.
    let two = webhook("Down", &[firing("Down", "a"), firing("Down", "b")]);
    assert!(
        common::post_webhook(&http(), &hook, &two)
            .await
            .status()
            .is_success()
    );
    let pid = server.child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(20), server.child.wait())
        .await
        .expect("shutdown must not wait for the 60 s flush deadline")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    // What was due is still in the outbox for the next start.
    let file = config_file(dir.path(), &config);
    let (code, listed, stderr) = ackbar(&["outbox", "-c", file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(listed.contains("reply"), "{listed}");
}
