//! Run with: `cargo run --release --example interaction_load [RATE] [SECONDS]`
//!
//! Measures the signed interaction round trip (verify the signature, parse,
//! transition, commit, answer) under concurrent clicks: ackbar runs
//! in-process in sandbox mode on a durable SQLite file, 50 cards are opened,
//! then Acknowledge / Unacknowledge clicks on them are sent at a fixed rate
//! (open loop, default 200 per second for 10 seconds), each correctly signed
//! as Slack signs them. Prints p50, p99 and max latency and the error count.

use std::time::{Duration, Instant};

use ackbar::config::Config;
use ackbar::slack::verify;
use serde_json::{Value, json};

const SECRET: &str = "load-test-signing-secret";
const CARDS: usize = 50;

fn webhook(group: usize) -> Value {
    json!({
        "version": "4", "groupKey": format!("{{}}:{{group=\"g{group}\"}}"), "status": "firing",
        "receiver": "load", "groupLabels": { "group": format!("g{group}") },
        "commonLabels": { "alertname": "Load", "group": format!("g{group}") }, "commonAnnotations": {},
        "externalURL": "http://alertmanager.test",
        "alerts": [{ "status": "firing", "labels": { "alertname": "Load", "group": format!("g{group}") },
                     "annotations": {}, "startsAt": "2026-11-28T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                     "generatorURL": "" }]
    })
}

fn click(card: &str, action_id: &str, user: &str) -> Vec<u8> {
    let payload = json!({
        "type": "block_actions", "user": { "id": user }, "team": { "id": "T0LOAD" },
        "actions": [{ "action_id": action_id, "value": card, "type": "button", "action_ts": "1.1" }]
    });
    let mut body = String::from("payload=");
    for b in payload.to_string().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                body.push(b as char)
            }
            _ => body.push_str(&format!("%{b:02X}")),
        }
    }
    body.into_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let seconds: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);

    let dir = tempfile::tempdir()?;
    let config = Config::from_json(&format!(
        r#"{{"store": {{"url": "sqlite://{}"}}, "slack": {{"signing_secret": "{SECRET}"}},
            "log": {{"level": "warn"}}}}"#,
        dir.path().join("load.db").display()
    ))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ackbar::server::run(listener, config, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for g in 0..CARDS {
        client
            .post(format!("{base}/webhook/alertmanager"))
            .header("content-type", "application/json")
            .body(webhook(g).to_string())
            .send()
            .await?
            .error_for_status()?;
    }
    // Card ids, from the store through the sandbox's metadata once posted.
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..200 {
        let state: Value = client
            .get(format!("{base}/sandbox/api/state"))
            .send()
            .await?
            .json()
            .await?;
        ids = state["channels"]
            .as_object()
            .into_iter()
            .flat_map(|channels| channels.values())
            .flat_map(|ch| ch["messages"].as_array().cloned().unwrap_or_default())
            .filter_map(|m| {
                m["metadata"]["event_payload"]["card_id"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        if ids.len() == CARDS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Cards are posted at Slack's pace (1/s per channel); clicks do not need
    // the post, only the card in the store, so start once some exist.
    if ids.is_empty() {
        return Err("no card was posted".into());
    }

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Duration, String>>();
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total {
        ticker.tick().await;
        let card = ids[n as usize % ids.len()].clone();
        // Alternate per card: ack on even rounds, unack on odd ones.
        let round = n as usize / ids.len();
        let action = if round.is_multiple_of(2) {
            "ackbar_acknowledge"
        } else {
            "ackbar_unacknowledge"
        };
        let body = click(&card, action, "U0LOADTEST");
        let ts = chrono::Utc::now().timestamp();
        let signature = verify::sign(SECRET.as_bytes(), ts, &body);
        let request = client
            .post(format!("{base}/slack/interactions"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(verify::TIMESTAMP_HEADER, ts.to_string())
            .header(verify::SIGNATURE_HEADER, signature)
            .body(body);
        let tx = tx.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = match request.send().await {
                Ok(r) if r.status().is_success() => Ok(started.elapsed()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.send(result);
        });
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(total as usize);
    let mut errors = Vec::new();
    while let Some(result) = rx.recv().await {
        match result {
            Ok(d) => latencies.push(d),
            Err(e) => errors.push(e),
        }
    }
    latencies.sort_unstable();
    println!(
        "signed interaction round trip: {} clicks at {rate}/s on {} cards: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, errors {}",
        latencies.len() + errors.len(),
        ids.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        errors.len()
    );
    if let Some(e) = errors.first() {
        println!("first error: {e}");
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}
