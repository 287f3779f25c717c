//! What a change writes, decided without SQL: both backends ask these
//! functions and only carry out the answer in their own dialect.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Action, ApplyOutcome, CardBrief, OpKind, OpState, RetryOutcome, rows};
use crate::model::{CardId, CardState, ThreadEvent};
use crate::pipeline::card::{CardBatch, Change, Target};

/// Thread events kept in one pending reply. Past this a storm's reply is
/// already capped by rendering; more events would only grow the row.
pub(crate) const MAX_EVENTS_PER_REPLY: usize = 2_000;

/// The outcome of a batch that changed nothing.
pub(crate) fn unchanged(batch: &CardBatch, latest: Option<&CardId>) -> ApplyOutcome {
    ApplyOutcome {
        card: latest.cloned(),
        channel: batch.channel.clone(),
        changed: false,
        opened: false,
        reopened: false,
        resolved: false,
        alerts_fired: 0,
        alerts_resolved: 0,
        ops_pushed: Vec::new(),
    }
}

/// The outcome of a written change, given the operations it added.
pub(crate) fn changed(batch: &CardBatch, change: &Change, ops_pushed: Vec<OpKind>) -> ApplyOutcome {
    ApplyOutcome {
        card: Some(change.target.card_id().clone()),
        channel: batch.channel.clone(),
        changed: true,
        opened: matches!(change.target, Target::New(_)),
        reopened: matches!(change.target, Target::Reopen(_)),
        resolved: change.card_resolved(),
        alerts_fired: change.alerts_fired,
        alerts_resolved: change.alerts_resolved,
        ops_pushed,
    }
}

/// When a new or reopened card's first escalation step is due.
pub(crate) fn escalation_due(
    batch: &CardBatch,
    change: &Change,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if change.state != CardState::Firing {
        return None;
    }
    let after = chrono::Duration::from_std(batch.first_escalation?).ok()?;
    now.checked_add_signed(after)
}

/// When a reply started now is due: after the batching window.
pub(crate) fn reply_due(window: Duration, now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(window).unwrap_or_default()
}

/// When an update caused by alerts is due: with the card's thread reply,
/// after the batching window, so that a storm's changes of one card become
/// one `chat.update` showing where they ended (what people do is shown at
/// once: those updates are due now).
pub(crate) fn update_due(batch: &CardBatch, now: DateTime<Utc>) -> DateTime<Utc> {
    reply_due(batch.reply_batch_window, now)
}

/// The events to append (as JSON) to a reply that already holds `held`.
/// Past the cap only the card-level events (resolved, reopened) are kept:
/// the reply already lists more alerts than it can show.
pub(crate) fn reply_events_to_keep(events: &[ThreadEvent], held: usize) -> Vec<String> {
    let room = MAX_EVENTS_PER_REPLY.saturating_sub(held);
    events
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            *i < room
                || matches!(
                    e,
                    ThreadEvent::CardResolved { .. } | ThreadEvent::CardReopened { .. }
                )
        })
        .map(|(_, e)| rows::json(e))
        .collect()
}

/// The thread event an action adds, or `None` when the card is not in the
/// state the action was decided for (invariant 7).
pub(crate) fn action_event(
    action: &Action,
    current: &CardBrief,
    now: DateTime<Utc>,
) -> Option<ThreadEvent> {
    let firing = current.state == CardState::Firing;
    let (applies, event) = match action {
        Action::Acknowledge { by } => (
            firing && current.acked_by.is_none(),
            ThreadEvent::Acknowledged {
                by: by.clone(),
                at: now,
            },
        ),
        Action::Unacknowledge { by, .. } => (
            firing && current.acked_by.is_some(),
            ThreadEvent::Unacknowledged {
                by: by.clone(),
                at: now,
            },
        ),
        // Cards of sources that resolve themselves cannot be resolved by
        // hand: the next notification would contradict it.
        Action::Resolve { by } => (
            firing && current.manual_resolve,
            ThreadEvent::ResolvedBy {
                by: by.clone(),
                at: now,
                duration_secs: (now - current.opened_at).num_seconds().max(0),
            },
        ),
        Action::Note { event } => (true, event.clone()),
        Action::Escalate {
            from_level,
            notify,
            by,
            ..
        } => (
            firing && current.acked_by.is_none() && current.escalation_level == *from_level,
            ThreadEvent::Escalated {
                level: from_level + 1,
                notify: notify.clone(),
                by: by.clone(),
                at: now,
            },
        ),
    };
    applies.then_some(event)
}

