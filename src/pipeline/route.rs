//! Routes and Alertmanager-style label matchers.
//!
//! A [`Router`] holds the configured routes in order; an alert goes to the
//! first route whose matchers all match its labels. [`card_key`] then says
//! which card of that route the alert belongs to.
//!
//! Matchers use Alertmanager's syntax and semantics (its `pkg/labels`
//! `ParseMatcher`, 0.25): `name=value`, `name!=value`, `name=~regex`,
//! `name!~regex`; a missing label matches as the empty string; regexes are
//! anchored at both ends.

use std::fmt;
use std::str::FromStr;

use regex::Regex;

use crate::config::RouteConfig;
use crate::model::{Alert, Labels, Notification, Source};

/// The four matcher operators, as in Alertmanager and PromQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: the label's value equals the matcher's value.
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`: the whole value matches the regex.
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every matcher parse error ends with.
const EXPECTED_FORM: &str = "expected name=value, name!=value, name=~regex or name!~regex, \
     the value optionally in double quotes (e.g. severity=~\"critical|page\")";

/// Longest compiled regex program, in bytes. Config is trusted, but a typo
/// like `.{1000}{1000}` should be an error at load time, not an OOM.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// One label matcher: `name=value`, `name!=value`, `name=~regex`, `name!~regex`.
///
/// Parsed with [`FromStr`] from Alertmanager's matcher syntax:
/// * whitespace around the name, the operator and the value is ignored;
/// * the name is a classic Prometheus label name, `[a-zA-Z_:][a-zA-Z0-9_:]*`
///   (the colon as Alertmanager's parser allows it); UTF-8 names, which
///   Alertmanager 0.27 accepts behind a feature flag, are not supported;
/// * the value may be wrapped in double quotes; inside it (quoted or not)
///   `\"`, `\\` and `\n` are escapes, any other backslash is literal, and an
///   unescaped `"` other than the wrapping pair is an error;
/// * a regex must match the whole label value: `=~"a|b"` is compiled as
///   `^(?:a|b)$`, like Alertmanager does.
///
/// [`Display`](fmt::Display) prints `name<op>"value"` (value escaped), which
/// parses back to an equal matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    /// The anchored regex, for `Regex`/`NotRegex`; compiled once, at parse.
    regex: Option<Regex>,
}

impl Matcher {
    /// A matcher from its parts (the value unescaped); fails only for an
    /// invalid label name or regex.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        if !is_label_name(name) {
            return Err(format!(
                "invalid label name {:?} in matcher: a name is a letter, _ or : followed by letters, digits, _ or :",
                shorten(name)
            ));
        }
        let regex = match op {
            MatchOp::Equal | MatchOp::NotEqual => None,
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(MAX_REGEX_BYTES)
                    .build()
                    // The regex crate's message quotes the whole pattern.
                    .map_err(|e| {
                        format!(
                            "invalid regex {:?}: {}",
                            shorten(value),
                            cut(&e.to_string(), 400)
                        )
                    })?,
            ),
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value (unescaped), or the regex as written (not anchored).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Alertmanager semantics: a missing label is the empty string, so
    /// `foo=""` matches an alert without `foo`, `foo!=""` requires it, and
    /// `foo=~".*"` matches either way.
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (&self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            // `new` compiles a regex for every regex operator.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

/// Equal when name, operator and value are: the regex follows from them.
impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl FromStr for Matcher {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail =
            |what: &str| format!("invalid matcher {:?}: {what}; {EXPECTED_FORM}", shorten(s));
        let rest = s.trim_ascii_start();
        let name_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b':')
            .count();
        let (name, rest) = rest.split_at(name_len);
        if name.is_empty() {
            return Err(fail("it does not start with a label name"));
        }
        if !is_label_name(name) {
            return Err(fail(&format!(
                "label name {:?} starts with a digit",
                shorten(name)
            )));
        }
        let rest = rest.trim_ascii_start();
        // `=~` before `=`, or the `~` would become part of the value.
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Regex, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Equal, r)
        } else if rest.is_empty() {
            return Err(fail(&format!(
                "no operator after the label name {:?}",
                shorten(name)
            )));
        } else {
            return Err(fail(&format!(
                "expected an operator (=, !=, =~ or !~) after {:?}, found {:?}",
                shorten(name),
                shorten(rest)
            )));
        };
        let value = unescape(rest.trim_ascii()).map_err(&fail)?;
        Matcher::new(name, op, &value).map_err(|e| fail(&e))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"", self.name, self.op)?;
        for c in self.value.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// The value token (already trimmed): optional wrapping quotes, escapes
