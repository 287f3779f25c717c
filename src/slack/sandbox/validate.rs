//! Message validation the way Slack does it, from the JSON a client sent.
//!
//! Only the limits in `PROTOCOLS.md` are checked; block and element types the
//! emulator does not know are rejected so that a typo in ackbar's Block Kit
//! surfaces here rather than in production.

use std::collections::HashSet;

use serde_json::Value;

/// Blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Characters of top-level `text` past which Slack refuses the message.
pub const MAX_TEXT_CHARS: usize = 40_000;
pub const MAX_HEADER_CHARS: usize = 150;
pub const MAX_SECTION_TEXT_CHARS: usize = 3_000;
pub const MAX_SECTION_FIELDS: usize = 10;
pub const MAX_FIELD_CHARS: usize = 2_000;
pub const MAX_ACTIONS_ELEMENTS: usize = 25;
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
pub const MAX_BUTTON_TEXT_CHARS: usize = 75;
pub const MAX_BUTTON_VALUE_CHARS: usize = 2_000;
pub const MAX_URL_CHARS: usize = 3_000;
pub const MAX_ID_CHARS: usize = 255;

/// Why Slack would refuse a message: the `error` code and, for
/// `invalid_blocks`, what is wrong where (Slack's `errors` array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub error: &'static str,
    pub details: Vec<String>,
}

impl Rejection {
    fn code(error: &'static str) -> Rejection {
        Rejection {
            error,
            details: Vec::new(),
        }
    }
}

/// Validate `text` and `blocks` of a post or update. `blocks: None` means the
/// field was absent.
pub fn validate_message(text: Option<&str>, blocks: Option<&Value>) -> Result<(), Rejection> {
    let has_text = text.is_some_and(|t| !t.is_empty());
    let block_list = match blocks {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a),
        Some(_) => {
            return Err(Rejection {
                error: "invalid_blocks",
                details: vec!["blocks must be an array [json-pointer:/blocks]".to_owned()],
            });
        }
    };
    let has_blocks = block_list.is_some_and(|b| !b.is_empty());
    if !has_text && !has_blocks {
        return Err(Rejection::code("no_text"));
    }
    if let Some(t) = text
        && t.chars().count() > MAX_TEXT_CHARS
    {
        return Err(Rejection::code("msg_too_long"));
    }
    if let Some(list) = block_list {
        let mut v = Validator::default();
        v.blocks(list);
        if !v.errors.is_empty() {
            return Err(Rejection {
                error: "invalid_blocks",
                details: v.errors,
            });
        }
    }
    Ok(())
}

#[derive(Default)]
struct Validator {
    errors: Vec<String>,
    block_ids: HashSet<String>,
    action_ids: HashSet<String>,
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

impl Validator {
    fn err(&mut self, at: &str, msg: impl std::fmt::Display) {
        // Bounded: one bad message cannot make an unbounded answer.
        if self.errors.len() < 20 {
            self.errors.push(format!("{msg} [json-pointer:{at}]"));
        }
    }

    fn blocks(&mut self, list: &[Value]) {
        if list.len() > MAX_BLOCKS {
            self.err(
                "/blocks",
                format_args!("no more than {MAX_BLOCKS} items allowed"),
            );
            return;
        }
        for (i, block) in list.iter().enumerate() {
            self.block(&format!("/blocks/{i}"), block);
        }
    }

