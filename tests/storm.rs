//! Storm compression (issue 7, target 6): 10,000 alerts in 100 groups on 5
//! channels arrive within about a second; ackbar must reach every card's
//! final state with few more Slack calls than the minimum, never post a
//! card twice, and never call a scope before a `Retry-After` it was given
//! has elapsed.
//!
//! Everything is judged from the sandbox's call log (each call stamped on
//! the sandbox's clock and tied to its card by `ts` / `thread_ts`) and from
//! the test's own stamps of its webhooks on the same clock.
//!
//! # The minimum
//!
//! For each card (one per group):
//! - **one post**;
//! - **one `chat.update` if its post can have shown an earlier state**: the
//!   sandbox received the post before the test sent the group's last
//!   notification (a post received later may still have been rendered
//!   before that notification committed; such a card is counted as needing
//!   no update, which only makes the minimum smaller). A card whose first
//!   notification was also its last needs none;
//! - **one thread reply if the card has thread events**: every notification
//!   after a group's first adds some (new alerts firing, resolves), and one
//!   reply can list them all. ackbar holds a card's events for
//!   `delivery.reply_batch_window` (the default, 2 s, here), longer than
//!   the storm, so it meets this when ingest keeps up with the storm; a
//!   storm accepted over more than the window costs extra replies, which
//!   count against the ratio.
//!
//! The minimum is their sum. Every call the sandbox logged counts against
//! it, including the ones it refused with 429 and any history lookups.
//!
//! # Rate limits and the deadline
//!
//! The sandbox answers 3% of the posts and updates 429 with `Retry-After: 1`
//! (a seeded draw). The final states are a liveness check, not a
//! performance figure: the deadline is the pacing bound of the minimum's
//! calls under the config (the reply window, then each channel's posts after
//! its burst at `post_interval`, then the workspace's updates after their
//! burst at `update_interval`), plus every `Retry-After` given, plus 5 s.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ackbar::slack::sandbox::{CallRecord, Faults, Outcome, RateLimit, Sandbox, SandboxState};
use common::*;
use serde_json::{Value, json};

const GROUPS: usize = 100;
const ALERTS_PER_GROUP: usize = 100;
const CHANNELS: [&str; 5] = [
    "C0STORM001",
    "C0STORM002",
    "C0STORM003",
    "C0STORM004",
    "C0STORM005",
];
/// Every notification is sent within this long after the first.
const ARRIVALS: Duration = Duration::from_millis(900);
const RATELIMIT_RATE: f64 = 0.03;

// Pacing: Slack's shape (a burst, then a steady rate per channel for posts
// and per workspace for updates), 20x faster so that the test takes seconds.
const POST_INTERVAL: Duration = Duration::from_millis(50);
const POST_BURST: u32 = 3;
const UPDATE_INTERVAL: Duration = Duration::from_millis(60);
const UPDATE_BURST: u32 = 5;
/// The default window, longer than the storm: one reply per card.
const REPLY_WINDOW: Duration = Duration::from_secs(2);

fn group(g: usize) -> String {
    format!("storm-{g:03}")
}

fn channel_of(g: usize) -> &'static str {
    CHANNELS[g % CHANNELS.len()]
}

/// How one group's alerts arrive: cumulative notifications as Alertmanager
/// sends them while a group grows (1 to 4 of them, 1 to 100 alerts each),
/// the last with all 100 alerts and the final statuses.
struct GroupPlan {
    g: usize,
    sizes: Vec<usize>,
    /// Alerts resolved in the last notification (the first ones).
    resolved: usize,
    /// Offsets from the storm's start, one per notification.
    offsets: Vec<Duration>,
}