/// What to do with a channel's lease row (invariant 9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseStep {
    /// The caller holds it: extend it.
    Renew,
    /// Free or expired: the caller takes it, and recovers what the previous
    /// holder left in flight.
    Take,
    /// Another holder's lease is still running.
    Busy {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// Decides on a lease row (`holder`, `until`) for `me` at `now`. A channel
/// that never had a lease reads as an empty holder that expired long ago.
pub(crate) fn lease_step(
    holder: &str,
    until: DateTime<Utc>,
    me: &str,
    now: DateTime<Utc>,
) -> LeaseStep {
    if holder == me && until > now {
        LeaseStep::Renew
    } else if until <= now {
        LeaseStep::Take
    } else {
        LeaseStep::Busy {
            holder: holder.to_owned(),
            until,
        }
    }
}

/// When a lease taken or renewed at `now` expires.
pub(crate) fn lease_until(ttl: Duration, now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

/// The error of an operation dead-lettered because its card's post was.
pub(crate) fn orphan_error(post_error: &str) -> String {
    format!("card was never posted: {post_error}")
}

/// Idempotency keys seen before this instant are forgotten.
pub(crate) fn seen_expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono::Duration::days(1)
}

/// The `LIKE` pattern for card ids starting with `prefix`, or `None` when
/// no card id can match. Card ids are hex; anything else cannot match (and
/// keeps LIKE wildcards out of the pattern).
pub(crate) fn card_id_pattern(prefix: &str) -> Option<String> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("{}%", prefix.to_ascii_lowercase()))
}

/// One operation of a card, as retrying a dead letter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CardOp {
    pub id: i64,
    pub kind: OpKind,
    pub state: OpState,
}

/// What retrying a dead letter does to one dead operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryStep {
    /// Back to pending, due now, attempts counted afresh.
    Revive(i64),
    /// Deleted: a pending post or update of the card renders the latest
    /// state, which is all this update would have shown (invariant 4).
    Drop(i64),
    /// Its thread events move to the card's pending reply `into` (the
    /// events keep their order: it is their id order), then it is deleted.
    MergeReply { from: i64, into: i64 },
}

/// Decides how to retry dead letter `target` given every operation of its
/// card (in id order), or why it cannot be retried.
pub(crate) fn retry_plan(target: i64, ops: &[CardOp]) -> Result<Vec<RetryStep>, RetryOutcome> {
    let Some(op) = ops.iter().find(|o| o.id == target) else {
        return Err(RetryOutcome::NotFound);
    };
    if op.state != OpState::Dead {
        return Err(RetryOutcome::NotDead(op.state));
    }
    let dead_post = ops
        .iter()
        .any(|o| o.kind == OpKind::Post && o.state == OpState::Dead);
    // Invariant 5: nothing of a card whose post is dead can be sent, so
    // retrying any of its operations retries the post and all of them.
    let group: Vec<&CardOp> = if dead_post {
        ops.iter().filter(|o| o.state == OpState::Dead).collect()
    } else {
        vec![op]
    };
    let pending = |kind: OpKind| {
        ops.iter()
            .filter(move |o| o.kind == kind && o.state == OpState::Pending)
    };
    let mut update_covered = dead_post
        || pending(OpKind::Post).next().is_some()
        || pending(OpKind::Update).next().is_some();
    // New thread events go to the newest pending reply (`push_reply`).
    let mut pending_reply = pending(OpKind::Reply).map(|o| o.id).max();
    // An update queued after the post died would go out after the revived
    // post, which already shows the latest state.
    let stale_updates = pending(OpKind::Update)
        .filter(|_| dead_post)
        .map(|o| RetryStep::Drop(o.id));
    let steps = stale_updates
        .collect::<Vec<_>>()
        .into_iter()
        .chain(group.into_iter().map(|o| match o.kind {
            OpKind::Post | OpKind::Dm | OpKind::Digest => RetryStep::Revive(o.id),
            OpKind::Update if update_covered => RetryStep::Drop(o.id),
            OpKind::Update => {
                update_covered = true;
                RetryStep::Revive(o.id)
            }
            OpKind::Reply => match pending_reply {
                Some(into) => RetryStep::MergeReply { from: o.id, into },
                None => {
                    pending_reply = Some(o.id);
                    RetryStep::Revive(o.id)
                }
            },
        }))
        .collect();
    Ok(steps)
}

/// The card a post (or its dead letter) is about: every operation but a
/// digest has one (a CHECK constraint holds the store to it).
pub(crate) fn posted_card(
    op: &super::OutboxOp,
) -> Result<&crate::model::CardId, super::StoreError> {
    op.card.as_ref().ok_or_else(|| {
        super::StoreError::Corrupt(format!("outbox operation {} has no card", op.id))
    })
}