    fn block(&mut self, at: &str, block: &Value) {
        let Some(obj) = block.as_object() else {
            self.err(at, "must be an object");
            return;
        };
        if let Some(id) = obj.get("block_id") {
            match id.as_str() {
                Some(id) if !id.is_empty() && chars(id) <= MAX_ID_CHARS => {
                    if !self.block_ids.insert(id.to_owned()) {
                        self.err(&format!("{at}/block_id"), "duplicate block_id");
                    }
                }
                _ => self.err(
                    &format!("{at}/block_id"),
                    format_args!("must be a string of 1..={MAX_ID_CHARS} characters"),
                ),
            }
        }
        match obj.get("type").and_then(Value::as_str) {
            Some("header") => match obj.get("text") {
                Some(t) => {
                    self.text_object(&format!("{at}/text"), t, MAX_HEADER_CHARS, true);
                }
                None => self.err(at, "header must have text"),
            },
            Some("section") => {
                let text = obj.get("text");
                let fields = obj.get("fields");
                if text.is_none() && fields.is_none() {
                    self.err(at, "section must have text or fields");
                }
                if let Some(t) = text {
                    self.text_object(&format!("{at}/text"), t, MAX_SECTION_TEXT_CHARS, false);
                }
                if let Some(f) = fields {
                    match f.as_array() {
                        Some(list) if !list.is_empty() && list.len() <= MAX_SECTION_FIELDS => {
                            for (i, field) in list.iter().enumerate() {
                                self.text_object(
                                    &format!("{at}/fields/{i}"),
                                    field,
                                    MAX_FIELD_CHARS,
                                    false,
                                );
                            }
                        }
                        _ => self.err(
                            &format!("{at}/fields"),
                            format_args!("must be an array of 1..={MAX_SECTION_FIELDS} items"),
                        ),
                    }
                }
                if let Some(acc) = obj.get("accessory") {
                    self.element(&format!("{at}/accessory"), acc);
                }
            }
            Some("divider") => {}
            Some("context") => match obj.get("elements").and_then(Value::as_array) {
                Some(list) if !list.is_empty() && list.len() <= MAX_CONTEXT_ELEMENTS => {
                    for (i, el) in list.iter().enumerate() {
                        let p = format!("{at}/elements/{i}");
                        if el.get("type").and_then(Value::as_str) == Some("image") {
                            self.image(&p, el);
                        } else {
                            self.text_object(&p, el, MAX_SECTION_TEXT_CHARS, false);
                        }
                    }
                }
                _ => self.err(
                    &format!("{at}/elements"),
                    format_args!("must be an array of 1..={MAX_CONTEXT_ELEMENTS} items"),
                ),
            },
            Some("actions") => match obj.get("elements").and_then(Value::as_array) {
                Some(list) if !list.is_empty() && list.len() <= MAX_ACTIONS_ELEMENTS => {
                    for (i, el) in list.iter().enumerate() {
                        self.element(&format!("{at}/elements/{i}"), el);
                    }
                }
                _ => self.err(
                    &format!("{at}/elements"),
                    format_args!("must be an array of 1..={MAX_ACTIONS_ELEMENTS} items"),
                ),
            },
            Some("image") => self.image(at, block),
            // Accepted without deeper checks: ackbar does not build these,
            // but Slack accepts them.
            Some("rich_text" | "input" | "file" | "video" | "markdown") => {}
            Some(other) => self.err(
                &format!("{at}/type"),
                format_args!("unknown block type {other:?}"),
            ),
            None => self.err(&format!("{at}/type"), "missing type"),
        }
    }

    /// A composition text object: `{type: plain_text|mrkdwn, text}`.
    fn text_object(&mut self, at: &str, v: &Value, max: usize, plain_only: bool) {
        let ty = v.get("type").and_then(Value::as_str);
        match ty {
            Some("plain_text") => {}
            Some("mrkdwn") if !plain_only => {}
            _ => {
                let want = if plain_only {
                    "plain_text"
                } else {
                    "plain_text or mrkdwn"
                };
                self.err(&format!("{at}/type"), format_args!("must be {want}"));
            }
        }
        match v.get("text").and_then(Value::as_str) {
            Some(t) if !t.is_empty() && chars(t) <= max => {}
            Some("") => self.err(&format!("{at}/text"), "must be at least 1 character"),
            Some(_) => self.err(
                &format!("{at}/text"),
                format_args!("must be less than {} characters", max + 1),
            ),
            None => self.err(&format!("{at}/text"), "missing text"),
        }
    }

    fn image(&mut self, at: &str, v: &Value) {
        match v.get("image_url").and_then(Value::as_str) {
            Some(u) if !u.is_empty() && chars(u) <= MAX_URL_CHARS => {}
            _ => self.err(
                &format!("{at}/image_url"),
                format_args!("must be a URL of 1..={MAX_URL_CHARS} characters"),
            ),
        }
        if v.get("alt_text").and_then(Value::as_str).is_none() {
            self.err(&format!("{at}/alt_text"), "missing alt_text");
        }
    }

    fn bounded_str(&mut self, at: &str, v: Option<&Value>, max: usize) {
        if let Some(v) = v {
            match v.as_str() {
                Some(s) if chars(s) <= max => {}
                _ => self.err(
                    at,
                    format_args!("must be a string of at most {max} characters"),
                ),
            }
        }
    }

    /// An interactive element (actions block, section accessory).
    fn element(&mut self, at: &str, el: &Value) {
        let Some(obj) = el.as_object() else {
            self.err(at, "must be an object");
            return;
        };
        if let Some(id) = obj.get("action_id") {
            match id.as_str() {
                Some(id) if !id.is_empty() && chars(id) <= MAX_ID_CHARS => {
                    if !self.action_ids.insert(id.to_owned()) {
                        self.err(&format!("{at}/action_id"), "duplicate action_id");
                    }
                }
                _ => self.err(
                    &format!("{at}/action_id"),
                    format_args!("must be a string of 1..={MAX_ID_CHARS} characters"),
                ),
            }
        }
        match obj.get("type").and_then(Value::as_str) {
            Some("button") => {
                match obj.get("text") {
                    Some(t) => {
                        self.text_object(&format!("{at}/text"), t, MAX_BUTTON_TEXT_CHARS, true)
                    }
                    None => self.err(&format!("{at}/text"), "missing text"),
                }
                self.bounded_str(
                    &format!("{at}/value"),
                    obj.get("value"),
                    MAX_BUTTON_VALUE_CHARS,
                );
                self.bounded_str(&format!("{at}/url"), obj.get("url"), MAX_URL_CHARS);
                if let Some(style) = obj.get("style")
                    && !matches!(style.as_str(), Some("primary" | "danger"))
                {
                    self.err(&format!("{at}/style"), "must be primary or danger");
                }
                if let Some(c) = obj.get("confirm") {
                    self.confirm(&format!("{at}/confirm"), c);
                }
            }
            Some("image") => self.image(at, el),
            Some(
                "static_select"
                | "external_select"
                | "users_select"
                | "conversations_select"
                | "channels_select"
                | "multi_static_select"
                | "overflow"
                | "datepicker"
                | "timepicker"
                | "checkboxes"
                | "radio_buttons"
                | "plain_text_input",
            ) => {
                if let Some(c) = obj.get("confirm") {
                    self.confirm(&format!("{at}/confirm"), c);
                }
            }
            Some(other) => self.err(
                &format!("{at}/type"),
                format_args!("unknown element type {other:?}"),
            ),
            None => self.err(&format!("{at}/type"), "missing type"),
        }
    }

