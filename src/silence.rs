//! Silences in Alertmanager, created from a card.
//!
//! The flow: the card's **Silence** button (or `/ackbar silence CARD`) opens
//! the modal built by [`silence_modal`]; its submission is read by
//! [`parse_submission`]; [`new_silence`] turns it into a [`Silence`] that
//! [`AlertmanagerClient::create_silence`] posts to
//! `{alertmanager_url}/api/v2/silences`. The Slack side (who may act, opening
//! the modal, answering the submission, the thread reply) lives in
//! [`crate::slack::interact`]; everything here is pure except the client.
//!
//! # Which alerts a silence matches
//!
//! A card is one alert group, so the silence matches the group, not just the
//! alerts the card lists now — alerts that later join the group are silenced
//! too ([`card_matchers`]). All matchers are equality matchers
//! (`isEqual: true, isRegex: false`), taken from the first of:
//!
//! 1. the route's `group_by` labels (they are what makes the card key), with
//!    the card's common value of each; a label the alerts lack matches the
//!    empty value, which in Alertmanager means "label absent";
//! 2. Alertmanager's `groupLabels` of the notification (its own grouping);
//! 3. all common labels of the card (no grouping at all: the narrowest set
//!    every alert of the card shares).
//!
//! A rule that yields no non-empty value falls through to the next; if none
//! does, the card cannot be silenced from Slack ([`SilenceError::NoMatchers`]),
//! because Alertmanager refuses a silence whose matchers all match the empty
//! string. The matchers are computed again at submission from the card's
//! current state; for the rules above they do not change while a card lives.
//!
//! Errors are one enum, [`SilenceError`], whose messages are written to be
//! shown to the user in the modal (next to the field they concern, see
//! [`SilenceError::block_id`]); they never include URLs or internals.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::{CardView, Labels};
use crate::slack::blocks::{truncate, untrusted_plain};

/// `callback_id` of the silence modal.
pub const CALLBACK_ID: &str = "ackbar_silence";
/// Input block (and its element's `action_id`) of the duration.
pub const DURATION_BLOCK: &str = "ackbar_silence_duration";
pub const DURATION_ACTION: &str = "duration";
/// Input block (and its element's `action_id`) of the optional comment.
pub const COMMENT_BLOCK: &str = "ackbar_silence_comment";
pub const COMMENT_ACTION: &str = "comment";
/// Context block listing the matchers.
pub const MATCHERS_BLOCK: &str = "ackbar_silence_matchers";
/// What the duration field holds when the modal opens.
pub const DEFAULT_DURATION: &str = "2h";
/// Shortest silence accepted.
pub const MIN_DURATION: Duration = Duration::from_secs(60);
/// Longest silence accepted: longer ones tend to be forgotten.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);
/// Chars of a comment (the input enforces it in Slack; checked again here).
pub const MAX_COMMENT_CHARS: usize = 1000;
/// How long ackbar waits for Alertmanager: the whole submission must be
/// answered within Slack's 3 seconds.
pub const ALERTMANAGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes of an Alertmanager answer read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Chars of Alertmanager's own error text shown to the user.
const MAX_DETAIL_CHARS: usize = 200;
/// Chars of the matcher list shown in the modal.
const MAX_MATCHERS_TEXT: usize = 2000;
/// Chars of one label value shown in the modal's matcher list.
const MAX_SHOWN_VALUE: usize = 100;
/// Chars of the Slack user name put in `createdBy`.
const MAX_NAME_CHARS: usize = 80;

