//! No unwanted pings: whatever text alerts, OTLP records, `tracing` events,
//! Alertmanager or payload fields carry, nothing ackbar renders for Slack
//! (cards, thread replies, DMs, status lines, the silence modal and its
//! errors, fallback `text`, the example route templates' cards and replies) can mention `@channel`/`@here`/`@everyone`, a
//! channel, or a user or group ackbar did not mean to notify: the acting
//! user and the configured escalation targets.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::Value;

use crate::config::Config;
use crate::model::{
    Acknowledgement, AlertStatus, CardAlert, CardId, CardState, CardView, Fingerprint, Labels,
    Occurrences, ThreadEvent,
};
use crate::silence::{SilenceError, SilenceMatcher, errors_answer, silence_modal};
use crate::slack::cards::{CardOptions, render_card_with, render_dm, render_reply, status_line};
use crate::slack::template::RouteTemplates;

/// The user who acted and the configured escalation targets: the only ids
/// ackbar may mention.
const ACTOR: &str = "U0ACTOR01";
const NOTIFY_USER: &str = "U0ONCALL1";
const NOTIFY_GROUP: &str = "S0SRETEAM";

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
}

/// Text built to ping: every mention form Slack knows, in and out of
/// brackets, with pre-escaped entities, control and bidi characters
/// around them, and ordinary text.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<!channel>"),
        Just("<!here>"),
        Just("<!everyone>"),
        Just("<!here|here>"),
        Just("<@U0VICTIM1>"),
        Just("<@W0VICTIM1|victim>"),
        Just("<!subteam^S0VICTIM|@team>"),
        Just("<#C0VICTIM1>"),
        Just("<!date^1^{date}|x>"),
        Just("@channel"),
        Just("@HERE"),
        Just("@everyone"),
        Just("@victim"),
        Just("&lt;!channel&gt;"),
        Just("&#60;!here&#62;"),
        Just("<https://evil.example|<!channel>>"),
        Just("<"),
        Just(">"),
        Just("|"),
        Just("!"),
        Just("@"),
        Just("\u{202E}"),
        Just("\u{200B}"),
        Just("\u{0}"),
        Just("\n"),
        Just(" "),
        Just("x"),
        Just("`"),
        Just("*"),
    ];
    prop_oneof![
        proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat()),
        ".{0,60}",
    ]
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A card whose every alert-derived text is `evil`.
fn evil_view(evil: &str, key: &str, state: CardState, acked_by: &str) -> CardView {
    let alert = |i: u64, status| CardAlert {
        fingerprint: Fingerprint(i),
        status,
        labels: labels(&[
            ("alertname", evil),
            ("severity", "critical"),
            ("instance", evil),
            (key, evil),
        ]),
        annotations: labels(&[
            ("summary", evil),
            ("description", evil),
            ("runbook_url", evil),
            ("dashboard", evil),
        ]),
        starts_at: t(0),
        ends_at: None,
        generator_url: Some(evil.to_owned()),
        occurrences: Some(Occurrences {
            count: 3,
            last_seen: t(5),
        }),
    };
    CardView {
        id: CardId("0123456789abcdef0123456789abcdef".into()),
        key: evil.to_owned(),
        route: evil.to_owned(),
        channel: "C0123ABCD".into(),
        state,
        opened_at: t(0),
        resolved_at: (state == CardState::Resolved).then(|| t(50)),
        group_labels: labels(&[("alertname", evil), (key, evil)]),
        common_labels: labels(&[("alertname", evil), ("severity", evil), (key, evil)]),
        common_annotations: labels(&[
            ("summary", evil),
            ("description", evil),
            ("runbook_url", evil),
        ]),
        external_url: Some(evil.to_owned()),
        key_labels: vec![key.to_owned(), "instance".into(), "severity".into()],
        alerts: vec![
            alert(1, AlertStatus::Firing),
            alert(2, AlertStatus::Resolved),
        ],
        firing_count: 1,
        resolved_count: 1,
        acknowledged: Some(Acknowledgement {
            by: acked_by.to_owned(),
            at: t(3),
        }),
        escalation_level: 2,
        manual_resolve: true,
    }
}

