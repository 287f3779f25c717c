//! The default card and thread replies, rendered from a [`CardView`].
//!
//! A card is one message per alert group, updated in place:
//!
//! ```text
//! header   :rotating_light: CRITICAL · KubePodCrashLooping
//! section  *summary*  description  (+ common runbook / dashboard / Alertmanager links)
//! section  key label fields (at most 10)
//! context  state · counts · opened <date> · open for / resolved after
//! divider
//! section  one per listed alert: status, distinguishing labels, summary, links
//! context  "… and N more alerts not listed"
//! actions  Acknowledge / Escalate, or Unacknowledge; Silence when the
//!          route names an Alertmanager (firing cards only)
//! ```
//!
//! Everything that comes from an alert goes through [`untrusted`] (or
//! [`untrusted_plain`] for the header), so alert text can never mention
//! anyone; the only `<!...>` token ackbar writes is a `<!date^...>`.
//! The block budget keeps a card within 50 blocks however many alerts the
//! view lists, so the buttons are never the block that gets cut.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::config::RouteConfig;
use crate::model::{
    AlertStatus, CardAlert, CardState, CardView, Labels, Occurrences, Severity, ThreadEvent,
};
use crate::slack::blocks::{
    Actions, Block, Button, ButtonStyle, Context, Header, MAX_BLOCKS, Message, MessageBuilder,
    Metadata, Section, Text, date, is_http_url, link, truncate, untrusted, untrusted_plain,
};

/// `action_id` of the Acknowledge button; its `value` is the card id.
pub const ACK_ACTION_ID: &str = "ackbar_acknowledge";
/// `action_id` of the Escalate button; its `value` is the card id.
pub const ESCALATE_ACTION_ID: &str = "ackbar_escalate";
pub const UNACK_ACTION_ID: &str = "ackbar_unacknowledge";
/// `action_id` of the Silence button; its `value` is the card id.
pub const SILENCE_ACTION_ID: &str = "ackbar_silence";
pub const RESOLVE_ACTION_ID: &str = "ackbar_resolve";
/// `event_type` of the metadata attached to every card.
pub const METADATA_EVENT_TYPE: &str = "ackbar_card";

/// Chars of a summary shown on a card or in an alert line.
const MAX_SUMMARY: usize = 500;
/// Chars of the description shown on a card.
const MAX_DESCRIPTION: usize = 1500;
/// Chars of the distinguishing labels of one alert line.
const MAX_ALERT_LABELS: usize = 400;
/// Chars of a label value shown as a field.
const MAX_FIELD_VALUE: usize = 300;
/// URLs longer than this are not linked on a card: a handful of them could
/// otherwise fill a section by themselves.
const MAX_CARD_URL: usize = 1000;
/// Blocks a card uses besides its alert lines: header, summary, fields,
/// context, divider, "and N more", actions.
const CARD_FIXED_BLOCKS: usize = 7;
/// Names listed per kind in a thread reply before "and N more".
pub const MAX_REPLY_NAMES: usize = 20;
/// Alerts of one reply whose details (an event's fields and span context)
/// get a block of their own; a storm's reply lists names only.
const MAX_REPLY_DETAILS: usize = 3;
/// Chars of one alert's details: a section holds 3,000.
const MAX_DETAILS: usize = 2_000;

pub(crate) const RUNBOOK_KEYS: &[&str] = &["runbook_url", "runbook"];
pub(crate) const DASHBOARD_KEYS: &[&str] = &["dashboard", "dashboard_url", "grafana_url"];

/// The metadata attached to a card, read back when reconciling a card whose
/// post outcome is unknown.
pub fn card_metadata(view: &CardView) -> Metadata {
    Metadata {
        event_type: METADATA_EVENT_TYPE.to_owned(),
        event_payload: json!({
            "card_id": view.id.0,
            "card_key": view.key,
            "route": view.route,
        }),
    }
}

/// What a card offers that depends on its route rather than its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CardOptions {
    /// Show the Silence button (the route has an `alertmanager_url`).
    pub silence: bool,
}

impl CardOptions {
    /// The options of a card of `route` (`None`: the route is gone, so
    /// nothing route-specific is offered).
    pub fn for_route(route: Option<&RouteConfig>) -> CardOptions {
        CardOptions {
            silence: route.is_some_and(|r| r.alertmanager_url.is_some()),
        }
    }
}

/// Renders the card for `view` with the default [`CardOptions`] (no Silence
/// button); see [`render_card_with`].
pub fn render_card(view: &CardView, now: DateTime<Utc>) -> Message {
    render_card_with(view, now, CardOptions::default())
}

