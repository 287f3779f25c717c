//! ackbar's own metrics: every name in one place, rendered as Prometheus
//! text at `GET /metrics`.
//!
//! The `metrics` facade is process-global, so [`install`] installs one
//! recorder per process and hands out the same handle to every server.

#[cfg(feature = "embedded")]
use std::sync::OnceLock;

use metrics::counter;
#[cfg(feature = "embedded")]
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
#[cfg(feature = "embedded")]
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::OtlpSignal;

pub const NOTIFICATIONS_RECEIVED: &str = "ackbar_notifications_received_total";
pub const NOTIFICATIONS_REJECTED: &str = "ackbar_notifications_rejected_total";
pub const NOTIFICATIONS_DEDUPED: &str = "ackbar_notifications_deduped_total";
pub const RESENDS_RECOGNISED: &str = "ackbar_resends_recognised_total";
pub const ALERTS_RECEIVED: &str = "ackbar_alerts_received_total";
pub const ALERTS_UNROUTED: &str = "ackbar_alerts_unrouted_total";
pub const CARDS_OPENED: &str = "ackbar_cards_opened_total";
pub const CARDS_RESOLVED: &str = "ackbar_cards_resolved_total";
pub const CARDS_REOPENED: &str = "ackbar_cards_reopened_total";
pub const SLACK_CALLS: &str = "ackbar_slack_calls_total";
pub const SLACK_RATELIMITED: &str = "ackbar_slack_ratelimited_total";
pub const SLACK_RECONCILED: &str = "ackbar_slack_reconciled_total";
pub const OUTBOX_PUSHED: &str = "ackbar_outbox_pushed_total";
pub const OUTBOX_POPPED: &str = "ackbar_outbox_popped_total";
pub const OUTBOX_DEAD_LETTERS: &str = "ackbar_outbox_dead_letters_total";
pub const OUTBOX_PENDING: &str = "ackbar_outbox_pending";
pub const OUTBOX_DEAD: &str = "ackbar_outbox_dead";
pub const CARDS_FIRING: &str = "ackbar_cards_firing";
pub const STORE_ERRORS: &str = "ackbar_store_errors_total";
pub const TEMPLATE_FAILURES: &str = "ackbar_template_failures_total";
pub const CARDS_PRUNED: &str = "ackbar_cards_pruned_total";
pub const CARD_ACTIONS: &str = "ackbar_card_actions_total";
pub const LAYER_EVENTS_DROPPED: &str = "ackbar_layer_events_dropped_total";
pub const LAYER_FORWARD_REQUESTS: &str = "ackbar_layer_forward_requests_total";
pub const OTLP_RECORDS: &str = "ackbar_otlp_records_total";
pub const CARD_POST_SECONDS: &str = "ackbar_card_post_seconds";

/// Buckets of [`CARD_POST_SECONDS`]: milliseconds when all is well (the
/// store's commits and one Slack call), seconds when pacing holds a storm's
/// cards back, minutes through a Slack outage.
#[cfg(feature = "embedded")]
const CARD_POST_BUCKETS: &[f64] = &[
    0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[cfg(feature = "embedded")]
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns its handle. `None`
/// when another recorder was installed first (an embedding host's).
#[cfg(feature = "embedded")]
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(CARD_POST_SECONDS.to_owned()),
                    CARD_POST_BUCKETS,
                )
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

