//! Shared harness for the integration tests: the Slack sandbox on its own
//! loopback port, ackbar in-process (`server::run`) or as the real binary,
//! the real Alertmanager, and webhook builders. Every wait is bounded.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod oauth;
pub mod postgres;
pub mod webdriver;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ackbar::config::Config;
use ackbar::slack::sandbox::{self, Sandbox, SandboxOptions, SandboxState};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const CHANNEL: &str = "C0TESTCHAN";
pub const TOKEN: &str = "xoxb-test-token";

/// The Slack emulator, served alone on 127.0.0.1.
pub struct Slack {
    pub sandbox: Sandbox,
    pub api_url: String,
    task: JoinHandle<()>,
}

impl Drop for Slack {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn sandbox_options(channels: &[&str]) -> SandboxOptions {
    SandboxOptions {
        channels: channels.iter().map(|c| (*c).to_owned()).collect(),
        token: Some(TOKEN.to_owned()),
        ..SandboxOptions::default()
    }
}

pub async fn start_slack(options: SandboxOptions) -> Slack {
    let sandbox = Sandbox::new(options);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    sandbox.set_base_url(format!("http://{addr}"));
    let app = sandbox::router(sandbox.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Slack {
        sandbox,
        api_url: format!("http://{addr}/api"),
        task,
    }
}

/// A config for tests: fast pacing and batching so that runs take seconds,
/// pointed at the sandbox, with one catch-all route into [`CHANNEL`].
pub fn test_config(api_url: &str, db: &Path) -> Value {
    json!({
        "listen": "127.0.0.1:0",
        "store": { "url": format!("sqlite://{}", db.display()) },
        "slack": { "api_url": api_url, "bot_token": TOKEN, "request_timeout": "2s" },
        "delivery": {
            "post_interval": "20ms",
            "post_burst": 5,
            "update_interval": "20ms",
            "update_burst": 10,
            "reply_batch_window": "300ms",
            "backoff_base": "50ms",
            "backoff_max": "500ms",
            "max_attempts": 50,
            "shutdown_deadline": "3s",
            "lease_ttl": "3s"
        },
        "routes": [ { "name": "all", "channel": CHANNEL, "reopen_window": "1h" } ]
    })
}

/// ackbar running in this process through the library's `run`.
pub struct Ackbar {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Ackbar {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: stop accepting, flush the outbox until the deadline.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(20), h)
                .await
                .expect("ackbar did not stop within 20 s")
                .unwrap();
        }
    }
}

impl Drop for Ackbar {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

pub async fn start_ackbar(config: &Value) -> Ackbar {
    start_ackbar_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), config).await
}

/// [`start_ackbar`] on a listener the test bound itself (a port chosen
/// before the server was started).
pub async fn start_ackbar_on(listener: TcpListener, config: &Value) -> Ackbar {
    let config = Config::from_json(&config.to_string()).expect("test config is valid");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let handle = tokio::spawn(async move {
        ackbar::server::run(listener, config, async {
            let _ = rx.await;
        })
        .await
        .expect("ackbar::server::run failed");
    });
    let ackbar = Ackbar {
        addr,
        shutdown: Some(tx),
        handle: Some(handle),
    };
    wait_http_ok(&ackbar.url("/healthz")).await;
    ackbar
}

/// ackbar as the real binary (for SIGKILL tests).
pub struct AckbarProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
}

impl AckbarProcess {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}

