//! OTLP/HTTP logs and traces: wire types and their JSON mapping.

mod json;
pub mod proto;
