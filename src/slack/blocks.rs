//! Typed Block Kit that cannot exceed Slack's limits.
//!
//! Every block and element type here has private fields: the constructors
//! are the only way to build one, and they enforce the limits from
//! `PROTOCOLS.md` ("Block Kit limits") as they go:
//!
//! | what                         | limit                 | when exceeded                     |
//! |------------------------------|-----------------------|-----------------------------------|
//! | any text object              | 1..=3000 chars        | truncated with `…`; empty -> `—`  |
//! | header text (`plain_text`)   | 150                   | truncated with `…`                |
//! | section fields               | 10 of 2000 each       | extra fields dropped, truncated   |
//! | context elements             | 10                    | extra elements dropped            |
//! | actions elements             | 25                    | extra buttons dropped             |
//! | button text / value / url    | 75 / 2000 / 3000      | truncated / truncated / **dropped** |
//! | `action_id`, `block_id`      | 255, unique           | cut (no `…`); duplicates suffixed |
//! | blocks per message           | 50                    | first 49 kept + an "omitted" note |
//! | fallback `text`              | 4000                  | truncated with `…`                |
//!
//! Lengths are counted in chars (Unicode scalar values), never bytes.
//! Truncation of `mrkdwn` never cuts an entity (`&amp;`) or a `<...>` token
//! (link, date, mention) in half: it backs off to before the token.
//!
//! A URL that is too long is dropped rather than cut, because a cut URL
//! points somewhere else. Ids are cut without an ellipsis because they are
//! matched, not read.
//!
//! [`Message`] keeps public fields for the Web API client; build it with
//! [`MessageBuilder`] (or [`Message::new`]) to get the message-wide limits,
//! and use [`check_limits`] to verify a message against Slack's rules as the
//! emulator applies them, independently of how it was built.
//!
//! Text helpers: [`escape_mrkdwn`] for text we wrote, [`untrusted`] for
//! anything that came from an alert (escapes, and neutralises mentions),
//! [`untrusted_plain`] for alert text placed in `plain_text`, [`link`] for
//! mrkdwn links and [`date`] for Slack date tokens.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Chars of any text object (section text, context element, ...).
pub const MAX_TEXT: usize = 3000;
/// Chars of a header's `plain_text`.
pub const MAX_HEADER_TEXT: usize = 150;
/// Fields per section.
pub const MAX_SECTION_FIELDS: usize = 10;
/// Chars per section field.
pub const MAX_FIELD_TEXT: usize = 2000;
/// Elements per context block.
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
/// Elements per actions block.
pub const MAX_ACTIONS_ELEMENTS: usize = 25;
/// Chars of a button's text.
pub const MAX_BUTTON_TEXT: usize = 75;
/// Chars of a button's value.
pub const MAX_BUTTON_VALUE: usize = 2000;
/// Chars of a button's url.
pub const MAX_BUTTON_URL: usize = 3000;
/// Chars of an `action_id` or `block_id`.
pub const MAX_ID: usize = 255;
/// Chars of a message's top-level fallback `text`.
pub const MAX_FALLBACK_TEXT: usize = 4000;

/// What an empty (or whitespace-only) text becomes: Slack rejects empty
/// text objects, and may trim whitespace before checking.
pub const EMPTY_TEXT: &str = "—";

const ELLIPSIS: char = '…';
const ZWSP: char = '\u{200B}';

// ---------------------------------------------------------------------------
// Text helpers
// ---------------------------------------------------------------------------

/// Escapes exactly `&`, `<` and `>` as Slack's mrkdwn requires, nothing else.
pub fn escape_mrkdwn(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Sanitises untrusted text (label and annotation values from alerts) for
/// `mrkdwn`: strips control and bidi-override characters (newline and tab
/// stay), escapes `&`, `<`, `>`, and breaks mentions with a zero-width space
/// after the `@` of `@channel`, `@here`, `@everyone` (any case, anywhere) and
/// of any `@word` at a word start, which `link_names` could turn into a user
/// or group mention. After escaping no `<` is left, so `<!channel>` or
/// `<@U123>` cannot form either.
pub fn untrusted(s: &str) -> String {
    let cleaned = clean_controls(s);
    let mut out = String::with_capacity(cleaned.len() + 8);
    let mut prev: Option<char> = None;
    for (i, c) in cleaned.char_indices() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => {
                out.push('@');
                if mention_follows(prev, &cleaned[i + c.len_utf8()..]) {
                    out.push(ZWSP);
                }
            }
            _ => out.push(c),
        }
        prev = Some(c);
    }
    out
}

/// Sanitises untrusted text for `plain_text` (headers, buttons): Slack does
/// not parse `plain_text`, so nothing is escaped (an `&amp;` would show
/// literally), but control and bidi characters are stripped and mention-like
/// sequences (`<!`, `<@`, `<#`, `@here`, ...) are broken with a zero-width
/// space anyway, in case the text is ever reused as mrkdwn.
pub fn untrusted_plain(s: &str) -> String {
    let cleaned = clean_controls(s);
    let mut out = String::with_capacity(cleaned.len() + 8);
    let mut prev: Option<char> = None;
    for (i, c) in cleaned.char_indices() {
        out.push(c);
        let rest = &cleaned[i + c.len_utf8()..];
        let needs_break = match c {
            '<' => rest.starts_with(['!', '@', '#']),
            '@' => mention_follows(prev, rest),
            _ => false,
        };
        if needs_break {
            out.push(ZWSP);
        }
        prev = Some(c);
    }
    out
}

