//! Decoding at the edge: every source's payload becomes model types here.

pub mod alertmanager;
pub mod layer;
pub mod otlp;
