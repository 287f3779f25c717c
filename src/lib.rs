//! ackbar: alerts to Slack cards that on-call engineers act on.
//!
//! Prometheus Alertmanager webhooks, OpenTelemetry (OTLP/HTTP) logs and
//! spans, and `tracing` events from Rust services come in; one Block Kit
//! card per alert group goes out to Slack with Acknowledge and Escalate
//! buttons, and every later change (alerts joining, resolving, the card
//! resolving) is threaded under the card while the card itself is kept
//! current. Every change and the Slack operations it causes are written to
//! the store in one transaction before the source is answered, so nothing
//! accepted is lost and nothing is posted twice.
//!
//! # Layout
//!
//! The modules follow the data flow:
//!
//! | module | stage |
//! |---|---|
//! | [`ingest`] | decode at the edge into [`model`] types: Alertmanager webhook (v4), OTLP/HTTP, the `tracing` Layer ([`layer()`], [`ingest::layer`]) |
//! | [`pipeline`] | routes and matchers, card keys, the card state machine, dedupe, escalation and quiet-period timers, scheduled digests ([`pipeline::digest`]) |
//! | [`store`] | the store trait (invariants documented there), SQLite and PostgreSQL, channel leases, retention |
//! | [`deliver`] | the outbox worker: pacing, coalescing, retries, reconciliation, routes delivered through an incoming webhook |
//! | [`slack`] | Web API client, Block Kit with limits, the default card and route templates ([`slack::template`]), the digest message, cards degraded for incoming webhooks ([`slack::incoming`]), request verification, interactions, slash command, Events API, Socket Mode, the OAuth install and each workspace's token, the sandbox |
//! | [`server`] | HTTP routes, body limits, auth, graceful shutdown |
//! | [`bridge`] | embedded mode: all of the above inside a host process |
//! | [`silence`] | Alertmanager silences from a card: client, modal, submission |
//! | [`config`], [`cli`], [`metrics`] | configuration, command line, own metrics |
//!
//! Acting from Slack (Acknowledge, Escalate, Silence, Resolve, the slash
//! command, mentions) goes through the same store transaction and outbox as
//! alerts do; escalation timers live in the store
//! ([`pipeline::escalation`]), on-call rotations in [`pipeline::oncall`].
//!
//! # Features
//!
//! | feature | what it compiles | for |
//! |---|---|---|
//! | `server` (default, with `forward`) | everything, plus the `ackbar` binary and its CLI | running `ackbar serve` |
//! | `postgres` (default, in `server`) | the PostgreSQL store (sqlx's driver) | several replicas of `ackbar serve` on one database |
//! | `embedded` | the Layer, [`Bridge`], store (SQLite: sqlx, and rusqlite for the group writer), pipeline, delivery, route templates (minijinja), Slack endpoints and sandbox (axum, reqwest) | a service that runs ackbar in-process |
//! | `forward` | the Layer and its OTLP/HTTP forwarding (reqwest, prost); no HTTP server, no database driver | a service that sends its errors to a remote `ackbar serve` |
//! | `layer` | the Layer's core with your own [`Sink`] | custom sinks |
//! | `jemalloc` (default) | jemalloc as the `ackbar` binary's allocator (not on MSVC); the library never sets an allocator | the binary's ingest speed |
//!
//! A service that only forwards:
//!
//! ```toml
//! ackbar = { version = "0.1", default-features = false, features = ["forward"] }
//! ```
//!
//! # Quick start
//!
//! ```text
//! cargo run --release -- serve --config config.example.json
//! ```
//!
//! runs ackbar in sandbox mode (no Slack account needed): cards are posted
//! to a local Slack emulator, shown in a browser at
//! `http://127.0.0.1:9094/sandbox/` (buttons included) and as JSON at
//! `/sandbox/api/state`. For a
//! Rust service, see [`layer`] and [`Bridge`].

pub mod backoff;
#[cfg(feature = "embedded")]
pub mod bridge;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "embedded")]
pub mod config;
#[cfg(feature = "embedded")]
pub mod deliver;
pub mod ingest;
// The Layer counts what it drops; the exporter is only in embedded builds.
#[cfg(feature = "layer")]
pub mod metrics;
pub mod model;
#[cfg(feature = "embedded")]
pub mod pipeline;
#[cfg(feature = "embedded")]
pub mod server;
#[cfg(feature = "embedded")]
pub mod silence;
#[cfg(feature = "embedded")]
pub mod slack;
#[cfg(feature = "embedded")]
pub mod store;

#[cfg(feature = "embedded")]
pub use bridge::{Bridge, BridgeBuilder, BridgeError};
#[cfg(feature = "layer")]
pub use ingest::layer::{
    AckbarLayer, EventRecord, GroupBy, LayerBuilder, LayerError, LayerGuard, Sink, SpanRecord,
    layer,
};