/// Whether an `@` (preceded by `prev`, followed by `rest`) could be turned
/// into a mention by Slack.
fn mention_follows(prev: Option<char>, rest: &str) -> bool {
    let special = ["channel", "here", "everyone"].iter().any(|w| {
        rest.get(..w.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(w))
    });
    let word_start = prev.is_none_or(|p| !(p.is_alphanumeric() || p == '_'));
    let wordy_next = rest
        .chars()
        .next()
        .is_some_and(|n| n.is_alphanumeric() || n == '_');
    special || (word_start && wordy_next)
}

/// Bidi embedding/override/isolate characters: they can make alert text
/// display as something other than what it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// `\r\n` and lone `\r` become `\n`; other control chars become a space;
/// bidi controls are removed.
fn clean_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            c if c.is_control() => out.push(' '),
            c if is_bidi_control(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Cuts `s` to at most `max_chars` chars, ending in `…` when cut.
pub fn truncate(s: &str, max_chars: usize) -> String {
    match cut_point(s, max_chars) {
        None => s.to_owned(),
        Some(_) if max_chars == 0 => String::new(),
        Some(cut) => with_ellipsis(&s[..cut]),
    }
}

/// Like [`truncate`] for mrkdwn: never cuts inside an entity (`&amp;`) or a
/// `<...>` token (link, date, mention), backing off to before it instead.
pub fn truncate_mrkdwn(s: &str, max_chars: usize) -> String {
    match cut_point(s, max_chars) {
        None => s.to_owned(),
        Some(_) if max_chars == 0 => String::new(),
        Some(cut) => with_ellipsis(&s[..mrkdwn_safe_cut(s, cut)]),
    }
}

/// `None` when `s` fits in `max_chars`; else the byte index to cut at so
/// that the kept part plus an ellipsis fits.
fn cut_point(s: &str, max_chars: usize) -> Option<usize> {
    if s.len() <= max_chars {
        return None; // bytes >= chars: cheap fast path
    }
    s.char_indices().nth(max_chars)?;
    Some(
        s.char_indices()
            .nth(max_chars.saturating_sub(1))
            .map_or(s.len(), |(i, _)| i),
    )
}

fn with_ellipsis(kept: &str) -> String {
    let kept = kept.trim_end();
    let mut out = String::with_capacity(kept.len() + ELLIPSIS.len_utf8());
    out.push_str(kept);
    out.push(ELLIPSIS);
    out
}

fn mrkdwn_safe_cut(s: &str, cut: usize) -> usize {
    let mut cut = cut;
    let head = &s[..cut];
    if let Some(lt) = head.rfind('<')
        && !head[lt..].contains('>')
    {
        cut = lt;
    }
    let head = &s[..cut];
    if let Some(amp) = head.rfind('&') {
        let entity_len = ["&amp;", "&lt;", "&gt;"]
            .iter()
            .find(|e| s[amp..].starts_with(**e))
            .map_or(0, |e| e.len());
        if amp + entity_len > cut {
            cut = amp;
        }
    }
    cut
}

fn fits(s: &str, max_chars: usize) -> bool {
    s.len() <= max_chars || s.chars().nth(max_chars).is_none()
}

/// Whether `url` is an absolute http(s) URL with something after the scheme.
pub fn is_http_url(url: &str) -> bool {
    let lower_prefix = |p: &str| {
        url.get(..p.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(p))
    };
    let rest = if lower_prefix("https://") {
        &url[8..]
    } else if lower_prefix("http://") {
        &url[7..]
    } else {
        return false;
    };
    !rest.is_empty() && !rest.starts_with(['/', '?', '#'])
}

/// Makes a URL safe inside a mrkdwn `<url|label>` token: percent-encodes
/// `|`, `<`, `>`, whitespace and control chars, escapes `&` as `&amp;`
/// (Slack decodes it back).
pub(crate) fn mrkdwn_safe_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len() + 8);
    for c in url.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '|' | '<' | '>' => push_percent(&mut out, c),
            c if c.is_whitespace() || c.is_control() || is_bidi_control(c) => {
                push_percent(&mut out, c)
            }
            c => out.push(c),
        }
    }
    out
}

fn push_percent(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        out.push_str(&format!("%{b:02X}"));
    }
}

