//! Rendering route templates: output, escaping of alert text, fuel, the
//! fallback to the default card, compile errors and the sample check.

use chrono::Utc;
use serde_json::{Value, json};

use super::*;
use crate::config::Config;
use crate::slack::cards::{ACK_ACTION_ID, METADATA_EVENT_TYPE};

/// The first route of a config whose route has `template`; files relative
/// to the crate's root.
fn route_with(template: Value) -> RouteConfig {
    let config = json!({"routes": [{"name": "db", "channel": "C0DBPAGES1", "template": template}]});
    Config::from_json_in(&config.to_string(), Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .routes
        .remove(0)
}

fn inline_card(text: &str) -> RouteConfig {
    route_with(json!({"card": {"inline": text}}))
}

fn compile_error(template: Value) -> String {
    let config = json!({"routes": [{"name": "db", "channel": "C0DBPAGES1", "template": template}]});
    Config::from_json(&config.to_string())
        .unwrap_err()
        .to_string()
}

fn view(route: &RouteConfig) -> CardView {
    sample::cards(route, Utc::now()).remove(0).1
}

fn blocks(message: &Message) -> Vec<Value> {
    serde_json::to_value(&message.blocks)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

const SIMPLE: &str = r#"[{"type": "section", "text": {"type": "mrkdwn", "text": {{ "*" ~ title ~ "* in " ~ common_labels.cluster }}}}]"#;

#[test]
fn a_card_template_writes_the_blocks_and_ackbar_appends_its_buttons() {
    let route = inline_card(SIMPLE);
    let view = view(&route);
    let message = card(&view, Utc::now(), Some(&route));
    let blocks = blocks(&message);
    assert_eq!(blocks.len(), 2, "{blocks:#?}");
    assert_eq!(
        blocks[0]["text"]["text"],
        "*KubePodCrashLooping* in prod-eu-1"
    );
    assert_eq!(blocks[1]["type"], "actions");
    assert_eq!(blocks[1]["elements"][0]["action_id"], ACK_ACTION_ID);
    // The default card's fallback text and metadata, so reconciliation
    // still finds a templated card.
    let default = cards::render_card_with(&view, Utc::now(), CardOptions::default());
    assert_eq!(message.text, default.text);
    assert_eq!(
        message.metadata.as_ref().unwrap().event_type,
        METADATA_EVENT_TYPE
    );
    check_limits(&message).unwrap();
}

#[test]
fn an_object_output_sets_the_fallback_text() {
    let route = inline_card(
        r#"{"text": {{ "[" ~ state ~ "] " ~ title }}, "blocks": [{"type": "divider"}]}"#,
    );
    let message = card(&view(&route), Utc::now(), Some(&route));
    assert_eq!(message.text, "[firing] KubePodCrashLooping");
    assert_eq!(blocks(&message)[0]["type"], "divider");
}

#[test]
fn alert_text_cannot_add_blocks_or_mention_anyone() {
    let route = inline_card(SIMPLE);
    let mut view = view(&route);
    view.common_labels.insert(
        "cluster".to_owned(),
        r#"x"}}, {"type": "header", "text": {"type": "plain_text", "text": "pwned"}}, {"a": {"b": "<!channel> @here <@U0BOSS001>"#
            .to_owned(),
    );
    let message = card(&view, Utc::now(), Some(&route));
    let blocks = blocks(&message);
    assert_eq!(
        blocks.len(),
        2,
        "one templated block and the buttons: {blocks:#?}"
    );
    let text = blocks[0]["text"]["text"].as_str().unwrap();
    assert!(text.contains(r#""type": "header""#), "kept as text: {text}");
    assert!(!text.contains('<'), "no mention token can form: {text}");
    assert!(text.contains("@\u{200b}here"), "{text}");
}

#[test]
fn a_template_that_runs_out_of_fuel_falls_back_to_the_default_card() {
    let route = inline_card(
        r#"[{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}]"#,
    );
    let view = view(&route);
    let now = Utc::now();
    let templates = route.template.as_ref().unwrap().compiled.as_ref().unwrap();
    let default = cards::render_card_with(&view, now, CardOptions::default());
    let err = templates.render_card(&view, now, &default).unwrap_err();
    assert!(err.to_string().contains("fuel"), "{err}");
    assert_eq!(card(&view, now, Some(&route)), default);
}

#[test]
fn output_that_breaks_a_limit_for_some_data_falls_back() {
    // Fine for short titles; a header over 150 chars for long ones.
    let route =
        inline_card(r#"[{"type": "header", "text": {"type": "plain_text", "text": {{ title }}}}]"#);
    let now = Utc::now();
    let mut view = view(&route);
    assert_eq!(blocks(&card(&view, now, Some(&route)))[0]["type"], "header");
    view.common_labels
        .insert("alertname".to_owned(), "A".repeat(200));
    let default = cards::render_card_with(&view, now, CardOptions::default());
    assert_eq!(card(&view, now, Some(&route)), default);
}

#[test]
fn output_that_is_not_blocks_falls_back() {
    let now = Utc::now();
    for output in [
        "not json",
        r#"{"text": "no blocks"}"#,
        r#"{"blocks": [], "extra": 1}"#,
        r#"[{"type": "marquee"}]"#,
        r#""a string""#,
    ] {
        let route = inline_card(output);
        let view = view(&route);
        let default = cards::render_card_with(&view, now, CardOptions::default());
        assert_eq!(card(&view, now, Some(&route)), default, "{output}");
    }
}

#[test]
fn a_syntax_error_names_the_route_the_file_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("card.json.j2");
    std::fs::write(&file, "[\n{\"type\": \"divider\"}\n{% if x %}\n]").unwrap();
    let err = compile_error(json!({"card": {"file": file}}));
    assert!(err.starts_with("routes[0].template.card: "), "{err}");
    assert!(err.contains("route \"db\""), "{err}");
    assert!(err.contains("syntax error"), "{err}");
    assert!(err.contains("card.json.j2:3)"), "{err}");

    let err = compile_error(json!({"reply": {"inline": "{{ unclosed"}}));
    assert!(err.starts_with("routes[0].template.reply: "), "{err}");
    assert!(err.contains("inline reply template:1"), "{err}");

    let err = compile_error(json!({"card": {"file": "/nonexistent/card.j2"}}));
    assert!(
        err.contains("cannot read template file /nonexistent/card.j2"),
        "{err}"
    );
}

#[test]
fn files_are_read_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("card.json.j2"), SIMPLE).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"routes": [{"name": "db", "channel": "C0DBPAGES1",
            "template": {"card": {"file": "card.json.j2"}}}]})
        .to_string(),
    )
    .unwrap();
    let route = Config::load(&config).unwrap().routes.remove(0);
    let templates = route.template.as_ref().unwrap().compiled.as_ref().unwrap();
    assert!(templates.has(TemplateKind::Card));
    assert!(!templates.has(TemplateKind::Reply));
}