/// Why a silence could not be created, worded for the person who asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("Give a duration, e.g. 90m, 2h or 3d.")]
    MissingDuration,
    #[error("`{0}` is not a duration; use e.g. 90m, 2h, 1d12h.")]
    InvalidDuration(String),
    #[error("A silence lasts at least 1m.")]
    TooShort,
    #[error("A silence lasts at most 30d.")]
    TooLong,
    #[error("The comment is too long (at most 1000 characters).")]
    CommentTooLong,
    #[error("This card's alerts share no label to match on; silence them in Alertmanager.")]
    NoMatchers,
    #[error("No Alertmanager is configured for this card's route, so it cannot be silenced here.")]
    NotConfigured,
    #[error("That card is no longer known to ackbar.")]
    CardGone,
    #[error("The card is resolved; there is nothing to silence.")]
    Resolved,
    #[error("You are not allowed to silence cards of route `{0}`.")]
    NotAllowed(String),
    #[error("ackbar cannot read the card right now; try again.")]
    Unavailable,
    #[error("Alertmanager is unreachable right now; no silence was created. Try again.")]
    Unreachable,
    #[error(
        "Alertmanager did not answer in time; the silence may or may not exist. Check Alertmanager before trying again."
    )]
    NoAnswer,
    #[error("Alertmanager refused the silence: {0}")]
    Refused(String),
    #[error("Alertmanager answered HTTP {0}; try again later.")]
    Status(u16),
    #[error("Alertmanager's answer was not understood; check whether the silence exists.")]
    Undecodable,
}

impl SilenceError {
    /// The modal's input block the message is shown under. Errors that are
    /// not about a field go on the duration, the modal's first input.
    pub fn block_id(&self) -> &'static str {
        match self {
            SilenceError::CommentTooLong => COMMENT_BLOCK,
            _ => DURATION_BLOCK,
        }
    }
}

/// The answer to a `view_submission` that keeps the modal open and shows
/// `errors` under their fields (several on one field are joined). The
/// variants carrying outside text sanitise it when they are made; it is
/// sanitised again here (idempotently) so no error can ever mention anyone.
pub fn errors_answer(errors: &[SilenceError]) -> Value {
    let mut by_block: serde_json::Map<String, Value> = serde_json::Map::new();
    for e in errors {
        let text = untrusted_plain(&e.to_string());
        match by_block.get_mut(e.block_id()) {
            Some(Value::String(s)) => {
                s.push(' ');
                s.push_str(&text);
            }
            _ => {
                by_block.insert(e.block_id().to_owned(), Value::String(text));
            }
        }
    }
    json!({ "response_action": "errors", "errors": by_block })
}

/// One matcher as Alertmanager's API v2 writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceMatcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    /// Absent in answers of Alertmanager before 0.22, where every matcher is
    /// an equality.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl SilenceMatcher {
    pub fn equal(name: &str, value: &str) -> SilenceMatcher {
        SilenceMatcher {
            name: name.to_owned(),
            value: value.to_owned(),
            is_regex: false,
            is_equal: true,
        }
    }
}

/// A silence as `POST /api/v2/silences` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
}

/// The Slack user asking for a silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// Slack user id (checked with [`crate::model::is_slack_id`] by the caller).
    pub id: String,
    /// The user's name as the payload carries it, when it does.
    pub name: Option<String>,
}

impl Requester {
    /// `alice (U0ALICE01)`, or the id alone.
    pub fn describe(&self) -> String {
        match self
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            Some(name) => format!(
                "{} ({})",
                truncate(&untrusted_plain(name), MAX_NAME_CHARS),
                self.id
            ),
            None => self.id.clone(),
        }
    }
}

/// The matchers that silence the card's group; see the module docs for the
/// rules. Sorted by label name, as the label sets are.
pub fn card_matchers(view: &CardView, group_by: &[String]) -> Vec<SilenceMatcher> {
    let has_value = |ms: &[SilenceMatcher]| ms.iter().any(|m| !m.value.is_empty());
    if !group_by.is_empty() {
        let mut names: Vec<&String> = group_by.iter().collect();
        names.sort();
        names.dedup();
        let ms: Vec<SilenceMatcher> = names
            .into_iter()
            .map(|name| {
                let value = view
                    .common_labels
                    .get(name)
                    .or_else(|| view.group_labels.get(name))
                    .map_or("", String::as_str);
                SilenceMatcher::equal(name, value)
            })
            .collect();
        if has_value(&ms) {
            return ms;
        }
    }
    for labels in [&view.group_labels, &view.common_labels] {
        let ms = non_empty(labels);
        if !ms.is_empty() {
            return ms;
        }
    }
    Vec::new()
}

