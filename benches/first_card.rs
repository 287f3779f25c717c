//! Time to first card (issue 7, target 5): from a webhook's arrival to
//! `chat.postMessage` leaving ackbar, for a new card on an idle channel.
//!
//! `cargo bench --bench first_card` (`-- --rounds 500` for more rounds)
//!
//! ackbar runs in this process (`ackbar::server::run`) with its defaults:
//! the SQLite store in a temporary directory (WAL, `synchronous = FULL`, so
//! every commit waits for the disk) and the default delivery pacing. Slack is
//! the sandbox on loopback, with its Slack-like rate limits.
//!
//! Each round sends an Alertmanager webhook for a group never seen before
//! and waits until the sandbox has received the card's `chat.postMessage`.
//! Both instants are read on the sandbox's clock: the latency runs from just
//! before the request is written to when the sandbox logged the post, so
//! the client's send and the loopback hops count against ackbar. Rounds go
//! to `CHANNELS` channels in turn, `GAP` apart, so each channel is idle
//! when its next card comes: nothing pending and its pacing burst whole
//! (one post per channel every 20 x 60 ms > `post_interval`).
//!
//! Printed: p50, p90, p99 and max of the time to first card and of the
//! webhook's answer (the commit ackbar waits for before answering 2xx).
//! Criterion is not used: it reports means, and the target is a percentile.
//! Run without `--bench` (`cargo test --benches`, `cargo nextest run
//! --all-targets`) it does a few rounds as a smoke test.

use std::time::{Duration, Instant};

use ackbar::config::Config;
use ackbar::slack::sandbox::{self, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const NAME: &str = "first_card";
const CHANNELS: usize = 20;
const GAP: Duration = Duration::from_millis(60);
const TOKEN: &str = "xoxb-bench-token";
const ROUNDS: usize = 200;
/// Rounds of `cargo test --benches`.
const SMOKE_ROUNDS: usize = 5;
/// Longest wait for one card before the bench gives up.
const CARD_TIMEOUT: Duration = Duration::from_secs(10);

fn channel(i: usize) -> String {
    format!("C0BENCH{i:03}")
}

fn config(api_url: &str, db: &std::path::Path) -> Value {
    json!({
        "listen": "127.0.0.1:0",
        "store": { "url": format!("sqlite://{}", db.display()) },
        "slack": { "api_url": api_url, "bot_token": TOKEN },
        "log": { "level": "warn" },
        "routes": (0..CHANNELS)
            .map(|i| json!({
                "name": format!("team-{i}"),
                "matchers": [format!("team=team-{i}")],
                "channel": channel(i),
            }))
            .collect::<Vec<_>>(),
    })
}

/// A webhook (payload v4) opening group `round`, routed to its channel.
fn webhook(round: usize) -> String {
    let group = format!("bench-{round:05}");
    let team = format!("team-{}", round % CHANNELS);
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{group=\"{group}\"}}"),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "ackbar",
        "groupLabels": { "group": group },
        "commonLabels": { "group": group, "team": team, "severity": "critical" },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test:9093",
        "alerts": [{
            "status": "firing",
            "labels": {
                "alertname": "KubePodCrashLooping", "group": group, "team": team,
                "namespace": "payments", "pod": "checkout-7d9f", "severity": "critical",
            },
            "annotations": { "summary": "Pod payments/checkout-7d9f is crash looping." },
            "startsAt": "2026-11-28T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.test/graph",
            "fingerprint": format!("{:016x}", round),
        }],
    })
    .to_string()
}

/// Microseconds of the first card post into `channel` logged at or after
/// `since_us`, if any.
fn card_post_at(sandbox: &Sandbox, channel: &str, since_us: u64) -> Option<u64> {
    sandbox
        .state()
        .calls
        .iter()
        .rev()
        .take_while(|c| c.at_us >= since_us)
        .filter(|c| {
            c.method == "chat.postMessage"
                && c.channel.as_deref() == Some(channel)
                && c.thread_ts.is_none()
        })
        .map(|c| c.at_us)
        .min()
}

struct Round {
    first_card: Duration,
    answered: Duration,
}

async fn round(
    client: &reqwest::Client,
    url: &str,
    sandbox: &Sandbox,
    i: usize,
) -> Result<Round, String> {
    let body = webhook(i);
    let ch = channel(i % CHANNELS);
    let mut changes = sandbox.changes();
    changes.borrow_and_update();
    let sent = sandbox.elapsed();
    let sent_us = sent.as_micros() as u64;
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("webhook: {e}"))?;
    let answered = sandbox.elapsed() - sent;
    if !response.status().is_success() {
        return Err(format!("webhook answered {}", response.status()));
    }
    let deadline = tokio::time::Instant::now() + CARD_TIMEOUT;
    loop {
        if let Some(at) = card_post_at(sandbox, &ch, sent_us) {
            return Ok(Round {
                first_card: Duration::from_micros(at - sent_us),
                answered,
            });
        }
        tokio::time::timeout_at(deadline, changes.changed())
            .await
            .map_err(|_| format!("no card in {ch} within {CARD_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{NAME}/{what}: n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap_or(&Duration::ZERO)),
    );
}

async fn run(rounds: usize) -> Result<(), String> {
    let sandbox = Sandbox::new(SandboxOptions {
        channels: (0..CHANNELS).map(channel).collect(),
        token: Some(TOKEN.to_owned()),
        ..SandboxOptions::default()
    });
    let (api_url, slack) = sandbox::spawn_standalone(sandbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = Config::from_json(&config(&api_url, &dir.path().join("bench.db")).to_string())
        .map_err(|e| e.to_string())?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/webhook/alertmanager",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ackbar::server::run(listener, config, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(CARD_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;

    let (mut first_card, mut answered) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for i in 0..rounds {
        let r = round(&client, &url, &sandbox, i).await?;
        first_card.push(r.first_card);
        answered.push(r.answered);
        tokio::time::sleep(GAP).await;
    }
    // The machine's load says how far to trust the figures: other
    // processes' CPU and disk use show up in the store's commits.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{NAME}: {rounds} new cards on {CHANNELS} idle channels in {:.1}s (load average {})",
        started.elapsed().as_secs_f64(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    report("time_to_first_card", first_card);
    report("webhook_answered", answered);

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
    slack.abort();
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // What test runners ask, answered as criterion does: one benchmark,
    // not ignored (`cargo nextest` then runs it as a smoke test).
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("{NAME}: benchmark");
        }
        return;
    }
    // `cargo bench FILTER` hands the filter to every bench.
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    if !filters.is_empty()
        && !filters
            .iter()
            .any(|f| NAME.contains(f.as_str()) || value_of("--rounds") == Some(f))
    {
        return;
    }
    let rounds = match value_of("--rounds") {
        Some(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("--rounds {n}: not a number")),
        None if args.iter().any(|a| a == "--bench") => ROUNDS,
        None => SMOKE_ROUNDS,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(rounds)) {
        eprintln!("{NAME}: {e}");
        std::process::exit(1);
    }
}
