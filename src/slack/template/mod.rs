//! Route templates: a route may replace the default card and thread replies
//! with [minijinja] templates that write Block Kit JSON
//! (`routes[].template`).
//!
//! - **Compiled at config load**: a syntax error fails the config and names
//!   the route, the file and the line.
//! - **Safe output**: templates are rendered with JSON auto-escaping, so
//!   `{{ value }}` prints a JSON value (a string in quotes) and alert text
//!   cannot break out of a string into the block structure; every string of
//!   the [`context`] is already escaped for mrkdwn, so alert text cannot
//!   mention anyone either.
//! - **Bounded**: a render has [`FUEL`] (instructions and memory); a loop
//!   that does not end runs out of it.
//! - **Never blocks delivery**: a card or reply whose template fails (an
//!   error, no fuel left, output that is not JSON blocks, a message that
//!   breaks a Block Kit limit) is sent as the default instead, counted in
//!   `ackbar_template_failures_total{route,kind}` and logged with the route
//!   and the error, never the alert's text.
//! - **Buttons always work**: ackbar appends its own actions block
//!   (Acknowledge, Escalate, ...) to a templated card, whatever the template
//!   writes.
//!
//! `ackbar check-config` renders each template on [`sample`] cards and
//! checks the result the way delivery does.

pub mod context;
pub mod sample;

use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};
use metrics::counter;
use minijinja::{AutoEscape, Environment};
use serde_json::Value;
use tracing::warn;

use crate::config::{RouteConfig, TemplateConfig, TemplateSource};
use crate::model::{CardView, ThreadEvent};
use crate::slack::blocks::{Block, Message, check_limits, truncate_mrkdwn, untrusted_plain};
use crate::slack::cards::{self, CardOptions};

/// Fuel of one render: roughly instructions, and memory in units of about
/// 64 bytes (minijinja's accounting). The README's example card over 30
/// alerts uses less than a tenth of it.
pub const FUEL: u64 = 100_000;
/// Chars of a render error kept for the log: enough to say what failed,
/// too few to carry an alert's text.
const MAX_ERROR_CHARS: usize = 300;

/// Which message a template replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateKind {
    Card,
    Reply,
}

impl TemplateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateKind::Card => "card",
            TemplateKind::Reply => "reply",
        }
    }
}

impl fmt::Display for TemplateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A template that cannot be read or does not compile.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    pub kind: TemplateKind,
    message: String,
}

/// Why a template's message was not sent (the default was).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    #[error("template error: {0}")]
    Template(String),
    #[error("output is not Block Kit JSON: {0}")]
    Output(String),
    #[error("message breaks a Block Kit limit: {0}")]
    Limits(String),
}

/// A route's compiled templates.
pub struct RouteTemplates {
    env: Environment<'static>,
    /// The names (file path, or `inline KIND template`) of the card and
    /// reply templates in `env`.
    card: Option<String>,
    reply: Option<String>,
}

impl fmt::Debug for RouteTemplates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTemplates")
            .field("card", &self.card)
            .field("reply", &self.reply)
            .finish_non_exhaustive()
    }
}

impl RouteTemplates {
    /// Reads (files relative to `dir`) and compiles the templates of route
    /// `route`.
    pub fn compile(
        route: &str,
        config: &TemplateConfig,
        dir: &Path,
    ) -> Result<RouteTemplates, CompileError> {
        let mut templates = RouteTemplates {
            env: environment(),
            card: None,
            reply: None,
        };
        for (kind, source) in [
            (TemplateKind::Card, &config.card),
            (TemplateKind::Reply, &config.reply),
        ] {
            let Some(source) = source else { continue };
            let fail = |message: String| CompileError {
                kind,
                message: format!("route {route:?}: {message}"),
            };
            let (origin, text) = match source {
                TemplateSource::Inline(text) => (format!("inline {kind} template"), text.clone()),
                TemplateSource::File(file) => {
                    let path = dir.join(file);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        fail(format!("cannot read template file {}: {e}", path.display()))
                    })?;
                    (path.display().to_string(), text)
                }
            };
            // The template's name is what minijinja's errors cite with the
            // line: `(in /etc/ackbar/card.json.j2:3)`.
            templates
                .env
                .add_template_owned(origin.clone(), text)
                .map_err(|e| fail(e.to_string()))?;
            *templates.name_mut(kind) = Some(origin);
        }
        Ok(templates)
    }

    pub fn has(&self, kind: TemplateKind) -> bool {
        self.name(kind).is_some()
    }

    fn name(&self, kind: TemplateKind) -> Option<&str> {
        match kind {
            TemplateKind::Card => self.card.as_deref(),
            TemplateKind::Reply => self.reply.as_deref(),
        }
    }

    fn name_mut(&mut self, kind: TemplateKind) -> &mut Option<String> {
        match kind {
            TemplateKind::Card => &mut self.card,
            TemplateKind::Reply => &mut self.reply,
        }
    }

    /// The card `template` writes for `view`, with `default`'s fallback
    /// text (unless the template gives one), its metadata and its actions
    /// block; checked against Slack's limits.
    pub fn render_card(
        &self,
        view: &CardView,
        now: DateTime<Utc>,
        default: &Message,
    ) -> Result<Message, RenderError> {
        let ctx = context::card(view, now);
        let actions = default
            .blocks
            .iter()
            .filter(|b| matches!(b, Block::Actions(_)))
            .cloned();
        self.render(TemplateKind::Card, &ctx, default, actions)
    }

    /// The reply `template` writes for `events`, with `default`'s fallback
    /// text unless the template gives one; checked against Slack's limits.
    pub fn render_reply(
        &self,
        view: &CardView,
        events: &[ThreadEvent],
        now: DateTime<Utc>,
        default: &Message,
    ) -> Result<Message, RenderError> {
        let ctx = context::reply(view, events, now);
        self.render(TemplateKind::Reply, &ctx, default, std::iter::empty())
    }

    fn render(
        &self,
        kind: TemplateKind,
        ctx: &Value,
        default: &Message,
        appended: impl Iterator<Item = Block>,
    ) -> Result<Message, RenderError> {
        let name = self
            .name(kind)
            .ok_or_else(|| RenderError::Template(format!("the route has no {kind} template")))?;
        let output = self
            .env
            .get_template(name)
            .and_then(|t| t.render(minijinja::value::Serde(ctx)))
            .map_err(|e| RenderError::Template(e.to_string()))?;
        let (blocks, text) = parse_output(&output)?;
        let mut blocks: Vec<Block> = blocks.into_iter().map(Block::Raw).collect();
        blocks.extend(appended);
        let message = Message {
            text: text.unwrap_or_else(|| default.text.clone()),
            blocks,
            metadata: default.metadata.clone(),
        };
        check_limits(&message).map_err(|e| RenderError::Limits(e.to_string()))?;
        Ok(message)
    }
}