fn non_empty(labels: &Labels) -> Vec<SilenceMatcher> {
    labels
        .iter()
        .filter(|(name, value)| !name.is_empty() && !value.is_empty())
        .map(|(name, value)| SilenceMatcher::equal(name, value))
        .collect()
}

/// `name="value", …` for people to read (plain text, values cut).
pub fn describe_matchers(matchers: &[SilenceMatcher]) -> String {
    let list = matchers
        .iter()
        .map(|m| {
            let op = match (m.is_equal, m.is_regex) {
                (true, false) => "=",
                (false, false) => "!=",
                (true, true) => "=~",
                (false, true) => "!~",
            };
            format!(
                "{}{op}\"{}\"",
                untrusted_plain(&truncate(&m.name, MAX_SHOWN_VALUE)),
                untrusted_plain(&truncate(&m.value, MAX_SHOWN_VALUE))
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    truncate(&list, MAX_MATCHERS_TEXT)
}

/// The modal that asks for a duration and a comment. `private_metadata`
/// carries the card id, which is all the submission needs.
pub fn silence_modal(view: &CardView, matchers: &[SilenceMatcher]) -> Value {
    let title = truncate(&untrusted_plain(&view.title()), 150);
    let about = format!(
        "{title} · {} firing · route {}",
        view.firing_count,
        truncate(&untrusted_plain(&view.route), 100)
    );
    json!({
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "private_metadata": view.id.0,
        "notify_on_close": false,
        "title": { "type": "plain_text", "text": "Silence alerts" },
        "submit": { "type": "plain_text", "text": "Silence" },
        "close": { "type": "plain_text", "text": "Cancel" },
        "blocks": [
            {
                "type": "section",
                "block_id": "ackbar_silence_card",
                "text": { "type": "plain_text", "text": about, "emoji": false }
            },
            {
                "type": "input",
                "block_id": DURATION_BLOCK,
                "label": { "type": "plain_text", "text": "For how long" },
                "hint": { "type": "plain_text", "text": "From 1m to 30d, e.g. 30m, 2h, 1d12h." },
                "element": {
                    "type": "plain_text_input",
                    "action_id": DURATION_ACTION,
                    "initial_value": DEFAULT_DURATION,
                    "max_length": 20,
                    "placeholder": { "type": "plain_text", "text": "e.g. 90m, 2h, 3d" }
                }
            },
            {
                "type": "input",
                "block_id": COMMENT_BLOCK,
                "optional": true,
                "label": { "type": "plain_text", "text": "Comment" },
                "element": {
                    "type": "plain_text_input",
                    "action_id": COMMENT_ACTION,
                    "multiline": true,
                    "max_length": MAX_COMMENT_CHARS,
                    "placeholder": { "type": "plain_text", "text": "Why, and what is being done" }
                }
            },
            {
                "type": "context",
                "block_id": MATCHERS_BLOCK,
                "elements": [{
                    "type": "plain_text",
                    "emoji": false,
                    "text": format!(
                        "Silences every alert, now or later, matching: {}",
                        describe_matchers(matchers)
                    )
                }]
            }
        ]
    })
}

/// `view.state.values` of a submission: block id -> action id -> value.
pub type StateValues = HashMap<String, HashMap<String, StateValue>>;

/// One input's value in a submission. A `plain_text_input` carries `value`;
/// a `static_select` carries `selected_option` (accepted too, so the
/// duration field can become a select without changing the parser).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StateValue {
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub selected_option: Option<SelectedOption>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SelectedOption {
    pub value: String,
}

/// What the user asked for in the modal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceForm {
    pub duration: Duration,
    /// Trimmed; `None` when left empty.
    pub comment: Option<String>,
}

/// Reads and validates a submission; every field error at once.
pub fn parse_submission(values: &StateValues) -> Result<SilenceForm, Vec<SilenceError>> {
    let field = |block: &str, action: &str| {
        values.get(block).and_then(|b| b.get(action)).and_then(|v| {
            v.value
                .clone()
                .or_else(|| v.selected_option.as_ref().map(|o| o.value.clone()))
        })
    };
    let duration = parse_silence_duration(
        field(DURATION_BLOCK, DURATION_ACTION)
            .as_deref()
            .unwrap_or(""),
    );
    let comment = field(COMMENT_BLOCK, COMMENT_ACTION)
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let comment_ok = comment
        .as_ref()
        .is_none_or(|c| c.chars().count() <= MAX_COMMENT_CHARS);
    match (duration, comment_ok) {
        (Ok(duration), true) => Ok(SilenceForm { duration, comment }),
        (d, c) => {
            let mut errors = Vec::new();
            if let Err(e) = d {
                errors.push(e);
            }
            if !c {
                errors.push(SilenceError::CommentTooLong);
            }
            Err(errors)
        }
    }
}

/// `90m`, `2h`, `1d12h`, `3d` (case-insensitive) within
/// [`MIN_DURATION`]..=[`MAX_DURATION`]. A bare number is refused rather than
/// read as seconds: someone typing `2` means hours, not seconds.
pub fn parse_silence_duration(input: &str) -> Result<Duration, SilenceError> {
    let s = input.trim().to_ascii_lowercase();
    if s.is_empty() {
        return Err(SilenceError::MissingDuration);
    }
    let invalid = || SilenceError::InvalidDuration(truncate(&untrusted_plain(input.trim()), 20));
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let d = crate::config::parse_duration(&s).map_err(|_| invalid())?;
    if d < MIN_DURATION {
        return Err(SilenceError::TooShort);
    }
    if d > MAX_DURATION {
        return Err(SilenceError::TooLong);
    }
    Ok(d)
}

/// The silence for `form`, starting `now`. `createdBy` names the Slack user;
/// the comment defaults to saying who silenced it from Slack, because
/// Alertmanager requires one.
pub fn new_silence(
    matchers: Vec<SilenceMatcher>,
    form: &SilenceForm,
    requester: &Requester,
    now: DateTime<Utc>,
) -> Silence {
    let ends_at = chrono::Duration::from_std(form.duration)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(now);
    Silence {
        matchers,
        starts_at: now,
        ends_at,
        created_by: requester.describe(),
        comment: form
            .comment
            .clone()
            .unwrap_or_else(|| format!("Silenced from Slack by {}", requester.describe())),
    }
}

/// Creates silences on one Alertmanager. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AlertmanagerClient {
    http: reqwest::Client,
    /// Without a trailing slash; may carry a path prefix.
    base: String,
    timeout: Duration,
}

#[derive(Deserialize)]
struct Created {
    #[serde(rename = "silenceID")]
    silence_id: String,
}

/// An HTTP client for Alertmanager calls (no redirects: a silence must not
/// be re-posted somewhere else).
pub fn http_client() -> Result<reqwest::Client, SilenceError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|_| SilenceError::Unreachable)
}

