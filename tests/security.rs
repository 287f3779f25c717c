//! Secrets never leave ackbar: distinctive secret values are configured,
//! ackbar is driven through its success and error paths (ingest with and
//! without credentials, bad Slack signatures, slash commands, a silence
//! against an Alertmanager URL carrying credentials, the sandbox), and every
//! output is searched for them: HTTP answers and headers, `/metrics`,
//! `/healthz`, `/readyz`, the sandbox state and page, what ackbar sent to Slack,
//! everything it logged at `trace` level, and the binary's `check-config`
//! and `serve` output.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ackbar::slack::sandbox::Signing;
use base64::Engine;
use common::*;
use serde_json::{Value, json};

/// Every secret carries this marker, so a partial leak shows too.
const MARKER: &str = "CANARY";
const BOT_TOKEN: &str = "xoxb-CANARY-bot-71c3";
const SIGNING_SECRET: &str = "CANARY-signing-5d2a";
const APP_TOKEN: &str = "xapp-CANARY-app-9e4b";
const BEARER: &str = "CANARY-bearer-30f7";
const BASIC_PASSWORD: &str = "CANARY-basic-82ad";
const AM_PASSWORD: &str = "CANARY-am-61be";
const CLIENT_SECRET: &str = "CANARY-client-secret-a41d";
const ALICE: &str = "U0ALICE01";
/// The secret part of the incoming webhooks' URLs.
const HOOK_KEY: &str = "CANARY-hook-0c9d";
const HOOK_CHANNEL: &str = "C0HOOKED01";
/// A webhook channel the Slack double does not know: its posts fail (404).
const GONE_HOOK_CHANNEL: &str = "C0HOOKGONE";

/// Secrets as they could appear encoded: the Basic credentials ackbar
/// checks, and the ones it would send to Alertmanager.
fn encoded_secrets() -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        b64(&format!("alertmanager:{BASIC_PASSWORD}")),
        b64(&format!("silencer:{AM_PASSWORD}")),
        b64(&format!("{}:{CLIENT_SECRET}", common::oauth::CLIENT_ID)),
    ]
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(MARKER),
        "{what} shows a secret:\n{}",
        excerpt(text)
    );
    for encoded in encoded_secrets() {
        assert!(
            !text.contains(&encoded),
            "{what} shows encoded credentials:\n{}",
            excerpt(text)
        );
    }
}

/// The lines around the first marker (logs can be long).
fn excerpt(text: &str) -> String {
    let at = text.find(MARKER).unwrap_or(0);
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    text[start..].lines().take(5).collect::<Vec<_>>().join("\n")
}

/// Everything this test binary logs through `tracing`, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only subscriber of this test binary");
        captured
    })
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// Status, headers and body of an answer, as one text to search.
/// The ingest body limit of the ackbars in the leak test.
const INGEST_LIMIT: usize = 64 * 1024;

