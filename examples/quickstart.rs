//! Run with: `cargo run --example quickstart`
//!
//! Starts ackbar in-process in sandbox mode (in-memory store, local Slack
//! emulator), sends it an Alertmanager webhook with two firing alerts, then
//! one resolving them, and prints the card and its thread as the sandbox
//! holds them.

use std::time::Duration;

use ackbar::config::Config;
use serde_json::{Value, json};

fn webhook(status: &str) -> Value {
    let alert = |instance: &str| {
        json!({
            "status": status,
            "labels": { "alertname": "DiskFull", "severity": "critical", "instance": instance },
            "annotations": { "summary": format!("Disk almost full on {instance}"),
                             "runbook_url": "https://runbooks.example.com/disk-full" },
            "startsAt": "2026-11-28T10:00:00Z",
            "endsAt": if status == "firing" { "0001-01-01T00:00:00Z" } else { "2026-11-28T10:30:00Z" },
            "generatorURL": "http://prometheus.example.com/graph"
        })
    };
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"DiskFull\"}", "status": status, "receiver": "slack",
        "groupLabels": { "alertname": "DiskFull" },
        "commonLabels": { "alertname": "DiskFull", "severity": "critical" },
        "commonAnnotations": {}, "externalURL": "http://alertmanager.example.com",
        "alerts": [alert("db-1"), alert("db-2")]
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_json(
        r#"{"store": {"url": "sqlite::memory:"},
            "delivery": {"reply_batch_window": "200ms", "shutdown_deadline": "3s"}}"#,
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ackbar::server::run(listener, config, async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    for status in ["firing", "resolved"] {
        let answer = client
            .post(format!("{base}/webhook/alertmanager"))
            .header("content-type", "application/json")
            .body(webhook(status).to_string())
            .send()
            .await?;
        println!(
            "webhook ({status}): HTTP {} {}",
            answer.status(),
            answer.text().await?
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let state: Value = client
        .get(format!("{base}/sandbox/api/state"))
        .send()
        .await?
        .json()
        .await?;
    println!("{}", serde_json::to_string_pretty(&state["channels"])?);

    let _ = stop.send(());
    server.await??;
    Ok(())
}