/// `\"`, `\\`, `\n`; other backslashes literal, as in Alertmanager.
fn unescape(raw: &str) -> Result<String, &'static str> {
    let (body, quoted) = match raw.strip_prefix('"') {
        Some(inner) => (inner, true),
        None => (raw, false),
    };
    let mut out = String::with_capacity(body.len());
    let mut closed = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if closed {
            return Err(
                "text after the closing double quote (escape a quote inside the value as \\\")",
            );
        }
        match c {
            '\\' => match chars.peek() {
                Some('n') => {
                    out.push('\n');
                    chars.next();
                }
                Some(&e @ ('"' | '\\')) => {
                    out.push(e);
                    chars.next();
                }
                // A lone backslash stands for itself (regexes need them).
                _ => out.push('\\'),
            },
            '"' if quoted => closed = true,
            '"' => {
                return Err(
                    "unescaped double quote in the value (write \\\" or quote the whole value)",
                );
            }
            c => out.push(c),
        }
    }
    if quoted && !closed {
        return Err("the value has no closing double quote");
    }
    Ok(out)
}

/// At most 80 characters of `s`, for error messages.
fn shorten(s: &str) -> String {
    cut(s, 80)
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

/// The configured routes, in order.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<RouteConfig>,
}

impl Router {
    pub fn new(routes: Vec<RouteConfig>) -> Router {
        Router { routes }
    }

    /// The first route whose matchers all match `labels` (a route without
    /// matchers matches everything); `None` when no route does.
    pub fn route(&self, labels: &Labels) -> Option<&RouteConfig> {
        self.routes
            .iter()
            .find(|r| r.matchers.iter().all(|m| m.matches(labels)))
    }

    pub fn routes(&self) -> &[RouteConfig] {
        &self.routes
    }

    pub fn by_name(&self, name: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| r.name == name)
    }
}

/// Separates the parts of a card key.
const KEY_SEPARATOR: char = '\x1f';
/// Escapes a separator or itself inside a part of a card key.
const KEY_ESCAPE: char = '\x1e';

/// Whether [`card_key`] looks at the alert at all: not for an Alertmanager
/// notification on a route without `group_by`, whose alerts all share the
/// notification's key.
pub fn key_depends_on_alert(route: &RouteConfig, notification: &Notification) -> bool {
    !route.group_by.is_empty() || !matches!(notification.source, Source::Alertmanager { .. })
}

/// The identity of the card an alert belongs to, within the store.
///
/// Parts joined by the unit separator `\x1f`:
/// * route without `group_by`: `route \x1f receiver \x1f groupKey`, so that
///   Alertmanager's own grouping (its notification groups) decides the cards;
/// * route with `group_by`: `route \x1f name=value \x1f name=value ...`, one
///   part per `group_by` label in the configured order, a missing label
///   written with an empty value (as Alertmanager's matchers see it).
///
/// Unambiguous: inside a part, `\x1e` is written `\x1e\x1e` and `\x1f` is
/// written `\x1e\x1f`, so no two different inputs give the same key (the
/// route name fixes which `group_by` names follow). Text without those two
/// control characters is copied unchanged. Stored keys depend on this
/// format: changing it splits existing cards.
pub fn card_key(route: &RouteConfig, notification: &Notification, alert: &Alert) -> String {
    let mut key = String::with_capacity(64);
    push_part(&mut key, &route.name);
    if route.group_by.is_empty() {
        match &notification.source {
            Source::Alertmanager {
                receiver,
                group_key,
                ..
            } => {
                key.push(KEY_SEPARATOR);
                push_part(&mut key, receiver);
                key.push(KEY_SEPARATOR);
                push_part(&mut key, group_key);
            }
            // Event sources have no groups of their own: each distinct
            // alert (a callsite and message, a service's failing span) is
            // its own card, and its repeats count on it.
            Source::Otlp { .. } | Source::Tracing => {
                key.push(KEY_SEPARATOR);
                key.push_str("fp=");
                key.push_str(&alert.fingerprint.to_string());
            }
        }
    } else {
        for name in &route.group_by {
            key.push(KEY_SEPARATOR);
            push_part(&mut key, name);
            key.push('=');
            push_part(&mut key, alert.labels.get(name).map_or("", String::as_str));
        }
    }
    key
}

