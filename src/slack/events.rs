//! The Events API: `url_verification`, and `app_mention` in a card's thread,
//! answered with a status reply in that thread. Slack retries a delivery it
//! did not see answered (`X-Slack-Retry-Num`); every event is handled once,
//! keyed by its `event_id` in the store.

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::debug;

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
    #[serde(other)]
    Other,
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
        let (event_id, event) = match envelope {
            Envelope::UrlVerification { challenge } => {
                return Ok(Some(json!({ "challenge": challenge })));
            }
            Envelope::EventCallback { event_id, event } => (event_id, event),
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
