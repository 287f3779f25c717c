//! Cards for routes that deliver through an incoming webhook
//! (`routes[].webhook_url`). A webhook can only post new top-level
//! messages: no thread, no `chat.update`, no metadata, and no buttons (a
//! click would reach ackbar without the bot token's app, and the card could
//! not be updated to show it). Each card change therefore becomes one new
//! message showing the card's current state, without its actions.

use crate::slack::blocks::{Block, Message};

/// `msg` as an incoming webhook may carry it: without actions blocks (the
/// default card's or a template's) and without metadata. The text fallback
/// and every other block stay.
pub fn webhook_message(msg: Message) -> Message {
    let blocks = msg
        .blocks
        .into_iter()
        .filter(|block| !is_actions(block))
        .collect();
    Message {
        text: msg.text,
        blocks,
        metadata: None,
    }
}

fn is_actions(block: &Block) -> bool {
    match block {
        Block::Actions(_) => true,
        Block::Raw(raw) => raw.get("type").and_then(|t| t.as_str()) == Some("actions"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slack::blocks::Metadata;
    use serde_json::json;

    #[test]
    fn actions_and_metadata_are_dropped_and_the_rest_kept() {
        let msg = Message {
            text: "[FIRING] disk full".into(),
            blocks: vec![
                Block::Divider,
                Block::Raw(json!({"type": "actions", "elements": []})),
                Block::Raw(json!({"type": "section", "text": {"type": "mrkdwn", "text": "x"}})),
            ],
            metadata: Some(Metadata {
                event_type: "ackbar_card".into(),
                event_payload: json!({"card_id": "c1"}),
            }),
        };
        let sent = serde_json::to_value(webhook_message(msg)).unwrap();
        assert_eq!(sent["text"], "[FIRING] disk full");
        let types: Vec<_> = sent["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(types, ["divider", "section"]);
        assert!(sent.get("metadata").is_none());
    }
}
