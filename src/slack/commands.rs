//! The slash command (default `/ackbar`): `list`, `ack <card>`,
//! `silence <card>`, `oncall`, `help`. Replies are ephemeral. Quick answers
//! go in the HTTP response; `list`, which asks Slack for permalinks, answers
//! through the command's `response_url`; `silence` opens the silence modal
//! with the command's `trigger_id` and answers nothing when it opened.

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::warn;

use super::interact::{Handled, InteractError, Interactions};
use crate::model::{CardId, is_slack_id};
use crate::store::CardSummary;

/// Cards `list` shows.
const LIST_LIMIT: u32 = 20;
/// Characters of a card id users type (`ack 3f2a9c1e`).
pub const SHORT_ID_LEN: usize = 8;

/// The form fields of a slash command ackbar reads.
#[derive(Debug, Deserialize)]
pub struct Command {
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub user_id: String,
    /// The workspace the command was typed in.
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub response_url: Option<String>,
    /// Opens a modal (`silence`) within 3 seconds, once.
    #[serde(default)]
    pub trigger_id: Option<String>,
    /// Slack's probe of the endpoint's certificate: answer 200, do nothing.
    #[serde(default)]
    pub ssl_check: Option<String>,
}

impl Command {
    /// Decodes a `POST /slack/commands` body (a form). Public, apart from
    /// the handler, so that it can be tested and fuzzed (`fuzz/`) without a
    /// store or a Slack client.
    pub fn from_form(body: &[u8]) -> Result<Command, InteractError> {
        serde_urlencoded::from_bytes(body)
            .map_err(|e| InteractError::Malformed(format!("not a slash command form: {e}")))
    }

    /// What the command's text asks for: its first word, case-insensitive,
    /// and the card id after `ack`/`silence`. Empty text asks for help.
    pub fn subcommand(&self) -> Subcommand<'_> {
        let mut words = self.text.split_whitespace();
        let Some(first) = words.next() else {
            return Subcommand::Help;
        };
        match first.to_ascii_lowercase().as_str() {
            "help" => Subcommand::Help,
            "list" => Subcommand::List,
            "ack" => Subcommand::Ack(words.next()),
            "silence" => Subcommand::Silence(words.next()),
            "oncall" => Subcommand::Oncall,
            _ => Subcommand::Unknown(first),
        }
    }
}

