//! `ackbar preview`: the Slack messages ackbar would send for Alertmanager
//! payloads, without the configured store and without Slack.
//!
//! The payloads go through the real ingest (decode), pipeline (routing from
//! the config, grouping, the card state machine) and an in-memory store.
//! After each payload a stand-in for delivery hands out every operation the
//! outbox holds (replies past their batching window included), renders it
//! as delivery does and records it as sent, so the next payload updates the
//! card and threads under it as it would in Slack. Each message is checked
//! against the Block Kit limits by the sandbox's validator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{EXIT_FAILED, EXIT_USAGE};
use crate::config::Config;
use crate::deliver::card_view_to_send;
use crate::ingest::alertmanager::{self, DecodeError};
use crate::model::{CardId, Notification};
use crate::pipeline::Pipeline;
use crate::pipeline::route::Router;
use crate::slack::blocks::Message;
use crate::slack::sandbox::validate::validate_message;
use crate::slack::{cards, template};
use crate::store::sqlite::SqliteStore;
use crate::store::{Completion, NextOp, OpKind, OutboxOp, Store, StoreError};

const BLOCK_KIT_BUILDER: &str = "https://app.slack.com/block-kit-builder/#";
/// Operations handed out per payload at most: far above what one payload
/// causes, a guard against a store that keeps answering `Ready`.
const MAX_OPS_PER_PAYLOAD: usize = 10_000;
/// Time between two previewed payloads, at least.
const PAYLOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(59);

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("the alerts file is neither a webhook payload nor an array of them: {0}")]
    NotJson(String),
    #[error("payload {index}: {error}")]
    Decode { index: usize, error: DecodeError },
    #[error("in-memory store: {0}")]
    Store(#[from] StoreError),
}

/// One message ackbar would send.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewMessage {
    pub card: CardId,
    /// The payload (1-based) after which it is sent.
    pub after_payload: usize,
    pub kind: OpKind,
    pub method: &'static str,
    /// The Web API request body (`channel`, `ts`/`thread_ts`, `text`,
    /// `blocks`, `metadata`).
    pub request: Value,
    pub block_kit_builder: String,
    /// Why Slack would refuse it, when it would.
    pub limit_broken: Option<String>,
}

/// Decodes an alerts file: one webhook payload, or an array of them.
pub fn decode_payloads(body: &[u8]) -> Result<Vec<Notification>, PreviewError> {
    let starts_array = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[');
    if !starts_array {
        let one =
            alertmanager::decode(body).map_err(|error| PreviewError::Decode { index: 1, error })?;
        return Ok(vec![one]);
    }
    let items: Vec<Value> =
        serde_json::from_slice(body).map_err(|e| PreviewError::NotJson(e.to_string()))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let bytes =
                serde_json::to_vec(item).map_err(|e| PreviewError::NotJson(e.to_string()))?;
            alertmanager::decode(&bytes).map_err(|error| PreviewError::Decode {
                index: i + 1,
                error,
            })
        })
        .collect()
}

/// Runs `payloads` through ackbar on an in-memory store and returns the
/// messages delivery would send, in order.
pub async fn preview(
    config: &Config,
    payloads: Vec<Notification>,
) -> Result<Vec<PreviewMessage>, PreviewError> {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open("sqlite::memory:", std::time::Duration::from_secs(5)).await?);
    let router = Arc::new(Router::new(config.effective_routes()));
    let window = config.delivery.reply_batch_window;
    let pipeline = Pipeline::new(router.clone(), store.clone(), window);
    // A clock of its own: payloads arrive a minute apart (or after the
    // previous one's replies were due, if the batching window is longer),
    // so a window never merges two payloads' replies.
    let step = chrono::Duration::from_std(window.max(PAYLOAD_INTERVAL)).unwrap_or_default()
        + chrono::Duration::seconds(1);
    let mut now = Utc::now();
    let mut messages = Vec::new();
    for (i, notification) in payloads.into_iter().enumerate() {
        let report = pipeline.ingest(notification, now).await?;
        if report.unrouted > 0 {
            eprintln!(
                "payload {}: {} alert(s) match no route and would be dropped",
                i + 1,
                report.unrouted
            );
        }
        now += step;
        for channel in store.pending_channels().await? {
            deliver_channel(&*store, &router, &channel, now, i + 1, &mut messages).await?;
        }
    }
    Ok(messages)
}

