//! Everything that speaks Slack: the Web API client, Block Kit, the default
//! card, the OAuth install flow and each workspace's token, and the local
//! emulator (sandbox).

pub mod api;
pub mod blocks;
pub mod cards;
pub mod commands;
pub mod digest;
pub mod events;
pub mod incoming;
pub mod interact;
#[cfg(test)]
mod mention_tests;
pub mod oauth;
pub mod paths;
pub mod sandbox;
pub mod scopes;
pub mod socket;
pub mod template;
pub mod verify;
pub mod workspaces;
