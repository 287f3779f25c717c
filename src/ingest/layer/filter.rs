//! The layer's own filter: which events it captures, decided per callsite.
//!
//! It is a per-layer [`Filter`], not a [`Layer::register_callsite`] veto: a
//! plain layer answering [`Interest::never`] would switch the callsite off
//! for the whole subscriber, and the host's other layers (its `fmt` output)
//! would lose those events too. As a per-layer filter, `never` only takes
//! this layer out; when no other layer wants the callsite either, the
//! interest is cached as `never` and the event macro skips it after one
//! atomic load.
//!
//! [`Layer::register_callsite`]: tracing_subscriber::Layer::register_callsite

use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// Events at `min_level` or more severe whose target passes the prefixes.
/// Spans are always enabled: an event's span context (and span label
/// fields) can only be read from spans this filter enabled.
#[derive(Debug, Clone)]
pub struct EventFilter {
    min_level: Level,
    include: Vec<String>,
    exclude: Vec<String>,
}

impl EventFilter {
    pub(super) fn new(min_level: Level, include: Vec<String>, exclude: Vec<String>) -> Self {
        EventFilter {
            min_level,
            include,
            exclude,
        }
    }

    // Inlined into the subscriber's `enabled`, so that an event below the
    // level costs a compare, not a call that saves registers for the
    // prefix loops it will not run.
    #[inline]
    fn captures(&self, meta: &Metadata<'_>) -> bool {
        if meta.is_span() {
            return true;
        }
        // Level first: it rejects the bulk of events without looking at the
        // target, which matters when `enabled` runs per event (a callsite
        // another layer wants is `sometimes`, not cached).
        *meta.level() <= self.min_level && self.target_passes(meta.target())
    }

    /// Prefixes match like `EnvFilter` directives: plain string prefixes.
    #[inline(never)]
    fn target_passes(&self, target: &str) -> bool {
        let included =
            self.include.is_empty() || self.include.iter().any(|p| target.starts_with(p.as_str()));
        included && !self.exclude.iter().any(|p| target.starts_with(p.as_str()))
    }
}

impl<S> Filter<S> for EventFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        self.captures(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.captures(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    // No `max_level_hint`: spans of every level are needed for the context,
    // so any hint would have to be TRACE, which says nothing.
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::callsite::Identifier;
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;

    struct NoCallsite;
    impl tracing::Callsite for NoCallsite {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!("only the identifier is used")
        }
    }
    static CALLSITE: NoCallsite = NoCallsite;

    fn meta(level: Level, target: &'static str, kind: Kind) -> Metadata<'static> {
        Metadata::new(
            "test",
            target,
            level,
            None,
            None,
            None,
            FieldSet::new(&[], Identifier(&CALLSITE)),
            kind,
        )
    }

    fn filter(include: &[&str], exclude: &[&str]) -> EventFilter {
        EventFilter::new(
            Level::WARN,
            include.iter().map(|s| (*s).to_owned()).collect(),
            exclude.iter().map(|s| (*s).to_owned()).collect(),
        )
    }

    #[test]
    fn events_below_min_level_are_not_captured() {
        let f = filter(&[], &[]);
        assert!(f.captures(&meta(Level::ERROR, "app", Kind::EVENT)));
        assert!(f.captures(&meta(Level::WARN, "app", Kind::EVENT)));
        assert!(!f.captures(&meta(Level::INFO, "app", Kind::EVENT)));
    }

    #[test]
    fn spans_of_any_level_and_target_are_enabled() {
        let f = filter(&["app"], &["noisy"]);
        assert!(f.captures(&meta(Level::TRACE, "noisy::db", Kind::SPAN)));
    }

    #[test]
    fn exclude_wins_over_include() {
        let f = filter(&["app"], &["app::noisy"]);
        assert!(f.captures(&meta(Level::ERROR, "app::db", Kind::EVENT)));
        assert!(!f.captures(&meta(Level::ERROR, "app::noisy::x", Kind::EVENT)));
        assert!(!f.captures(&meta(Level::ERROR, "other", Kind::EVENT)));
    }
}