#[test]
fn the_shipped_examples_pass_the_sample_check() {
    let route = route_with(json!({
        "card": {"file": "examples/templates/card.json.j2"},
        "reply": {"file": "examples/templates/reply.json.j2"},
    }));
    assert_eq!(sample::check(&route, Utc::now()), Vec::<String>::new());
}

#[test]
fn the_sample_check_finds_text_that_breaks_a_limit_only_with_long_labels() {
    let route = inline_card(SIMPLE);
    let now = Utc::now();
    // Fine on an ordinary card...
    assert_eq!(
        blocks(&card(&view(&route), now, Some(&route)))[0]["type"],
        "section"
    );
    // ...but a 3,100-char cluster label makes the section too long.
    let problems = sample::check(&route, now);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("card \"at limits\": message breaks a Block Kit limit"),
        "{problems:?}"
    );
    assert!(problems[0].contains("/blocks/0/text/text"), "{problems:?}");
}

#[test]
fn a_reply_template_sees_the_events_and_mentions_by_id() {
    let route = route_with(json!({"reply": {"inline":
        r#"[{% for e in events %}{% if not loop.first %},{% endif %}{"type": "section", "text": {"type": "mrkdwn", "text": {{ e.kind ~ " " ~ (e.by | mention if e.by else e.name) }}}}{% endfor %}]"#
    }}));
    let now = Utc::now();
    let view = view(&route);
    let events = vec![
        ThreadEvent::Acknowledged {
            by: "U0SAMPLE01".to_owned(),
            at: now,
        },
        ThreadEvent::Acknowledged {
            by: "<!channel>".to_owned(),
            at: now,
        },
        ThreadEvent::AlertResolved {
            fingerprint: "1".to_owned(),
            name: "Disk @here".to_owned(),
            at: now,
        },
    ];
    let message = reply(&view, &events, now, Some(&route));
    let texts: Vec<Value> = blocks(&message)
        .iter()
        .map(|b| b["text"]["text"].clone())
        .collect();
    assert_eq!(
        texts,
        vec![
            json!("acknowledged <@U0SAMPLE01>"),
            json!("acknowledged &lt;!channel&gt;"),
            json!("alert_resolved Disk @\u{200b}here"),
        ]
    );
    assert_eq!(message.text, cards::render_reply(&view, &events, now).text);
}

#[test]
fn plain_shows_text_unescaped_with_mentions_still_broken() {
    let route = inline_card(
        r#"[{"type": "header", "text": {"type": "plain_text", "text": {{ title | plain }}}}]"#,
    );
    let mut view = view(&route);
    view.common_labels
        .insert("alertname".to_owned(), "A & B <!here>".to_owned());
    let header = blocks(&card(&view, Utc::now(), Some(&route)))[0]["text"]["text"].clone();
    let header = header.as_str().unwrap();
    assert!(header.starts_with("A & B <"), "{header}");
    assert!(!header.contains("<!here"), "{header}");
}

#[test]
fn a_route_without_a_template_gets_the_default() {
    let route = route_with(json!({"reply": {"inline": "[]"}}));
    let view = view(&route);
    let now = Utc::now();
    assert_eq!(
        card(&view, now, Some(&route)),
        cards::render_card_with(&view, now, CardOptions::default())
    );
    assert_eq!(
        card(&view, now, None),
        cards::render_card_with(&view, now, CardOptions::default())
    );
}

#[test]
fn a_failing_reply_template_falls_back_to_the_default_reply() {
    let route = route_with(json!({"reply": {"inline": "[{{ events[0].nope.deeper }}]"}}));
    let view = view(&route);
    let now = Utc::now();
    let events = vec![ThreadEvent::CardReopened { at: now }];
    assert_eq!(
        reply(&view, &events, now, Some(&route)),
        cards::render_reply(&view, &events, now)
    );
}