async fn answer(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let mut text = format!("HTTP {status}\n");
    for (name, value) in response.headers() {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push_str(&response.text().await.unwrap_or_default());
    (status, text)
}

/// Sends a request, checks its status, and adds its answer to `seen`.
async fn expect(seen: &mut String, request: reqwest::RequestBuilder, status: u16) {
    let response = request.send().await.expect("request");
    let url = response.url().to_string();
    let (got, text) = answer(response).await;
    assert_eq!(got, status, "{url}: {text}");
    seen.push_str(&text);
    seen.push('\n');
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Requests that fail for each reason the ingest endpoints know, plus one
/// that succeeds; `auth` is the right `Authorization` value.
async fn drive_ingest(seen: &mut String, ackbar: &Ackbar, auth: &str, wrong_auth: &str) {
    let client = http();
    let hook = ackbar.url("/webhook/alertmanager");
    let body = webhook("g", &[firing("DiskFull", "db-1")]).to_string();
    let json_post = |url: &str| client.post(url).header("content-type", "application/json");
    expect(seen, json_post(&hook).body(body.clone()), 401).await;
    expect(
        seen,
        json_post(&hook)
            .header("authorization", wrong_auth)
            .body(body.clone()),
        401,
    )
    .await;
    expect(
        seen,
        json_post(&hook)
            .header("authorization", "Bearer")
            .body("{}"),
        401,
    )
    .await;
    expect(
        seen,
        json_post(&hook)
            .header("authorization", auth)
            .body("{not json"),
        400,
    )
    .await;
    expect(
        seen,
        client
            .post(&hook)
            .header("authorization", auth)
            .header("content-type", "text/plain")
            .body(body.clone()),
        415,
    )
    .await;
    expect(
        seen,
        json_post(&hook)
            .header("authorization", auth)
            // Just past the limit: small enough to be sent whole before the
            // 413 comes back (a body far past it races the server closing).
            .body(vec![b' '; INGEST_LIMIT + 1]),
        413,
    )
    .await;
    expect(
        seen,
        json_post(&hook).header("authorization", auth).body(body),
        200,
    )
    .await;
    let logs_url = ackbar.url("/v1/logs");
    expect(seen, json_post(&logs_url).body("{}"), 401).await;
    expect(
        seen,
        json_post(&logs_url)
            .header("authorization", auth)
            .body(r#"{"resource_logs": 1}"#),
        400,
    )
    .await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        expect(seen, client.get(ackbar.url(path)), 200).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_answers_logs_or_what_ackbar_sends() {
    logs();
    let mut seen = String::new();

    // ackbar against a Slack double: bot token, signing secret, Socket Mode,
    // Bearer ingest auth, and a route whose Alertmanager URL has a password.
    let mut options = sandbox_options(&[CHANNEL, HOOK_CHANNEL]);
    options.token = Some(BOT_TOKEN.to_owned());
    options.signing_secret = Some(SIGNING_SECRET.to_owned());
    options.app_token = Some(APP_TOKEN.to_owned());
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("a.db"));
    config["slack"]["bot_token"] = json!(BOT_TOKEN);
    config["slack"]["signing_secret"] = json!(SIGNING_SECRET);
    config["slack"]["app_token"] = json!(APP_TOKEN);
    config["ingest"] = json!({ "auth": { "bearer": BEARER }, "max_body_bytes": INGEST_LIMIT });
    // Nothing listens on port 9: the silence fails as unreachable.
    config["routes"][0]["alertmanager_url"] =
        json!(format!("http://silencer:{AM_PASSWORD}@127.0.0.1:9"));
    // Two webhook routes, one delivering and one failing (404).
    let hook_routes = [HOOK_CHANNEL, GONE_HOOK_CHANNEL].map(|channel| {
        json!({
            "name": channel,
            "matchers": [format!("group={channel}")],
            "channel": channel,
            "webhook_url": format!("{}/_hooks/{channel}/{HOOK_KEY}", slack.api_url),
        })
    });
    let routes = config["routes"].as_array_mut().unwrap();
    routes.splice(0..0, hook_routes);
    let ackbar = start_ackbar(&config).await;
    slack.sandbox.set_app_url(Some(ackbar.base()));
    eventually(Duration::from_secs(10), "Socket Mode connected", || {
        slack.sandbox.socket_state().open == 1
    })
    .await;

    drive_ingest(
        &mut seen,
        &ackbar,
        &format!("Bearer {BEARER}"),
        "Bearer nope",
    )
    .await;
    eventually(Duration::from_secs(10), "card posted", || {
        cards(&slack.sandbox.state(), CHANNEL).len() == 1
    })
    .await;
    let (ts, _, _) = cards(&slack.sandbox.state(), CHANNEL).remove(0);
    for channel in [HOOK_CHANNEL, GONE_HOOK_CHANNEL] {
        let r = http()
            .post(ackbar.url("/webhook/alertmanager"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {BEARER}"))
            .body(webhook(channel, &[firing("DiskFull", "db-1")]).to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    eventually(
        Duration::from_secs(10),
        "webhook routes delivered and failed",
        || {
            let state = slack.sandbox.state();
            state
                .counts
                .get("incoming_webhook")
                .is_some_and(|c| c.ok == 1 && c.error >= 1)
        },
    )
    .await;
    expect(&mut seen, http().get(ackbar.url("/metrics")), 200).await;
    assert!(
        seen.contains("incoming_webhook"),
        "webhook calls are counted"
    );

    // Requests that claim to come from Slack and do not.
    let client = http();
    for path in ["/slack/interactions", "/slack/commands", "/slack/events"] {
        expect(
            &mut seen,
            client.post(ackbar.url(path)).body("payload=%7B%7D"),
            401,
        )
        .await;
        for signing in [Signing::WrongSecret, Signing::Stale, Signing::Future] {
            let r = slack
                .sandbox
                .send_raw(
                    path,
                    "application/x-www-form-urlencoded",
                    b"command=%2Fackbar&text=list&user_id=U0ALICE01",
                    signing,
                )
                .await
                .expect("sent");
            assert_eq!(r.status, 401, "{}", r.body);
            seen.push_str(&serde_json::to_string(&r).unwrap());
        }
    }
    // Signed and valid: slash commands (one answering through response_url),
    // and a silence that cannot reach its Alertmanager.
    for text in ["list", "help", "ack nosuchcard", "bogus <!channel>"] {
        let r = slack
            .sandbox
            .slash_command("/ackbar", text, CHANNEL, ALICE)
            .await
            .expect("command");
        assert_eq!(r.status, 200, "{}", r.body);
        seen.push_str(&serde_json::to_string(&r).unwrap());
    }
    let r = slack
        .sandbox
        .click(CHANNEL, &ts, "ackbar_silence", ALICE)
        .await
        .expect("click");
    assert_eq!(r.status, 200, "{}", r.body);
    let view_id = slack.sandbox.state().views[0].id.clone();
    let r = slack
        .sandbox
        .submit_view(
            &view_id,
            ALICE,
            json!({"ackbar_silence_duration": {"duration": {"type": "plain_text_input", "value": "1h"}}}),
        )
        .await
        .expect("submit");
    assert!(
        r.body.contains("unreachable"),
        "the silence failed as it should: {}",
        r.body
    );
    seen.push_str(&serde_json::to_string(&r).unwrap());
    eventually(
        Duration::from_secs(10),
        "list answered via response_url",
        || !slack.sandbox.state().response_posts.is_empty(),
    )
    .await;

    // What ackbar sent to Slack: the token only ever in a header, never in
    // a body the double recorded.
    seen.push_str(&serde_json::to_string(&slack.sandbox.state()).unwrap());
    ackbar.stop().await;

    // ackbar in sandbox mode: Basic ingest auth, the configured signing
    // secret shared with its own emulator, whose state is public.
    let mut config = test_config("https://slack.com/api", &dir.path().join("b.db"));
    config["slack"] = json!({ "signing_secret": SIGNING_SECRET, "request_timeout": "2s" });
    config["ingest"] = json!({
        "max_body_bytes": INGEST_LIMIT,
        "auth": { "basic": { "username": "alertmanager", "password": BASIC_PASSWORD } }
    });
    let ackbar = start_ackbar(&config).await;
    drive_ingest(
        &mut seen,
        &ackbar,
        &basic("alertmanager", BASIC_PASSWORD),
        &basic("alertmanager", "nope"),
    )
    .await;
    for path in ["/sandbox/api/state", "/sandbox/api/_faults"] {
        expect(&mut seen, client.get(ackbar.url(path)), 200).await;
    }
    // The sandbox page acts through the emulator, which signs server-side:
    // the page itself carries no secret.
    for path in ["/sandbox/", "/sandbox/page.js", "/sandbox/page.css"] {
        expect(&mut seen, client.get(ackbar.url(path)), 200).await;
    }
    assert!(seen.contains("api/_act/click"), "the page was read");
    expect(
        &mut seen,
        client.post(ackbar.url("/sandbox/api/auth.test")),
        200,
    )
    .await;
    ackbar.stop().await;

    assert!(
        seen.contains("missing or wrong credentials") && seen.contains("signature"),
        "the error paths ran: {seen}"
    );
    assert_no_secret("an HTTP answer or the Slack double's state", &seen);
    let logged = logged();
    assert!(
        logged.contains("ackbar listening") && logged.contains("TRACE"),
        "logs are captured at every level"
    );
    assert_no_secret("the logs", &logged);
}

/// The OAuth client secret and the bot tokens installs leave in the store
/// never show either: not on the install and callback pages (success and
/// every refusal), not in `/metrics`, not in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_client_secret_and_installed_tokens_never_leak() {
    use common::oauth::*;
    logs();
    let mut seen = String::new();
    let slack = start_slack(oauth_sandbox_options(CLIENT_SECRET, SIGNING_SECRET)).await;
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://{}", listener.local_addr().unwrap());
    let db = dir.path().join("o.db");
    let config = oauth_config(
        &slack.api_url,
        &format!("sqlite://{}", db.display()),
        &public_url,
        CLIENT_SECRET,
        SIGNING_SECRET,
    );
    let ackbar = start_ackbar_on(listener, &config).await;
    slack.sandbox.set_app_url(Some(ackbar.base()));

    let mut pages = Vec::new();
    for team in [TEAM_A, TEAM_B] {
        pages.push(Browser::new().install(&ackbar.base(), team).await);
    }
    let mut browser = Browser::new();
    let authorize = browser.start_install(&ackbar.base()).await;
    let callback = browser.approve(&authorize, TEAM_A, false).await;
    pages.push(browser.get(&callback).await); // a reinstall: new token
    pages.push(browser.get(&callback).await); // a replay
    let authorize = browser.start_install(&ackbar.base()).await;
    let denied = browser.approve(&authorize, TEAM_A, true).await;
    pages.push(browser.get(&denied).await);
    for page in &pages {
        seen.push_str(&format!("{page:?}\n"));
    }
    assert_eq!(
        pages.iter().map(|p| p.status).collect::<Vec<_>>(),
        [200, 200, 200, 400, 400]
    );
    for group in ["a", "b"] {
        post_webhook(
            &http(),
            &ackbar.url("/webhook/alertmanager"),
            &webhook(group, &[firing("DiskFull", "db-1")]),
        )
        .await;
    }
    eventually(Duration::from_secs(10), "both teams' cards posted", || {
        let state = slack.sandbox.state();
        [CHAN_A, CHAN_B].iter().all(|c| {
            state
                .channels
                .get(*c)
                .is_some_and(|ch| !ch.messages.is_empty())
        })
    })
    .await;
    slack.sandbox.uninstall(TEAM_B).await.expect("uninstalled");
    for path in ["/metrics", "/healthz", "/readyz"] {
        expect(&mut seen, http().get(ackbar.url(path)), 200).await;
    }
    seen.push_str(&serde_json::to_string(&slack.sandbox.state()).unwrap());

    // The tokens ackbar holds (and the one it held for team B).
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let tokens: Vec<String> = sqlx::query_scalar("SELECT bot_token FROM installations")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    ackbar.stop().await;
    assert_eq!(tokens.len(), 1, "team B was uninstalled");

    let logged = logged();
    assert!(
        logged.contains("a workspace installed ackbar"),
        "install logs ran"
    );
    assert_no_secret("an install page, /metrics or the sandbox state", &seen);
    assert_no_secret("the logs", &logged);
    for token in &tokens {
        assert!(token.starts_with("xoxb-"));
        for (what, text) in [("an answer", &seen), ("the logs", &logged)] {
            assert!(
                !text.contains(token.as_str()),
                "{what} shows an installed token"
            );
        }
    }
    assert!(
        !logged.contains("xoxb-T0"),
        "no installed token (xoxb-TEAM-...) is ever logged"
    );
}

fn run_binary(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ackbar"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run ackbar");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_config_and_config_errors_never_print_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("signing");
    std::fs::write(&secret_file, format!("{SIGNING_SECRET}\n")).unwrap();
    let write = |name: &str, config: Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, config.to_string()).unwrap();
        path.display().to_string()
    };
    let route = json!({
        "name": "db",
        "channel": CHANNEL,
        "alertmanager_url": format!("https://silencer:{AM_PASSWORD}@am.example:9093"),
    });
    let hook_route = json!({
        "name": "hooked",
        "channel": "C0HOOKED01",
        "webhook_url": format!("https://hooks.slack.com/services/T0/B0/{HOOK_KEY}"),
    });
    let inline = write(
        "inline.json",
        json!({
            "public_url": "https://ackbar.example.com",
            "slack": { "bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET, "app_token": APP_TOKEN,
                "oauth": { "client_id": "1.2", "client_secret": CLIENT_SECRET } },
            "ingest": { "auth": { "bearer": BEARER } },
            "otlp": { "traces": { "trace_url": format!("https://u:{AM_PASSWORD}@jaeger.example/trace/{{trace_id}}") } },
            "routes": [route, hook_route],
        }),
    );
    let indirect = write(
        "indirect.json",
        json!({
            "slack": { "bot_token": { "env": "ACKBAR_TEST_BOT" }, "signing_secret": { "file": secret_file } },
            "ingest": { "auth": { "basic": { "username": "alertmanager", "password": { "env": "ACKBAR_TEST_PW" } } } },
        }),
    );
    let envs = [
        ("ACKBAR_TEST_BOT", BOT_TOKEN),
        ("ACKBAR_TEST_PW", BASIC_PASSWORD),
    ];
    for path in [&inline, &indirect] {
        let (code, out) = run_binary(&["check-config", path], &envs);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(": ok"), "{out}");
        assert_no_secret("check-config", &out);
    }
    let (_, out) = run_binary(&["check-config", &inline], &envs);
    assert!(
        out.contains("am.example") || out.contains("jaeger.example"),
        "URLs are shown, their credentials are not: {out}"
    );
    assert!(
        out.contains("workspaces install at https://ackbar.example.com/slack/install"),
        "the OAuth install page is named, its client secret is not: {out}"
    );

    // Invalid configs whose error is about a secret-bearing value.
    let invalid = [
        json!({ "slack": { "bot_token": format!("not-a-token-{MARKER}") } }),
        json!({ "store": { "url": format!("mysql://ackbar:{AM_PASSWORD}@db.example/ackbar") } }),
        json!({ "slack": { "bot_token": BOT_TOKEN, "api_url": format!("https://u:{AM_PASSWORD}@slack.example/api") } }),
        json!({ "routes": [{ "name": "db", "channel": CHANNEL, "alertmanager_url": format!("ftp://u:{AM_PASSWORD}@am.example") }] }),
        json!({ "ingest": { "auth": { "bearer": BEARER, "extra": 1 } } }),
        json!({ "ingest": { "auth": { "token": BEARER } } }),
        json!({ "slack": { "bot_token": { "env": "ACKBAR_TEST_UNSET" } } }),
        json!({ "routes": [{ "name": "h", "channel": CHANNEL, "webhook_url": format!("https://hooks.slack.com.evil/{HOOK_KEY}") }] }),
        json!({ "routes": [
            { "name": "h", "channel": CHANNEL, "webhook_url": format!("https://hooks.slack.com/services/{HOOK_KEY}") },
            { "name": "b", "channel": CHANNEL }
        ] }),
        json!({ "slack": { "oauth": { "client_id": "1.2", "client_secret": CLIENT_SECRET } } }),
        json!({ "public_url": "https://a.example", "slack": { "oauth": {
            "client_id": "1.2", "client_secret": CLIENT_SECRET, "authorize_url": format!("https://u:{AM_PASSWORD}@slack.example/") } } }),
    ];
    for (i, config) in invalid.into_iter().enumerate() {
        let path = write(&format!("invalid-{i}.json"), config);
        for command in [
            vec!["check-config", path.as_str()],
            vec!["serve", "--config", path.as_str()],
        ] {
            let (code, out) = run_binary(&command, &envs);
            assert_eq!(code, 2, "config {i} is refused: {out}");
            assert_no_secret(&format!("the error for config {i}"), &out);
        }
    }
}

/// A sandbox-mode ackbar (every route, the emulator's included) with a
/// small ingest limit.
async fn limits_ackbar(dir: &std::path::Path) -> Ackbar {
    let mut config = test_config("https://slack.com/api", &dir.join("l.db"));
    // Sandbox mode: no token (the test config's short request timeout stays,
    // below its channel lease).
    config["slack"] = json!({ "request_timeout": "2s" });
    config["ingest"] = json!({ "max_body_bytes": 64 * 1024 });
    start_ackbar(&config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_a_body_past_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let ackbar = limits_ackbar(dir.path()).await;
    let client = http();
    let ingest = 64 * 1024;
    let slack = 1024 * 1024;
    let sandbox = ackbar::slack::sandbox::MAX_REQUEST_BYTES;
    for (path, content_type, limit) in [
        ("/webhook/alertmanager", "application/json", ingest),
        ("/v1/logs", "application/json", ingest),
        ("/v1/traces", "application/x-protobuf", ingest),
        (
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            slack,
        ),
        (
            "/slack/commands",
            "application/x-www-form-urlencoded",
            slack,
        ),
        ("/slack/events", "application/json", slack),
        ("/sandbox/api/_act/click", "application/json", sandbox),
        ("/sandbox/api/_faults", "application/json", sandbox),
        ("/sandbox/api/_response/x", "application/json", sandbox),
    ] {
        let r = client
            .post(ackbar.url(path))
            .header("content-type", content_type)
            .body(vec![b' '; limit + 1])
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 413, "{path}");
    }
    // The emulated Web API answers as Slack does: 200 with an error.
    let r = client
        .post(ackbar.url("/sandbox/api/chat.postMessage"))
        .header("content-type", "application/json")
        .body(vec![b' '; sandbox + 1])
        .send()
        .await
        .expect("request");
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer["error"], "request_too_large", "{answer}");
    ackbar.stop().await;
}

/// hyper's HTTP/1 defaults, which `axum::serve` keeps: at most 100 headers,
/// and a request head within a read buffer of 8 KiB + 100 × 4 KiB (checked
/// between reads, so a head may pass it by one read). Past either, the
/// request is answered 431 before any route runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_past_hypers_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ackbar = limits_ackbar(dir.path()).await;
    let client = http();

    let mut many = client.get(ackbar.url("/healthz"));
    for i in 0..100 {
        many = many.header(format!("x-filler-{i}"), "x");
    }
    assert_eq!(many.send().await.unwrap().status().as_u16(), 431);
    let mut fewer = client.get(ackbar.url("/healthz"));
    for i in 0..90 {
        fewer = fewer.header(format!("x-filler-{i}"), "x");
    }
    assert_eq!(fewer.send().await.unwrap().status().as_u16(), 200);

    let huge = "x".repeat(1024 * 1024);
    let r = client
        .get(ackbar.url("/healthz"))
        .header("x-filler", huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 431);
    let large = "x".repeat(64 * 1024);
    let r = client
        .get(ackbar.url("/healthz"))
        .header("x-filler", large)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    ackbar.stop().await;
}