/// Hands out `channel`'s due operations, renders and records them as sent.
async fn deliver_channel(
    store: &dyn Store,
    router: &Router,
    channel: &str,
    now: DateTime<Utc>,
    payload: usize,
    out: &mut Vec<PreviewMessage>,
) -> Result<(), PreviewError> {
    for _ in 0..MAX_OPS_PER_PAYLOAD {
        let NextOp::Ready(op) = store.next_op(channel, now).await? else {
            return Ok(());
        };
        let Some(op) = store.begin_attempt(op.id, now).await? else {
            continue;
        };
        // Previews run no digest timer, so every operation has a card.
        let Some(card) = op.card.clone() else {
            continue;
        };
        let Some(view) = card_view_to_send(store, router, &card).await? else {
            continue;
        };
        let ts = fake_ts(now, out.len());
        let (method, request, completion) = match op.kind {
            OpKind::Post => {
                let message = template::card(&view, now, router.by_name(&view.route));
                let posted = Completion::Posted {
                    ts: ts.clone(),
                    refresh: false,
                };
                ("chat.postMessage", request(&op, &message, None), posted)
            }
            OpKind::Update => {
                let message = template::card(&view, now, router.by_name(&view.route));
                let mut body = request(&op, &message, None);
                body["ts"] = json!(op.card_ts);
                ("chat.update", body, Completion::Done)
            }
            OpKind::Reply => {
                let message = template::reply(&view, &op.events, now, router.by_name(&view.route));
                let body = request(&op, &message, op.card_ts.as_deref());
                ("chat.postMessage", body, Completion::Done)
            }
            OpKind::Dm => {
                let permalink = format!(
                    "https://example.slack.com/archives/{}/p{}",
                    op.channel,
                    op.card_ts.as_deref().unwrap_or_default().replace('.', "")
                );
                let message = cards::render_dm(&view, &op.events, &permalink, now);
                let mut body = request(&op, &message, None);
                body["channel"] = json!(op.recipient);
                ("chat.postMessage", body, Completion::Done)
            }
            // A digest has no card, so it was skipped above.
            OpKind::Digest => continue,
        };
        store.complete(&op, completion, now).await?;
        let limit_broken = validate_message(request["text"].as_str(), request.get("blocks"))
            .err()
            .map(|r| {
                if r.details.is_empty() {
                    r.error.to_owned()
                } else {
                    format!("{}: {}", r.error, r.details.join("; "))
                }
            });
        out.push(PreviewMessage {
            card,
            after_payload: payload,
            kind: op.kind,
            method,
            block_kit_builder: block_kit_builder_url(&request["blocks"]),
            request,
            limit_broken,
        });
    }
    Ok(())
}

/// The JSON body of the Web API call that sends `message` for `op`.
fn request(op: &OutboxOp, message: &Message, thread_ts: Option<&str>) -> Value {
    let mut body = serde_json::to_value(message).unwrap_or(Value::Null);
    body["channel"] = json!(op.channel);
    if let Some(ts) = thread_ts {
        body["thread_ts"] = json!(ts);
    }
    body
}

/// A Slack-like ts for a message the preview pretends was sent.
fn fake_ts(now: DateTime<Utc>, n: usize) -> String {
    format!("{}.{:06}", now.timestamp(), n % 1_000_000)
}

/// A link that opens `blocks` in Slack's Block Kit Builder.
pub fn block_kit_builder_url(blocks: &Value) -> String {
    let json = json!({ "blocks": blocks }).to_string();
    format!("{BLOCK_KIT_BUILDER}{}", percent_encode(&json))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `ackbar preview`: prints the messages per card as JSON.
pub(super) async fn run(config: Config, alerts: PathBuf) -> ExitCode {
    let body = match std::fs::read(&alerts) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {}: {e}", alerts.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let payloads = match decode_payloads(&body) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}: {e}", alerts.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let messages = match preview(&config, payloads).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ackbar preview: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut cards: Vec<(CardId, Vec<Value>)> = Vec::new();
    for m in &messages {
        let entry = json!({
            "after_payload": m.after_payload,
            "kind": m.kind.as_str(),
            "method": m.method,
            "request": m.request,
            "block_kit_builder": m.block_kit_builder,
            "limit_broken": m.limit_broken,
        });
        match cards.iter_mut().find(|(id, _)| *id == m.card) {
            Some((_, list)) => list.push(entry),
            None => cards.push((m.card.clone(), vec![entry])),
        }
    }
    let cards: Vec<Value> = cards
        .into_iter()
        .map(|(id, messages)| json!({"card": id.0, "messages": messages}))
        .collect();
    let printed = serde_json::to_string_pretty(&json!({ "cards": cards })).unwrap_or_default();
    println!("{printed}");
    let broken: Vec<&PreviewMessage> = messages
        .iter()
        .filter(|m| m.limit_broken.is_some())
        .collect();
    for m in &broken {
        eprintln!(
            "card {} ({} {} after payload {}) breaks a Block Kit limit: {}",
            m.card,
            m.method,
            m.kind.as_str(),
            m.after_payload,
            m.limit_broken.as_deref().unwrap_or_default()
        );
    }
    if broken.is_empty() {
        eprintln!(
            "{} message(s) for {} card(s), all within Block Kit limits",
            messages.len(),
            cards.len()
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_links_encode_the_blocks_as_the_fragment() {
        let url = block_kit_builder_url(&json!([{"type": "divider"}]));
        assert_eq!(
            url,
            "https://app.slack.com/block-kit-builder/#%7B%22blocks%22%3A%5B%7B%22type%22%3A%22divider%22%7D%5D%7D"
        );
    }
}
