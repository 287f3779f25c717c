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

/// Due cards handled per round.
const BATCH: u32 = 100;

fn at_offset(opened_at: DateTime<Utc>, after: Duration) -> Option<DateTime<Utc>> {
    opened_at.checked_add_signed(chrono::Duration::from_std(after).ok()?)
}

/// The ids a step notifies now: users and groups as written, rotations
/// resolved to whoever is on call at `now`.
pub fn resolve_targets(
    targets: &[Target],
    rotations: &Rotations,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for target in targets {
        let id = match target {
            Target::User(id) | Target::Group(id) => Some(id.clone()),
            Target::Rotation(name) => rotations
                .get(name)
                .and_then(|r| r.on_call(now))
                .map(|shift| shift.user),
        };
        if let Some(id) = id
            && !ids.contains(&id)
        {
            ids.push(id);
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
    let notify = resolve_targets(&step.notify, rotations, now);
    // User groups cannot be messaged directly; their members see the mention.
    let dm = match step.dm {
        true => notify
            .iter()
            .filter(|id| !id.starts_with('S'))
            .cloned()
            .collect(),
        false => Vec::new(),
    };
    Some(Action::Escalate {
        from_level: level,
        notify,
        dm,
        by,
        next_escalation_at,
    })
}

/// When the policy resumes after an acknowledgement is taken back: the next
/// step's scheduled time, or now if that has passed.
pub fn resume_at(
    route: &RouteConfig,
    level: u32,
    opened_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
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
                    let action =
                        next_step(route, &rotations, card.level, card.opened_at, None, now);
                    let Some(action) = action else { continue };
                    match store.act(&card.card, action, now).await {
                        Ok(ActionOutcome::Applied { channel }) => {
                            crate::metrics::card_action("escalate_timer", "applied");
                            deliverer.wake(&channel);
                        }
                        Ok(_) => crate::metrics::card_action("escalate_timer", "unchanged"),
                        Err(e) => {
                            warn!(card = %card.card, error = %e, "cannot apply a due escalation step; will retry")
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot read due escalations; will retry"),
        }
        super::timer::wait_for_next(store.next_escalation_at().await, &mut stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, EscalationStep};
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).single().unwrap()
    }

    fn route(steps: &[(u64, &str)]) -> RouteConfig {
        let mut route = Config::from_json("{}")
            .unwrap()
            .effective_routes()
            .remove(0);
        route.escalation = steps
            .iter()
            .map(|(after, who)| EscalationStep {
                after: Duration::from_secs(*after),
                notify: vec![who.parse().unwrap()],
                dm: false,
            })
            .collect();
        route
    }

    fn no_rotations() -> Rotations {
        Rotations::new(&[]).unwrap()
    }

    #[test]
    fn next_step_notifies_the_step_and_schedules_the_following_one() {
        let r = route(&[(60, "U0AAAAAAA"), (300, "S0BBBBBBB")]);
        let action = next_step(&r, &no_rotations(), 0, t(0), None, t(60)).unwrap();
        assert_eq!(
            action,
            Action::Escalate {
                from_level: 0,
                notify: vec!["U0AAAAAAA".into()],
                dm: Vec::new(),
                by: None,
                next_escalation_at: Some(t(300)),
            }
        );
    }

    #[test]
    fn pressing_escalate_early_keeps_the_gap_to_the_following_step() {
        let r = route(&[(600, "U0AAAAAAA"), (900, "U0BBBBBBB")]);
        // Pressed 10 s after opening: step 1 now, step 2 no sooner than the
        // 300 s gap between the steps, but at its scheduled 900 s here.
        let Some(Action::Escalate {
            next_escalation_at, ..
        }) = next_step(
            &r,
            &no_rotations(),
            0,
            t(0),
            Some("U0CCCCCCC".into()),
            t(10),
        )
        else {
            panic!("expected an escalation");
        };
        assert_eq!(next_escalation_at, Some(t(900)));
        // Pressed late (step 2's time already passed): the gap holds.
        let Some(Action::Escalate {
            next_escalation_at, ..
        }) = next_step(&r, &no_rotations(), 0, t(0), None, t(2000))
        else {
            panic!("expected an escalation");
        };
        assert_eq!(next_escalation_at, Some(t(2300)));
    }

    #[test]
    fn no_step_past_the_last() {
        let r = route(&[(60, "U0AAAAAAA")]);
        assert!(next_step(&r, &no_rotations(), 1, t(0), None, t(100)).is_none());
        assert!(next_step(&route(&[]), &no_rotations(), 0, t(0), None, t(100)).is_none());
    }

    #[test]
    fn resume_after_unacknowledge_is_never_in_the_past() {
        let r = route(&[(60, "U0AAAAAAA"), (600, "U0BBBBBBB")]);
        assert_eq!(resume_at(&r, 1, t(0), t(100)), Some(t(600)));
        assert_eq!(resume_at(&r, 1, t(0), t(700)), Some(t(700)));
        assert_eq!(resume_at(&r, 2, t(0), t(700)), None);
    }

    #[test]
    fn rotation_targets_resolve_to_whoever_is_on_call() {
        let config = Config::from_json(
            r#"{"oncall": [{"name": "primary", "members": ["U0AAAAAAA", "U0BBBBBBB"], "shift": "1d",
                "handoff": "09:00", "timezone": "UTC", "start": "2026-01-01"}]}"#,
        )
        .unwrap();
        let rotations = Rotations::new(&config.oncall).unwrap();
        let targets = vec![
            "oncall:primary".parse().unwrap(),
            "U0AAAAAAA".parse().unwrap(),
        ];
        let jan_2_noon = Utc.with_ymd_and_hms(2026, 1, 2, 12, 0, 0).unwrap();
        assert_eq!(
            resolve_targets(&targets, &rotations, jan_2_noon),
            vec!["U0BBBBBBB", "U0AAAAAAA"]
        );
        let jan_1_noon = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(
            resolve_targets(&targets, &rotations, jan_1_noon),
            vec!["U0AAAAAAA"],
            "no duplicates"
        );
    }
}