/// Renders the card for `view`; `now` gives the "open for" age of a firing
/// card. The result always satisfies [`crate::slack::blocks::check_limits`].
pub fn render_card_with(view: &CardView, now: DateTime<Utc>, options: CardOptions) -> Message {
    let firing = view.state == CardState::Firing;
    let severity = view.severity();
    let title = view.title();
    let summary = card_annotation(view, &["summary", "message"]);
    let description = card_annotation(view, &["description"]);

    let mut b = MessageBuilder::new(card_fallback(view, severity, &title, summary))
        .metadata(card_metadata(view));

    let status = if firing {
        format!(
            "{} {}",
            severity_emoji(severity),
            severity.as_str().to_uppercase()
        )
    } else {
        ":white_check_mark: RESOLVED".to_owned()
    };
    b.push(
        Header::new(format!("{status} · {}", untrusted_plain(&title))).block_id("ackbar_header"),
    );

    let mut about = Vec::new();
    if let Some(s) = summary {
        about.push(format!("*{}*", untrusted(&truncate(s, MAX_SUMMARY))));
    }
    if let Some(d) = description {
        about.push(untrusted(&truncate(d, MAX_DESCRIPTION)));
    }
    let common_links = links(&[
        (
            RUNBOOK_KEYS
                .iter()
                .find_map(|k| view.common_annotations.get(*k)),
            "Runbook",
        ),
        (
            DASHBOARD_KEYS
                .iter()
                .find_map(|k| view.common_annotations.get(*k)),
            "Dashboard",
        ),
        (view.external_url.as_ref(), "Alertmanager"),
    ]);
    if !common_links.is_empty() {
        about.push(common_links);
    }
    if !about.is_empty() {
        b.push(Section::mrkdwn(about.join("\n")).block_id("ackbar_summary"));
    }

    let fields: Vec<Text> = view
        .key_labels
        .iter()
        .filter_map(|name| view.common_labels.get(name).map(|v| (name, v)))
        .map(|(name, value)| {
            Text::mrkdwn(format!(
                "*{}*\n{}",
                untrusted(&truncate(name, 100)),
                untrusted(&truncate(value, MAX_FIELD_VALUE))
            ))
        })
        .collect();
    if !fields.is_empty() {
        b.push(Section::from_fields(fields).block_id("ackbar_fields"));
    }

    b.push(Context::mrkdwn(card_context(view, now)).block_id("ackbar_context"));

    let budget = MAX_BLOCKS - CARD_FIXED_BLOCKS;
    let listed = &view.alerts[..view.alerts.len().min(budget)];
    if !listed.is_empty() {
        b.push(Block::Divider);
    }
    for (i, alert) in listed.iter().enumerate() {
        b.push(Section::mrkdwn(alert_line(view, alert)).block_id(&format!("ackbar_alert_{i}")));
    }
    let not_listed = view.hidden_alerts() + (view.alerts.len() - listed.len()) as u64;
    if not_listed > 0 {
        b.push(
            Context::mrkdwn(format!(
                "_… and {not_listed} more {} not listed_",
                plural(not_listed, "alert")
            ))
            .block_id("ackbar_more"),
        );
    }

    if firing {
        let id = view.id.0.as_str();
        let mut buttons = match &view.acknowledged {
            None => vec![
                Button::new("Acknowledge", ACK_ACTION_ID, id).style(ButtonStyle::Primary),
                // The level the card is at when rendered: pressing Escalate
                // on this rendering climbs one step from it, so a double click
                // climbs once.
                Button::new(
                    "Escalate",
                    ESCALATE_ACTION_ID,
                    &escalate_value(&view.id, view.escalation_level),
                )
                .style(ButtonStyle::Danger),
            ],
            Some(_) => vec![Button::new("Unacknowledge", UNACK_ACTION_ID, id)],
        };
        if options.silence {
            buttons.push(Button::new("Silence", SILENCE_ACTION_ID, id));
        }
        // Only for sources that cannot say when their alerts resolve;
        // Alertmanager's cards resolve themselves.
        if view.manual_resolve {
            buttons.push(Button::new("Resolve", RESOLVE_ACTION_ID, id));
        }
        if let Some(actions) = Actions::new(buttons) {
            b.push(actions.block_id("ackbar_actions"));
        }
    }
    b.build()
}

/// `[FIRING:3] KubePodCrashLooping (critical) — summary`, escaped.
fn card_fallback(
    view: &CardView,
    severity: Severity,
    title: &str,
    summary: Option<&String>,
) -> String {
    let head = match view.state {
        CardState::Firing => format!(
            "[FIRING:{}] {} ({})",
            view.firing_count,
            untrusted(&truncate(title, 200)),
            severity.as_str()
        ),
        CardState::Resolved => format!("[RESOLVED] {}", untrusted(&truncate(title, 200))),
    };
    match summary {
        Some(s) => format!("{head} — {}", untrusted(&truncate(s, MAX_SUMMARY))),
        None => head,
    }
}

fn card_context(view: &CardView, now: DateTime<Utc>) -> String {
    let mut parts = Vec::new();
    parts.push(match view.state {
        CardState::Firing => "*Firing*".to_owned(),
        CardState::Resolved => "*Resolved*".to_owned(),
    });
    if let (CardState::Firing, Some(ack)) = (view.state, &view.acknowledged) {
        parts.push(format!(
            ":eyes: *acknowledged* by {} {}",
            mention_user(&ack.by),
            when(ack.at)
        ));
    }
    if view.escalation_level > 0 {
        parts.push(format!("escalated to step {}", view.escalation_level));
    }
    parts.push(format!(
        "{} firing, {} resolved",
        view.firing_count, view.resolved_count
    ));
    parts.push(format!(
        "opened {}",
        date(
            view.opened_at,
            "{date_short_pretty} {time}",
            &view.opened_at.format("%Y-%m-%d %H:%M UTC").to_string()
        )
    ));
    match (view.state, view.resolved_at) {
        (CardState::Resolved, Some(resolved_at)) => parts.push(format!(
            "resolved after {}",
            format_duration((resolved_at - view.opened_at).num_seconds())
        )),
        (CardState::Firing, _) => parts.push(format!(
            "open for {}",
            format_duration((now - view.opened_at).num_seconds())
        )),
        (CardState::Resolved, None) => {}
    }
    parts.push(format!("route {}", untrusted(&truncate(&view.route, 100))));
    parts.join(" · ")
}

/// The first of `keys` found in the common annotations, else in the first
/// alert's annotations.
fn card_annotation<'a>(view: &'a CardView, keys: &[&str]) -> Option<&'a String> {
    let find = |ann: &'a Labels| {
        keys.iter()
            .find_map(|k| ann.get(*k).filter(|v| !v.trim().is_empty()))
    };
    find(&view.common_annotations)
        .or_else(|| view.alerts.first().and_then(|a| find(&a.annotations)))
}