/// A slash command's text, read. Card ids are `None` when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subcommand<'a> {
    Help,
    List,
    Ack(Option<&'a str>),
    Silence(Option<&'a str>),
    Oncall,
    /// The first word, as typed.
    Unknown(&'a str),
}

/// The answer to a subcommand ackbar does not know: the word (cut and
/// escaped: it is the user's text) and the help.
pub fn unknown_subcommand_text(word: &str) -> String {
    format!(
        "Unknown subcommand `{}`.\n{HELP}",
        crate::slack::blocks::untrusted(&crate::slack::blocks::truncate(
            &word.to_ascii_lowercase(),
            40
        ))
    )
}

async fn permalink(slack: &crate::slack::api::SlackClient, card: &CardSummary) -> Option<String> {
    let ts = card.ts.as_deref()?;
    slack.get_permalink(&card.channel, ts).await.ok()
}

fn ephemeral(text: impl Into<String>) -> Value {
    json!({ "response_type": "ephemeral", "text": text.into() })
}

/// `3f2a9c1e` for a card id.
pub fn short_id(card: &CardId) -> &str {
    card.0.get(..SHORT_ID_LEN).unwrap_or(&card.0)
}

const HELP: &str = "*ackbar* — alerts as Slack cards\n\
• `list` — firing cards, with links\n\
• `ack CARD` — acknowledge a card by the id `list` shows\n\
• `silence CARD` — silence a card's alerts in Alertmanager\n\
• `oncall` — who is on call now, per rotation\n\
• `help` — this message";

impl Interactions {
    /// Handles a verified `POST /slack/commands` body; returns the JSON to
    /// answer with (`None`: an empty 200).
    pub async fn command(&self, body: &[u8]) -> Result<Option<Value>, InteractError> {
        self.run_command(Command::from_form(body)?).await
    }

    /// Runs a parsed slash command (from the HTTP form, or the JSON payload
    /// of a Socket Mode envelope, which carries the same fields).
    pub async fn run_command(&self, command: Command) -> Result<Option<Value>, InteractError> {
        if command.ssl_check.as_deref() == Some("1") {
            return Ok(None);
        }
        if !is_slack_id(&command.user_id) {
            return Err(InteractError::Malformed(
                "user_id is not a Slack user id".to_owned(),
            ));
        }
        let team = command.team_id.as_deref().filter(|t| !t.is_empty());
        let answer = match command.subcommand() {
            Subcommand::Help => ephemeral(HELP),
            Subcommand::List => match command.response_url.clone() {
                Some(url) => {
                    self.list_later(url, team);
                    ephemeral("Looking up firing cards…")
                }
                None => ephemeral(self.list_text(false, team).await?),
            },
            Subcommand::Ack(Some(id)) => {
                ephemeral(self.ack_by_short_id(&command.user_id, team, id).await?)
            }
            Subcommand::Ack(None) => ephemeral("Which card? `ack CARD` with the id `list` shows."),
            Subcommand::Silence(Some(id)) => match self.card_by_short_id(id, team).await? {
                Ok(card) => match self
                    .open_silence_modal(
                        &command.user_id,
                        team,
                        &card,
                        command.trigger_id.as_deref(),
                        Utc::now(),
                    )
                    .await?
                {
                    // The modal is the answer.
                    Handled::Applied | Handled::Ignored => return Ok(None),
                    Handled::NoChange(text) | Handled::Refused(text) => ephemeral(text),
                },
                Err(text) => ephemeral(text),
            },
            Subcommand::Silence(None) => {
                ephemeral("Which card? `silence CARD` with the id `list` shows.")
            }
            Subcommand::Oncall => ephemeral(self.oncall_text()),
            Subcommand::Unknown(word) => ephemeral(unknown_subcommand_text(word)),
        };
        Ok(Some(answer))
    }

    fn list_later(&self, response_url: String, team: Option<&str>) {
        let this = self.clone();
        let team = team.map(str::to_owned);
        tokio::spawn(async move {
            let text = match this.list_text(true, team.as_deref()).await {
                Ok(text) => text,
                Err(e) => format!("Cannot list cards right now: {e}"),
            };
            if let Err(e) = this
                .untokened()
                .post_response_url(&response_url, &ephemeral(text))
                .await
            {
                warn!(error = %e, "cannot answer /ackbar list through response_url");
            }
        });
    }

    async fn list_text(
        &self,
        with_links: bool,
        team: Option<&str>,
    ) -> Result<String, InteractError> {
        let mut cards = self.store().firing_cards(LIST_LIMIT).await?;
        cards.retain(|card| self.serves(&card.route, team));
        if cards.is_empty() {
            return Ok(":white_check_mark: No firing cards.".to_owned());
        }
        let mut lines = vec![format!(
            "*{} firing {}*",
            cards.len(),
            if cards.len() == 1 { "card" } else { "cards" }
        )];
        let slack = match with_links {
            true => self.slack_for(team).await,
            false => None,
        };
        for card in &cards {
            let link = if let Some(slack) = &slack {
                permalink(slack, card).await
            } else {
                None
            };
            lines.push(list_line(card, link.as_deref(), Utc::now()));
        }
        Ok(lines.join("\n"))
    }

    /// The one card whose id starts with `short`, or what to tell the user.
    /// The one card of `team`'s routes whose id starts with `short`, or
    /// what to tell the user.
    async fn card_by_short_id(
        &self,
        short: &str,
        team: Option<&str>,
    ) -> Result<Result<CardId, String>, InteractError> {
        let mut matches = Vec::new();
        for card in self.store().cards_by_prefix(short, 2).await? {
            let brief = self.store().card_brief(&card).await?;
            if brief.is_some_and(|b| self.serves(&b.route, team)) {
                matches.push(card);
            }
        }
        Ok(match matches.as_slice() {
            [card] => Ok(card.clone()),
            [] => Err(format!(
                "No card with id `{}`; `list` shows them.",
                escape(short)
            )),
            _ => Err(format!(
                "`{}` matches several cards; give more of the id.",
                escape(short)
            )),
        })
    }

    async fn ack_by_short_id(
        &self,
        user: &str,
        team: Option<&str>,
        short: &str,
    ) -> Result<String, InteractError> {
        let card = match self.card_by_short_id(short, team).await? {
            Ok(card) => card,
            Err(text) => return Ok(text),
        };
        Ok(
            match self.acknowledge(user, team, &card, Utc::now()).await? {
                Handled::Applied => format!("Acknowledged card `{}`.", short_id(&card)),
                Handled::NoChange(text) | Handled::Refused(text) => text,
                Handled::Ignored => String::new(),
            },
        )
    }

    fn oncall_text(&self) -> String {
        let now = Utc::now();
        let rotations = self.rotations();
        if rotations.is_empty() {
            return "No on-call rotations are configured (`oncall` in ackbar's config).".to_owned();
        }
        let mut lines = Vec::new();
        for rotation in rotations.iter() {
            let line = match rotation.on_call(now) {
                Some(shift) => format!(
                    "• *{}*: <@{}> until {}",
                    escape(rotation.name()),
                    shift.user,
                    crate::slack::blocks::date(
                        shift.ends,
                        "{date_short_pretty} {time}",
                        &shift.ends.format("%Y-%m-%d %H:%M UTC").to_string()
                    )
                ),
                None => format!(
                    "• *{}*: nobody yet (the rotation has not started)",
                    escape(rotation.name())
                ),
            };
            lines.push(line);
        }
        lines.join("\n")
    }
}

fn escape(s: &str) -> String {
    crate::slack::blocks::untrusted(&crate::slack::blocks::truncate(s, 80))
}

fn list_line(card: &CardSummary, link: Option<&str>, now: chrono::DateTime<Utc>) -> String {
    let title = escape(&card.title);
    let title = match link {
        Some(url) => crate::slack::blocks::link(url, &card.title),
        None => title,
    };
    let mut line = format!(
        "• `{}` {title} — {} firing, open {}",
        short_id(&card.id),
        card.firing_count,
        crate::slack::cards::format_duration((now - card.opened_at).num_seconds())
    );
    match &card.acked_by {
        Some(by) if is_slack_id(by) => line.push_str(&format!(", acknowledged by <@{by}>")),
        _ => line.push_str(", *not acknowledged*"),
    }
    if card.escalation_level > 0 {
        line.push_str(&format!(", escalated to step {}", card.escalation_level));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(text: &str) -> Command {
        Command {
            command: "/ackbar".to_owned(),
            text: text.to_owned(),
            user_id: "U0ALICE01".to_owned(),
            team_id: None,
            response_url: None,
            trigger_id: None,
            ssl_check: None,
        }
    }

    #[test]
    fn subcommand_reads_the_first_word_in_any_case() {
        assert_eq!(text("").subcommand(), Subcommand::Help);
        assert_eq!(text("  \t ").subcommand(), Subcommand::Help);
        assert_eq!(text("HELP me").subcommand(), Subcommand::Help);
        assert_eq!(text(" List ").subcommand(), Subcommand::List);
        assert_eq!(
            text("ack 3f2a9c1e extra").subcommand(),
            Subcommand::Ack(Some("3f2a9c1e"))
        );
        assert_eq!(text("Ack").subcommand(), Subcommand::Ack(None));
        assert_eq!(
            text("silence\u{a0}ab").subcommand(),
            Subcommand::Silence(Some("ab"))
        );
        assert_eq!(text("oncall").subcommand(), Subcommand::Oncall);
        assert_eq!(
            text("Ünknown x").subcommand(),
            Subcommand::Unknown("Ünknown")
        );
    }

    #[test]
    fn unknown_subcommand_echo_is_cut_and_escaped() {
        let answer = unknown_subcommand_text(&format!("<@U0ALL>{}", "&".repeat(100)));
        assert!(
            answer.starts_with("Unknown subcommand `&lt;@\u{200b}u0all&gt;&amp;"),
            "{answer}"
        );
        // 40 characters: the 8 of the mention, 31 of the rest and the ellipsis.
        assert_eq!(answer.matches("&amp;").count(), 31, "{answer}");
        assert!(answer.contains("…`"), "{answer}");
    }

    #[test]
    fn command_forms_decode_and_garbage_is_malformed() {
        let command = Command::from_form(b"command=%2Fackbar&text=ack+3f2a&user_id=U0ALICE01")
            .expect("a form");
        assert_eq!(command.subcommand(), Subcommand::Ack(Some("3f2a")));
        assert!(matches!(
            Command::from_form(b"text=%ZZ&text=a"),
            Err(InteractError::Malformed(_))
        ));
    }
}
