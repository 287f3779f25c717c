//! Decoding at the edge: every source's payload becomes model types here.

#[cfg(feature = "embedded")]
pub mod alertmanager;