/// One alert: status emoji, what tells it apart, its summary, its links.
fn alert_line(view: &CardView, alert: &CardAlert) -> String {
    let emoji = match alert.status {
        AlertStatus::Firing => ":fire:",
        AlertStatus::Resolved => ":white_check_mark:",
    };
    let mut differing: Vec<String> = alert
        .labels
        .iter()
        .filter(|(k, v)| view.common_labels.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if differing.is_empty() {
        differing = ["alertname", "instance"]
            .iter()
            .filter_map(|k| alert.labels.get(*k).map(|v| format!("{k}={v}")))
            .collect();
    }
    let labels = if differing.is_empty() {
        alert.fingerprint.to_string()
    } else {
        untrusted(&truncate(&differing.join(", "), MAX_ALERT_LABELS))
    };
    let mut line = format!("{emoji} *{labels}*");
    if let Some(o) = &alert.occurrences {
        line.push_str(&format!(" _{}_", occurrence_text(alert.starts_at, o)));
    }
    if let Some(s) = alert
        .annotations
        .get("summary")
        .filter(|s| !s.trim().is_empty())
        && view.common_annotations.get("summary") != Some(s)
    {
        line.push_str(" — ");
        line.push_str(&untrusted(&truncate(s, MAX_SUMMARY)));
    }
    // Links the card already shows for all alerts are not repeated.
    let own = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| alert.annotations.get(*k))
            .filter(|u| {
                !keys
                    .iter()
                    .any(|k| view.common_annotations.get(*k) == Some(*u))
            })
    };
    let alert_links = links(&[
        (alert.generator_url.as_ref(), "Source"),
        (own(RUNBOOK_KEYS), "Runbook"),
        (own(DASHBOARD_KEYS), "Dashboard"),
    ]);
    if !alert_links.is_empty() {
        line.push('\n');
        line.push_str(&alert_links);
    }
    line
}

/// `seen 37 times in 5m, last at 12:03`: how often an event-sourced alert
/// happened in this episode, over what span, and when it last did.
fn occurrence_text(first: DateTime<Utc>, o: &Occurrences) -> String {
    if o.count <= 1 {
        return format!("seen once {}", when(o.last_seen));
    }
    let span = format_duration((o.last_seen - first).num_seconds());
    format!(
        "seen {} times in {span}, last {}",
        o.count,
        when(o.last_seen)
    )
}

/// Untrusted multi-line text as a code block, cut to `max_chars`. A fence
/// inside the text is broken so it cannot end the block early.
fn code_block(text: &str, max_chars: usize) -> String {
    let body = untrusted(&truncate(text.trim_end(), max_chars)).replace("```", "`\u{200b}``");
    format!("```{body}```")
}