pub async fn start_ackbar_process(config: &Value, dir: &Path, port: u16) -> AckbarProcess {
    let mut config = config.clone();
    config["listen"] = json!(format!("127.0.0.1:{port}"));
    let path = dir.join(format!("ackbar-{port}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ackbar"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the ackbar binary");
    let process = AckbarProcess {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    wait_http_ok(&process.url("/healthz")).await;
    process
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub async fn wait_http_ok(url: &str) {
    let client = http();
    for _ in 0..200 {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not answer 2xx within 10 s");
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(check(), "timed out after {timeout:?} waiting for: {what}");
}

/// [`eventually`] for checks that need to await (an HTTP call).
pub async fn eventually_async<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        check().await,
        "timed out after {timeout:?} waiting for: {what}"
    );
}

/// A counter or gauge from ackbar's `/metrics`, summed over label sets.
pub async fn metric(base_url: &str, name: &str) -> f64 {
    metric_where(base_url, name, "").await
}

/// GETs `url` and reads its JSON answer.
pub async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

/// [`metric`] over the label sets whose line contains `labels` (for
/// example `outcome="refused"`).
pub async fn metric_where(base_url: &str, name: &str, labels: &str) -> f64 {
    let text = http()
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_in(&text, name, labels)
}

/// [`metric_where`] over Prometheus text already at hand (this process's
/// own recorder, say).
pub fn metric_in(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Rows in a table of ackbar's SQLite store (read beside the running server).
pub async fn count_rows(db: &Path, table: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// Top-level ackbar cards in a channel: (ts, card_id, message).
pub fn cards(state: &SandboxState, channel: &str) -> Vec<(String, String, Value)> {
    let Some(ch) = state.channels.get(channel) else {
        return Vec::new();
    };
    ch.messages
        .iter()
        .filter_map(|m| {
            let meta = m.metadata.as_ref()?;
            (meta.event_type == "ackbar_card").then(|| {
                let id = meta.event_payload["card_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                (m.ts.clone(), id, serde_json::to_value(m).unwrap())
            })
        })
        .collect()
}

/// Whether `user` was shown an ephemeral message containing `text`.
pub fn has_ephemeral(slack: &Slack, user: &str, text: &str) -> bool {
    slack
        .sandbox
        .state()
        .ephemerals
        .iter()
        .any(|e| e.user == user && e.text.contains(text))
}

/// The card's fallback text says `[RESOLVED]` only once the card is.
pub fn is_resolved(card: &Value) -> bool {
    card["text"]
        .as_str()
        .is_some_and(|t| t.starts_with("[RESOLVED]"))
}

/// Thread replies under `ts`.
pub fn replies(state: &SandboxState, channel: &str, ts: &str) -> Vec<Value> {
    state
        .channels
        .get(channel)
        .and_then(|ch| ch.messages.iter().find(|m| m.ts == ts))
        .map(|m| {
            m.replies
                .iter()
                .map(|r| serde_json::to_value(r).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// All text of a message: fallback text plus every text in its blocks.
pub fn message_text(message: &Value) -> String {
    fn collect(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            Value::Object(o) => o.values().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    collect(&message["text"], &mut out);
    collect(&message["blocks"], &mut out);
    out
}

// ---- Alertmanager webhook payloads -------------------------------------

#[derive(Clone, Debug)]
pub struct TestAlert {
    pub name: String,
    pub instance: String,
    pub firing: bool,
}

pub fn firing(name: &str, instance: &str) -> TestAlert {
    TestAlert {
        name: name.to_owned(),
        instance: instance.to_owned(),
        firing: true,
    }
}

pub fn resolved(name: &str, instance: &str) -> TestAlert {
    TestAlert {
        firing: false,
        ..firing(name, instance)
    }
}

/// A webhook (payload v4) for one Alertmanager group.
pub fn webhook(group: &str, alerts: &[TestAlert]) -> Value {
    let all_resolved = alerts.iter().all(|a| !a.firing);
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{group=\"{group}\"}}"),
        "truncatedAlerts": 0,
        "status": if all_resolved { "resolved" } else { "firing" },
        "receiver": "ackbar",
        "groupLabels": { "group": group },
        "commonLabels": { "group": group, "severity": "critical" },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test:9093",
        "alerts": alerts.iter().map(|a| json!({
            "status": if a.firing { "firing" } else { "resolved" },
            "labels": {
                "alertname": a.name, "instance": a.instance, "group": group, "severity": "critical"
            },
            "annotations": { "summary": format!("{} on {}", a.name, a.instance) },
            "startsAt": "2026-11-28T10:00:00Z",
            "endsAt": if a.firing { "0001-01-01T00:00:00Z" } else { "2026-11-28T11:00:00Z" },
            "generatorURL": "http://prometheus.test/graph",
        })).collect::<Vec<_>>(),
    })
}

pub async fn post_webhook(client: &reqwest::Client, url: &str, body: &Value) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("webhook request")
}

// ---- the real Alertmanager ---------------------------------------------

/// The Alertmanager binary, or `None` (with the reason printed) when it is
/// not installed. With `ACKBAR_REQUIRE_ALERTMANAGER=1` (set by CI) a missing
/// binary fails the test instead.
pub fn alertmanager_binary() -> Option<PathBuf> {
    for name in ["prometheus-alertmanager", "alertmanager"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let candidate = Path::new(dir).join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    if std::env::var("ACKBAR_REQUIRE_ALERTMANAGER").as_deref() == Ok("1") {
        panic!("ACKBAR_REQUIRE_ALERTMANAGER=1 but no prometheus-alertmanager binary on PATH");
    }
    eprintln!(
        "SKIPPED: this test needs the real Alertmanager; install it with `apt-get install prometheus-alertmanager`"
    );
    None
}

pub struct Alertmanager {
    child: tokio::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Sends alerts to Alertmanager's own API (`POST /api/v2/alerts`).
    /// `ends_in_past` resolves them.
    pub async fn post_alerts(&self, alerts: &[TestAlert], group: &str) {
        let now = chrono::Utc::now();
        let body: Vec<Value> = alerts
            .iter()
            .map(|a| {
                let mut v = json!({
                    "labels": {
                        "alertname": a.name, "instance": a.instance, "group": group, "severity": "critical"
                    },
                    "annotations": { "summary": format!("{} on {}", a.name, a.instance) },
                    "startsAt": (now - chrono::Duration::minutes(5)).to_rfc3339(),
                    "generatorURL": "http://prometheus.test/graph",
                });
                if !a.firing {
                    v["endsAt"] = json!((now - chrono::Duration::seconds(1)).to_rfc3339());
                }
                v
            })
            .collect();
        let r = http()
            .post(format!("{}/api/v2/alerts", self.url))
            .json(&body)
            .send()
            .await
            .expect("post alerts to Alertmanager");
        assert!(
            r.status().is_success(),
            "Alertmanager refused alerts: {}",
            r.status()
        );
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Starts Alertmanager on a free loopback port, clustering off, routing
/// everything (grouped by `group`) to ackbar's webhook.
pub async fn start_alertmanager(
    binary: &Path,
    webhook_url: &str,
    repeat_interval: &str,
) -> Alertmanager {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        r#"route:
  receiver: ackbar
  group_by: [group]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: {repeat_interval}
receivers:
  - name: ackbar
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
"#
    );
    let config_path = dir.path().join("alertmanager.yml");
    std::fs::write(&config_path, config).unwrap();
    let child = tokio::process::Command::new(binary)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start Alertmanager");
    let am = Alertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_http_ok(&format!("{}/-/ready", am.url)).await;
    am
}