/// A signed slash command whose `response_url` points into ackbar's own
/// network: ackbar answers it, but never connects there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_url_outside_slack_is_never_called() {
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_url = format!("http://{}/steal", trap.local_addr().unwrap());
    let mut options = sandbox_options(&[CHANNEL]);
    options.signing_secret = Some(SIGNING_SECRET.to_owned());
    let slack = start_slack(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&slack.api_url, &dir.path().join("r.db"));
    config["slack"]["signing_secret"] = json!(SIGNING_SECRET);
    let ackbar = start_ackbar(&config).await;
    slack.sandbox.set_app_url(Some(ackbar.base()));

    let form = serde_urlencoded::to_string([
        ("command", "/ackbar"),
        ("text", "list"),
        ("user_id", ALICE),
        ("channel_id", CHANNEL),
        ("response_url", &trap_url),
    ])
    .unwrap();
    let r = slack
        .sandbox
        .send_raw(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            form.as_bytes(),
            Signing::Valid,
        )
        .await
        .expect("sent");
    assert_eq!(r.status, 200, "{}", r.body);
    // `list` answers later through the response_url; give it the time a
    // real one takes here (milliseconds) many times over.
    let connected = tokio::time::timeout(Duration::from_secs(2), trap.accept()).await;
    assert!(connected.is_err(), "ackbar connected to {trap_url}");
    ackbar.stop().await;
}