impl GroupPlan {
    fn new(g: usize) -> GroupPlan {
        let sizes = match g % 4 {
            0 => vec![100],
            1 => vec![1, 100],
            2 => vec![10, 60, 100],
            _ => vec![25, 50, 75, 100],
        };
        // A tenth of the groups (all with several notifications) resolve
        // completely; a third of the others resolve a few alerts.
        let resolved = if g % 10 == 9 {
            ALERTS_PER_GROUP
        } else if g.is_multiple_of(3) {
            g % 10
        } else {
            0
        };
        let start = Duration::from_millis((g as u64 * 13) % 300);
        let step = (ARRIVALS - start) / sizes.len() as u32;
        let offsets = (0..sizes.len()).map(|i| start + step * i as u32).collect();
        GroupPlan {
            g,
            sizes,
            resolved,
            offsets,
        }
    }

    fn firing_at_end(&self) -> usize {
        ALERTS_PER_GROUP - self.resolved
    }

    /// The `i`th notification: an Alertmanager webhook (payload v4).
    fn webhook(&self, i: usize) -> Value {
        let last = i + 1 == self.sizes.len();
        let g = group(self.g);
        let team = format!("team-{}", self.g % CHANNELS.len());
        let alerts: Vec<Value> = (0..self.sizes[i])
            .map(|a| {
                let firing = !(last && a < self.resolved);
                json!({
                    "status": if firing { "firing" } else { "resolved" },
                    "labels": {
                        "alertname": "KubePodCrashLooping", "group": g, "team": team,
                        "namespace": "payments", "pod": format!("checkout-{a:03}"),
                        "severity": "critical",
                    },
                    "annotations": { "summary": format!("Pod checkout-{a:03} is crash looping.") },
                    "startsAt": "2026-11-28T10:00:00Z",
                    "endsAt": if firing { "0001-01-01T00:00:00Z" } else { "2026-11-28T10:05:00Z" },
                    "generatorURL": "http://prometheus.test/graph",
                    "fingerprint": format!("{:016x}", (self.g as u64) << 32 | a as u64),
                })
            })
            .collect();
        let any_firing = alerts.iter().any(|a| a["status"] == "firing");
        json!({
            "version": "4",
            "groupKey": format!("{{}}:{{group=\"{g}\"}}"),
            "truncatedAlerts": 0,
            "status": if any_firing { "firing" } else { "resolved" },
            "receiver": "ackbar",
            "groupLabels": { "group": g },
            "commonLabels": { "group": g, "team": team, "alertname": "KubePodCrashLooping" },
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.test:9093",
            "alerts": alerts,
        })
    }
}

