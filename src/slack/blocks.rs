//! Typed Block Kit. (Skeleton: the limit-enforcing builder is being written.)

use serde::Serialize;

/// A message as ackbar posts it: fallback text, blocks, optional metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Top-level `text`: the notification fallback (kept under 4,000 chars).
    pub text: String,
    pub blocks: Vec<Block>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// Slack message metadata: machine-readable data attached to a message, read
/// back by `conversations.history` with `include_all_metadata=true`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Metadata {
    pub event_type: String,
    pub event_payload: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Divider {},
}