#[cfg(feature = "embedded")]
fn describe() {
    describe_counter!(NOTIFICATIONS_RECEIVED, "Notifications accepted, by source.");
    describe_counter!(
        NOTIFICATIONS_REJECTED,
        "Requests rejected at ingest, by reason."
    );
    describe_counter!(
        NOTIFICATIONS_DEDUPED,
        "Accepted notifications that changed nothing (no Slack call)."
    );
    describe_counter!(
        RESENDS_RECOGNISED,
        "Of those, Alertmanager re-sends recognised by their bytes, without decoding."
    );
    describe_counter!(ALERTS_RECEIVED, "Alerts in accepted notifications.");
    describe_counter!(
        ALERTS_UNROUTED,
        "Alerts no route matched (dropped by configuration)."
    );
    describe_counter!(CARDS_OPENED, "Cards opened.");
    describe_counter!(CARDS_RESOLVED, "Cards resolved.");
    describe_counter!(
        CARDS_REOPENED,
        "Resolved cards reopened inside their reopen window."
    );
    describe_counter!(SLACK_CALLS, "Slack Web API calls, by method and outcome.");
    describe_counter!(SLACK_RATELIMITED, "Slack answers with HTTP 429, by method.");
    describe_counter!(
        SLACK_RECONCILED,
        "Card posts of unknown outcome found in channel history."
    );
    describe_counter!(OUTBOX_PUSHED, "Outbox operations written, by kind.");
    describe_counter!(OUTBOX_POPPED, "Outbox operations completed, by kind.");
    describe_counter!(
        OUTBOX_DEAD_LETTERS,
        "Outbox operations that failed permanently, by kind."
    );
    describe_gauge!(OUTBOX_PENDING, "Outbox operations waiting to be sent.");
    describe_gauge!(
        OUTBOX_DEAD,
        "Dead-lettered outbox operations held in the store."
    );
    describe_gauge!(CARDS_FIRING, "Cards currently firing.");
    describe_counter!(STORE_ERRORS, "Store operations that failed.");
    describe_counter!(
        TEMPLATE_FAILURES,
        "Route template renders that failed and sent the default card or reply instead, by route and kind."
    );
    describe_counter!(
        CARDS_PRUNED,
        "Resolved cards deleted after store.retention."
    );
    describe_counter!(
        CARD_ACTIONS,
        "Actions on cards (acknowledge, escalate, resolve; from Slack or the escalation timer), by outcome."
    );
    describe_counter!(
        LAYER_EVENTS_DROPPED,
        "Events the tracing Layer captured but could not hand on, by reason."
    );
    describe_counter!(
        LAYER_FORWARD_REQUESTS,
        "OTLP requests of the tracing Layer's forwarding mode, by outcome."
    );
    describe_histogram!(
        CARD_POST_SECONDS,
        Unit::Seconds,
        "From the notification that opened a card to Slack accepting its chat.postMessage (pacing, retries and outages included)."
    );
    describe_counter!(
        OTLP_RECORDS,
        "OTLP log records and spans in accepted requests, by signal and outcome (alert, skipped: not alert-worthy, rejected: reported in partialSuccess)."
    );
}

pub fn rejected(reason: &'static str) {
    counter!(NOTIFICATIONS_REJECTED, "reason" => reason).increment(1);
}

pub fn slack_call(method: &'static str, outcome: &'static str) {
    counter!(SLACK_CALLS, "method" => method, "outcome" => outcome).increment(1);
}

/// An action on a card and what came of it: `applied`, `unchanged` or
/// `refused` (not allowed).
pub fn card_action(action: &'static str, outcome: &'static str) {
    counter!(CARD_ACTIONS, "action" => action, "outcome" => outcome).increment(1);
}

/// Events the `tracing` Layer dropped: `queue_full`, `forward_buffer_full`,
/// `rejected` (the server refused them for good), `shutdown` (still
/// undelivered at the flush deadline), `store` (the embedded bridge could not
/// store them).
pub fn layer_events_dropped(reason: &'static str, count: u64) {
    counter!(LAYER_EVENTS_DROPPED, "reason" => reason).increment(count);
}

/// One forwarding request: `delivered`, `retried` or `rejected`.
pub fn layer_forward_request(outcome: &'static str) {
    counter!(LAYER_FORWARD_REQUESTS, "outcome" => outcome).increment(1);
}

/// What became of the records of one accepted OTLP request. `alerts`
/// counts records that became (or joined) an alert.
pub fn otlp_records(signal: OtlpSignal, alerts: u64, skipped: u64, rejected: u64) {
    let signal = match signal {
        OtlpSignal::Logs => "logs",
        OtlpSignal::Traces => "traces",
    };
    for (outcome, n) in [
        ("alert", alerts),
        ("skipped", skipped),
        ("rejected", rejected),
    ] {
        counter!(OTLP_RECORDS, "signal" => signal, "outcome" => outcome).increment(n);
    }
}

pub fn store_error() {
    counter!(STORE_ERRORS).increment(1);
}

pub fn cards_pruned(n: u64) {
    counter!(CARDS_PRUNED).increment(n);
}

/// A card was posted `since_opened` after the notification that opened it.
#[cfg(feature = "embedded")]
pub fn card_posted(since_opened: std::time::Duration) {
    histogram!(CARD_POST_SECONDS).record(since_opened.as_secs_f64());
}

#[cfg(feature = "embedded")]
pub fn outbox_gauges(summary: crate::store::OutboxSummary) {
    gauge!(OUTBOX_PENDING).set(summary.pending as f64);
    gauge!(OUTBOX_DEAD).set(summary.dead as f64);
    gauge!(CARDS_FIRING).set(summary.cards_firing as f64);
}