/// When the test sent each of a group's notifications, in microseconds on
/// the sandbox's clock.
type Sent = Vec<u64>;

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Sends every group's notifications at their offsets, groups
/// concurrently, each group's in order (Alertmanager's own order),
/// retrying until a 2xx as Alertmanager does.
async fn storm(url: &str, sandbox: &Sandbox, plans: Vec<GroupPlan>) -> BTreeMap<usize, Sent> {
    let client = http();
    let sent = Arc::new(Mutex::new(BTreeMap::new()));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for plan in plans {
        let (client, url, sandbox, sent) = (
            client.clone(),
            url.to_owned(),
            sandbox.clone(),
            sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = Sent::new();
            for (i, offset) in plan.offsets.iter().enumerate() {
                tokio::time::sleep_until(start + *offset).await;
                let body = plan.webhook(i).to_string();
                mine.push(micros(sandbox.elapsed()));
                send_until_accepted(&client, &url, body).await;
            }
            sent.lock().unwrap().insert(plan.g, mine);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(sent).unwrap().into_inner().unwrap()
}

async fn send_until_accepted(client: &reqwest::Client, url: &str, body: String) {
    for _ in 0..100 {
        match client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("webhook never accepted");
}

fn storm_config(api_url: &str, db: &std::path::Path) -> Value {
    let mut config = test_config(api_url, db);
    config["delivery"]["post_interval"] = json!(format!("{}ms", POST_INTERVAL.as_millis()));
    config["delivery"]["post_burst"] = json!(POST_BURST);
    config["delivery"]["update_interval"] = json!(format!("{}ms", UPDATE_INTERVAL.as_millis()));
    config["delivery"]["update_burst"] = json!(UPDATE_BURST);
    config["delivery"]["reply_batch_window"] = json!(format!("{}ms", REPLY_WINDOW.as_millis()));
    config["routes"] = CHANNELS
        .iter()
        .enumerate()
        .map(|(i, channel)| {
            json!({ "name": format!("team-{i}"), "matchers": [format!("team=team-{i}")], "channel": channel })
        })
        .collect();
    config
}

/// What a card's final state must show.
fn final_state_shown(card: &Value, plan: &GroupPlan) -> bool {
    let text = message_text(card);
    if plan.firing_at_end() == 0 {
        return is_resolved(card);
    }
    card["text"]
        .as_str()
        .is_some_and(|t| t.starts_with(&format!("[FIRING:{}]", plan.firing_at_end())))
        && text.contains(&format!(
            "{} firing, {} resolved",
            plan.firing_at_end(),
            plan.resolved
        ))
}

/// The group a card belongs to, by the card key in its metadata.
fn group_of(card: &Value) -> usize {
    let key = card["metadata"]["event_payload"]["card_key"]
        .as_str()
        .unwrap_or_default();
    (0..GROUPS)
        .find(|&g| key.contains(&format!("\"{}\"", group(g))))
        .unwrap_or_else(|| panic!("card key names no storm group: {key}"))
}

/// Cards by group: (channel, ts, message).
fn cards_by_group(state: &SandboxState) -> BTreeMap<usize, Vec<(String, String, Value)>> {
    let mut by_group: BTreeMap<usize, Vec<_>> = BTreeMap::new();
    for channel in CHANNELS {
        for (ts, _, card) in cards(state, channel) {
            by_group
                .entry(group_of(&card))
                .or_default()
                .push((channel.to_owned(), ts, card));
        }
    }
    by_group
}

fn all_final(state: &SandboxState, plans: &[GroupPlan]) -> bool {
    let by_group = cards_by_group(state);
    plans.iter().all(|p| {
        by_group
            .get(&p.g)
            .is_some_and(|cards| cards.iter().all(|(_, _, c)| final_state_shown(c, p)))
    })
}

/// The minimum of the module docs, by kind.
#[derive(Debug, Default)]
struct Minimum {
    posts: usize,
    updates: usize,
    replies: usize,
}

impl Minimum {
    fn total(&self) -> usize {
        self.posts + self.updates + self.replies
    }
}

fn minimum(
    plans: &[GroupPlan],
    sent: &BTreeMap<usize, Sent>,
    post_at: &HashMap<usize, u64>,
) -> Minimum {
    let mut min = Minimum::default();
    for p in plans {
        let s = &sent[&p.g];
        min.posts += 1;
        let last_sent = *s.last().unwrap();
        if p.sizes.len() > 1 && post_at[&p.g] < last_sent {
            min.updates += 1;
        }
        min.replies += usize::from(p.sizes.len() > 1);
    }
    min
}

/// The Slack scope a call is rate-limited in, as the sandbox (and Slack)
/// limit it: posts per channel, updates per workspace.
fn scope(call: &CallRecord) -> Option<String> {
    match call.method.as_str() {
        "chat.postMessage" | "incoming-webhook" => {
            Some(format!("post:{}", call.channel.as_deref().unwrap_or("")))
        }
        "chat.update" => Some("update".to_owned()),
        _ => None,
    }
}

/// Calls made into a scope before a `Retry-After` it was given elapsed:
/// (the 429, the early call).
fn retry_after_violations(calls: &[CallRecord]) -> Vec<(CallRecord, CallRecord)> {
    let mut violations = Vec::new();
    for (i, limited) in calls.iter().enumerate() {
        let (Some(secs), Some(limited_scope)) = (limited.retry_after, scope(limited)) else {
            continue;
        };
        let until = limited.at_us + secs * 1_000_000;
        for early in &calls[i + 1..] {
            if early.at_us < until && scope(early).as_ref() == Some(&limited_scope) {
                violations.push((limited.clone(), early.clone()));
            }
        }
    }
    violations
}

/// The deadline of the module docs.
fn pacing_bound(
    min_posts_per_channel: &BTreeMap<&str, usize>,
    min: &Minimum,
    calls: &[CallRecord],
) -> Duration {
    let after_burst = |n: usize, burst: u32| n.saturating_sub(burst as usize) as u32;
    let posts = min_posts_per_channel
        .values()
        .map(|&n| POST_INTERVAL * after_burst(n, POST_BURST))
        .max()
        .unwrap_or_default();
    let updates = UPDATE_INTERVAL * after_burst(min.updates, UPDATE_BURST);
    let retry_after: u64 = calls.iter().filter_map(|c| c.retry_after).sum();
    REPLY_WINDOW + posts + updates + Duration::from_secs(retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_10000_alerts_in_100_groups_reaches_final_states_near_the_minimum_of_calls() {
    let mut options = sandbox_options(&CHANNELS);
    // Above ackbar's pacing, so the only 429s are the injected ones.
    let loose = RateLimit {
        max: 40,
        per: Duration::from_secs(1),
    };
    options.post_per_channel = loose;
    options.update_limit = loose;
    options.faults = Faults {
        ratelimit_rate: RATELIMIT_RATE,
        seed: Some(20261128),
        ..Faults::default()
    };
    let slack = start_slack(options).await;
    let sandbox = slack.sandbox.clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("storm.db");
    let ackbar = start_ackbar(&storm_config(&slack.api_url, &db)).await;

    let plans: Vec<GroupPlan> = (0..GROUPS).map(GroupPlan::new).collect();
    let storm_started = sandbox.elapsed();
    let sent = storm(
        &ackbar.url("/webhook/alertmanager"),
        &sandbox,
        (0..GROUPS).map(GroupPlan::new).collect(),
    )
    .await;
    let storm_accepted = sandbox.elapsed();
    let last_sent = sent.values().flatten().max().copied().unwrap_or_default();
    let notifications: usize = plans.iter().map(|p| p.sizes.len()).sum();
    let alerts_sent: usize = plans.iter().flat_map(|p| &p.sizes).sum();

    // Liveness: every card shows its final state before the deadline, which
    // grows with every Retry-After the sandbox gives.
    let final_at = loop {
        let state = sandbox.state();
        if all_final(&state, &plans) {
            break sandbox.elapsed();
        }
        let by_group = cards_by_group(&state);
        let posted: HashMap<usize, u64> = posts_by_group(&state.calls, &by_group);
        let waited = sandbox.elapsed().saturating_sub(storm_accepted);
        if posted.len() == GROUPS {
            let min = minimum(&plans, &sent, &posted);
            let per_channel = min_posts_per_channel(&plans);
            let deadline = pacing_bound(&per_channel, &min, &state.calls) + Duration::from_secs(5);
            assert!(
                waited <= deadline,
                "final states not reached {waited:?} after the storm (deadline {deadline:?})"
            );
        } else {
            assert!(
                waited <= Duration::from_secs(60),
                "only {} of {GROUPS} cards posted {waited:?} after the storm",
                posted.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Then the outbox drains (the last replies): nothing left to send.
    eventually_async(Duration::from_secs(30), "outbox drained", || async {
        count_rows(&db, "outbox").await == 0
    })
    .await;
    let state = sandbox.state();

    // (a) exactly one card per group, in its route's channel.
    let by_group = cards_by_group(&state);
    for p in &plans {
        let cards = by_group.get(&p.g).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(cards.len(), 1, "{}: {} cards", group(p.g), cards.len());
        assert_eq!(cards[0].0, channel_of(p.g), "{}: wrong channel", group(p.g));
    }
    let card_posts = state
        .calls
        .iter()
        .filter(|c| {
            c.method == "chat.postMessage" && c.thread_ts.is_none() && c.outcome == Outcome::Ok
        })
        .count();
    assert_eq!(card_posts, GROUPS, "one successful card post per group");
    assert_eq!(
        metric(&ackbar.base(), "ackbar_card_post_seconds_count").await,
        GROUPS as f64,
        "every card's time to post is in the histogram"
    );

    // (c) every card shows what was sent last.
    for p in &plans {
        let card = &by_group[&p.g][0].2;
        assert!(
            final_state_shown(card, p),
            "{}: card does not show {} firing, {} resolved: {}",
            group(p.g),
            p.firing_at_end(),
            p.resolved,
            card["text"]
        );
    }

    // (d) no call into a scope before its Retry-After elapsed.
    let limited: Vec<&CallRecord> = state
        .calls
        .iter()
        .filter(|c| c.retry_after.is_some())
        .collect();
    assert!(
        !limited.is_empty(),
        "the sandbox should have answered some calls 429"
    );
    let violations = retry_after_violations(&state.calls);
    assert!(
        violations.is_empty(),
        "calls before Retry-After elapsed: {violations:#?}"
    );
    assert_eq!(
        state.retry_after_violations, 0,
        "the sandbox counted violations"
    );

    // (b) calls against the minimum.
    let posted = posts_by_group(&state.calls, &by_group);
    let min = minimum(&plans, &sent, &posted);
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &state.calls {
        let kind = match (c.method.as_str(), &c.thread_ts) {
            ("chat.postMessage", None) => "card post",
            ("chat.postMessage", Some(_)) => "thread reply",
            ("chat.update", _) => "card update",
            (other, _) => other,
        };
        *by_kind.entry(kind).or_default() += 1;
    }
    let total = state.calls.len();
    let ratio = total as f64 / min.total() as f64;
    let per_channel = min_posts_per_channel(&plans);
    println!(
        "storm: {alerts_sent} alerts (10,000 distinct) in {notifications} notifications to {GROUPS} groups on {} channels, sent within {:?}, all accepted after {:?}",
        CHANNELS.len(),
        Duration::from_micros(last_sent).saturating_sub(storm_started),
        storm_accepted - storm_started
    );
    println!(
        "calls by kind: {by_kind:?} ({} answered 429, {} s of Retry-After)",
        limited.len(),
        limited.iter().filter_map(|c| c.retry_after).sum::<u64>()
    );
    println!(
        "minimum: {} posts + {} updates + {} replies = {}; calls {total}, ratio {ratio:.3}",
        min.posts,
        min.updates,
        min.replies,
        min.total()
    );
    println!(
        "final states {:?} after the storm was accepted (pacing bound {:?})",
        final_at.saturating_sub(storm_accepted),
        pacing_bound(&per_channel, &min, &state.calls)
    );
    assert!(
        ratio <= 1.2,
        "{total} Slack calls for a minimum of {} ({ratio:.3}x): {by_kind:?}",
        min.total()
    );
    ackbar.stop().await;
}

/// When the sandbox received each group's card post (its first successful
/// top-level post in the card's channel with the card's ts).
fn posts_by_group(
    calls: &[CallRecord],
    by_group: &BTreeMap<usize, Vec<(String, String, Value)>>,
) -> HashMap<usize, u64> {
    let group_of_ts: HashMap<&str, usize> = by_group
        .iter()
        .flat_map(|(g, cards)| cards.iter().map(move |(_, ts, _)| (ts.as_str(), *g)))
        .collect();
    let mut at = HashMap::new();
    for c in calls {
        if c.method != "chat.postMessage" || c.thread_ts.is_some() || c.outcome != Outcome::Ok {
            continue;
        }
        if let Some(g) = c.ts.as_deref().and_then(|ts| group_of_ts.get(ts)) {
            at.entry(*g).or_insert(c.at_us);
        }
    }
    at
}

/// The minimum's posts (cards and replies) per channel.
fn min_posts_per_channel<'a>(plans: &[GroupPlan]) -> BTreeMap<&'a str, usize> {
    let mut per_channel = BTreeMap::new();
    for p in plans {
        *per_channel.entry(channel_of(p.g)).or_default() += 1 + usize::from(p.sizes.len() > 1);
    }
    per_channel
}
