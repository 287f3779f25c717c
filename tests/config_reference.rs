//! The README's configuration reference is checked against the config types,
//! so that neither can drift from the other.
//!
//! The keys come from the types themselves: every config struct denies
//! unknown fields, and serde's refusal of one names all the fields the
//! struct has. Probing each path with an unknown key therefore walks the
//! whole tree of keys, including ones added later, without a list kept by
//! hand.

use std::collections::BTreeSet;

use ackbar::config::Config;
use serde_json::{Value, json};

const PROBE: &str = "__probe__";

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Key(String),
    /// Any element of a list.
    Item,
}

fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Item => out.push_str("[]"),
        }
    }
    out
}

/// A config with `inner` at `path`.
fn nest(path: &[Segment], inner: Value) -> Value {
    path.iter()
        .rev()
        .fold(inner, |value, segment| match segment {
            Segment::Key(key) => json!({ key: value }),
            Segment::Item => json!([value]),
        })
}

fn error_at(path: &[Segment], inner: Value) -> String {
    match Config::from_json(&nest(path, inner).to_string()) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

/// The field names serde lists after refusing the probe key.
fn listed_fields(error: &str) -> Option<Vec<String>> {
    let rest = error.split(&format!("unknown field `{PROBE}`")).nth(1)?;
    Some(
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// The key paths of the config: every path (`all`), and the leaves, which
/// hold values rather than further keys.
#[derive(Default)]
struct Keys {
    all: BTreeSet<String>,
    leaves: BTreeSet<String>,
}

/// Structs contribute their fields, lists of structs their element's fields
/// under `[]`; anything else is a leaf.
fn walk(path: Vec<Segment>, keys: &mut Keys) {
    keys.all.insert(render(&path));
    if let Some(fields) = listed_fields(&error_at(&path, json!({ PROBE: 0 }))) {
        for field in fields {
            let mut child = path.clone();
            child.push(Segment::Key(field));
            walk(child, keys);
        }
        return;
    }
    let mut item = path.clone();
    item.push(Segment::Item);
    if listed_fields(&error_at(&item, json!({ PROBE: 0 }))).is_some() {
        walk(item, keys);
        return;
    }
    keys.leaves.insert(render(&path));
}

fn config_keys() -> Keys {
    let mut keys = Keys::default();
    walk(Vec::new(), &mut keys);
    keys.all.remove("");
    keys
}

/// One row of the README's reference table: the keys it names (its first
/// cell, with `a.{b,c}` expanded) and its whole text.
struct Row {
    keys: Vec<String>,
    text: String,
}

fn readme_rows() -> Vec<Row> {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Configuration reference")
        .nth(1)
        .expect("the README has a configuration reference");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let first = line.split(" | ").next().unwrap();
            let keys = first
                .split('`')
                .skip(1)
                .step_by(2)
                .flat_map(expand_braces)
                .collect();
            Row {
                keys,
                text: line.to_owned(),
            }
        })
        .collect()
}

fn expand_braces(key: &str) -> Vec<String> {
    match (key.find('{'), key.find('}')) {
        (Some(open), Some(close)) if open < close => key[open + 1..close]
            .split(',')
            .map(|part| format!("{}{}{}", &key[..open], part.trim(), &key[close + 1..]))
            .collect(),
        _ => vec![key.to_owned()],
    }
}

/// A key is documented by a row naming it, or by a row naming one of its
/// ancestors whose text mentions every field name below that ancestor (as
/// the `oncall[]` row spells out its objects).
fn documented(key: &str, rows: &[Row]) -> bool {
    rows.iter().any(|row| {
        row.keys.iter().any(|named| {
            let named = named.trim_end_matches("[]");
            if key == named || key.trim_end_matches("[]") == named {
                return true;
            }
            let Some(below) = key.strip_prefix(named) else {
                return false;
            };
            if !(below.starts_with('.') || below.starts_with("[].")) {
                return false;
            }
            below
                .split(['.', '[', ']'])
                .filter(|name| !name.is_empty())
                .all(|name| row.text.contains(name))
        })
    })
}

#[test]
fn the_probe_finds_nested_keys() {
    let keys = config_keys().all;
    for key in [
        "listen",
        "store.url",
        "slack.socket_mode.ping_interval",
        "routes[].name",
        "routes[].escalation[].after",
        "oncall[].members",
    ] {
        assert!(keys.contains(key), "{key} not found in {keys:#?}");
    }
}

#[test]
fn every_config_key_is_in_the_readme_reference() {
    let rows = readme_rows();
    let missing: Vec<_> = config_keys()
        .leaves
        .into_iter()
        .filter(|key| !documented(key, &rows))
        .collect();
    assert!(
        missing.is_empty(),
        "config keys missing from the README's configuration reference: {missing:#?}"
    );
}

#[test]
fn every_key_in_the_readme_reference_exists() {
    let keys = config_keys().all;
    let unknown: Vec<_> = readme_rows()
        .into_iter()
        .flat_map(|row| row.keys)
        .filter(|key| !keys.contains(key) && !keys.contains(key.trim_end_matches("[]")))
        .collect();
    assert!(
        unknown.is_empty(),
        "the README documents keys the config does not have: {unknown:#?}"
    );
}

/// The keys a JSON document sets, in the same notation.
fn set_keys(value: &Value, path: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                out.insert(child.clone());
                set_keys(value, &child, out);
            }
        }
        Value::Array(items) => {
            for item in items.iter().filter(|item| item.is_object()) {
                set_keys(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// Keys `config.example.json` leaves out so that it runs as-is: a bot or
/// app token, or OAuth installs (and the routes' workspaces, which need
/// them), leave sandbox mode, a signing secret is the sandbox's own, and
/// ingest authentication would refuse the README's unauthenticated examples.
/// A route's `webhook_url` is a secret too, and would take its route's cards
/// out of the sandbox's bot-token view.
const NOT_IN_THE_EXAMPLE: &[&str] = &[
    "slack.bot_token",
    "slack.app_token",
    "slack.signing_secret",
    "slack.oauth.client_id",
    "slack.oauth.client_secret",
    "slack.oauth.scopes",
    "slack.oauth.authorize_url",
    "slack.oauth.state_ttl",
    "routes[].team",
    "ingest.auth",
    "routes[].webhook_url",
];

#[test]
fn the_example_config_sets_every_key() {
    let example: Value =
        serde_json::from_str(include_str!("../config.example.json")).expect("valid JSON");
    let mut set = BTreeSet::new();
    set_keys(&example, "", &mut set);
    let unset: Vec<_> = config_keys()
        .leaves
        .into_iter()
        .filter(|key| !set.contains(key) && !NOT_IN_THE_EXAMPLE.contains(&key.as_str()))
        .collect();
    assert!(
        unset.is_empty(),
        "config.example.json does not set: {unset:#?}"
    );
}
