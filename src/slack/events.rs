//! The Events API: `url_verification`; `app_mention` in a card's thread,
//! answered with a status reply in that thread; and `app_uninstalled` or
//! `tokens_revoked` (of the bot token), after which ackbar forgets the
//! workspace's installation, so its routes' deliveries dead-letter with
//! that reason instead of calling Slack with a dead token. Slack retries a delivery it
//! did not see answered (`X-Slack-Retry-Num`); every event is handled once,
//! keyed by its `event_id` in the store.

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{debug, info};

use super::interact::{InteractError, Interactions};
use crate::model::{ThreadEvent, is_slack_id};
use crate::store::{Action, ActionOutcome};

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Envelope {
    UrlVerification {
        challenge: String,
    },
    EventCallback {
        event_id: String,
        /// The workspace the event happened in.
        #[serde(default)]
        team_id: Option<String>,
        event: Event,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    AppMention {
        #[serde(default)]
        user: Option<String>,
        channel: String,
        #[serde(default)]
        thread_ts: Option<String>,
    },
    /// The app was removed from the workspace; its tokens are revoked.
    AppUninstalled,
    TokensRevoked {
        #[serde(default)]
        tokens: RevokedTokens,
    },
    #[serde(other)]
    Other,
}

/// Whose tokens were revoked: user ids, per kind of token.
#[derive(Debug, Default, Deserialize)]
struct RevokedTokens {
    #[serde(default)]
    bot: Vec<String>,
}

/// An Events API request decoded but not yet acted on. Opaque, like
/// [`Interaction`](super::interact::Interaction), and public for the same
/// reason: decoding can be tested and fuzzed (`fuzz/`) on its own.
#[derive(Debug)]
pub struct EventRequest(Envelope);

impl EventRequest {
    /// Decodes a `POST /slack/events` body (or a Socket Mode `events_api`
    /// payload).
    pub fn from_json(body: &[u8]) -> Result<EventRequest, InteractError> {
        serde_json::from_slice(body)
            .map(EventRequest)
            .map_err(|e| InteractError::Malformed(format!("not an Events API envelope: {e}")))
    }
}

impl Interactions {
    /// Handles a verified `POST /slack/events` body; returns the JSON to
    /// answer with (`None`: an empty 200).
    pub async fn event(&self, body: &[u8]) -> Result<Option<Value>, InteractError> {
        let EventRequest(envelope) = EventRequest::from_json(body)?;
        let (event_id, team, event) = match envelope {
            Envelope::UrlVerification { challenge } => {
                return Ok(Some(json!({ "challenge": challenge })));
            }
            Envelope::EventCallback {
                event_id,
                team_id,
                event,
            } => (event_id, team_id, event),
            Envelope::Other => return Ok(None),
        };
        if !self
            .store()
            .first_seen(&format!("event:{event_id}"), Utc::now())
            .await?
        {
            debug!(event_id, "event already handled (a retried delivery)");
            return Ok(None);
        }
        let team = team.filter(|t| crate::config::is_team_id(t));
        match (&event, team) {
            (Event::AppUninstalled, Some(team)) => {
                self.uninstalled(&team, "the app was uninstalled").await?;
                return Ok(None);
            }
            // ackbar installs bot tokens only; a user token's revocation
            // is not about it.
            (Event::TokensRevoked { tokens }, Some(team)) if !tokens.bot.is_empty() => {
                self.uninstalled(&team, "its bot token was revoked").await?;
                return Ok(None);
            }
            _ => {}
        }
        if let Event::AppMention {
            user: Some(user),
            channel,
            thread_ts: Some(thread_ts),
        } = event
        {
            if !is_slack_id(&user) {
                return Ok(None);
            }
            if let Some(card) = self.store().card_by_message(&channel, &thread_ts).await? {
                let outcome = self
                    .store()
                    .act(
                        &card,
                        Action::Note {
                            event: ThreadEvent::StatusAsked {
                                by: user,
                                at: Utc::now(),
                            },
                        },
                        Utc::now(),
                    )
                    .await?;
                if let ActionOutcome::Applied { channel } = outcome {
                    self.deliverer().wake(&channel);
                }
            }
        }
        Ok(None)
    }
}

impl Interactions {
    /// Forgets `team`'s installation (every replica stops using its token
    /// within the token cache's TTL; this one at once).
    async fn uninstalled(&self, team: &str, why: &str) -> Result<(), InteractError> {
        let removed = self.store().remove_installation(team).await?;
        self.workspaces().forget(Some(team));
        self.workspaces().forget(None);
        if removed {
            info!(
                team,
                "{why}: the workspace's installation is removed; its routes' deliveries will be dead-lettered until it is installed again"
            );
        } else {
            debug!(team, "{why}, but the workspace had no installation");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_decode_and_anything_else_is_malformed() {
        let challenge = br#"{"type":"url_verification","challenge":"c\u0000<@U1>"}"#;
        assert!(matches!(
            EventRequest::from_json(challenge),
            Ok(EventRequest(Envelope::UrlVerification { challenge })) if challenge == "c\0<@U1>"
        ));
        assert!(matches!(
            EventRequest::from_json(
                br#"{"type":"event_callback","event_id":"Ev1","team_id":"T0AAAAAAA","event":{"type":"tokens_revoked","tokens":{"bot":["U0BOT"]}}}"#
            ),
            Ok(EventRequest(Envelope::EventCallback { team_id: Some(team), event: Event::TokensRevoked { tokens }, .. }))
                if team == "T0AAAAAAA" && tokens.bot == ["U0BOT"]
        ));
        assert!(matches!(
            EventRequest::from_json(br#"{"type":"app_rate_limited"}"#),
            Ok(EventRequest(Envelope::Other))
        ));
        for body in [
            &b""[..],
            b"[]",
            b"{\"type\":5}",
            b"{\"type\":\"event_callback\"}",
        ] {
            assert!(
                matches!(
                    EventRequest::from_json(body),
                    Err(InteractError::Malformed(_))
                ),
                "{body:?}"
            );
        }
    }
}
