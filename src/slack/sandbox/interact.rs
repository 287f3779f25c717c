//! What the emulator remembers about interactivity: trigger ids, modals
//! (views and their stacks), response_urls, ephemeral messages, DMs, and the
//! log of requests it sent to the app.
//!
//! Rules, as Slack applies them (`PROTOCOLS.md`): a trigger id is minted by
//! an interaction, is valid [`TRIGGER_TTL`] and can be exchanged once; a
//! response_url is valid [`RESPONSE_URL_TTL`] for at most
//! [`RESPONSE_URL_MAX_USES`] posts; a modal stack holds at most
//! [`MAX_VIEW_STACK`] views. Every collection is bounded (`MAX_*`).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::state::{ApiError, BOT_ID, TEAM_ID};

/// How long a trigger id can be exchanged (`views.open`, `views.push`).
pub const TRIGGER_TTL: Duration = Duration::from_secs(3);
/// How long a response_url accepts posts.
pub const RESPONSE_URL_TTL: Duration = Duration::from_secs(30 * 60);
/// Posts a response_url accepts.
pub const RESPONSE_URL_MAX_USES: u32 = 5;
/// Views in one modal stack (`views.push` past it: `push_limit_reached`).
pub const MAX_VIEW_STACK: usize = 3;
pub const MAX_VIEW_BLOCKS: usize = 100;
/// `title`, `submit` and `close` texts.
pub const MAX_VIEW_TITLE_CHARS: usize = 24;
pub const MAX_PRIVATE_METADATA_CHARS: usize = 3_000;
pub const MAX_CALLBACK_ID_CHARS: usize = 255;
/// Live trigger ids and response_urls kept; past it the oldest go.
pub const MAX_TRIGGERS: usize = 10_000;
pub const MAX_RESPONSE_URLS: usize = 10_000;
/// Views kept (open and closed); closed ones go first.
pub const MAX_VIEWS: usize = 1_000;
pub const MAX_EPHEMERALS: usize = 10_000;
pub const MAX_RESPONSE_POSTS: usize = 10_000;
pub const MAX_ACT_LOG: usize = 1_000;
/// App id the emulator puts in what it sends.
pub const APP_ID: &str = "A0ACKBAR";

/// A modal as the emulator holds it (`state.views`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewState {
    pub id: String,
    /// Whose screen it is on.
    pub user: String,
    /// The view JSON as the app sent it last.
    pub view: Value,
    pub hash: String,
    /// The first view of its stack (itself for a root).
    pub root_view_id: String,
    pub previous_view_id: Option<String>,
    /// Position in its stack, 1 for the root.
    pub stack: usize,
    pub closed: bool,
    /// `errors` of the last `response_action: errors` answer.
    pub errors: Option<Value>,
}

/// An ephemeral message (`state.ephemerals`): seen by `user` only, never in
/// history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EphemeralState {
    pub channel: String,
    pub user: String,
    pub text: String,
    pub blocks: Value,
    pub thread_ts: Option<String>,
    /// `chat.postEphemeral`, `response_url` or `slash_command` (the app's
    /// immediate answer to a command).
    pub source: String,
}

/// One post to a response_url (`state.response_posts`), accepted or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponsePostState {
    /// The url's id (last path segment).
    pub url_id: String,
    pub status: u16,
    /// `ok` or the error code answered.
    pub outcome: String,
    pub body: Value,
    pub at_ms: u64,
}

/// One request the emulator sent to the app (`state.acts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActRecord {
    /// `block_actions`, `view_submission`, `slash_command`, `event_callback`,
    /// `url_verification` or `raw`.
    pub kind: String,
    pub path: String,
    /// The app's HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    /// Round-trip time (Slack gives up after 3 seconds).
    pub elapsed_ms: u64,
    /// Milliseconds since the sandbox was created, when it was sent.
    pub at_ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Trigger {
    expires: Instant,
    used: bool,
    pub user: String,
    /// The view the minting interaction happened in, if any.
    pub view_id: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct ResponseUrl {
    expires: Instant,
    uses: u32,
    pub channel: String,
    pub user: String,
    /// The message the interaction came from (none for commands).
    pub message_ts: Option<String>,
}

/// Why a response_url post is refused: HTTP status and error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UrlRefusal {
    pub status: u16,
    pub error: &'static str,
}