/// A mrkdwn link `<url|label>`, only for absolute http(s) URLs of at most
/// [`MAX_BUTTON_URL`] chars once made safe. The label is treated as untrusted
/// (escaped, mentions broken, newlines flattened). Anything else renders as
/// plain escaped text `label (url)`, never as a link.
pub fn link(url: &str, label: &str) -> String {
    let url = url.trim();
    let label = untrusted(label).replace(['\n', '\t'], " ");
    let label = label.trim();
    if is_http_url(url) {
        let safe = mrkdwn_safe_url(url);
        if fits(&safe, MAX_BUTTON_URL) {
            return if label.is_empty() {
                format!("<{safe}>")
            } else {
                format!("<{safe}|{label}>")
            };
        }
        // Too long to link: show the label alone rather than a broken link.
        return label.to_owned();
    }
    let shown = untrusted(&truncate(url, 200)).replace(['\n', '\t'], " ");
    match (label.is_empty(), shown.is_empty()) {
        (true, _) => shown,
        (false, true) => label.to_owned(),
        (false, false) => format!("{label} ({shown})"),
    }
}

/// A Slack date token, shown in each reader's time zone:
/// `<!date^UNIX^FORMAT|FALLBACK>`. `format` is e.g.
/// `"{date_short_pretty} {time}"`; `fallback` is shown by clients that cannot
/// format dates. This is the one `<!` ackbar emits on purpose.
pub fn date(at: DateTime<Utc>, format: &str, fallback: &str) -> String {
    let format: String = format
        .chars()
        .filter(|c| !matches!(c, '|' | '<' | '>' | '^'))
        .collect();
    let fallback = escape_mrkdwn(fallback).replace('|', "/");
    format!("<!date^{}^{}|{}>", at.timestamp(), format, fallback)
}

// ---------------------------------------------------------------------------
// Text objects and elements
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextKind {
    PlainText,
    Mrkdwn,
}

/// A Block Kit text object: `plain_text` (with `emoji: true`) or `mrkdwn`.
/// Always 1..=3000 chars.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Text {
    #[serde(rename = "type")]
    kind: TextKind,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    emoji: Option<bool>,
}

impl Text {
    /// `plain_text`: shown as is (emoji codes rendered). Pass alert text
    /// through [`untrusted_plain`] first.
    pub fn plain(text: impl Into<String>) -> Text {
        Text {
            kind: TextKind::PlainText,
            text: fit_text(text.into(), MAX_TEXT, TextKind::PlainText),
            emoji: Some(true),
        }
    }

    /// `mrkdwn`: the caller has escaped it ([`escape_mrkdwn`], [`untrusted`]).
    pub fn mrkdwn(text: impl Into<String>) -> Text {
        Text {
            kind: TextKind::Mrkdwn,
            text: fit_text(text.into(), MAX_TEXT, TextKind::Mrkdwn),
            emoji: None,
        }
    }