/// The card for `view` as its route wants it: the route's card template's,
/// or the default card when the route has none or the template fails.
pub fn card(view: &CardView, now: DateTime<Utc>, route: Option<&RouteConfig>) -> Message {
    let default = cards::render_card_with(view, now, CardOptions::for_route(route));
    let Some((route, templates)) = with_template(route, TemplateKind::Card) else {
        return default;
    };
    templates
        .render_card(view, now, &default)
        .unwrap_or_else(|e| fall_back(route, TemplateKind::Card, &e, default))
}

/// The reply for `events` as the card's route wants it: the route's reply
/// template's, or the default reply.
pub fn reply(
    view: &CardView,
    events: &[ThreadEvent],
    now: DateTime<Utc>,
    route: Option<&RouteConfig>,
) -> Message {
    let default = cards::render_reply(view, events, now);
    let Some((route, templates)) = with_template(route, TemplateKind::Reply) else {
        return default;
    };
    templates
        .render_reply(view, events, now, &default)
        .unwrap_or_else(|e| fall_back(route, TemplateKind::Reply, &e, default))
}

/// The route's compiled templates when it has one of `kind`.
fn with_template(
    route: Option<&RouteConfig>,
    kind: TemplateKind,
) -> Option<(&RouteConfig, &RouteTemplates)> {
    let route = route?;
    let templates = route.template.as_ref()?.compiled.as_deref()?;
    templates.has(kind).then_some((route, templates))
}

/// Counts and logs a failed template; returns the default message to send.
fn fall_back(
    route: &RouteConfig,
    kind: TemplateKind,
    error: &RenderError,
    default: Message,
) -> Message {
    counter!(
        crate::metrics::TEMPLATE_FAILURES,
        "route" => route.name.clone(),
        "kind" => kind.as_str()
    )
    .increment(1);
    let error = truncate_mrkdwn(&error.to_string(), MAX_ERROR_CHARS);
    warn!(route = %route.name, kind = kind.as_str(), %error, "route template failed; sending the default instead");
    default
}

/// The environment every route template renders in.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Json);
    env.set_fuel(Some(FUEL));
    // `{{ text | truncate(150) }}`: cut to that many chars with an ellipsis,
    // never inside an `&amp;` or a `<...>` token.
    env.add_filter("truncate", |s: String, max_chars: usize| {
        truncate_mrkdwn(&s, max_chars)
    });
    // `{{ title | plain }}`: context text for a `plain_text` object, which
    // Slack shows as it is (no `&amp;`).
    env.add_filter("plain", |s: String| {
        untrusted_plain(
            &s.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    });
    // `{{ user_id | mention }}`: a mention of a Slack user or user group id
    // (thread events' `by`, `notify`); anything else is left as it is
    // (context text is already inert).
    env.add_filter("mention", |id: String| {
        if crate::model::is_slack_id(&id) {
            cards::mention(&id)
        } else {
            id
        }
    });
    env
}

/// A template's output: a JSON array of blocks, or an object with `blocks`
/// and an optional `text` (the notification fallback).
fn parse_output(output: &str) -> Result<(Vec<Value>, Option<String>), RenderError> {
    let value: Value =
        serde_json::from_str(output).map_err(|e| RenderError::Output(e.to_string()))?;
    match value {
        Value::Array(blocks) => Ok((blocks, None)),
        Value::Object(mut fields) => {
            let blocks = match fields.remove("blocks") {
                Some(Value::Array(blocks)) => blocks,
                _ => {
                    return Err(RenderError::Output(
                        "an object needs `blocks`, an array of blocks".to_owned(),
                    ));
                }
            };
            let text = match fields.remove("text") {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) => Some(text),
                Some(_) => {
                    return Err(RenderError::Output("`text` must be a string".to_owned()));
                }
            };
            if let Some(key) = fields.keys().next() {
                return Err(RenderError::Output(format!(
                    "unknown key `{key}`: only `blocks` and `text`"
                )));
            }
            Ok((blocks, text))
        }
        _ => Err(RenderError::Output(
            "expected an array of blocks or an object with `blocks`".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests;
