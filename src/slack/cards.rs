//! The default card and thread replies, rendered from a CardView.
