//! What a route template sees: a card (and for a reply, its thread events)
//! as plain JSON-like data.
//!
//! Everything that comes from an alert is made safe for mrkdwn before the
//! template sees it ([`untrusted`]: `&`, `<`, `>` escaped, mentions broken),
//! so a template cannot be made to ping anyone or write a link by the alert
//! it renders. The few values ackbar writes itself (a mention of the user who
//! acknowledged, a date token, link URLs) are added after that pass, already
//! in their safe form.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::model::{CardAlert, CardState, CardView, Labels, ThreadEvent};
use crate::slack::blocks::{date, is_http_url, mrkdwn_safe_url, untrusted};
use crate::slack::cards::{DASHBOARD_KEYS, RUNBOOK_KEYS, mention};

/// URLs longer than this are left out of a template's links (null), like
/// the default card leaves them unlinked.
const MAX_URL: usize = 1000;

/// The context of a card template. See the README's "Templates" section
/// for the documented fields.
pub fn card(view: &CardView, now: DateTime<Utc>) -> Value {
    let raw = json!({
        "card_id": view.id.0,
        "route": view.route,
        "title": view.title(),
        "state": match view.state {
            CardState::Firing => "firing",
            CardState::Resolved => "resolved",
        },
        "severity": view.severity().as_str(),
        "group_labels": view.group_labels,
        "common_labels": view.common_labels,
        "common_annotations": view.common_annotations,
        "key_labels": view.key_labels,
        // The key labels the card has, in order: what the default card
        // shows as fields.
        "key_fields": view
            .key_labels
            .iter()
            .filter_map(|name| view.common_labels.get(name).map(|value| json!({
                "name": name,
                "value": value,
            })))
            .collect::<Vec<_>>(),
        "counts": {
            "firing": view.firing_count,
            "resolved": view.resolved_count,
            "listed": view.alerts.len(),
            "not_listed": view.hidden_alerts(),
        },
        "escalation_level": view.escalation_level,
        "opened_at": rfc3339(view.opened_at),
        "resolved_at": view.resolved_at.map(rfc3339),
        "now": rfc3339(now),
        "alerts": view.alerts.iter().map(alert).collect::<Vec<_>>(),
    });
    let mut context = sanitized(raw);
    let Value::Object(fields) = &mut context else {
        unreachable!("a JSON object stays an object");
    };
    // ackbar's own mrkdwn, added after the pass that escapes alert text.
    fields.insert(
        "acked_by".to_owned(),
        view.acknowledged
            .as_ref()
            .map_or(Value::Null, |ack| Value::String(mention(&ack.by))),
    );
    fields.insert(
        "acked_at".to_owned(),
        view.acknowledged
            .as_ref()
            .map_or(Value::Null, |ack| Value::String(rfc3339(ack.at))),
    );
    fields.insert(
        "opened".to_owned(),
        Value::String(date(
            view.opened_at,
            "{date_short_pretty} {time}",
            &view.opened_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        )),
    );
    fields.insert(
        "links".to_owned(),
        json!({
            "runbook": first_url(&view.common_annotations, RUNBOOK_KEYS),
            "dashboard": first_url(&view.common_annotations, DASHBOARD_KEYS),
            "alertmanager": view.external_url.as_deref().and_then(safe_url),
        }),
    );
    if let Some(Value::Array(alerts)) = fields.get_mut("alerts") {
        for (out, alert) in alerts.iter_mut().zip(&view.alerts) {
            if let Value::Object(out) = out {
                out.insert(
                    "source".to_owned(),
                    json!(alert.generator_url.as_deref().and_then(safe_url)),
                );
                out.insert(
                    "links".to_owned(),
                    json!({
                        "runbook": first_url(&alert.annotations, RUNBOOK_KEYS),
                        "dashboard": first_url(&alert.annotations, DASHBOARD_KEYS),
                    }),
                );
            }
        }
    }
    context
}

/// The context of a reply template: the card's, plus `events`, the thread
/// events the reply is about (each with its `kind`, as stored).
pub fn reply(view: &CardView, events: &[ThreadEvent], now: DateTime<Utc>) -> Value {
    let mut context = card(view, now);
    let events = sanitized(serde_json::to_value(events).unwrap_or(Value::Array(Vec::new())));
    if let Value::Object(fields) = &mut context {
        fields.insert("events".to_owned(), events);
    }
    context
}

fn alert(a: &CardAlert) -> Value {
    json!({
        "fingerprint": a.fingerprint.to_string(),
        "status": a.status.as_str(),
        "labels": a.labels,
        "annotations": a.annotations,
        "starts_at": rfc3339(a.starts_at),
        "ends_at": a.ends_at.map(rfc3339),
        "occurrences": a.occurrences.map(|o| json!({
            "count": o.count,
            "last_seen": rfc3339(o.last_seen),
        })),
    })
}

/// Every string (and object key) of `value` made safe for mrkdwn.
fn sanitized(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(untrusted(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(sanitized).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (untrusted(&k), sanitized(v)))
                .collect::<Map<_, _>>(),
        ),
        other => other,
    }
}

/// The first of `keys` in `annotations` that is a linkable URL.
fn first_url(annotations: &Labels, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| annotations.get(*k))
        .and_then(|u| safe_url(u))
}

/// An http(s) URL made safe inside a mrkdwn `<url|label>`; `None` for any
/// other scheme or an overlong URL.
fn safe_url(url: &str) -> Option<String> {
    let url = url.trim();
    (is_http_url(url) && url.chars().count() <= MAX_URL).then(|| mrkdwn_safe_url(url))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
