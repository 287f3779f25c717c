//! ackbar: alerts to Slack cards that on-call engineers act on.

pub mod config;
pub mod ingest;
pub mod model;
pub mod pipeline;
pub mod slack;