impl AlertmanagerClient {
    pub fn new(base_url: &str, timeout: Duration) -> Result<AlertmanagerClient, SilenceError> {
        Ok(AlertmanagerClient::with_http(
            http_client()?,
            base_url,
            timeout,
        ))
    }

    /// Shares `http` (its connection pool) with other clients.
    pub fn with_http(http: reqwest::Client, base_url: &str, timeout: Duration) -> Self {
        AlertmanagerClient {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// `POST /api/v2/silences`; the new silence's id.
    pub async fn create_silence(&self, silence: &Silence) -> Result<String, SilenceError> {
        let sent = self
            .http
            .post(format!("{}/api/v2/silences", self.base))
            .timeout(self.timeout)
            .json(silence)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            // Refused or unresolvable: the request never left.
            Err(e) if e.is_connect() && !e.is_timeout() => return Err(SilenceError::Unreachable),
            Err(_) => return Err(SilenceError::NoAnswer),
        };
        let status = resp.status();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_ANSWER_BYTES.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if room <= chunk.len() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) if status.is_success() => return Err(SilenceError::NoAnswer),
                Err(_) => break,
            }
        }
        if status.is_success() {
            let created: Created =
                serde_json::from_slice(&body).map_err(|_| SilenceError::Undecodable)?;
            if created.silence_id.trim().is_empty() {
                return Err(SilenceError::Undecodable);
            }
            return Ok(created.silence_id);
        }
        if status.is_client_error() {
            return Err(SilenceError::Refused(refusal_detail(&body)));
        }
        Err(SilenceError::Status(status.as_u16()))
    }
}