fn push_part(key: &mut String, part: &str) {
    if !part.contains([KEY_SEPARATOR, KEY_ESCAPE]) {
        key.push_str(part);
        return;
    }
    for c in part.chars() {
        if c == KEY_SEPARATOR || c == KEY_ESCAPE {
            key.push(KEY_ESCAPE);
        }
        key.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CardConfig, Config, ReplyConfig};
    use crate::model::{AlertStatus, Fingerprint};
    use proptest::prelude::*;
    use std::time::Duration;

    fn m(s: &str) -> Matcher {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn route(name: &str, matchers: &[&str], group_by: &[&str]) -> RouteConfig {
        RouteConfig {
            name: name.to_owned(),
            matchers: matchers.iter().map(|s| m(s)).collect(),
            channel: "C0ALERTS01".to_owned(),
            team: None,
            group_by: group_by.iter().map(|s| s.to_string()).collect(),
            reopen_window: Duration::from_secs(3600),
            quiet_period: Duration::from_secs(1800),
            replies: ReplyConfig::default(),
            card: CardConfig::default(),
            escalation: Vec::new(),
            allowed: Default::default(),
            alertmanager_url: None,
            template: None,
            webhook_url: None,
        }
    }

    fn notification(receiver: &str, group_key: &str) -> Notification {
        Notification {
            source: Source::Alertmanager {
                receiver: receiver.to_owned(),
                group_key: group_key.to_owned(),
                external_url: None,
            },
            group_labels: Labels::new(),
            common_labels: Labels::new(),
            common_annotations: Labels::new(),
            alerts: Vec::new(),
            truncated_alerts: 0,
        }
    }

    fn alert(pairs: &[(&str, &str)]) -> Alert {
        Alert {
            fingerprint: Fingerprint(1),
            status: AlertStatus::Firing,
            labels: labels(pairs),
            annotations: Labels::new(),
            starts_at: chrono::DateTime::UNIX_EPOCH,
            ends_at: None,
            generator_url: None,
            occurrences: None,
        }
    }

    #[test]
    fn parses_alertmanager_matcher_syntax() {
        let cases: &[(&str, &str, MatchOp, &str)] = &[
            ("foo=bar", "foo", MatchOp::Equal, "bar"),
            ("foo!=bar", "foo", MatchOp::NotEqual, "bar"),
            ("foo=~bar.*", "foo", MatchOp::Regex, "bar.*"),
            ("foo!~bar.*", "foo", MatchOp::NotRegex, "bar.*"),
            ("  foo  =  bar  ", "foo", MatchOp::Equal, "bar"),
            ("foo = \"  spaced  \"", "foo", MatchOp::Equal, "  spaced  "),
            ("foo=", "foo", MatchOp::Equal, ""),
            ("foo=\"\"", "foo", MatchOp::Equal, ""),
            ("foo==bar", "foo", MatchOp::Equal, "=bar"),
            (
                "foo=~bar=baz!=bad!~br",
                "foo",
                MatchOp::Regex,
                "bar=baz!=bad!~br",
            ),
            (
                r#"foo="quote \"x\" back\\slash new\nline""#,
                "foo",
                MatchOp::Equal,
                "quote \"x\" back\\slash new\nline",
            ),
            (r"foo=bar\n", "foo", MatchOp::Equal, "bar\n"),
            (r"foo=bar\", "foo", MatchOp::Equal, "bar\\"),
            (r"foo=bar\\", "foo", MatchOp::Equal, "bar\\"),
            (r#"foo=bar\""#, "foo", MatchOp::Equal, "bar\""),
            (r"foo=~\d+\.\d+", "foo", MatchOp::Regex, r"\d+\.\d+"),
            ("_private:name=x", "_private:name", MatchOp::Equal, "x"),
            (
                "foo=caf\u{e9} \u{1f525}",
                "foo",
                MatchOp::Equal,
                "caf\u{e9} \u{1f525}",
            ),
        ];
        for (input, name, op, value) in cases {
            let got = m(input);
            assert_eq!(
                (got.name(), got.op(), got.value()),
                (*name, *op, *value),
                "{input:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_matchers_with_the_expected_form() {
        let cases: &[(&str, &str)] = &[
            ("", "does not start with a label name"),
            ("=bar", "does not start with a label name"),
            ("9foo=bar", "starts with a digit"),
            ("invalid-name = \"valid label\"", "expected an operator"),
            ("foo", "no operator"),
            ("foo ~= bar", "expected an operator"),
            ("job=\"value", "no closing double quote"),
            ("job=value\"", "unescaped double quote"),
            (r#"trickier==\\=\=\"""#, "unescaped double quote"),
            (
                "contains_unescaped_quote = foo\"bar",
                "unescaped double quote",
            ),
            ("foo=\"bar\"baz", "text after the closing double quote"),
            ("foo=~\"invalid[regexp\"", "invalid regex"),
            ("f\u{f6}\u{f6}=bar", "expected an operator"),
        ];
        for (input, why) in cases {
            let err = input.parse::<Matcher>().unwrap_err();
            assert!(err.contains(why), "{input:?}: {err}");
            assert!(
                err.contains("expected name=value, name!=value, name=~regex or name!~regex"),
                "{err}"
            );
        }
        for long in [
            "x".repeat(10_000),
            format!("x=~\"({}\"", "y".repeat(10_000)),
            format!("{}=\"", "x".repeat(10_000)),
        ] {
            let err = long.parse::<Matcher>().unwrap_err();
            assert!(err.len() < 1000, "{} bytes: {err}", err.len());
        }
    }

    #[test]
    fn huge_regex_is_an_error_not_an_allocation() {
        let err = "a=~(((a{100}){100}){100})".parse::<Matcher>().unwrap_err();
        assert!(err.contains("invalid regex"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "foo=bar",
            "foo != \"a \\\"b\\\" \\\\ c\\nd\"",
            "foo=~\"x|y\"",
            "foo!~ \\d+",
            "foo=",
        ] {
            let parsed = m(input);
            let shown = parsed.to_string();
            assert_eq!(m(&shown), parsed, "{input:?} -> {shown:?}");
        }
        assert_eq!(m("foo != bar").to_string(), "foo!=\"bar\"");
        assert_eq!(m(r#"a="q\"\\\n""#).to_string(), r#"a="q\"\\\n""#);
    }

    #[test]
    fn matching_follows_alertmanager() {
        let present = labels(&[("severity", "critical"), ("env", "prod"), ("empty", "")]);
        let cases: &[(&str, bool)] = &[
            ("severity=critical", true),
            ("severity=Critical", false),
            ("severity!=critical", false),
            ("severity!=warning", true),
            ("severity=~crit", false), // anchored: the whole value must match
            ("severity=~crit.*", true),
            ("severity=~\"warning|critical\"", true),
            ("severity=~\"warning|crit\"", false), // ^(?:warning|crit)$, not ^warning|crit$
            ("severity!~\"warning|critical\"", false),
            ("severity!~warn.*", true),
            // A missing label is the empty string.
            ("team=\"\"", true),
            ("team!=\"\"", false),
            ("team=~\".*\"", true),
            ("team=~\".+\"", false),
            ("team!~\".+\"", true),
            ("team=x", false),
            ("team!=x", true),
            // A present-but-empty label is the same as a missing one.
            ("empty=\"\"", true),
            ("empty!=\"\"", false),
            ("env=~\"(?i)PROD\"", true),
        ];
        for (matcher, want) in cases {
            assert_eq!(m(matcher).matches(&present), *want, "{matcher}");
        }
    }

    #[test]
    fn routes_take_the_first_route_whose_matchers_all_match() {
        let router = Router::new(vec![
            route("pages", &["severity=critical", "env=prod"], &[]),
            route("staging", &["env=~\"stag.*\""], &[]),
            route("catch-all", &[], &[]),
            route("never", &["env=prod"], &[]),
        ]);
        let name = |pairs: &[(&str, &str)]| router.route(&labels(pairs)).map(|r| r.name.as_str());
        assert_eq!(
            name(&[("severity", "critical"), ("env", "prod")]),
            Some("pages")
        );
        assert_eq!(
            name(&[("severity", "critical"), ("env", "staging")]),
            Some("staging")
        );
        assert_eq!(
            name(&[("severity", "warning"), ("env", "prod")]),
            Some("catch-all")
        );
        assert_eq!(name(&[]), Some("catch-all"));
        assert_eq!(router.routes().len(), 4);
        assert_eq!(
            router.by_name("staging").map(|r| r.channel.as_str()),
            Some("C0ALERTS01")
        );
        assert!(router.by_name("nope").is_none());
    }

    #[test]
    fn no_route_matches_without_a_catch_all() {
        let router = Router::new(vec![route("pages", &["severity=critical"], &[])]);
        assert!(router.route(&labels(&[("severity", "info")])).is_none());
        assert!(Router::new(Vec::new()).route(&Labels::new()).is_none());
    }

    #[test]
    fn config_matchers_parse_and_errors_name_the_route() {
        let c = Config::from_json(
            r#"{"routes": [{"name": "a", "channel": "C0123ABCD", "matchers": ["severity =~ \"critical|page\""]}]}"#,
        )
        .unwrap();
        let router = Router::new(c.effective_routes());
        assert!(router.route(&labels(&[("severity", "page")])).is_some());
        let err = Config::from_json(
            r#"{"routes": [{"name": "a", "channel": "C0123ABCD", "matchers": ["severity ~ x"]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("routes[0].matchers[0]") && err.contains("expected an operator"),
            "{err}"
        );
    }

    #[test]
    fn card_key_without_group_by_is_route_receiver_and_group_key() {
        let r = route("pages", &[], &[]);
        let n = notification("slack", "{}:{alertname=\"X\"}");
        assert_eq!(
            card_key(&r, &n, &alert(&[("pod", "a")])),
            "pages\x1fslack\x1f{}:{alertname=\"X\"}"
        );
        // Alertmanager's group decides: the alert's own labels do not matter.
        assert_eq!(
            card_key(&r, &n, &alert(&[("pod", "a")])),
            card_key(&r, &n, &alert(&[("pod", "b")]))
        );
    }

    /// The ingest hot path reuses one key for every alert of a notification
    /// when `key_depends_on_alert` says it may: it must say so exactly when
    /// `card_key` gives two different alerts the same key.
    #[test]
    fn key_depends_on_alert_is_exactly_when_two_alerts_can_get_different_keys() {
        let a = alert(&[("service", "api"), ("pod", "a")]);
        let b = Alert {
            fingerprint: Fingerprint(2),
            ..alert(&[("service", "db"), ("pod", "b")])
        };
        let sources = [
            notification("slack", "{}:{}").source,
            Source::Otlp {
                signal: crate::model::OtlpSignal::Logs,
            },
            Source::Tracing,
        ];
        for source in sources {
            for r in [route("plain", &[], &[]), route("by", &[], &["service"])] {
                let n = Notification {
                    source: source.clone(),
                    ..notification("slack", "{}:{}")
                };
                let same = card_key(&r, &n, &a) == card_key(&r, &n, &b);
                assert_eq!(
                    key_depends_on_alert(&r, &n),
                    !same,
                    "{:?}, group_by {:?}",
                    n.source,
                    r.group_by
                );
            }
        }
    }

    #[test]
    fn card_key_with_group_by_uses_the_labels_in_configured_order() {
        let r = route("svc", &[], &["service", "cluster"]);
        let a = alert(&[("cluster", "eu"), ("service", "api"), ("pod", "x")]);
        assert_eq!(
            card_key(&r, &notification("r1", "g1"), &a),
            "svc\x1fservice=api\x1fcluster=eu"
        );
        // Receiver and group key do not matter.
        assert_eq!(
            card_key(&r, &notification("r1", "g1"), &a),
            card_key(&r, &notification("r2", "g2"), &a)
        );
        // A missing label is empty, as for matchers.
        let missing = alert(&[("service", "api")]);
        let empty = alert(&[("service", "api"), ("cluster", "")]);
        assert_eq!(
            card_key(&r, &notification("r", "g"), &missing),
            "svc\x1fservice=api\x1fcluster="
        );
        assert_eq!(
            card_key(&r, &notification("r", "g"), &missing),
            card_key(&r, &notification("r", "g"), &empty)
        );
    }

    #[test]
    fn card_key_escapes_separators_so_keys_never_collide() {
        let r = route("r", &[], &[]);
        let k1 = card_key(&r, &notification("a\x1fb", "c"), &alert(&[]));
        let k2 = card_key(&r, &notification("a", "b\x1fc"), &alert(&[]));
        assert_ne!(k1, k2);
        assert_eq!(k1, "r\x1fa\x1e\x1fb\x1fc");
        let g = route("r", &[], &["a", "b"]);
        let n = notification("", "");
        assert_ne!(
            card_key(&g, &n, &alert(&[("a", "x\x1fb=y")])),
            card_key(&g, &n, &alert(&[("a", "x"), ("b", "y")]))
        );
    }

    fn matcher_strategy() -> impl Strategy<Value = Matcher> {
        let op = prop_oneof![
            Just(MatchOp::Equal),
            Just(MatchOp::NotEqual),
            Just(MatchOp::Regex),
            Just(MatchOp::NotRegex),
        ];
        (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
            op,
            "\\PC{0,20}|[ \"\\\\\n\t=~!]{0,6}",
        )
            .prop_map(|(name, op, value)| {
                let value = match op {
                    MatchOp::Regex | MatchOp::NotRegex => regex::escape(&value),
                    _ => value,
                };
                Matcher::new(&name, op, &value).unwrap_or_else(|e| panic!("{e}"))
            })
    }

    proptest! {
        #[test]
        fn parse_of_display_is_identity(matcher in matcher_strategy()) {
            let shown = matcher.to_string();
            prop_assert_eq!(shown.parse::<Matcher>(), Ok(matcher));
        }

        #[test]
        fn parse_never_panics(input in "\\PC{0,40}|[a-z =!~\"\\\\n]{0,20}") {
            if let Ok(m) = input.parse::<Matcher>() {
                // Whatever parses, prints as something that parses back the same.
                prop_assert_eq!(m.to_string().parse::<Matcher>(), Ok(m));
            }
        }

        #[test]
        fn escaped_regex_matches_exactly_its_literal(value in "\\PC{0,12}", other in "\\PC{0,12}") {
            let eq = Matcher::new("l", MatchOp::Regex, &regex::escape(&value)).unwrap();
            let set = |v: &str| labels(&[("l", v)]);
            prop_assert!(eq.matches(&set(&value)));
            prop_assert_eq!(eq.matches(&set(&other)), other == value);
            let ne = Matcher::new("l", MatchOp::NotEqual, &value).unwrap();
            prop_assert_eq!(ne.matches(&set(&other)), other != value);
        }

        #[test]
        fn card_keys_differ_when_receiver_or_group_key_differ(
            a in ("\\PC{0,6}|[\x1e\x1fa]{0,4}", "\\PC{0,6}|[\x1e\x1fa]{0,4}"),
            b in ("\\PC{0,6}|[\x1e\x1fa]{0,4}", "\\PC{0,6}|[\x1e\x1fa]{0,4}"),
        ) {
            let r = route("r", &[], &[]);
            let ka = card_key(&r, &notification(&a.0, &a.1), &alert(&[]));
            let kb = card_key(&r, &notification(&b.0, &b.1), &alert(&[]));
            prop_assert_eq!(ka == kb, a == b);
        }
    }
}
