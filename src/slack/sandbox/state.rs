//! The emulator's workspace (channels, messages, threads), its call log, and
//! the serializable snapshot tests read through `GET /api/state`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::slack::blocks::Metadata;

/// Calls kept in the log; older ones are forgotten (counts keep counting).
pub const MAX_CALL_LOG: usize = 10_000;
/// Channels the emulator creates on demand in `auto_create_channels` mode.
pub const MAX_CHANNELS: usize = 1_000;
/// Top-level messages kept per channel; the oldest are forgotten.
pub const MAX_MESSAGES_PER_CHANNEL: usize = 10_000;
/// Replies kept per thread; the oldest are forgotten (`reply_count` keeps
/// counting).
pub const MAX_REPLIES_PER_THREAD: usize = 1_000;
/// `conversations.history` page size when `limit` is absent or 0, and the
/// largest accepted.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;
pub const MAX_HISTORY_LIMIT: usize = 1_000;

pub const TEAM_ID: &str = "T0SANDBOX";
pub const USER_ID: &str = "U0ACKBAR";
pub const BOT_ID: &str = "B0ACKBAR";
pub const WORKSPACE_URL: &str = "http://sandbox.invalid/";

/// Snapshot of everything the emulator holds (`GET /api/state`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SandboxState {
    pub channels: BTreeMap<String, ChannelState>,
    /// The last [`MAX_CALL_LOG`] API calls, oldest first.
    pub calls: Vec<CallRecord>,
    /// Per method (`unknown` for methods the emulator does not serve).
    pub counts: BTreeMap<String, MethodCounts>,
    /// Calls that came before an earlier 429's `Retry-After` elapsed.
    pub retry_after_violations: u64,
    /// Modals opened through `views.open`/`views.push`, oldest first.
    #[serde(default)]
    pub views: Vec<super::ViewState>,
    /// Ephemeral messages (never in `channels`), oldest first.
    #[serde(default)]
    pub ephemerals: Vec<super::EphemeralState>,
    /// Posts to minted response_urls, oldest first.
    #[serde(default)]
    pub response_posts: Vec<super::ResponsePostState>,
    /// Requests the sandbox sent to the app, oldest first.
    #[serde(default)]
    pub acts: Vec<super::ActRecord>,
    /// Socket Mode connections and envelopes.
    #[serde(default)]
    pub socket: super::SocketState,
}

impl SandboxState {
    /// Top-level messages of `channel`, oldest first (empty if unknown).
    pub fn messages(&self, channel: &str) -> &[MessageState] {
        self.channels
            .get(channel)
            .map(|c| c.messages.as_slice())
            .unwrap_or(&[])
    }

    /// Ephemeral messages shown to `user`, oldest first.
    pub fn ephemerals_for(&self, user: &str) -> Vec<&super::EphemeralState> {
        self.ephemerals.iter().filter(|e| e.user == user).collect()
    }

    /// The view with this id.
    pub fn view(&self, id: &str) -> Option<&super::ViewState> {
        self.views.iter().find(|v| v.id == id)
    }