/// Every thread event, with `evil` wherever a payload or a source can put
/// text and as the "user" of half of them.
fn evil_events(evil: &str) -> Vec<ThreadEvent> {
    vec![
        ThreadEvent::AlertFiring {
            fingerprint: evil.to_owned(),
            name: evil.to_owned(),
            summary: Some(evil.to_owned()),
            details: Some(evil.to_owned()),
            at: t(0),
        },
        ThreadEvent::AlertResolved {
            fingerprint: evil.to_owned(),
            name: evil.to_owned(),
            at: t(1),
        },
        ThreadEvent::CardResolved {
            at: t(2),
            duration_secs: 2,
        },
        ThreadEvent::CardReopened { at: t(3) },
        ThreadEvent::Acknowledged {
            by: ACTOR.to_owned(),
            at: t(4),
        },
        ThreadEvent::Unacknowledged {
            by: evil.to_owned(),
            at: t(5),
        },
        ThreadEvent::Escalated {
            level: 1,
            notify: vec![
                NOTIFY_USER.to_owned(),
                NOTIFY_GROUP.to_owned(),
                evil.to_owned(),
            ],
            by: Some(evil.to_owned()),
            at: t(6),
        },
        ThreadEvent::Escalated {
            level: 2,
            notify: Vec::new(),
            by: None,
            at: t(7),
        },
        ThreadEvent::StatusAsked {
            by: evil.to_owned(),
            at: t(8),
        },
        ThreadEvent::ResolvedBy {
            by: ACTOR.to_owned(),
            at: t(9),
            duration_secs: 9,
        },
        ThreadEvent::Silenced {
            by: evil.to_owned(),
            until: t(3600),
            silence_id: evil.to_owned(),
            comment: Some(evil.to_owned()),
            at: t(10),
        },
    ]
}

/// Every string Slack shows from a rendered message or view: all string
/// values except ids, values and URLs of elements, and metadata, which
/// Slack does not parse or display as text.
fn shown_texts(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| shown_texts(v, out)),
        Value::Object(map) => {
            for (key, v) in map {
                let not_shown = matches!(
                    key.as_str(),
                    "metadata"
                        | "action_id"
                        | "block_id"
                        | "callback_id"
                        | "private_metadata"
                        | "value"
                        | "url"
                        | "type"
                );
                if !not_shown {
                    shown_texts(v, out);
                }
            }
        }
        _ => {}
    }
}

/// The mentions Slack would find in `text`: `<@…>`, `<!…>` (except date
/// tokens) and `<#…>` tokens (`<` then a zero-width space is none), and `@word`s that `link_names` or
/// non-verbatim parsing could turn into one. Link tokens (`<http…>`) are
/// links, not mentions.
fn mentions(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    let mut outside = String::new();
    while let Some(open) = rest.find('<') {
        outside.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            outside.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let token = &after[..close];
        if let Some(inner) = token.rfind('<') {
            // `<a<b>`: Slack reads the innermost token; look at that one.
            // What came before it (`rest[..open]`) is already in `outside`.
            outside.push_str(&rest[open..open + 1 + inner]);
            rest = &rest[open + 1 + inner..];
            continue;
        }
        let target = token.split('|').next().unwrap_or(token);
        let is_link = target.starts_with("http://") || target.starts_with("https://");
        let is_token = target.starts_with(['@', '!', '#']);
        if is_link || is_token {
            if is_token && !target.starts_with("!date^") {
                found.push(format!("<{target}>"));
            }
            outside.push(' ');
        } else {
            // Not a token Slack parses: it shows as the text it is.
            outside.push_str(&rest[open..open + 2 + close]);
        }
        rest = &after[close + 1..];
    }
    outside.push_str(rest);
    let chars: Vec<char> = outside.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let word_start = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let wordy_next = chars
            .get(i + 1)
            .is_some_and(|n| n.is_alphanumeric() || *n == '_');
        if c == '@' && word_start && wordy_next {
            let word: String = chars[i..]
                .iter()
                .take_while(|c| **c == '@' || c.is_alphanumeric() || **c == '_')
                .collect();
            found.push(word);
        }
    }
    found
}

/// Panics (with the offending text) unless every mention in `value` is
/// one ackbar means.
fn assert_only_intended_mentions(what: &str, value: &Value) -> Result<(), TestCaseError> {
    let allowed = [
        format!("<@{ACTOR}>"),
        format!("<@{NOTIFY_USER}>"),
        format!("<!subteam^{NOTIFY_GROUP}>"),
    ];
    let mut texts = Vec::new();
    shown_texts(value, &mut texts);
    for text in texts {
        for mention in mentions(&text) {
            prop_assert!(
                allowed.contains(&mention),
                "{what}: unintended mention {mention:?} in {text:?}"
            );
        }
    }
    Ok(())
}

