//! Decoding at the edge: every source's payload becomes model types here.

#[cfg(feature = "embedded")]
pub mod alertmanager;
#[cfg(feature = "layer")]
pub mod layer;
#[cfg(any(feature = "embedded", feature = "forward"))]
pub mod otlp;

/// `s` cut to at most `max` characters, with `…` marking the cut.
#[cfg(feature = "embedded")]
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}