#[derive(Debug, Default)]
pub(super) struct Interact {
    triggers: HashMap<String, Trigger>,
    /// Mint order, to forget the oldest first.
    trigger_order: VecDeque<String>,
    response_urls: HashMap<String, ResponseUrl>,
    response_url_order: VecDeque<String>,
    views: VecDeque<ViewState>,
    pub ephemerals: VecDeque<EphemeralState>,
    pub response_posts: VecDeque<ResponsePostState>,
    pub acts: VecDeque<ActRecord>,
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T, max: usize) {
    if q.len() >= max {
        q.pop_front();
    }
    q.push_back(item);
}

fn random_alnum(rng: &mut fastrand::Rng, n: usize) -> String {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n)
        .map(|_| char::from(UPPER[rng.usize(..UPPER.len())]))
        .collect()
}

fn random_hex(rng: &mut fastrand::Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[rng.usize(..16)]))
        .collect()
}

/// A user id as Slack writes them: `U`/`W` then upper-case alphanumerics.
pub(super) fn is_user_id(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 32
        && (s.starts_with('U') || s.starts_with('W'))
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The stable DM (one user) or group DM (several) id for `users`.
pub(super) fn dm_channel_id(users: &[String]) -> String {
    let mut sorted: Vec<&str> = users.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let digest = Sha256::digest(sorted.join(",").as_bytes());
    let prefix = if sorted.len() == 1 { 'D' } else { 'G' };
    let mut id = String::from(prefix);
    for b in digest.iter().take(5) {
        id.push_str(&format!("{b:02X}"));
    }
    id
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Check a modal against Slack's limits; `invalid_arguments` with details.
pub(super) fn validate_view(view: Option<&Value>) -> Result<(), ApiError> {
    let Some(view) = view else {
        return Err(ApiError::new("invalid_arguments"));
    };
    let Some(obj) = view.as_object() else {
        return Err(ApiError {
            error: "invalid_arguments".into(),
            details: vec!["view must be an object [json-pointer:/view]".into()],
        });
    };
    let mut details = Vec::new();
    if obj.get("type").and_then(Value::as_str) != Some("modal") {
        details.push("must be \"modal\" [json-pointer:/view/type]".to_owned());
    }
    for (key, required) in [("title", true), ("submit", false), ("close", false)] {
        match obj.get(key) {
            None if !required => {}
            None => details.push(format!("missing required field [json-pointer:/view/{key}]")),
            Some(t) => {
                let text = t.get("text").and_then(Value::as_str);
                let plain = t.get("type").and_then(Value::as_str) == Some("plain_text");
                match text {
                    Some(s) if plain && !s.is_empty() && chars(s) <= MAX_VIEW_TITLE_CHARS => {}
                    _ => details.push(format!(
                        "must be plain_text of 1..{MAX_VIEW_TITLE_CHARS} characters [json-pointer:/view/{key}]"
                    )),
                }
            }
        }
    }
    match obj.get("blocks") {
        Some(Value::Array(b)) if b.len() <= MAX_VIEW_BLOCKS => {}
        Some(Value::Array(_)) => details.push(format!(
            "no more than {MAX_VIEW_BLOCKS} items allowed [json-pointer:/view/blocks]"
        )),
        _ => details.push("blocks must be an array [json-pointer:/view/blocks]".to_owned()),
    }
    for (key, max) in [
        ("private_metadata", MAX_PRIVATE_METADATA_CHARS),
        ("callback_id", MAX_CALLBACK_ID_CHARS),
    ] {
        match obj.get(key) {
            None => {}
            Some(Value::String(s)) if chars(s) <= max => {}
            Some(_) => details.push(format!(
                "must be a string of at most {max} characters [json-pointer:/view/{key}]"
            )),
        }
    }
    if details.is_empty() {
        Ok(())
    } else {
        Err(ApiError {
            error: "invalid_arguments".into(),
            details,
        })
    }
}

impl Interact {
    pub(super) fn clear(&mut self) {
        *self = Interact::default();
    }

    pub(super) fn mint_trigger(
        &mut self,
        rng: &mut fastrand::Rng,
        user: &str,
        view_id: Option<&str>,
        ttl: Duration,
    ) -> String {
        let id = format!(
            "{}.{}.{}",
            rng.u64(1_000_000_000..10_000_000_000),
            rng.u64(10_000_000_000..100_000_000_000),
            random_hex(rng, 32)
        );
        if self.trigger_order.len() >= MAX_TRIGGERS
            && let Some(old) = self.trigger_order.pop_front()
        {
            self.triggers.remove(&old);
        }
        self.trigger_order.push_back(id.clone());
        self.triggers.insert(
            id.clone(),
            Trigger {
                expires: Instant::now() + ttl,
                used: false,
                user: user.to_owned(),
                view_id: view_id.map(str::to_owned),
            },
        );
        id
    }

    /// Exchange a trigger id (once).
    pub(super) fn take_trigger(&mut self, id: &str) -> Result<Trigger, ApiError> {
        let t = self
            .triggers
            .get_mut(id)
            .ok_or_else(|| ApiError::new("invalid_trigger_id"))?;
        if t.used {
            return Err(ApiError::new("exchanged_trigger_id"));
        }
        if Instant::now() >= t.expires {
            return Err(ApiError::new("expired_trigger_id"));
        }
        t.used = true;
        Ok(t.clone())
    }

    pub(super) fn mint_response_url(
        &mut self,
        rng: &mut fastrand::Rng,
        channel: &str,
        user: &str,
        message_ts: Option<&str>,
        ttl: Duration,
    ) -> String {
        let id = random_hex(rng, 32);
        if self.response_url_order.len() >= MAX_RESPONSE_URLS
            && let Some(old) = self.response_url_order.pop_front()
        {
            self.response_urls.remove(&old);
        }
        self.response_url_order.push_back(id.clone());
        self.response_urls.insert(
            id.clone(),
            ResponseUrl {
                expires: Instant::now() + ttl,
                uses: 0,
                channel: channel.to_owned(),
                user: user.to_owned(),
                message_ts: message_ts.map(str::to_owned),
            },
        );
        id
    }

    /// Count one use of a response_url, or say why it cannot be used.
    pub(super) fn use_response_url(&mut self, id: &str) -> Result<ResponseUrl, UrlRefusal> {
        let u = self.response_urls.get_mut(id).ok_or(UrlRefusal {
            status: 404,
            error: "no_such_url",
        })?;
        if Instant::now() >= u.expires {
            return Err(UrlRefusal {
                status: 410,
                error: "expired_url",
            });
        }
        if u.uses >= RESPONSE_URL_MAX_USES {
            return Err(UrlRefusal {
                status: 410,
                error: "used_url",
            });
        }
        u.uses += 1;
        Ok(u.clone())
    }

    pub(super) fn record_ephemeral(&mut self, e: EphemeralState) {
        push_bounded(&mut self.ephemerals, e, MAX_EPHEMERALS);
    }

    pub(super) fn record_response_post(&mut self, p: ResponsePostState) {
        push_bounded(&mut self.response_posts, p, MAX_RESPONSE_POSTS);
    }

    pub(super) fn record_act(&mut self, a: ActRecord) {
        push_bounded(&mut self.acts, a, MAX_ACT_LOG);
    }

    pub(super) fn views(&self) -> impl Iterator<Item = &ViewState> {
        self.views.iter()
    }

    pub(super) fn view(&self, id: &str) -> Option<&ViewState> {
        self.views.iter().find(|v| v.id == id)
    }

    fn view_mut(&mut self, id: &str) -> Option<&mut ViewState> {
        self.views.iter_mut().find(|v| v.id == id)
    }

    fn insert_view(&mut self, v: ViewState) {
        if self.views.len() >= MAX_VIEWS {
            // Forget the oldest closed view, else the oldest.
            match self.views.iter().position(|v| v.closed) {
                Some(i) => {
                    self.views.remove(i);
                }
                None => {
                    self.views.pop_front();
                }
            }
        }
        self.views.push_back(v);
    }

    /// Open views of the stack rooted at `root`, bottom first.
    fn stack(&self, root: &str) -> Vec<&ViewState> {
        self.views
            .iter()
            .filter(|v| v.root_view_id == root && !v.closed)
            .collect()
    }

    /// `views.open`: a new root view for the trigger's user.
    pub(super) fn open(
        &mut self,
        rng: &mut fastrand::Rng,
        trigger: &Trigger,
        view: Value,
    ) -> Value {
        let id = format!("V{}", random_alnum(rng, 10));
        let v = ViewState {
            id: id.clone(),
            user: trigger.user.clone(),
            view,
            hash: new_hash(rng),
            root_view_id: id,
            previous_view_id: None,
            stack: 1,
            closed: false,
            errors: None,
        };
        let api = api_view(&v, &Value::Object(Default::default()));
        self.insert_view(v);
        json!({"ok": true, "view": api})
    }

    /// `views.push`: on top of the stack `on` (a view id in it).
    pub(super) fn push(
        &mut self,
        rng: &mut fastrand::Rng,
        on: Option<&str>,
        user: &str,
        view: Value,
    ) -> Result<Value, ApiError> {
        let below = on
            .and_then(|id| self.view(id))
            .filter(|v| !v.closed)
            .ok_or_else(|| ApiError::new("not_found"))?;
        let root = below.root_view_id.clone();
        let stack = self.stack(&root);
        if stack.len() >= MAX_VIEW_STACK {
            return Err(ApiError::new("push_limit_reached"));
        }
        let previous = stack.last().map(|v| v.id.clone());
        let depth = stack.len() + 1;
        let id = format!("V{}", random_alnum(rng, 10));
        let v = ViewState {
            id,
            user: user.to_owned(),
            view,
            hash: new_hash(rng),
            root_view_id: root,
            previous_view_id: previous,
            stack: depth,
            closed: false,
            errors: None,
        };
        let api = api_view(&v, &Value::Object(Default::default()));
        self.insert_view(v);
        Ok(json!({"ok": true, "view": api}))
    }

    /// `views.update`: replace the view, checking `hash` when given.
    pub(super) fn update(
        &mut self,
        rng: &mut fastrand::Rng,
        view_id: &str,
        hash: Option<&str>,
        view: Value,
    ) -> Result<Value, ApiError> {
        let v = self
            .view_mut(view_id)
            .filter(|v| !v.closed)
            .ok_or_else(|| ApiError::new("not_found"))?;
        if let Some(h) = hash.filter(|h| !h.is_empty())
            && h != v.hash
        {
            return Err(ApiError::new("hash_conflict"));
        }
        v.view = view;
        v.hash = new_hash(rng);
        v.errors = None;
        let api = api_view(v, &Value::Object(Default::default()));
        Ok(json!({"ok": true, "view": api}))
    }

    /// Close `view_id` and everything pushed above it.
    pub(super) fn close(&mut self, view_id: &str) {
        let Some((root, depth)) = self
            .view(view_id)
            .map(|v| (v.root_view_id.clone(), v.stack))
        else {
            return;
        };
        for v in self.views.iter_mut() {
            if v.root_view_id == root && v.stack >= depth {
                v.closed = true;
            }
        }
    }

    /// Close the whole stack `view_id` belongs to (`response_action: clear`).
    pub(super) fn clear_stack(&mut self, view_id: &str) {
        if let Some(root) = self.view(view_id).map(|v| v.root_view_id.clone()) {
            self.close(&root);
        }
    }

    pub(super) fn set_errors(&mut self, view_id: &str, errors: Value) {
        if let Some(v) = self.view_mut(view_id) {
            v.errors = Some(errors);
        }
    }
}

fn new_hash(rng: &mut fastrand::Rng) -> String {
    format!(
        "{}.{}",
        rng.u32(1_000_000_000..2_000_000_000),
        random_hex(rng, 8)
    )
}

/// A view as Slack shows it to the app: the app's JSON plus the fields
/// Slack adds, with `state.values` as given.
pub(super) fn api_view(v: &ViewState, values: &Value) -> Value {
    let mut out = match &v.view {
        Value::Object(o) => o.clone(),
        _ => Default::default(),
    };
    for key in ["private_metadata", "callback_id", "external_id"] {
        out.entry(key).or_insert_with(|| json!(""));
    }
    out.entry("clear_on_close").or_insert(json!(false));
    out.entry("notify_on_close").or_insert(json!(false));
    out.insert("id".into(), json!(v.id));
    out.insert("team_id".into(), json!(TEAM_ID));
    out.insert("hash".into(), json!(v.hash));
    out.insert("root_view_id".into(), json!(v.root_view_id));
    out.insert("previous_view_id".into(), json!(v.previous_view_id));
    out.insert("app_id".into(), json!(APP_ID));
    out.insert("bot_id".into(), json!(BOT_ID));
    out.insert("state".into(), json!({"values": values}));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modal(title: &str) -> Value {
        json!({"type": "modal", "title": {"type": "plain_text", "text": title}, "blocks": []})
    }

    #[test]
    fn view_limits_are_enforced() {
        assert_eq!(validate_view(Some(&modal("Acknowledge"))), Ok(()));
        let long = "x".repeat(25);
        let err = validate_view(Some(&modal(&long))).expect_err("title");
        assert_eq!(err.error, "invalid_arguments");
        assert!(err.details[0].contains("/view/title"), "{err:?}");
        let mut v = modal("ok");
        v["submit"] = json!({"type": "plain_text", "text": long});
        v["close"] = json!({"type": "mrkdwn", "text": "Close"});
        v["private_metadata"] = json!("m".repeat(3001));
        v["callback_id"] = json!("c".repeat(256));
        v["blocks"] = json!(vec![json!({"type": "divider"}); 101]);
        let err = validate_view(Some(&v)).expect_err("limits");
        assert_eq!(err.details.len(), 5, "{err:?}");
        let mut v = modal("ok");
        v["private_metadata"] = json!("m".repeat(3000));
        v["callback_id"] = json!("c".repeat(255));
        v["blocks"] = json!(vec![json!({"type": "divider"}); 100]);
        assert_eq!(validate_view(Some(&v)), Ok(()));
        assert!(validate_view(None).is_err());
        assert!(validate_view(Some(&json!({"type": "home", "blocks": []}))).is_err());
    }

    #[test]
    fn dm_ids_are_stable_and_well_formed() {
        let a = dm_channel_id(&["U0AAA".into()]);
        assert_eq!(a, dm_channel_id(&["U0AAA".into()]));
        assert_ne!(a, dm_channel_id(&["U0BBB".into()]));
        assert!(
            a.starts_with('D') && crate::config::is_channel_id(&a),
            "{a}"
        );
        let g = dm_channel_id(&["U0BBB".into(), "U0AAA".into()]);
        assert_eq!(g, dm_channel_id(&["U0AAA".into(), "U0BBB".into()]));
        assert!(g.starts_with('G'), "{g}");
    }

    #[test]
    fn trigger_ids_are_single_use_and_expire() {
        let mut i = Interact::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let t = i.mint_trigger(&mut rng, "U1", None, Duration::from_secs(60));
        assert!(i.take_trigger(&t).is_ok());
        assert_eq!(
            i.take_trigger(&t).map(|_| ()),
            Err(ApiError::new("exchanged_trigger_id"))
        );
        let t = i.mint_trigger(&mut rng, "U1", None, Duration::ZERO);
        assert_eq!(
            i.take_trigger(&t).map(|_| ()),
            Err(ApiError::new("expired_trigger_id"))
        );
        assert_eq!(
            i.take_trigger("nope").map(|_| ()),
            Err(ApiError::new("invalid_trigger_id"))
        );
    }

    #[test]
    fn view_stack_is_limited_and_closes_from_the_top() {
        let mut i = Interact::default();
        let mut rng = fastrand::Rng::with_seed(2);
        let t = i.mint_trigger(&mut rng, "U1", None, Duration::from_secs(60));
        let trig = i.take_trigger(&t).expect("trigger");
        let root = i.open(&mut rng, &trig, modal("one"));
        let root_id = root["view"]["id"].as_str().unwrap_or_default().to_owned();
        let two = i
            .push(&mut rng, Some(&root_id), "U1", modal("two"))
            .expect("push 2");
        let two_id = two["view"]["id"].as_str().unwrap_or_default().to_owned();
        assert_eq!(two["view"]["previous_view_id"], json!(root_id));
        i.push(&mut rng, Some(&two_id), "U1", modal("three"))
            .expect("push 3");
        assert_eq!(
            i.push(&mut rng, Some(&root_id), "U1", modal("four"))
                .map(|_| ()),
            Err(ApiError::new("push_limit_reached"))
        );
        i.close(&two_id);
        let open: Vec<usize> = i.views().filter(|v| !v.closed).map(|v| v.stack).collect();
        assert_eq!(open, [1]);
    }
}