/// `<url|Label> · <url|Label>` for the URLs that are present and short
/// enough; non-http(s) URLs are left out of a card entirely.
fn links(items: &[(Option<&String>, &str)]) -> String {
    items
        .iter()
        .filter_map(|&(url, label)| {
            let url = url?.trim();
            (is_http_url(url) && url.chars().count() <= MAX_CARD_URL).then(|| link(url, label))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn severity_emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => ":rotating_light:",
        Severity::Error => ":red_circle:",
        Severity::Warning => ":warning:",
        Severity::Info => ":information_source:",
        Severity::Unknown => ":grey_question:",
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// One thread reply summarising a batch of events, in a fixed order:
/// reopened, alerts firing, alerts resolved, card resolved. Each kind lists at
/// most [`MAX_REPLY_NAMES`] entries and counts the rest ("and N more"), so a
/// batch of any size is one message within limits. `now` gives the age of
/// alerts that have been firing for a minute or more when the reply is sent.
pub fn render_reply(view: &CardView, events: &[ThreadEvent], now: DateTime<Utc>) -> Message {
    let mut reopened = false;
    let mut firing: Vec<FiringLine<'_>> = Vec::new();
    let mut resolved: Vec<&str> = Vec::new();
    let mut card_resolved: Option<i64> = None;
    // What people did, in the order it happened.
    let mut actions: Vec<(String, String)> = Vec::new();
    for event in events {
        match event {
            ThreadEvent::CardReopened { .. } => reopened = true,
            ThreadEvent::AlertFiring {
                name,
                summary,
                details,
                at,
                ..
            } => firing.push(FiringLine {
                name,
                summary: summary.as_deref(),
                details: details.as_deref(),
                at: *at,
            }),
            ThreadEvent::AlertResolved { name, .. } => resolved.push(name),
            ThreadEvent::CardResolved { duration_secs, .. } => card_resolved = Some(*duration_secs),
            ThreadEvent::Acknowledged { by, at } => actions.push((
                format!(":eyes: Acknowledged by {} {}", mention_user(by), when(*at)),
                "acknowledged".to_owned(),
            )),
            ThreadEvent::Unacknowledged { by, at } => actions.push((
                format!(
                    ":leftwards_arrow_with_hook: Acknowledgement taken back by {} {}",
                    mention_user(by),
                    when(*at)
                ),
                "unacknowledged".to_owned(),
            )),
            ThreadEvent::Silenced {
                by,
                until,
                silence_id,
                comment,
                ..
            } => {
                let mut line = format!(
                    ":mute: Silenced by {} until {} (silence `{}`)",
                    mention_user(by),
                    date(
                        *until,
                        "{date_short_pretty} {time}",
                        &until.format("%Y-%m-%d %H:%M UTC").to_string()
                    ),
                    untrusted(&truncate(silence_id, 64))
                );
                if let Some(c) = comment.as_deref().filter(|c| !c.trim().is_empty()) {
                    line.push_str(&format!(": {}", untrusted(&truncate(c, 500))));
                }
                actions.push((line, "silenced".to_owned()));
            }
            ThreadEvent::ResolvedBy {
                by, duration_secs, ..
            } => actions.push((
                format!(
                    ":white_check_mark: Resolved by {} after {}",
                    mention_user(by),
                    format_duration(*duration_secs)
                ),
                "resolved by hand".to_owned(),
            )),
            ThreadEvent::StatusAsked { by, .. } => actions.push((
                format!("{}: {}", mention_user(by), status_line(view, now)),
                "status".to_owned(),
            )),
            ThreadEvent::Escalated {
                level, notify, by, ..
            } => {
                let who: Vec<String> = notify.iter().map(|id| mention(id)).collect();
                let who = if who.is_empty() {
                    "nobody (empty step)".to_owned()
                } else {
                    who.join(" ")
                };
                let cause = match by {
                    Some(user) => format!(" by {}", mention_user(user)),
                    None => " (not acknowledged in time)".to_owned(),
                };
                actions.push((
                    format!(":rotating_light: Escalated to step {level}{cause}: {who}"),
                    format!("escalated to step {level}"),
                ));
            }
        }
    }

    let mut lines: Vec<String> = Vec::new();
    let mut fallback: Vec<String> = Vec::new();
    for (line, short) in actions {
        lines.push(line);
        fallback.push(short);
    }
    if reopened {
        lines.push(":repeat: Fired again — card reopened".to_owned());
        fallback.push("card reopened".to_owned());
    }
    if !firing.is_empty() {
        let n = firing.len() as u64;
        let mut text = format!(":fire: {n} {} firing:", plural(n, "alert"));
        let mut detail_blocks = Vec::new();
        for FiringLine {
            name,
            summary,
            details,
            at,
        } in firing.iter().take(MAX_REPLY_NAMES)
        {
            text.push_str("\n• ");
            text.push_str(&untrusted(&truncate(name, 100)));
            // An event's name is often its message: say it once.
            if let Some(s) = summary.filter(|s| !s.trim().is_empty() && s != name) {
                text.push_str(" — ");
                text.push_str(&untrusted(&truncate(s, 120)));
            }
            let age = (now - *at).num_seconds();
            if age >= 60 {
                text.push_str(&format!(" _(for {})_", format_duration(age)));
            }
            if let Some(d) = details.filter(|d| !d.trim().is_empty())
                && detail_blocks.len() < MAX_REPLY_DETAILS
            {
                let name = untrusted(&truncate(name, 100));
                detail_blocks.push(format!("*{name}*\n{}", code_block(d, MAX_DETAILS)));
            }
        }
        if firing.len() > MAX_REPLY_NAMES {
            text.push_str(&format!("\n… and {} more", firing.len() - MAX_REPLY_NAMES));
        }
        lines.push(text);
        lines.extend(detail_blocks);
        fallback.push(format!("{n} firing"));
    }
    if !resolved.is_empty() {
        let n = resolved.len() as u64;
        lines.push(format!(
            ":white_check_mark: {n} {} resolved: {}",
            plural(n, "alert"),
            count_names(&resolved)
        ));
        fallback.push(format!("{n} resolved"));
    }
    if let Some(secs) = card_resolved {
        let d = format_duration(secs);
        lines.push(format!(
            ":white_check_mark: All alerts resolved — card resolved after {d}"
        ));
        fallback.push(format!("card resolved after {d}"));
    }
    if lines.is_empty() {
        lines.push("No changes.".to_owned());
        fallback.push("no changes".to_owned());
    }

    let title = untrusted(&truncate(&view.title(), 200));
    let mut b = MessageBuilder::new(format!("{title}: {}", fallback.join(", ")));
    for (i, line) in lines.into_iter().enumerate() {
        b.push(Section::mrkdwn(line).block_id(&format!("ackbar_reply_{i}")));
    }
    b.build()
}

/// An alert that fired, as a reply lists it.
struct FiringLine<'a> {
    name: &'a str,
    summary: Option<&'a str>,
    details: Option<&'a str>,
    at: DateTime<Utc>,
}

/// A direct message about a card (an escalation step with `dm`): what
/// happened and a link to the card.
pub fn render_dm(
    view: &CardView,
    events: &[ThreadEvent],
    permalink: &str,
    now: DateTime<Utc>,
) -> Message {
    let title = view.title();
    let level = events.iter().find_map(|e| match e {
        ThreadEvent::Escalated { level, .. } => Some(*level),
        _ => None,
    });
    let head = match level {
        Some(level) => format!(":rotating_light: You were paged: escalation step {level}"),
        None => ":rotating_light: You were paged".to_owned(),
    };
    let text = format!(
        "{head}\n{}\n{}",
        crate::slack::blocks::link(
            permalink,
            &format!("Open the card: {}", truncate(&title, 150))
        ),
        status_line(view, now)
    );
    MessageBuilder::new(format!("{head}: {}", untrusted(&truncate(&title, 200))))
        .block(Section::mrkdwn(text).block_id("ackbar_dm"))
        .build()
}

/// One line on where a card stands, for status questions.
pub fn status_line(view: &CardView, now: DateTime<Utc>) -> String {
    let state = match (view.state, &view.acknowledged) {
        (CardState::Resolved, _) => "*resolved*".to_owned(),
        (CardState::Firing, Some(ack)) => {
            format!("*firing*, acknowledged by {}", mention_user(&ack.by))
        }
        (CardState::Firing, None) => "*firing*, not acknowledged".to_owned(),
    };
    let mut line = format!(
        "{} is {state} · {} firing, {} resolved · opened {} ago",
        untrusted(&truncate(&view.title(), 150)),
        view.firing_count,
        view.resolved_count,
        format_duration((now - view.opened_at).num_seconds())
    );
    if view.escalation_level > 0 {
        line.push_str(&format!(" · escalated to step {}", view.escalation_level));
    }
    line
}

/// The Escalate button's value: `CARD_ID:LEVEL`.
pub fn escalate_value(card: &crate::model::CardId, level: u32) -> String {
    format!("{card}:{level}")
}

/// Parses an Escalate button's value back into card id and level.
pub fn parse_escalate_value(value: &str) -> Option<(crate::model::CardId, u32)> {
    let (id, level) = value.rsplit_once(':')?;
    Some((crate::model::CardId(id.to_owned()), level.parse().ok()?))
}

/// `<@U…>` for a user id; ids come from Slack payloads or the config and
/// are checked to be id-shaped, anything else is shown as untrusted text
/// (which `link_names` cannot turn into a mention either).
fn mention_user(id: &str) -> String {
    if crate::model::is_slack_id(id) {
        format!("<@{id}>")
    } else {
        untrusted(&truncate(id, 100))
    }
}

/// A mention for a user (`U…`/`W…`) or user group (`S…`) id.
pub(crate) fn mention(id: &str) -> String {
    match id.as_bytes().first() {
        Some(b'S') if crate::model::is_slack_id(id) => format!("<!subteam^{id}>"),
        _ => mention_user(id),
    }
}

/// A Slack date token for "at 14:05" that each reader sees in their zone.
fn when(at: DateTime<Utc>) -> String {
    date(at, "at {time}", &format!("at {} UTC", at.format("%H:%M")))
}

/// `A (×3), B, C, and N more`: distinct names in first-seen order with their
/// counts, at most [`MAX_REPLY_NAMES`] of them.
fn count_names(names: &[&str]) -> String {
    let mut order: Vec<&str> = Vec::new();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for name in names {
        let c = counts.entry(name).or_insert(0);
        if *c == 0 {
            order.push(name);
        }
        *c += 1;
    }
    let mut shown: Vec<String> = Vec::new();
    let mut listed: u64 = 0;
    for name in order.iter().take(MAX_REPLY_NAMES) {
        let c = counts.get(name).copied().unwrap_or(1);
        listed += c;
        let name = untrusted(&truncate(name, 100));
        shown.push(if c > 1 {
            format!("{name} (×{c})")
        } else {
            name
        });
    }
    let rest = names.len() as u64 - listed;
    if rest > 0 {
        shown.push(format!("and {rest} more"));
    }
    shown.join(", ")
}

/// A short human duration: `45s`, `12m`, `1h 23m`, `2d 3h`. Negative
/// durations (clock skew) show as `0s`.
pub fn format_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CardAlert, CardId, Fingerprint};
    use crate::slack::blocks::check_limits;
    use proptest::prelude::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn alert(i: u64, status: AlertStatus) -> CardAlert {
        CardAlert {
            fingerprint: Fingerprint(i),
            status,
            labels: labels(&[
                ("alertname", "KubePodCrashLooping"),
                ("severity", "critical"),
                ("namespace", "prod"),
                ("pod", &format!("api-{i}")),
            ]),
            annotations: labels(&[
                ("summary", &format!("Pod api-{i} is crash looping")),
                ("runbook_url", "https://runbooks.example.com/crashloop"),
            ]),
            starts_at: t(0),
            ends_at: None,
            generator_url: Some(format!("http://prometheus:9090/graph?g0.expr=up&i={i}")),
            occurrences: None,
        }
    }

    fn view(n: u64) -> CardView {
        CardView {
            id: CardId("0123456789abcdef0123456789abcdef".into()),
            key: "route-a/{alertname=\"KubePodCrashLooping\"}".into(),
            route: "route-a".into(),
            channel: "C0123ABCD".into(),
            state: CardState::Firing,
            opened_at: t(0),
            resolved_at: None,
            group_labels: labels(&[("alertname", "KubePodCrashLooping")]),
            common_labels: labels(&[
                ("alertname", "KubePodCrashLooping"),
                ("severity", "critical"),
                ("namespace", "prod"),
            ]),
            common_annotations: labels(&[
                (
                    "description",
                    "The pod restarts more than 3 times in 10 minutes.",
                ),
                ("runbook_url", "https://runbooks.example.com/crashloop"),
            ]),
            external_url: Some("http://alertmanager:9093".into()),
            key_labels: vec!["namespace".into(), "cluster".into(), "severity".into()],
            alerts: (0..n).map(|i| alert(i, AlertStatus::Firing)).collect(),
            firing_count: n,
            resolved_count: 0,
            acknowledged: None,
            escalation_level: 0,
            manual_resolve: false,
        }
    }

    fn resolved(mut v: CardView) -> CardView {
        v.state = CardState::Resolved;
        v.resolved_at = Some(t(4980));
        for a in &mut v.alerts {
            a.status = AlertStatus::Resolved;
        }
        v.resolved_count = v.firing_count;
        v.firing_count = 0;
        v
    }

    fn json(m: &Message) -> String {
        serde_json::to_string(m).unwrap()
    }

    /// A card of one event-sourced alert (a service's repeated error).
    fn event_view(count: u64) -> CardView {
        let mut v = view(0);
        v.group_labels = Labels::new();
        v.common_labels = Labels::new();
        v.common_annotations = Labels::new();
        v.external_url = None;
        v.manual_resolve = true;
        v.firing_count = 1;
        v.alerts = vec![CardAlert {
            fingerprint: Fingerprint(7),
            status: AlertStatus::Firing,
            labels: labels(&[
                ("alertname", "payment failed"),
                ("severity", "error"),
                ("service", "checkout"),
            ]),
            annotations: labels(&[("summary", "payment failed")]),
            starts_at: t(0),
            ends_at: None,
            generator_url: None,
            occurrences: Some(Occurrences {
                count,
                last_seen: t(300),
            }),
        }];
        v
    }

    #[test]
    fn event_card_counts_occurrences_and_offers_resolve() {
        let m = render_card(&event_view(37), t(310));
        check_limits(&m).unwrap();
        let s = json(&m);
        assert!(s.contains("payment failed"), "{s}");
        assert!(s.contains("seen 37 times in 5m, last"), "{s}");
        assert!(
            buttons(&m)
                .iter()
                .any(|b| b.action_id() == RESOLVE_ACTION_ID),
            "{s}"
        );
        let once = json(&render_card(&event_view(1), t(310)));
        assert!(once.contains("seen once"), "{once}");
    }

    #[test]
    fn first_occurrence_reply_shows_its_details_in_a_code_block() {
        let events = [ThreadEvent::AlertFiring {
            fingerprint: "7".into(),
            name: "payment failed".into(),
            summary: Some("payment failed".into()),
            details: Some("order = 7\nuser = <@U123>\n```".into()),
            at: t(0),
        }];
        let m = render_reply(&event_view(1), &events, t(1));
        check_limits(&m).unwrap();
        let s = json(&m);
        assert!(s.contains("```order = 7\\nuser = &lt;@"), "{s}");
        assert!(!s.contains("<@U123>"), "no mention escapes: {s}");
        assert!(
            s.contains("&gt;\\n`\u{200b}`````"),
            "a fence in the details cannot close the block early: {s}"
        );
    }

    fn buttons(m: &Message) -> Vec<&crate::slack::blocks::Button> {
        m.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Actions(a) => Some(a.buttons()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn header(m: &Message) -> &str {
        match &m.blocks[0] {
            Block::Header(h) => h.text().as_str(),
            other => panic!("first block is {other:?}"),
        }
    }

    #[test]
    fn acknowledged_card_shows_who_and_offers_unacknowledge_only() {
        let mut v = view(2);
        v.acknowledged = Some(crate::model::Acknowledgement {
            by: "U0ALICE01".into(),
            at: t(30),
        });
        v.escalation_level = 1;
        let m = render_card(&v, t(60));
        check_limits(&m).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("acknowledged* by <@U0ALICE01>"), "{json}");
        assert!(json.contains("escalated to step 1"), "{json}");
        let b = buttons(&m);
        assert_eq!(b.len(), 1);
        assert_eq!(
            (b[0].action_id(), b[0].value()),
            (UNACK_ACTION_ID, v.id.0.as_str())
        );
    }

    #[test]
    fn resolve_button_only_on_cards_that_cannot_resolve_themselves() {
        let mut v = view(1);
        assert!(
            !buttons(&render_card(&v, t(60)))
                .iter()
                .any(|b| b.action_id() == RESOLVE_ACTION_ID)
        );
        v.manual_resolve = true;
        let m = render_card(&v, t(60));
        check_limits(&m).unwrap();
        assert!(
            buttons(&m)
                .iter()
                .any(|b| b.action_id() == RESOLVE_ACTION_ID)
        );
        assert!(buttons(&render_card(&resolved(v), t(60))).is_empty());
    }

    #[test]
    fn escalate_value_round_trips() {
        let id = CardId("0123456789abcdef0123456789abcdef".into());
        assert_eq!(parse_escalate_value(&escalate_value(&id, 3)), Some((id, 3)));
        assert_eq!(parse_escalate_value("no-level"), None);
    }

    #[test]
    fn action_replies_mention_only_id_shaped_users() {
        let events = [
            ThreadEvent::Acknowledged {
                by: "U0ALICE01".into(),
                at: t(0),
            },
            ThreadEvent::Escalated {
                level: 2,
                notify: vec!["U0BOBBY01".into(), "S0OPSTEAM".into()],
                by: None,
                at: t(0),
            },
            ThreadEvent::Unacknowledged {
                by: "<!channel>".into(),
                at: t(0),
            },
        ];
        let m = render_reply(&view(1), &events, t(0));
        check_limits(&m).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert!(
            json.contains("<@U0ALICE01>") && json.contains("<!subteam^S0OPSTEAM>"),
            "{json}"
        );
        assert!(json.contains("not acknowledged in time"), "{json}");
        assert!(
            !json.contains("<!channel>"),
            "a non-id never becomes a mention: {json}"
        );
    }

    #[test]
    fn firing_card_has_severity_header_and_ack_and_escalate_buttons() {
        let m = render_card(&view(3), t(90));
        check_limits(&m).unwrap();
        assert_eq!(
            header(&m),
            ":rotating_light: CRITICAL · KubePodCrashLooping"
        );
        let b = buttons(&m);
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[0].action_id(), b[0].value()),
            (ACK_ACTION_ID, "0123456789abcdef0123456789abcdef")
        );
        assert_eq!(b[0].button_style(), Some(ButtonStyle::Primary));
        assert_eq!(
            (b[1].action_id(), b[1].value()),
            (ESCALATE_ACTION_ID, "0123456789abcdef0123456789abcdef:0"),
            "Escalate carries the level the card was rendered at"
        );
        assert_eq!(b[1].button_style(), Some(ButtonStyle::Danger));
        assert_eq!(
            m.text,
            "[FIRING:3] KubePodCrashLooping (critical) — Pod api-0 is crash looping"
        );
        assert_eq!(m.metadata, Some(card_metadata(&view(3))));
    }

    #[test]
    fn card_shows_key_labels_links_dates_and_age() {
        let s = json(&render_card(&view(2), t(4980)));
        assert!(s.contains("*namespace*\\nprod"), "{s}");
        assert!(!s.contains("*cluster*"), "absent key labels are skipped");
        assert!(
            s.contains("<!date^1700000000^{date_short_pretty} {time}|2023-11-14 22:13 UTC>"),
            "{s}"
        );
        assert!(s.contains("open for 1h 23m"));
        assert!(s.contains("<https://runbooks.example.com/crashloop|Runbook>"));
        assert!(s.contains("<http://alertmanager:9093|Alertmanager>"));
        assert!(s.contains("<http://prometheus:9090/graph?g0.expr=up&amp;i=1|Source>"));
        assert!(
            s.contains("pod=api-1"),
            "alert lines show the labels that differ"
        );
        assert_eq!(
            s.matches("|Runbook>").count(),
            1,
            "a common runbook is linked once"
        );
    }

    #[test]
    fn silence_button_only_when_the_route_names_an_alertmanager() {
        let with = CardOptions { silence: true };
        let m = render_card_with(&view(3), t(90), with);
        check_limits(&m).unwrap();
        let b = buttons(&m);
        assert_eq!(b.len(), 3);
        assert_eq!(
            (b[2].action_id(), b[2].value(), b[2].button_style()),
            (SILENCE_ACTION_ID, "0123456789abcdef0123456789abcdef", None)
        );
        let mut acked = view(1);
        acked.acknowledged = Some(crate::model::Acknowledgement {
            by: "U0ALICE01".into(),
            at: t(30),
        });
        let m = render_card_with(&acked, t(60), with);
        let ids: Vec<&str> = buttons(&m).iter().map(|b| b.action_id()).collect();
        assert_eq!(ids, [UNACK_ACTION_ID, SILENCE_ACTION_ID]);
        let m = render_card_with(&resolved(view(3)), t(5000), with);
        assert!(buttons(&m).is_empty(), "no Silence on a resolved card");
        let m = render_card_with(&view(80), t(60), with);
        check_limits(&m).unwrap();
        assert_eq!(buttons(&m).len(), 3, "a full card keeps all its buttons");

        let mut route = crate::config::Config::from_json("{}")
            .unwrap()
            .effective_routes()
            .remove(0);
        assert_eq!(CardOptions::for_route(Some(&route)), CardOptions::default());
        route.alertmanager_url = Some("http://am:9093".into());
        assert_eq!(CardOptions::for_route(Some(&route)), with);
        assert_eq!(CardOptions::for_route(None), CardOptions::default());
    }

    #[test]
    fn resolved_card_has_no_buttons() {
        let m = render_card(&resolved(view(3)), t(5000));
        check_limits(&m).unwrap();
        assert!(buttons(&m).is_empty());
        assert!(!m.blocks.iter().any(|b| matches!(b, Block::Actions(_))));
        assert_eq!(
            header(&m),
            ":white_check_mark: RESOLVED · KubePodCrashLooping"
        );
        assert!(m.text.starts_with("[RESOLVED] KubePodCrashLooping"));
        assert!(json(&m).contains("resolved after 1h 23m"));
    }

    #[test]
    fn card_lists_at_most_the_given_alerts_and_counts_the_rest() {
        let mut v = view(5);
        v.firing_count = 40;
        v.resolved_count = 2;
        let m = render_card(&v, t(60));
        check_limits(&m).unwrap();
        let s = json(&m);
        assert_eq!(s.matches(":fire: *").count(), 5);
        assert!(s.contains("… and 37 more alerts not listed"), "{s}");
    }

    #[test]
    fn card_with_more_alerts_than_blocks_keeps_its_buttons() {
        let v = view(80);
        let m = render_card(&v, t(60));
        check_limits(&m).unwrap();
        assert_eq!(m.blocks.len(), MAX_BLOCKS);
        assert_eq!(buttons(&m).len(), 2);
        assert!(json(&m).contains("… and 37 more alerts not listed"));
    }

    #[test]
    fn alert_text_cannot_mention_channel() {
        let evil = "<!channel> <!here|here> <@U123> <#C1> @here @channel @everyone";
        let mut v = view(3);
        for (k, val) in [("alertname", evil), ("namespace", evil)] {
            v.common_labels.insert(k.into(), val.into());
        }
        v.common_annotations.insert("summary".into(), evil.into());
        v.common_annotations
            .insert("description".into(), evil.into());
        for a in &mut v.alerts {
            a.labels.insert("pod".into(), evil.into());
            a.annotations.insert("summary".into(), format!("{evil}!"));
            a.generator_url = Some(format!("https://x.io/|{evil}"));
        }
        v.route = evil.into();
        let events = [ThreadEvent::AlertFiring {
            fingerprint: "1".into(),
            name: evil.into(),
            summary: Some(evil.into()),
            details: Some(evil.into()),
            at: t(0),
        }];
        for m in [render_card(&v, t(1)), render_reply(&v, &events, t(1))] {
            check_limits(&m).unwrap();
            // What Slack renders: the fallback and the blocks, not metadata.
            let s = serde_json::to_string(&(&m.text, &m.blocks))
                .unwrap()
                .to_lowercase();
            for bad in ["<!channel", "<!here", "<!everyone", "<@", "<#"] {
                assert!(!s.contains(bad), "{bad} in {s}");
            }
            assert_eq!(s.matches("<!").count(), s.matches("<!date^").count());
            // A link's URL is not parsed for mentions; everything else must not
            // contain the bare words.
            let outside_urls: String = s
                .split("<http")
                .enumerate()
                .map(|(i, part)| {
                    if i == 0 {
                        part
                    } else {
                        part.split_once('|').map_or("", |x| x.1)
                    }
                })
                .collect();
            for bad in ["@here", "@channel", "@everyone"] {
                assert!(!outside_urls.contains(bad), "{bad} in {outside_urls}");
            }
        }
    }

    #[test]
    fn huge_labels_and_annotations_stay_within_limits() {
        let mut v = view(30);
        let big = "x".repeat(5000);
        v.common_labels.insert("alertname".into(), big.clone());
        v.common_labels.insert("namespace".into(), big.clone());
        v.key_labels = (0..15).map(|i| format!("k{i}")).collect();
        for i in 0..15 {
            v.common_labels.insert(format!("k{i}"), big.clone());
        }
        v.common_annotations
            .insert("summary".into(), "&<>".repeat(1000));
        v.common_annotations
            .insert("description".into(), "d".repeat(1000));
        for a in &mut v.alerts {
            for i in 0..8 {
                a.labels
                    .insert(format!("label_{i}_{}", "l".repeat(200)), big.clone());
            }
            a.annotations.insert("summary".into(), "s".repeat(1000));
            a.annotations.insert(
                "dashboard".into(),
                format!("https://grafana/{}", "d".repeat(2500)),
            );
            a.generator_url = Some(format!("https://prom/{}", "g".repeat(900)));
        }
        let m = render_card(&v, t(1));
        check_limits(&m).unwrap();
        assert!(m.text.chars().count() <= 4000);
        assert_eq!(buttons(&m).len(), 2);
    }

    fn resolve_event(i: usize) -> ThreadEvent {
        ThreadEvent::AlertResolved {
            fingerprint: format!("{i:016x}"),
            name: if i.is_multiple_of(5) {
                "NodeDown".into()
            } else {
                format!("Alert{}", i % 40)
            },
            at: t(100),
        }
    }

    #[test]
    fn reply_for_500_resolves_is_one_capped_message() {
        let events: Vec<ThreadEvent> = (0..500).map(resolve_event).collect();
        let m = render_reply(&view(1), &events, t(200));
        check_limits(&m).unwrap();
        let s = json(&m);
        assert!(
            s.contains(":white_check_mark: 500 alerts resolved: NodeDown (×100), Alert1 (×13)"),
            "{s}"
        );
        assert!(s.contains(", and "), "{s}");
        assert!(s.len() < 3000, "reply stays short: {} bytes", s.len());
        assert!(buttons(&m).is_empty() && m.metadata.is_none());
        assert_eq!(m.text, "KubePodCrashLooping: 500 resolved");
    }

    #[test]
    fn reply_lists_firing_alerts_with_summary_and_caps_at_20() {
        let events: Vec<ThreadEvent> = (0..25)
            .map(|i| ThreadEvent::AlertFiring {
                fingerprint: i.to_string(),
                name: format!("A{i}"),
                summary: Some("disk <full>".into()),
                details: None,
                at: t(0),
            })
            .collect();
        let m = render_reply(&view(1), &events, t(125));
        check_limits(&m).unwrap();
        let s = json(&m);
        assert!(
            s.contains(":fire: 25 alerts firing:\\n• A0 — disk &lt;full&gt; _(for 2m)_"),
            "{s}"
        );
        assert!(s.contains("A19") && !s.contains("A20"));
        assert!(s.contains("… and 5 more"));
    }

    #[test]
    fn reply_tells_card_resolved_and_reopened() {
        let m = render_reply(
            &view(1),
            &[
                resolve_event(1),
                ThreadEvent::CardResolved {
                    at: t(7500),
                    duration_secs: 7500,
                },
            ],
            t(7500),
        );
        let s = json(&m);
        assert!(
            s.contains(":white_check_mark: All alerts resolved — card resolved after 2h 5m"),
            "{s}"
        );
        assert_eq!(
            m.text,
            "KubePodCrashLooping: 1 resolved, card resolved after 2h 5m"
        );
        let m = render_reply(&view(1), &[ThreadEvent::CardReopened { at: t(0) }], t(0));
        assert!(json(&m).contains(":repeat: Fired again — card reopened"));
        check_limits(&m).unwrap();
    }

    #[test]
    fn format_duration_is_short_and_human() {
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(12 * 60 + 5), "12m");
        assert_eq!(format_duration(3600 + 23 * 60), "1h 23m");
        assert_eq!(format_duration(7200), "2h");
        assert_eq!(format_duration(2 * 86_400 + 3 * 3600 + 59), "2d 3h");
        assert_eq!(format_duration(-5), "0s");
    }

    #[test]
    fn metadata_identifies_the_card() {
        let md = card_metadata(&view(1));
        assert_eq!(md.event_type, METADATA_EVENT_TYPE);
        assert_eq!(
            md.event_payload["card_id"],
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(md.event_payload["route"], "route-a");
        assert!(md.event_payload["card_key"].is_string());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_label_and_annotation_text_renders_within_limits(
            keys in proptest::collection::vec(".{0,300}", 1..6),
            values in proptest::collection::vec(prop_oneof![".{0,80}", "(<!channel>|@here|&|<|x){0,600}", ".{1900,2100}"], 1..6),
            n in 0u64..35,
            is_resolved in any::<bool>(),
        ) {
            let mut v = view(n);
            for (k, val) in keys.iter().zip(values.iter().cycle()) {
                v.common_labels.insert(k.clone(), val.clone());
                v.common_annotations.insert(k.clone(), val.clone());
                v.key_labels.push(k.clone());
                for a in &mut v.alerts {
                    a.labels.insert(k.clone(), val.clone());
                    a.annotations.insert(k.clone(), val.clone());
                    a.annotations.insert("summary".into(), val.clone());
                }
            }
            v.common_annotations.insert("summary".into(), values[0].clone());
            if is_resolved { v = resolved(v); }
            let m = render_card(&v, t(10));
            prop_assert_eq!(check_limits(&m), Ok(()));
            let s = serde_json::to_string(&m).unwrap().to_lowercase();
            prop_assert!(!s.contains("<!channel") && !s.contains("@here"));
            prop_assert_eq!(buttons(&m).len(), if is_resolved { 0 } else { 2 });
            let m = render_card_with(&v, t(10), CardOptions { silence: true });
            prop_assert_eq!(check_limits(&m), Ok(()));
            prop_assert_eq!(buttons(&m).len(), if is_resolved { 0 } else { 3 });
        }
    }
}
