//! Everything that speaks Slack: the Web API client, Block Kit, the default
//! card, and the local emulator (sandbox).

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
pub mod paths;
pub mod sandbox;
pub mod scopes;
pub mod socket;
pub mod template;
pub mod verify;
