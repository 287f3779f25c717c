//! Escalation policies: which step comes next, whom it notifies, and when the
//! one after it is due; plus the timer that climbs unacknowledged cards.
//!
//! The timer keeps no state of its own: a card's `escalation_level` and
//! `next_escalation_at` live in the store, so a pending step fires after a
//! restart, and the store applies a step only if the card is still at the
//! level the step was computed from, so it fires once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::warn;

use crate::config::{RouteConfig, Target};
use crate::deliver::Deliverer;
use crate::pipeline::oncall::Rotations;
use crate::pipeline::route::Router;
use crate::store::{Action, ActionOutcome, Store};

/// How often the timer looks for due steps when none is known to be due
/// sooner (another replica or a restart may have added some).
const POLL: Duration = Duration::from_secs(5);
/// Due cards handled per round.
const BATCH: u32 = 100;

fn at_offset(opened_at: DateTime<Utc>, after: Duration) -> Option<DateTime<Utc>> {
    opened_at.checked_add_signed(chrono::Duration::from_std(after).ok()?)
}

/// The ids a step notifies now: users and groups as written, rotations
/// resolved to whoever is on call at `now`.
pub fn resolve_targets(targets: &[Target], rotations: &Rotations, now: DateTime<Utc>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for target in targets {
        let id = match target {
            Target::User(id) | Target::Group(id) => Some(id.clone()),
            Target::Rotation(name) => rotations
                .get(name)
                .and_then(|r| r.on_call(now))
                .map(|shift| shift.user),
        };
        if let Some(id) = id {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// The action that takes a card from `level` (steps already taken) to the
/// next step, or `None` when the policy has no further step.
///
/// The step after it keeps its configured distance: it is due at its
/// `after` since the card opened, but never sooner than the gap between the
/// two steps from now, so pressing Escalate does not make the timer fire the
/// following step at once.
pub fn next_step(
    route: &RouteConfig,
    rotations: &Rotations,
    level: u32,
    opened_at: DateTime<Utc>,
    by: Option<String>,
    now: DateTime<Utc>,
) -> Option<Action> {
    let steps = &route.escalation;
    let step = steps.get(level as usize)?;
    let next_escalation_at = steps.get(level as usize + 1).and_then(|following| {
        let scheduled = at_offset(opened_at, following.after)?;
        let gap = following.after.saturating_sub(step.after);
        let earliest = at_offset(now, gap)?;
        Some(scheduled.max(earliest))
    });
    Some(Action::Escalate {
        from_level: level,
        notify: resolve_targets(&step.notify, rotations, now),
        by,
        next_escalation_at,
    })
}

/// When the policy resumes after an acknowledgement is taken back: the next
/// step's scheduled time, or now if that has passed.
pub fn resume_at(route: &RouteConfig, level: u32, opened_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let step = route.escalation.get(level as usize)?;
    Some(at_offset(opened_at, step.after)?.max(now))
}

/// Climbs due, unacknowledged cards until `stop` turns true.
pub async fn run_timer(
    store: Arc<dyn Store>,
    router: Arc<Router>,
    rotations: Arc<Rotations>,
    deliverer: Deliverer,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let now = Utc::now();
        match store.due_escalations(now, BATCH).await {
            Ok(due) => {
                for card in due {
                    let Some(route) = router.by_name(&card.route) else {
                        continue;
                    };
                    let action = next_step(route, &rotations, card.level, card.opened_at, None, now);
                    let Some(action) = action else { continue };
                    match store.act(&card.card, action, now).await {
                        Ok(ActionOutcome::Applied { channel }) => deliverer.wake(&channel),
                        Ok(_) => {}
                        Err(e) => warn!(card = %card.card, error = %e, "cannot apply a due escalation step; will retry"),
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot read due escalations; will retry"),
        }
        let wait = match store.next_escalation_at().await {
            Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or_default().min(POLL),
            _ => POLL,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait.max(Duration::from_millis(200))) => {}
            _ = stop.changed() => {}
        }
    }
}
