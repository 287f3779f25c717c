//! Decoding at the edge: every source's payload becomes model types here.

pub mod alertmanager;
pub mod layer;
pub mod otlp;

/// `s` cut to at most `max` characters, with `…` marking the cut.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}