    fn confirm(&mut self, at: &str, c: &Value) {
        for (field, max, required) in [
            ("title", 100, true),
            ("text", 300, true),
            ("confirm", 30, true),
            ("deny", 30, true),
        ] {
            match c.get(field) {
                Some(t) => self.text_object(&format!("{at}/{field}"), t, max, field != "text"),
                None if required => self.err(&format!("{at}/{field}"), "missing"),
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(text: Option<&str>, blocks: Value) -> Result<(), Rejection> {
        validate_message(text, Some(&blocks))
    }

    #[test]
    fn text_or_blocks_are_required() {
        assert_eq!(
            validate_message(None, None).map_err(|r| r.error),
            Err("no_text")
        );
        assert_eq!(
            check(Some(""), json!([])).map_err(|r| r.error),
            Err("no_text")
        );
        assert!(check(Some("hi"), json!([])).is_ok());
        assert!(check(None, json!([{"type": "divider"}])).is_ok());
    }

    #[test]
    fn text_longer_than_40000_chars_is_too_long() {
        let long = "é".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(
            validate_message(Some(&long), None).map_err(|r| r.error),
            Err("msg_too_long")
        );
        assert!(validate_message(Some(&"é".repeat(MAX_TEXT_CHARS)), None).is_ok());
    }

    #[test]
    fn block_limits_are_enforced() {
        let too_many: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
        let fifty: Vec<Value> = (0..50).map(|_| json!({"type": "divider"})).collect();
        let header = |n: usize| json!([{"type": "header", "text": {"type": "plain_text", "text": "h".repeat(n)}}]);
        let section = |n: usize| json!([{"type": "section", "text": {"type": "mrkdwn", "text": "s".repeat(n)}}]);
        let fields = |n: usize| {
            let f: Vec<Value> = (0..n)
                .map(|_| json!({"type": "mrkdwn", "text": "f"}))
                .collect();
            json!([{"type": "section", "fields": f}])
        };
        let bad = [
            Value::Array(too_many),
            header(151),
            json!([{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]),
            section(3001),
            section(0),
            fields(11),
            json!([{"type": "section"}]),
            json!([{"type": "bogus"}]),
            json!([{"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}]),
            json!([{"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "b".repeat(76)}}]}]),
            json!([{"type": "actions", "elements": [{"type": "button", "style": "pink", "text": {"type": "plain_text", "text": "b"}}]}]),
            json!([{"type": "actions", "elements": [
                {"type": "button", "action_id": "x", "text": {"type": "plain_text", "text": "b"}},
                {"type": "button", "action_id": "x", "text": {"type": "plain_text", "text": "c"}}]}]),
            json!([{"type": "context", "elements": []}]),
            json!({"type": "divider"}),
        ];
        for b in bad {
            assert_eq!(
                check(Some("t"), b.clone()).map_err(|r| r.error),
                Err("invalid_blocks"),
                "{b}"
            );
        }
        let good = [
            Value::Array(fifty),
            header(150),
            section(3000),
            fields(10),
            json!([{"type": "actions", "elements": [{"type": "button", "style": "danger", "action_id": "ack", "value": "v",
                "text": {"type": "plain_text", "text": "Ack"},
                "confirm": {"title": {"type": "plain_text", "text": "Sure?"}, "text": {"type": "mrkdwn", "text": "Really"},
                            "confirm": {"type": "plain_text", "text": "Yes"}, "deny": {"type": "plain_text", "text": "No"}}}]}]),
            json!([{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}, {"type": "image", "image_url": "http://x/i.png", "alt_text": "i"}]}]),
        ];
        for b in good {
            assert_eq!(check(Some("t"), b.clone()), Ok(()), "{b}");
        }
    }

    #[test]
    fn rejection_points_at_the_offending_field() {
        let r = check(
            Some("t"),
            json!([{"type": "divider"}, {"type": "header", "text": {"type": "plain_text", "text": "h".repeat(200)}}]),
        );
        let details = r.err().map(|r| r.details).unwrap_or_default();
        assert!(
            details.iter().any(|d| d.contains("/blocks/1/text/text")),
            "{details:?}"
        );
    }
}