    pub fn kind(&self) -> TextKind {
        self.kind
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Re-fits to a tighter limit (header, field, button text).
    fn capped(mut self, max_chars: usize) -> Text {
        if !fits(&self.text, max_chars) {
            self.text = fit_text(std::mem::take(&mut self.text), max_chars, self.kind);
        }
        self
    }
}

fn fit_text(text: String, max_chars: usize, kind: TextKind) -> String {
    if text.trim().is_empty() {
        return EMPTY_TEXT.to_owned();
    }
    if fits(&text, max_chars) {
        return text;
    }
    match kind {
        TextKind::PlainText => truncate(&text, max_chars),
        TextKind::Mrkdwn => truncate_mrkdwn(&text, max_chars),
    }
}

/// An id (`block_id`, `action_id`): cut to 255 chars; `None` when empty.
fn fit_id(id: &str) -> Option<String> {
    let id = id.trim();
    if id.is_empty() {
        return None;
    }
    Some(match cut_point(id, MAX_ID) {
        None => id.to_owned(),
        Some(_) => id.chars().take(MAX_ID).collect(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonStyle {
    Primary,
    Danger,
}

/// A button element. Text <= 75 chars (`plain_text`), value <= 2000,
/// url <= 3000 (dropped, not cut, when longer or not http(s)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename = "button")]
pub struct Button {
    text: Text,
    action_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    style: Option<ButtonStyle>,
}

impl Button {
    /// `text` is plain text; an empty `action_id` becomes `"button"`.
    pub fn new(text: impl Into<String>, action_id: &str, value: &str) -> Button {
        Button {
            text: Text::plain(text).capped(MAX_BUTTON_TEXT),
            action_id: fit_id(action_id).unwrap_or_else(|| "button".to_owned()),
            value: truncate(value, MAX_BUTTON_VALUE),
            url: None,
            style: None,
        }
    }

    /// Opens `url` when clicked; ignored unless it is an http(s) URL of at
    /// most 3000 chars.
    pub fn url(mut self, url: &str) -> Button {
        let url = url.trim();
        self.url = (is_http_url(url) && fits(url, MAX_BUTTON_URL)).then(|| url.to_owned());
        self
    }

    pub fn style(mut self, style: ButtonStyle) -> Button {
        self.style = Some(style);
        self
    }

    pub fn text(&self) -> &Text {
        &self.text
    }

    pub fn action_id(&self) -> &str {
        &self.action_id
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    pub fn url_str(&self) -> Option<&str> {
        self.url.as_deref()
    }

    pub fn button_style(&self) -> Option<ButtonStyle> {
        self.style
    }
}

// ---------------------------------------------------------------------------
// Blocks
// ---------------------------------------------------------------------------

/// A header block: `plain_text` of at most 150 chars.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    text: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_id: Option<String>,
}

impl Header {
    /// `text` is plain text (pass alert text through [`untrusted_plain`]).
    pub fn new(text: impl Into<String>) -> Header {
        Header {
            text: Text::plain(text).capped(MAX_HEADER_TEXT),
            block_id: None,
        }
    }

    pub fn block_id(mut self, id: &str) -> Header {
        self.block_id = fit_id(id);
        self
    }

    pub fn text(&self) -> &Text {
        &self.text
    }
}

/// A section block: a text of 1..=3000 chars and/or up to 10 fields of at
/// most 2000 chars each. Fields past the tenth are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Text>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_id: Option<String>,
}

impl Section {
    pub fn new(text: Text) -> Section {
        Section {
            text: Some(text),
            fields: Vec::new(),
            block_id: None,
        }
    }

    /// A section with a mrkdwn text (already escaped by the caller).
    pub fn mrkdwn(text: impl Into<String>) -> Section {
        Section::new(Text::mrkdwn(text))
    }

    /// A section of fields only. Slack needs a text or at least one field, so
    /// an empty list yields a section with one [`EMPTY_TEXT`] field.
    pub fn from_fields(fields: impl IntoIterator<Item = Text>) -> Section {
        let mut section = Section {
            text: None,
            fields: Vec::new(),
            block_id: None,
        }
        .fields(fields);
        if section.fields.is_empty() {
            section.fields.push(Text::mrkdwn(EMPTY_TEXT));
        }
        section
    }

    /// Adds a field (cut to 2000 chars); ignored once there are 10.
    pub fn field(mut self, field: Text) -> Section {
        if self.fields.len() < MAX_SECTION_FIELDS {
            self.fields.push(field.capped(MAX_FIELD_TEXT));
        }
        self
    }

    pub fn fields(self, fields: impl IntoIterator<Item = Text>) -> Section {
        fields.into_iter().fold(self, Section::field)
    }

    pub fn block_id(mut self, id: &str) -> Section {
        self.block_id = fit_id(id);
        self
    }

    pub fn text(&self) -> Option<&Text> {
        self.text.as_ref()
    }

    pub fn field_texts(&self) -> &[Text] {
        &self.fields
    }
}

/// A context block: 1..=10 text elements. Elements past the tenth are
/// dropped; an empty list yields one [`EMPTY_TEXT`] element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Context {
    elements: Vec<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_id: Option<String>,
}

impl Context {
    pub fn new(elements: impl IntoIterator<Item = Text>) -> Context {
        let mut elements: Vec<Text> = elements.into_iter().take(MAX_CONTEXT_ELEMENTS).collect();
        if elements.is_empty() {
            elements.push(Text::mrkdwn(EMPTY_TEXT));
        }
        Context {
            elements,
            block_id: None,
        }
    }

    /// A context with one mrkdwn element.
    pub fn mrkdwn(text: impl Into<String>) -> Context {
        Context::new([Text::mrkdwn(text)])
    }

    pub fn block_id(mut self, id: &str) -> Context {
        self.block_id = fit_id(id);
        self
    }

    pub fn elements(&self) -> &[Text] {
        &self.elements
    }
}

/// An actions block: 1..=25 buttons. Buttons past the 25th are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actions {
    elements: Vec<Button>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_id: Option<String>,
}

impl Actions {
    /// `None` for no buttons: Slack rejects an empty actions block.
    pub fn new(buttons: impl IntoIterator<Item = Button>) -> Option<Actions> {
        let elements: Vec<Button> = buttons.into_iter().take(MAX_ACTIONS_ELEMENTS).collect();
        (!elements.is_empty()).then_some(Actions {
            elements,
            block_id: None,
        })
    }

    pub fn block_id(mut self, id: &str) -> Actions {
        self.block_id = fit_id(id);
        self
    }

    pub fn buttons(&self) -> &[Button] {
        &self.elements
    }
}

/// One layout block. Build the inner types with their constructors and
/// convert with `.into()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Header(Header),
    Section(Section),
    Context(Context),
    Divider,
    Actions(Actions),
    /// A block a route template wrote, sent as it is. Only
    /// [`crate::slack::template`] makes these, after checking the message
    /// they end up in against Slack's limits.
    #[serde(untagged)]
    Raw(serde_json::Value),
}

impl From<Header> for Block {
    fn from(b: Header) -> Block {
        Block::Header(b)
    }
}

impl From<Section> for Block {
    fn from(b: Section) -> Block {
        Block::Section(b)
    }
}

impl From<Context> for Block {
    fn from(b: Context) -> Block {
        Block::Context(b)
    }
}

impl From<Actions> for Block {
    fn from(b: Actions) -> Block {
        Block::Actions(b)
    }
}

impl Block {
    pub fn block_id(&self) -> Option<&str> {
        match self {
            Block::Header(b) => b.block_id.as_deref(),
            Block::Section(b) => b.block_id.as_deref(),
            Block::Context(b) => b.block_id.as_deref(),
            Block::Actions(b) => b.block_id.as_deref(),
            Block::Raw(b) => b.get("block_id").and_then(serde_json::Value::as_str),
            Block::Divider => None,
        }
    }

