//! ackbar: alerts to Slack cards that on-call engineers act on.
//!
//! Prometheus Alertmanager webhooks come in; one Block Kit card per alert
//! group goes out to Slack with Acknowledge and Escalate buttons, and every later change (alerts joining,
//! resolving, the card resolving) is threaded under the card while the card
//! itself is kept current. Every change and the Slack operations it causes
//! are written to the store in one transaction before the webhook is
//! answered, so nothing accepted is lost and nothing is posted twice.
//!
//! # Layout
//!
//! The modules follow the data flow:
//!
//! | module | stage |
//! |---|---|
//! | [`ingest`] | decode at the edge: Alertmanager webhook (v4) into [`model`] types; the `tracing` Layer ([`layer()`], [`ingest::layer`]) |
//! | [`pipeline`] | routes and matchers, card keys, the card state machine, dedupe |
//! | [`store`] | the store trait (invariants documented there) and SQLite |
//! | [`deliver`] | the outbox worker: pacing, coalescing, retries, reconciliation |
//! | [`slack`] | Web API client, Block Kit with limits, the default card, request verification, interactions, slash command, Events API, Socket Mode, the sandbox |
//! | [`server`] | HTTP routes, body limits, auth, graceful shutdown |
//! | [`silence`] | Alertmanager silences from a card: client, modal, submission |
//! | [`config`], [`cli`], [`metrics`] | configuration, command line, own metrics |
//!
//! Acting from Slack (Acknowledge, Escalate, Silence, Resolve, the slash
//! command, mentions) goes through the same store transaction and outbox as
//! alerts do; escalation timers live in the store
//! ([`pipeline::escalation`]), on-call rotations in [`pipeline::oncall`].
//!
//! # Quick start
//!
//! ```text
//! cargo run --release -- serve --config config.example.json
//! ```
//!
//! runs ackbar in sandbox mode (no Slack account needed): cards are posted
//! to a local Slack emulator whose state is at `/sandbox/api/state`.

pub mod cli;
pub mod config;
pub mod deliver;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod server;
pub mod silence;
pub mod slack;
pub mod store;

pub use ingest::layer::{
    AckbarLayer, EventRecord, GroupBy, LayerBuilder, LayerError, LayerGuard, Sink, SpanRecord,
    layer,
};