    /// Counts of `method` (zero if never called).
    pub fn count(&self, method: &str) -> MethodCounts {
        self.counts.get(method).copied().unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChannelState {
    /// Top-level messages, oldest first; replies hang under their parent.
    pub messages: Vec<MessageState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageState {
    pub ts: String,
    pub text: String,
    /// The blocks exactly as the client sent them (`[]` when none).
    pub blocks: Value,
    pub metadata: Option<Metadata>,
    /// Set on replies: the parent's ts.
    pub thread_ts: Option<String>,
    pub reply_count: u32,
    pub edited: bool,
    pub update_count: u32,
    pub replies: Vec<MessageState>,
    /// The workspace whose OAuth-issued token posted it; `None` for the
    /// sandbox's own token (see [`super::oauth`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub method: String,
    pub channel: Option<String>,
    pub outcome: Outcome,
    /// Whether the call changed the workspace (true for a drop *after*
    /// applying: the message exists although the client saw an error).
    pub applied: bool,
    /// Milliseconds since the sandbox was created.
    pub at_ms: u64,
    /// Microseconds since the sandbox was created ([`super::Sandbox::elapsed`]
    /// reads the same clock), for measuring latencies of a few milliseconds.
    #[serde(default)]
    pub at_us: u64,
    /// The message the call posted (the answer's `ts`) or changed
    /// (`chat.update`'s `ts`), so a call can be tied to its card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
    /// The thread a `chat.postMessage` replied in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<String>,
    /// The `Retry-After` (whole seconds) of a 429 answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// How a call ended; serialized as `ok`, `error:<code>`, `ratelimited`,
/// `fault:500`, `fault:503` or `fault:drop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Outcome {
    Ok,
    Error(String),
    RateLimited,
    FaultStatus(u16),
    FaultDrop,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Error(e) => write!(f, "error:{e}"),
            Outcome::RateLimited => f.write_str("ratelimited"),
            Outcome::FaultStatus(s) => write!(f, "fault:{s}"),
            Outcome::FaultDrop => f.write_str("fault:drop"),
        }
    }
}

impl From<Outcome> for String {
    fn from(o: Outcome) -> String {
        o.to_string()
    }
}

impl TryFrom<String> for Outcome {
    type Error = String;
    fn try_from(s: String) -> Result<Outcome, String> {
        match s.as_str() {
            "ok" => Ok(Outcome::Ok),
            "ratelimited" => Ok(Outcome::RateLimited),
            "fault:drop" => Ok(Outcome::FaultDrop),
            _ => {
                if let Some(e) = s.strip_prefix("error:") {
                    Ok(Outcome::Error(e.to_owned()))
                } else if let Some(code) = s.strip_prefix("fault:").and_then(|c| c.parse().ok()) {
                    Ok(Outcome::FaultStatus(code))
                } else {
                    Err(format!("unknown outcome {s:?}"))
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MethodCounts {
    pub ok: u64,
    pub error: u64,
    pub ratelimited: u64,
    pub fault: u64,
}

impl MethodCounts {
    pub fn total(&self) -> u64 {
        self.ok + self.error + self.ratelimited + self.fault
    }
}

/// A Slack `ok:false` answer from the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ApiError {
    pub error: String,
    /// Slack's `errors` array (for `invalid_blocks`).
    pub details: Vec<String>,
}

impl ApiError {
    pub(super) fn new(error: &str) -> ApiError {
        ApiError {
            error: error.to_owned(),
            details: Vec::new(),
        }
    }
}

/// Timestamps are microseconds since the epoch, written `secs.micros`.
pub(super) fn format_ts(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// Parse `"1700000000.000100"`, `"1700000000"` or `"1700000000.5"`.
pub(super) fn parse_ts(s: &str) -> Option<u64> {
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let mut micros: u64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        micros += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
    }
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

fn encode_cursor(ts: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("next_ts:{ts}"))
}

fn decode_cursor(cursor: &str) -> Option<u64> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    s.strip_prefix("next_ts:")?.parse().ok()
}

fn wall_clock_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
struct StoredMessage {
    ts: u64,
    text: String,
    blocks: Value,
    metadata: Option<Metadata>,
    thread_ts: Option<u64>,
    reply_count: u32,
    edited: bool,
    update_count: u32,
    replies: VecDeque<StoredMessage>,
    team: Option<String>,
}

impl StoredMessage {
    fn snapshot(&self) -> MessageState {
        MessageState {
            ts: format_ts(self.ts),
            text: self.text.clone(),
            blocks: self.blocks.clone(),
            metadata: self.metadata.clone(),
            thread_ts: self.thread_ts.map(format_ts),
            reply_count: self.reply_count,
            edited: self.edited,
            update_count: self.update_count,
            replies: self.replies.iter().map(StoredMessage::snapshot).collect(),
            team: self.team.clone(),
        }
    }

    /// The message as Slack's API shows it.
    fn to_api(&self, with_metadata: bool) -> Value {
        let mut m = json!({
            "type": "message",
            "user": USER_ID,
            "bot_id": BOT_ID,
            "ts": format_ts(self.ts),
            "text": self.text,
            "blocks": self.blocks,
        });
        if let Some(obj) = m.as_object_mut() {
            if let Some(parent) = self.thread_ts {
                obj.insert("thread_ts".into(), json!(format_ts(parent)));
            } else if self.reply_count > 0 {
                obj.insert("thread_ts".into(), json!(format_ts(self.ts)));
                obj.insert("reply_count".into(), json!(self.reply_count));
                if let Some(last) = self.replies.back() {
                    obj.insert("latest_reply".into(), json!(format_ts(last.ts)));
                }
            }
            if self.edited {
                obj.insert("edited".into(), json!({"user": USER_ID}));
            }
            if with_metadata && let Some(md) = &self.metadata {
                obj.insert("metadata".into(), json!(md));
            }
        }
        m
    }
}

#[derive(Debug, Default)]
struct Channel {
    /// Top-level messages, ascending ts.
    messages: VecDeque<StoredMessage>,
    /// Last ts handed out in this channel (messages and replies share it).
    last_ts: u64,
}

impl Channel {
    fn next_ts(&mut self) -> u64 {
        let ts = wall_clock_micros().max(self.last_ts + 1);
        self.last_ts = ts;
        ts
    }

    fn find(&self, ts: u64) -> Option<&StoredMessage> {
        match self.messages.binary_search_by_key(&ts, |m| m.ts) {
            Ok(i) => self.messages.get(i),
            Err(_) => self
                .messages
                .iter()
                .flat_map(|m| m.replies.iter())
                .find(|r| r.ts == ts),
        }
    }

    fn find_mut(&mut self, ts: u64) -> Option<&mut StoredMessage> {
        let idx = self.messages.binary_search_by_key(&ts, |m| m.ts);
        match idx {
            Ok(i) => self.messages.get_mut(i),
            Err(_) => self
                .messages
                .iter_mut()
                .flat_map(|m| m.replies.iter_mut())
                .find(|r| r.ts == ts),
        }
    }
}

/// Arguments of a post or update after decoding.
#[derive(Debug, Clone, Default)]
pub(super) struct MessageArgs {
    pub text: Option<String>,
    pub blocks: Option<Value>,
    pub metadata: Option<Metadata>,
    /// The workspace of the token that sent them (`None`: the sandbox's
    /// own token).
    pub team: Option<String>,
}

/// Arguments of `conversations.history` after decoding.
#[derive(Debug, Clone, Default)]
pub(super) struct HistoryArgs {
    pub oldest: Option<u64>,
    pub latest: Option<u64>,
    pub inclusive: bool,
    pub limit: usize,
    pub cursor: Option<String>,
    pub include_metadata: bool,
}

/// The workspace: channels and their messages.
#[derive(Debug, Default)]
pub(super) struct Workspace {
    channels: BTreeMap<String, Channel>,
    known: Vec<String>,
    auto_create: bool,
}

impl Workspace {
    pub(super) fn new(known: Vec<String>, auto_create: bool) -> Workspace {
        let channels = known
            .iter()
            .map(|c| (c.clone(), Channel::default()))
            .collect();
        Workspace {
            channels,
            known,
            auto_create,
        }
    }

    pub(super) fn clear(&mut self) {
        *self = Workspace::new(std::mem::take(&mut self.known), self.auto_create);
    }

    fn channel(&mut self, id: &str) -> Result<&mut Channel, ApiError> {
        if !self.channels.contains_key(id) {
            if !self.auto_create
                || !crate::config::is_channel_id(id)
                || self.channels.len() >= MAX_CHANNELS
            {
                return Err(ApiError::new("channel_not_found"));
            }
            self.channels.insert(id.to_owned(), Channel::default());
        }
        self.channels
            .get_mut(id)
            .ok_or_else(|| ApiError::new("channel_not_found"))
    }

    /// Create `id` if needed, bypassing `auto_create` (DMs opened through
    /// `conversations.open`).
    pub(super) fn ensure_channel(&mut self, id: &str) -> Result<(), ApiError> {
        if !self.channels.contains_key(id) {
            if self.channels.len() >= MAX_CHANNELS {
                return Err(ApiError::new("channel_not_found"));
            }
            self.channels.insert(id.to_owned(), Channel::default());
        }
        Ok(())
    }

    /// Whether `id` exists already.
    pub(super) fn has_channel(&self, id: &str) -> bool {
        self.channels.contains_key(id)
    }

    /// A message (top level or reply) as Slack shows it, metadata included.
    pub(super) fn message_api(&self, channel_id: &str, ts: &str) -> Option<Value> {
        let channel = self.channels.get(channel_id)?;
        channel.find(parse_ts(ts)?).map(|m| m.to_api(true))
    }

    /// Delete a message; a deleted parent takes its replies with it.
    pub(super) fn delete(&mut self, channel_id: &str, ts: &str) -> Result<(), ApiError> {
        let not_found = || ApiError::new("message_not_found");
        let channel = self.channels.get_mut(channel_id).ok_or_else(not_found)?;
        let ts = parse_ts(ts).ok_or_else(not_found)?;
        if let Ok(i) = channel.messages.binary_search_by_key(&ts, |m| m.ts) {
            channel.messages.remove(i);
            return Ok(());
        }
        for parent in channel.messages.iter_mut() {
            if let Some(i) = parent.replies.iter().position(|r| r.ts == ts) {
                parent.replies.remove(i);
                parent.reply_count = parent.reply_count.saturating_sub(1);
                return Ok(());
            }
        }
        Err(not_found())
    }

    /// Whether `id` names a channel a post could reach (without creating it).
    pub(super) fn channel_exists_or_creatable(&self, id: &str) -> bool {
        self.channels.contains_key(id) || (self.auto_create && crate::config::is_channel_id(id))
    }

    pub(super) fn post(
        &mut self,
        channel_id: &str,
        args: MessageArgs,
        thread_ts: Option<&str>,
    ) -> Result<Value, ApiError> {
        let channel = self.channel(channel_id)?;
        let parent = match thread_ts.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => {
                let ts = parse_ts(t).ok_or_else(|| ApiError::new("thread_not_found"))?;
                match channel.messages.binary_search_by_key(&ts, |m| m.ts) {
                    Ok(i) => Some(i),
                    Err(_) => return Err(ApiError::new("thread_not_found")),
                }
            }
        };
        let ts = channel.next_ts();
        let message = StoredMessage {
            ts,
            text: args.text.unwrap_or_default(),
            blocks: args.blocks.unwrap_or_else(|| json!([])),
            metadata: args.metadata,
            thread_ts: None,
            reply_count: 0,
            edited: false,
            update_count: 0,
            replies: VecDeque::new(),
            team: args.team,
        };
        let api = match parent.and_then(|i| channel.messages.get_mut(i)) {
            Some(p) => {
                let reply = StoredMessage {
                    thread_ts: Some(p.ts),
                    ..message
                };
                let api = reply.to_api(true);
                p.reply_count = p.reply_count.saturating_add(1);
                p.replies.push_back(reply);
                if p.replies.len() > MAX_REPLIES_PER_THREAD {
                    p.replies.pop_front();
                }
                api
            }
            None => {
                let api = message.to_api(true);
                channel.messages.push_back(message);
                if channel.messages.len() > MAX_MESSAGES_PER_CHANNEL {
                    channel.messages.pop_front();
                }
                api
            }
        };
        Ok(json!({
            "ok": true,
            "channel": channel_id,
            "ts": format_ts(ts),
            "message": api,
        }))
    }

    pub(super) fn update(
        &mut self,
        channel_id: &str,
        ts: &str,
        args: MessageArgs,
    ) -> Result<Value, ApiError> {
        let channel = self.channel(channel_id)?;
        let ts_num = parse_ts(ts).ok_or_else(|| ApiError::new("message_not_found"))?;
        let m = channel
            .find_mut(ts_num)
            .ok_or_else(|| ApiError::new("message_not_found"))?;
        // Another workspace's bot cannot edit this one's messages
        // (response_urls and the sandbox's own token act for any).
        if args.team.is_some() && m.team != args.team {
            return Err(ApiError::new("cant_update_message"));
        }
        if let Some(text) = args.text {
            m.text = text;
        }
        if let Some(blocks) = args.blocks {
            m.blocks = blocks;
        }
        if let Some(md) = args.metadata {
            m.metadata = Some(md);
        }
        m.edited = true;
        m.update_count = m.update_count.saturating_add(1);
        Ok(json!({
            "ok": true,
            "channel": channel_id,
            "ts": format_ts(ts_num),
            "text": m.text,
            "message": m.to_api(true),
        }))
    }

    pub(super) fn permalink(&mut self, channel_id: &str, ts: &str) -> Result<Value, ApiError> {
        let channel = self.channel(channel_id)?;
        let ts_num = parse_ts(ts).ok_or_else(|| ApiError::new("message_not_found"))?;
        let m = channel
            .find_mut(ts_num)
            .ok_or_else(|| ApiError::new("message_not_found"))?;
        let digits: String = format_ts(ts_num).chars().filter(|c| *c != '.').collect();
        let mut permalink = format!("{WORKSPACE_URL}archives/{channel_id}/p{digits}");
        if let Some(parent) = m.thread_ts {
            permalink.push_str(&format!(
                "?thread_ts={}&cid={channel_id}",
                format_ts(parent)
            ));
        }
        Ok(json!({"ok": true, "channel": channel_id, "permalink": permalink}))
    }

    pub(super) fn history(
        &mut self,
        channel_id: &str,
        args: &HistoryArgs,
    ) -> Result<Value, ApiError> {
        let channel = self.channel(channel_id)?;
        let upper = match args.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(decode_cursor(c).ok_or_else(|| ApiError::new("invalid_cursor"))?),
            None => None,
        };
        let limit = match args.limit {
            0 => DEFAULT_HISTORY_LIMIT,
            n => n.min(MAX_HISTORY_LIMIT),
        };
        let mut selected = channel.messages.iter().rev().filter(|m| {
            let after_oldest = match args.oldest {
                Some(o) if args.inclusive => m.ts >= o,
                Some(o) => m.ts > o,
                None => true,
            };
            let before_latest = match args.latest {
                Some(l) if args.inclusive => m.ts <= l,
                Some(l) => m.ts < l,
                None => true,
            };
            let in_page = upper.is_none_or(|u| m.ts <= u);
            after_oldest && before_latest && in_page
        });
        let page: Vec<Value> = selected
            .by_ref()
            .take(limit)
            .map(|m| m.to_api(args.include_metadata))
            .collect();
        let next = selected.next().map(|m| encode_cursor(m.ts));
        Ok(json!({
            "ok": true,
            "messages": page,
            "has_more": next.is_some(),
            "pin_count": 0,
            "response_metadata": {"next_cursor": next.unwrap_or_default()},
        }))
    }

    pub(super) fn snapshot(&self) -> BTreeMap<String, ChannelState> {
        self.channels
            .iter()
            .map(|(id, c)| {
                (
                    id.clone(),
                    ChannelState {
                        messages: c.messages.iter().map(StoredMessage::snapshot).collect(),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_round_trips() {
        assert_eq!(format_ts(1_700_000_000_000_100), "1700000000.000100");
        assert_eq!(parse_ts("1700000000.000100"), Some(1_700_000_000_000_100));
        assert_eq!(parse_ts("1700000000"), Some(1_700_000_000_000_000));
        assert_eq!(parse_ts("1700000000.5"), Some(1_700_000_000_500_000));
        for bad in ["", ".", "x.1", "1.1234567", "-1", "1.-1"] {
            assert_eq!(parse_ts(bad), None, "{bad}");
        }
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("nope"), None);
    }

    #[test]
    fn outcome_strings_round_trip() {
        for o in [
            Outcome::Ok,
            Outcome::Error("channel_not_found".into()),
            Outcome::RateLimited,
            Outcome::FaultStatus(503),
            Outcome::FaultDrop,
        ] {
            let s = String::from(o.clone());
            assert_eq!(Outcome::try_from(s), Ok(o));
        }
    }

    #[test]
    fn ts_are_unique_and_increasing_per_channel() {
        let mut w = Workspace::new(vec!["C0TEST0001".into()], false);
        let mut last = 0;
        for _ in 0..100 {
            let args = MessageArgs {
                text: Some("x".into()),
                ..MessageArgs::default()
            };
            let v = w.post("C0TEST0001", args, None).expect("post");
            let ts = parse_ts(v["ts"].as_str().unwrap_or_default()).expect("ts");
            assert!(ts > last);
            last = ts;
        }
    }
}