/// `examples/templates/`'s card and reply templates, compiled.
fn example_templates() -> std::sync::Arc<RouteTemplates> {
    let config = serde_json::json!({"routes": [{"name": "t", "channel": "C0ALERTS01", "template": {
        "card": {"file": "examples/templates/card.json.j2"},
        "reply": {"file": "examples/templates/reply.json.j2"},
    }}]});
    let config = Config::from_json_in(
        &config.to_string(),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
    )
    .expect("the example templates compile");
    let template = config.routes[0].template.as_ref();
    template.and_then(|t| t.compiled.clone()).expect("compiled")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn rendered_text_mentions_only_the_actor_and_configured_targets(
        evil in hostile(),
        key in hostile(),
        resolved in any::<bool>(),
        silence in any::<bool>(),
    ) {
        let state = if resolved { CardState::Resolved } else { CardState::Firing };
        let now = t(120);
        for acked_by in [ACTOR, evil.as_str()] {
            let view = evil_view(&evil, &key, state, acked_by);
            let card = render_card_with(&view, now, CardOptions { silence });
            assert_only_intended_mentions("card", &serde_json::to_value(&card)?)?;
            let events = evil_events(&evil);
            let reply = render_reply(&view, &events, now);
            assert_only_intended_mentions("reply", &serde_json::to_value(&reply)?)?;
            for permalink in [evil.as_str(), "https://acme.slack.com/archives/C1/p1"] {
                let dm = render_dm(&view, &events, permalink, now);
                assert_only_intended_mentions("dm", &serde_json::to_value(&dm)?)?;
            }
            // The shipped example templates, rendered from the same text.
            let templates = example_templates();
            let default_card = render_card_with(&view, now, CardOptions { silence });
            let card = templates.render_card(&view, now, &default_card);
            prop_assert!(card.is_ok(), "example card template failed: {card:?}");
            assert_only_intended_mentions("templated card", &serde_json::to_value(card.ok())?)?;
            let reply = templates.render_reply(&view, &events, now, &render_reply(&view, &events, now));
            prop_assert!(reply.is_ok(), "example reply template failed: {reply:?}");
            assert_only_intended_mentions("templated reply", &serde_json::to_value(reply.ok())?)?;
            let status = Value::String(status_line(&view, now));
            assert_only_intended_mentions("status line", &status)?;
            let matchers = [SilenceMatcher::equal(&key, &evil)];
            assert_only_intended_mentions("silence modal", &silence_modal(&view, &matchers))?;
        }
        let errors = errors_answer(&[
            SilenceError::InvalidDuration(evil.clone()),
            SilenceError::Refused(evil.clone()),
            SilenceError::NotAllowed(evil.clone()),
        ]);
        assert_only_intended_mentions("silence modal errors", &errors)?;
    }
}

/// Guards the property above: the finder sees what Slack would parse, and
/// not what it would not.
#[test]
fn the_mention_finder_finds_what_slack_would_parse() {
    for (text, expected) in [
        ("<!channel> hi", vec!["<!channel>"]),
        ("a <!here|here> b", vec!["<!here>"]),
        (
            "<@U0VICTIM1> and <!subteam^S1|@team>",
            vec!["<@U0VICTIM1>", "<!subteam^S1>"],
        ),
        ("<#C0VICTIM1>", vec!["<#C0VICTIM1>"]),
        ("<https://x.io|<!channel>>", vec!["<!channel>"]),
        (
            "@channel, (@here) @everyone",
            vec!["@channel", "@here", "@everyone"],
        ),
        ("@victim", vec!["@victim"]),
        ("<https://x.io/@here|docs> <!date^1^{time}|1:00>", vec![]),
        ("mail bob@example.com", vec![]),
        ("@\u{200B}channel &lt;!here&gt;", vec![]),
        ("<", vec![]),
        ("<\u{200B}!channel> <\u{200B}@\u{200B}U1>", vec![]),
        ("@<\u{200B}!channel>x", vec![]),
    ] {
        assert_eq!(mentions(text), expected, "{text:?}");
    }
}