/// Alertmanager explains a 400 as a JSON string (`"silence invalid: …"`) or
/// as go-swagger's `{"code":…,"message":"…"}`; anything else is shown as text.
fn refusal_detail(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(Value::String(s)) => s,
        Ok(Value::Object(o)) => match o.get("message") {
            Some(Value::String(s)) => s.clone(),
            _ => Value::Object(o).to_string(),
        },
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let text = text.trim();
    if text.is_empty() {
        return "no reason given".to_owned();
    }
    truncate(&untrusted_plain(text), MAX_DETAIL_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CardId, CardState};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn view() -> CardView {
        CardView {
            id: CardId("0123456789abcdef0123456789abcdef".into()),
            key: "k".into(),
            route: "db".into(),
            channel: "C0TESTCHAN".into(),
            state: CardState::Firing,
            opened_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            resolved_at: None,
            group_labels: labels(&[("group", "g1")]),
            common_labels: labels(&[
                ("alertname", "DiskFull"),
                ("group", "g1"),
                ("severity", "critical"),
            ]),
            common_annotations: Labels::new(),
            external_url: None,
            key_labels: Vec::new(),
            alerts: Vec::new(),
            firing_count: 2,
            resolved_count: 0,
            acknowledged: None,
            escalation_level: 0,
            manual_resolve: false,
        }
    }

    fn values(duration: Option<&str>, comment: Option<&str>) -> StateValues {
        let mut v = StateValues::new();
        if let Some(d) = duration {
            v.entry(DURATION_BLOCK.into()).or_default().insert(
                DURATION_ACTION.into(),
                StateValue {
                    value: Some(d.into()),
                    selected_option: None,
                },
            );
        }
        if let Some(c) = comment {
            v.entry(COMMENT_BLOCK.into()).or_default().insert(
                COMMENT_ACTION.into(),
                StateValue {
                    value: Some(c.into()),
                    selected_option: None,
                },
            );
        }
        v
    }

    #[test]
    fn matchers_prefer_route_group_by_then_group_labels_then_common_labels() {
        let v = view();
        let by_route = card_matchers(&v, &["severity".into(), "alertname".into()]);
        assert_eq!(
            by_route,
            vec![
                SilenceMatcher::equal("alertname", "DiskFull"),
                SilenceMatcher::equal("severity", "critical"),
            ]
        );
        assert_eq!(
            card_matchers(&v, &[]),
            vec![SilenceMatcher::equal("group", "g1")]
        );
        let mut no_groups = view();
        no_groups.group_labels.clear();
        assert_eq!(card_matchers(&no_groups, &[]).len(), 3);
    }

    #[test]
    fn a_missing_group_by_label_matches_absence_but_never_alone() {
        let v = view();
        let ms = card_matchers(&v, &["alertname".into(), "cluster".into()]);
        assert_eq!(
            ms,
            vec![
                SilenceMatcher::equal("alertname", "DiskFull"),
                SilenceMatcher::equal("cluster", ""),
            ]
        );
        // Only absent labels: fall through to Alertmanager's group labels.
        assert_eq!(
            card_matchers(&v, &["cluster".into()]),
            vec![SilenceMatcher::equal("group", "g1")]
        );
        let mut bare = view();
        bare.group_labels.clear();
        bare.common_labels = labels(&[("empty", "")]);
        assert!(card_matchers(&bare, &[]).is_empty());
    }

    #[test]
    fn silence_serializes_as_alertmanager_expects() {
        let form = SilenceForm {
            duration: Duration::from_secs(7200),
            comment: None,
        };
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let requester = Requester {
            id: "U0ALICE01".into(),
            name: Some("alice".into()),
        };
        let s = new_silence(
            vec![SilenceMatcher::equal("group", "g1")],
            &form,
            &requester,
            now,
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json,
            json!({
                "matchers": [{"name": "group", "value": "g1", "isRegex": false, "isEqual": true}],
                "startsAt": "2023-11-14T22:13:20Z",
                "endsAt": "2023-11-15T00:13:20Z",
                "createdBy": "alice (U0ALICE01)",
                "comment": "Silenced from Slack by alice (U0ALICE01)"
            })
        );
        let anonymous = Requester {
            id: "U0ALICE01".into(),
            name: Some("  ".into()),
        };
        assert_eq!(anonymous.describe(), "U0ALICE01");
    }

    #[test]
    fn durations_need_a_unit_and_stay_within_bounds() {
        assert_eq!(parse_silence_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_silence_duration(" 2H "),
            Ok(Duration::from_secs(7200))
        );
        assert_eq!(
            parse_silence_duration("1d12h"),
            Ok(Duration::from_secs(129_600))
        );
        assert_eq!(parse_silence_duration("30d"), Ok(MAX_DURATION));
        assert_eq!(parse_silence_duration("1m"), Ok(MIN_DURATION));
        assert_eq!(
            parse_silence_duration(""),
            Err(SilenceError::MissingDuration)
        );
        assert_eq!(parse_silence_duration("59s"), Err(SilenceError::TooShort));
        assert_eq!(parse_silence_duration("31d"), Err(SilenceError::TooLong));
        assert!(matches!(
            parse_silence_duration("2"),
            Err(SilenceError::InvalidDuration(_))
        ));
        assert!(matches!(
            parse_silence_duration("forever"),
            Err(SilenceError::InvalidDuration(_))
        ));
        assert!(matches!(
            parse_silence_duration("99999999999999999999d"),
            Err(SilenceError::InvalidDuration(_))
        ));
    }

    #[test]
    fn submission_reports_every_field_error_under_its_block() {
        let form = parse_submission(&values(Some("4h"), Some("  disk cleanup running \n")));
        assert_eq!(
            form,
            Ok(SilenceForm {
                duration: Duration::from_secs(14_400),
                comment: Some("disk cleanup running".into()),
            })
        );
        assert_eq!(
            parse_submission(&values(Some("1h"), Some("   "))).map(|f| f.comment),
            Ok(None)
        );
        let long = "c".repeat(MAX_COMMENT_CHARS + 1);
        let errors = parse_submission(&values(Some("soon"), Some(&long))).unwrap_err();
        let answer = errors_answer(&errors);
        assert_eq!(answer["response_action"], "errors");
        assert!(
            answer["errors"][DURATION_BLOCK]
                .as_str()
                .unwrap()
                .contains("`soon` is not a duration")
        );
        assert!(
            answer["errors"][COMMENT_BLOCK]
                .as_str()
                .unwrap()
                .contains("too long")
        );
        assert_eq!(
            parse_submission(&StateValues::new()),
            Err(vec![SilenceError::MissingDuration])
        );
    }

    #[test]
    fn submission_accepts_a_select_as_duration() {
        let mut v = StateValues::new();
        v.entry(DURATION_BLOCK.into()).or_default().insert(
            DURATION_ACTION.into(),
            serde_json::from_value(
                json!({"type": "static_select", "selected_option": {"value": "3d", "text": {"type": "plain_text", "text": "3 days"}}}),
            )
            .unwrap(),
        );
        assert_eq!(
            parse_submission(&v).map(|f| f.duration),
            Ok(Duration::from_secs(3 * 86_400))
        );
    }

    #[test]
    fn modal_fits_slack_limits_and_carries_the_card_id() {
        let mut v = view();
        v.common_labels
            .insert("alertname".into(), "<!channel> x".repeat(500));
        v.route = "r".repeat(400);
        let ms: Vec<SilenceMatcher> = (0..200)
            .map(|i| SilenceMatcher::equal(&format!("label{i}"), &"v".repeat(300)))
            .collect();
        let modal = silence_modal(&v, &ms);
        assert_eq!(modal["callback_id"], CALLBACK_ID);
        assert_eq!(modal["private_metadata"], v.id.0.as_str());
        for key in ["title", "submit", "close"] {
            assert!(modal[key]["text"].as_str().unwrap().chars().count() <= 24);
        }
        let blocks = modal["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 100);
        for b in blocks {
            for text in [&b["text"]["text"], &b["elements"][0]["text"]] {
                if let Some(t) = text.as_str() {
                    assert!(t.chars().count() <= 3000, "{}", t.len());
                    assert!(!t.contains("<!channel>"));
                }
            }
        }
        let shown = modal["blocks"][3]["elements"][0]["text"].as_str().unwrap();
        assert!(shown.starts_with("Silences every alert"), "{shown}");
        assert!(shown.contains("label0=\"vvv"), "{shown}");
    }

    #[test]
    fn errors_are_shown_on_input_blocks_only() {
        for e in [
            SilenceError::Unreachable,
            SilenceError::NoAnswer,
            SilenceError::Refused("x".into()),
            SilenceError::TooLong,
        ] {
            assert_eq!(e.block_id(), DURATION_BLOCK);
        }
        assert_eq!(SilenceError::CommentTooLong.block_id(), COMMENT_BLOCK);
    }

    #[test]
    fn refusal_detail_reads_alertmanager_error_shapes() {
        assert_eq!(
            refusal_detail(br#""silence invalid: start time must be before end time""#),
            "silence invalid: start time must be before end time"
        );
        assert_eq!(
            refusal_detail(br#"{"code":602,"message":"matchers in body is required"}"#),
            "matchers in body is required"
        );
        assert_eq!(refusal_detail(b""), "no reason given");
        assert!(refusal_detail(&[b'x'; 5000]).chars().count() <= MAX_DETAIL_CHARS);
    }

    /// A one-shot HTTP server answering `response` to the first request,
    /// after `delay`.
    async fn one_answer(response: &'static str, delay: Duration) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 16 * 1024];
            let _ = sock.read(&mut buf).await;
            tokio::time::sleep(delay).await;
            let _ = sock.write_all(response.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
        format!("http://{addr}/")
    }

    fn some_silence() -> Silence {
        new_silence(
            vec![SilenceMatcher::equal("group", "g1")],
            &SilenceForm {
                duration: Duration::from_secs(3600),
                comment: Some("c".into()),
            },
            &Requester {
                id: "U0ALICE01".into(),
                name: None,
            },
            Utc::now(),
        )
    }

    #[tokio::test]
    async fn create_silence_returns_the_id_and_maps_refusals_and_timeouts() {
        let ok = one_answer(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 23\r\nconnection: close\r\n\r\n{\"silenceID\":\"abc-123\"}",
            Duration::ZERO,
        )
        .await;
        let client = AlertmanagerClient::new(&ok, Duration::from_secs(2)).unwrap();
        assert_eq!(
            client.create_silence(&some_silence()).await,
            Ok("abc-123".into())
        );

        let refused = one_answer(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 20\r\nconnection: close\r\n\r\n\"silence invalid: x\"",
            Duration::ZERO,
        )
        .await;
        let client = AlertmanagerClient::new(&refused, Duration::from_secs(2)).unwrap();
        assert_eq!(
            client.create_silence(&some_silence()).await,
            Err(SilenceError::Refused("silence invalid: x".into()))
        );

        let broken = one_answer(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            Duration::ZERO,
        )
        .await;
        let client = AlertmanagerClient::new(&broken, Duration::from_secs(2)).unwrap();
        assert_eq!(
            client.create_silence(&some_silence()).await,
            Err(SilenceError::Status(503))
        );

        let slow = one_answer("HTTP/1.1 200 OK\r\n\r\n", Duration::from_secs(5)).await;
        let client = AlertmanagerClient::new(&slow, Duration::from_millis(200)).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            client.create_silence(&some_silence()).await,
            Err(SilenceError::NoAnswer)
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client =
            AlertmanagerClient::new(&format!("http://127.0.0.1:{port}"), ALERTMANAGER_TIMEOUT)
                .unwrap();
        assert_eq!(
            client.create_silence(&some_silence()).await,
            Err(SilenceError::Unreachable)
        );
    }
}