    fn block_id_mut(&mut self) -> Option<&mut Option<String>> {
        match self {
            Block::Header(b) => Some(&mut b.block_id),
            Block::Section(b) => Some(&mut b.block_id),
            Block::Context(b) => Some(&mut b.block_id),
            Block::Actions(b) => Some(&mut b.block_id),
            Block::Divider | Block::Raw(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// A message as ackbar posts it: fallback text, blocks, optional metadata.
///
/// The fields stay public for the Web API client, which serializes them into
/// `chat.postMessage`/`chat.update` bodies. Build with [`MessageBuilder`] or
/// [`Message::new`] so the message-wide limits hold; [`check_limits`] verifies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Top-level `text`: the notification fallback (kept under 4,000 chars).
    /// Slack reads it as mrkdwn: escape it like any other mrkdwn.
    pub text: String,
    pub blocks: Vec<Block>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

impl Message {
    /// A message without metadata; see [`MessageBuilder::build`] for what is
    /// enforced.
    pub fn new(text: impl Into<String>, blocks: impl IntoIterator<Item = Block>) -> Message {
        let mut builder = MessageBuilder::new(text);
        builder.extend(blocks);
        builder.build()
    }

    pub fn builder(text: impl Into<String>) -> MessageBuilder {
        MessageBuilder::new(text)
    }
}

/// Slack message metadata: machine-readable data attached to a message, read
/// back by `conversations.history` with `include_all_metadata=true`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Metadata {
    pub event_type: String,
    pub event_payload: serde_json::Value,
}

/// Builds a [`Message`] that respects the message-wide limits.
#[derive(Debug, Clone, Default)]
pub struct MessageBuilder {
    text: String,
    blocks: Vec<Block>,
    metadata: Option<Metadata>,
}

impl MessageBuilder {
    /// `text` is the mrkdwn fallback shown in notifications.
    pub fn new(text: impl Into<String>) -> MessageBuilder {
        MessageBuilder {
            text: text.into(),
            blocks: Vec::new(),
            metadata: None,
        }
    }

    pub fn block(mut self, block: impl Into<Block>) -> MessageBuilder {
        self.blocks.push(block.into());
        self
    }

    pub fn push(&mut self, block: impl Into<Block>) -> &mut MessageBuilder {
        self.blocks.push(block.into());
        self
    }

    pub fn extend(&mut self, blocks: impl IntoIterator<Item = Block>) -> &mut MessageBuilder {
        self.blocks.extend(blocks);
        self
    }

    pub fn metadata(mut self, metadata: Metadata) -> MessageBuilder {
        self.metadata = Some(metadata);
        self
    }

    /// Blocks pushed so far (before the 50-block cap).
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Enforces the message-wide limits:
    /// - fallback text cut to 4000 chars (mrkdwn-safe); empty becomes `—`;
    /// - more than 50 blocks: the first 49 are kept and a context block
    ///   "… N more blocks omitted" is added (callers that care about their
    ///   last blocks, like a card's buttons, budget blocks themselves);
    /// - a `block_id` or `action_id` seen before gets a `-2`, `-3`, ...
    ///   suffix (kept within 255 chars), so ids are unique in the message.
    pub fn build(self) -> Message {
        let MessageBuilder {
            text,
            mut blocks,
            metadata,
        } = self;
        if blocks.len() > MAX_BLOCKS {
            let omitted = blocks.len() - (MAX_BLOCKS - 1);
            blocks.truncate(MAX_BLOCKS - 1);
            blocks.push(Context::mrkdwn(format!("_… {omitted} more blocks omitted_")).into());
        }
        let mut block_ids = HashSet::new();
        let mut action_ids = HashSet::new();
        for block in &mut blocks {
            if let Some(Some(id)) = block.block_id_mut() {
                *id = unique_id(id, &mut block_ids);
            }
            if let Block::Actions(actions) = block {
                for button in &mut actions.elements {
                    button.action_id = unique_id(&button.action_id, &mut action_ids);
                }
            }
        }
        Message {
            text: fit_text(text, MAX_FALLBACK_TEXT, TextKind::Mrkdwn),
            blocks,
            metadata,
        }
    }
}

/// `id` itself if unseen, else `id-2`, `id-3`, ... (cut so it fits 255).
fn unique_id(id: &str, seen: &mut HashSet<String>) -> String {
    if seen.insert(id.to_owned()) {
        return id.to_owned();
    }
    let mut n: u64 = 2;
    loop {
        let suffix = format!("-{n}");
        let base: String = id.chars().take(MAX_ID - suffix.len()).collect();
        let candidate = format!("{base}{suffix}");
        if seen.insert(candidate.clone()) {
            return candidate;
        }
        n += 1;
    }
}

// ---------------------------------------------------------------------------
// Limit checking
// ---------------------------------------------------------------------------

/// Why a message breaks Slack's limits: Slack's error code and, for
/// `invalid_blocks`, what is wrong where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {}", details.join("; "))]
pub struct LimitError {
    pub error: &'static str,
    pub details: Vec<String>,
}

/// Checks a message the way Slack would, on its serialized JSON, plus
/// ackbar's own cap on the fallback text ([`MAX_FALLBACK_TEXT`]).
///
/// The block rules are the Slack emulator's
/// ([`crate::slack::sandbox::validate`]): it stands in for Slack and is
/// written independently of this builder, so checking the builder's output
/// against it is a check, not a restatement.
pub fn check_limits(message: &Message) -> Result<(), LimitError> {
    let len = message.text.chars().count();
    if len > MAX_FALLBACK_TEXT {
        return Err(LimitError {
            error: "fallback_text_too_long",
            details: vec![format!("text: {len} chars, limit {MAX_FALLBACK_TEXT}")],
        });
    }
    let blocks = serde_json::to_value(&message.blocks).map_err(|e| LimitError {
        error: "invalid_blocks",
        details: vec![e.to_string()],
    })?;
    crate::slack::sandbox::validate::validate_message(Some(&message.text), Some(&blocks)).map_err(
        |r| LimitError {
            error: r.error,
            details: r.details,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn chars(s: &str) -> usize {
        s.chars().count()
    }

    /// Every `&` starts an entity we produce; no raw `<` or `>`.
    fn is_escaped(s: &str) -> bool {
        !s.contains(['<', '>'])
            && s.match_indices('&').all(|(i, _)| {
                ["&amp;", "&lt;", "&gt;"]
                    .iter()
                    .any(|e| s[i..].starts_with(e))
            })
    }

    fn has_mention_word(s: &str) -> bool {
        let lower = s.to_lowercase();
        ["@channel", "@here", "@everyone"]
            .iter()
            .any(|w| lower.contains(w))
    }

    #[test]
    fn escape_mrkdwn_escapes_exactly_three_chars() {
        assert_eq!(
            escape_mrkdwn("a & b < c > d \"e\" 'f' *g*"),
            "a &amp; b &lt; c &gt; d \"e\" 'f' *g*"
        );
    }

    #[test]
    fn untrusted_breaks_every_mention_form() {
        let out = untrusted("<!channel> <@U123> <#C1|x> @here @Everyone x@channel @alice");
        assert!(is_escaped(&out), "{out}");
        assert!(!has_mention_word(&out), "{out}");
        assert!(out.contains("@\u{200B}alice"));
        assert!(out.contains("&lt;!channel&gt;"));
    }

    #[test]
    fn untrusted_keeps_emails_and_newlines_and_strips_controls() {
        assert_eq!(untrusted("ops@example.com"), "ops@example.com");
        assert_eq!(untrusted("a\r\nb\tc\u{0}d\u{202E}e\rf"), "a\nb\tc de\nf");
    }

    #[test]
    fn untrusted_cannot_be_tricked_by_stripped_chars_between_at_and_word() {
        let out = untrusted("@\u{202E}here and @\u{200F}channel");
        assert!(!has_mention_word(&out), "{out}");
    }

    #[test]
    fn untrusted_plain_does_not_escape_but_breaks_mentions() {
        let out = untrusted_plain("R&D <!here> <@U1> @channel");
        assert!(out.starts_with("R&D <\u{200B}!here>"), "{out}");
        assert!(!out.contains("<!") && !out.contains("<@") && !has_mention_word(&out));
    }

    #[test]
    fn truncate_counts_chars_and_ends_with_ellipsis() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo wörld", 7), "héllo…");
        assert_eq!(chars(&truncate(&"é".repeat(100), 10)), 10);
        assert_eq!(truncate("abc", 0), "");
        assert_eq!(truncate("abc", 1), "…");
    }

    #[test]
    fn truncate_mrkdwn_never_splits_entities_or_tokens() {
        let s = format!("x &amp; {}", link("https://example.com/a", "label"));
        for max in 1..chars(&s) {
            let t = truncate_mrkdwn(&s, max);
            assert!(chars(&t) <= max, "{t}");
            assert!(
                is_escaped(&t) || t.matches('<').count() == t.matches('>').count(),
                "{t}"
            );
            let t_no_links = t.replace("<https://example.com/a|label>", "");
            assert!(is_escaped(&t_no_links), "max {max}: {t}");
        }
    }

    #[test]
    fn link_renders_only_http_urls_as_links() {
        assert_eq!(
            link("https://x.io/a b|c<d>?q=1&r=2", "Run<book>"),
            "<https://x.io/a%20b%7Cc%3Cd%3E?q=1&amp;r=2|Run&lt;book&gt;>"
        );
        assert_eq!(link("HTTP://x.io", ""), "<HTTP://x.io>");
        assert_eq!(
            link("javascript:alert(1)", "Click"),
            "Click (javascript:alert(1))"
        );
        assert_eq!(link("<!channel>", "Src"), "Src (&lt;!channel&gt;)");
        assert_eq!(link("https://", "L"), "L ()".replace(" ()", " (https://)"));
        let long = format!("https://x.io/{}", "a".repeat(MAX_BUTTON_URL));
        assert_eq!(link(&long, "L"), "L");
    }

    #[test]
    fn date_token_has_fallback_and_no_injection() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            date(at, "{date_short_pretty} {time}", "2023-11-14 22:13 UTC"),
            "<!date^1700000000^{date_short_pretty} {time}|2023-11-14 22:13 UTC>"
        );
        assert_eq!(
            date(at, "{time}|x>", "a|b>"),
            "<!date^1700000000^{time}x|a/b&gt;>"
        );
    }

    #[test]
    fn header_text_is_plain_and_capped_at_150() {
        let h = Header::new("h".repeat(500));
        assert_eq!(chars(h.text().as_str()), MAX_HEADER_TEXT);
        assert!(h.text().as_str().ends_with('…'));
        let v = serde_json::to_value(Block::from(Header::new("Hi").block_id("h"))).unwrap();
        assert_eq!(
            v,
            json!({"type":"header","text":{"type":"plain_text","text":"Hi","emoji":true},"block_id":"h"})
        );
    }

    #[test]
    fn section_text_is_capped_at_3000_and_never_empty() {
        let s = Section::mrkdwn("x".repeat(5000));
        assert_eq!(chars(s.text().unwrap().as_str()), MAX_TEXT);
        assert_eq!(Section::mrkdwn("").text().unwrap().as_str(), EMPTY_TEXT);
        assert_eq!(
            Section::mrkdwn("  \n ").text().unwrap().as_str(),
            EMPTY_TEXT
        );
    }

    #[test]
    fn section_keeps_at_most_10_fields_of_2000() {
        let s = Section::mrkdwn("t").fields((0..15).map(|_| Text::mrkdwn("f".repeat(2500))));
        assert_eq!(s.field_texts().len(), MAX_SECTION_FIELDS);
        assert!(
            s.field_texts()
                .iter()
                .all(|f| chars(f.as_str()) == MAX_FIELD_TEXT)
        );
        let empty = Section::from_fields([]);
        assert_eq!(empty.field_texts().len(), 1);
        check_limits(&Message::new("x", [empty.into()])).unwrap();
    }

    #[test]
    fn context_keeps_at_most_10_elements_and_at_least_one() {
        assert_eq!(
            Context::new((0..20).map(|i| Text::plain(i.to_string())))
                .elements()
                .len(),
            10
        );
        assert_eq!(Context::new([]).elements().len(), 1);
    }

    #[test]
    fn actions_keep_at_most_25_buttons_and_refuse_none() {
        let a = Actions::new((0..30).map(|i| Button::new("b", &format!("a{i}"), "v"))).unwrap();
        assert_eq!(a.buttons().len(), MAX_ACTIONS_ELEMENTS);
        assert!(Actions::new([]).is_none());
    }

    #[test]
    fn button_limits_text_value_ids_and_drops_bad_urls() {
        let b = Button::new("t".repeat(100), &"i".repeat(300), &"v".repeat(3000))
            .url(&format!("https://x.io/{}", "u".repeat(3000)))
            .style(ButtonStyle::Danger);
        assert_eq!(chars(b.text().as_str()), MAX_BUTTON_TEXT);
        assert_eq!(chars(b.action_id()), MAX_ID);
        assert_eq!(chars(b.value()), MAX_BUTTON_VALUE);
        assert_eq!(b.url_str(), None);
        assert_eq!(Button::new("t", "a", "v").url("ftp://x").url_str(), None);
        assert_eq!(
            Button::new("t", "a", "v").url("https://x.io").url_str(),
            Some("https://x.io")
        );
        let v = serde_json::to_value(Button::new("Ack", "ack", "c1").style(ButtonStyle::Primary))
            .unwrap();
        assert_eq!(
            v,
            json!({"type":"button","text":{"type":"plain_text","text":"Ack","emoji":true},"action_id":"ack","value":"c1","style":"primary"})
        );
    }

    #[test]
    fn blocks_serialize_to_slack_json() {
        let m = Message::builder("fallback")
            .block(
                Section::mrkdwn("*hi*")
                    .field(Text::mrkdwn("f"))
                    .block_id("s"),
            )
            .block(Block::Divider)
            .block(Context::mrkdwn("c"))
            .block(Actions::new([Button::new("A", "a", "1")]).unwrap())
            .metadata(Metadata {
                event_type: "e".into(),
                event_payload: json!({"k": 1}),
            })
            .build();
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({
                "text": "fallback",
                "blocks": [
                    {"type":"section","text":{"type":"mrkdwn","text":"*hi*"},"fields":[{"type":"mrkdwn","text":"f"}],"block_id":"s"},
                    {"type":"divider"},
                    {"type":"context","elements":[{"type":"mrkdwn","text":"c"}]},
                    {"type":"actions","elements":[{"type":"button","text":{"type":"plain_text","text":"A","emoji":true},"action_id":"a","value":"1"}]}
                ],
                "metadata": {"event_type":"e","event_payload":{"k":1}}
            })
        );
    }

    #[test]
    fn message_over_50_blocks_keeps_49_and_says_how_many_were_omitted() {
        let m = Message::new("x", (0..60).map(|i| Section::mrkdwn(i.to_string()).into()));
        assert_eq!(m.blocks.len(), MAX_BLOCKS);
        let Block::Context(c) = &m.blocks[49] else {
            panic!("last block is not a context")
        };
        assert_eq!(c.elements()[0].as_str(), "_… 11 more blocks omitted_");
        check_limits(&m).unwrap();
    }

    #[test]
    fn message_makes_block_and_action_ids_unique() {
        let m = Message::new(
            "x",
            [
                Section::mrkdwn("a").block_id("dup").into(),
                Section::mrkdwn("b").block_id("dup").into(),
                Actions::new([Button::new("a", "act", "1"), Button::new("b", "act", "2")])
                    .unwrap()
                    .block_id(&"d".repeat(300))
                    .into(),
                Context::mrkdwn("c").block_id(&"d".repeat(300)).into(),
            ],
        );
        let ids: Vec<_> = m.blocks.iter().filter_map(Block::block_id).collect();
        assert_eq!(&ids[..2], ["dup", "dup-2"]);
        assert_ne!(ids[2], ids[3]);
        assert!(ids.iter().all(|id| chars(id) <= MAX_ID));
        let Block::Actions(a) = &m.blocks[2] else {
            panic!()
        };
        assert_eq!(a.buttons()[1].action_id(), "act-2");
        check_limits(&m).unwrap();
    }

    #[test]
    fn fallback_text_is_capped_at_4000() {
        let m = Message::new("&amp;".repeat(1000), []);
        assert!(chars(&m.text) <= MAX_FALLBACK_TEXT);
        assert!(is_escaped(&m.text));
        assert_eq!(Message::new("", []).text, EMPTY_TEXT);
    }

    #[test]
    fn check_limits_catches_a_long_fallback_and_invalid_blocks() {
        let m = Message {
            text: "x".repeat(4001),
            blocks: vec![],
            metadata: None,
        };
        assert_eq!(
            check_limits(&m).unwrap_err().error,
            "fallback_text_too_long"
        );
        let m = Message {
            text: "x".into(),
            blocks: (0..51).map(|_| Block::Divider).collect(),
            metadata: None,
        };
        assert_eq!(check_limits(&m).unwrap_err().error, "invalid_blocks");
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,50}",
            "[<>&@!#|a-z \\n\\r\\u{202E}\\u{0}]{0,40}",
            "(<!channel>|<@U1>|@here|@everyone|@channel|&amp;|é|👍|x){0,30}",
            ".{2900,3100}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn untrusted_output_is_escaped_and_mention_free(s in any_text()) {
            let out = untrusted(&s);
            prop_assert!(is_escaped(&out), "{}", out);
            prop_assert!(!out.contains("<!") && !out.contains("<@") && !out.contains("<#"));
            prop_assert!(!has_mention_word(&out), "{}", out);
            prop_assert!(!out.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
            let plain = untrusted_plain(&s);
            prop_assert!(!plain.contains("<!") && !plain.contains("<@") && !plain.contains("<#"));
            prop_assert!(!has_mention_word(&plain), "{}", plain);
        }

        #[test]
        fn truncate_respects_any_limit(s in any_text(), max in 0usize..200) {
            prop_assert!(chars(&truncate(&s, max)) <= max);
            let esc = untrusted(&s);
            let t = truncate_mrkdwn(&esc, max);
            prop_assert!(chars(&t) <= max);
            prop_assert!(is_escaped(&t), "{}", t);
        }

        #[test]
        fn link_output_is_one_token_or_escaped_text(url in any_text(), label in any_text()) {
            let l = link(&url, &label);
            if l.starts_with('<') {
                prop_assert!(l.ends_with('>'));
                prop_assert_eq!(l.matches('<').count(), 1);
                prop_assert_eq!(l.matches('>').count(), 1);
            } else {
                prop_assert!(is_escaped(&l), "{}", l);
            }
            prop_assert!(!has_mention_word(&l));
        }

        #[test]
        fn every_constructor_respects_its_limit(s in any_text(), t in any_text(), n in 0usize..40) {
            let h = Header::new(s.clone());
            prop_assert!(chars(h.text().as_str()) <= MAX_HEADER_TEXT);
            let sec = Section::mrkdwn(untrusted(&s)).fields((0..n).map(|_| Text::mrkdwn(untrusted(&t))));
            prop_assert!(sec.field_texts().len() <= MAX_SECTION_FIELDS);
            let b = Button::new(s.clone(), &t, &s).url(&t);
            prop_assert!(chars(b.text().as_str()) <= MAX_BUTTON_TEXT);
            let blocks: Vec<Block> = (0..n * 2)
                .map(|i| match i % 5 {
                    0 => Header::new(s.clone()).block_id(&t).into(),
                    1 => sec.clone().block_id(&t).into(),
                    2 => Context::new((0..n).map(|_| Text::plain(t.clone()))).into(),
                    3 => Block::Divider,
                    _ => Actions::new((0..n).map(|_| Button::new(t.clone(), &s, &t).url(&s)))
                        .map_or(Block::Divider, |a| a.block_id(&s).into()),
                })
                .collect();
            let m = Message::new(s.repeat(3), blocks);
            prop_assert_eq!(check_limits(&m), Ok(()));
        }
    }
}
