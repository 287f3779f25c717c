//! From decoded notifications to card transitions: routing, grouping into
//! cards, the card state machine and dedupe.

pub mod card;
pub mod route;
