//! Synthetic cards and thread events that `ackbar check-config` renders a
//! route's templates on: an ordinary card, one at every limit (30 alerts,
//! labels and annotations longer than a section holds, acknowledged and escalated), a resolved
//! one, and replies with every kind of event and a storm of firings.

use chrono::{DateTime, Duration, Utc};

use crate::config::RouteConfig;
use crate::model::{
    Acknowledgement, AlertStatus, CardAlert, CardId, CardState, CardView, Fingerprint, Labels,
    Occurrences, ThreadEvent,
};
use crate::slack::cards;

use super::{TemplateKind, with_template};

/// Alerts on the largest sample card: a card lists at most 30.
const MANY_ALERTS: usize = 30;
/// Chars of the long label values and annotations.
const LONG: usize = 3_100;

/// Renders `route`'s templates on every sample and returns what fails, one
/// line each (`card "at limits": message breaks a Block Kit limit: ...`).
pub fn check(route: &RouteConfig, now: DateTime<Utc>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some((_, templates)) = with_template(Some(route), TemplateKind::Card) {
        let options = cards::CardOptions::for_route(Some(route));
        for (name, view) in cards(route, now) {
            let default = cards::render_card_with(&view, now, options);
            if let Err(e) = templates.render_card(&view, now, &default) {
                problems.push(format!("card {name:?}: {e}"));
            }
        }
    }
    if let Some((_, templates)) = with_template(Some(route), TemplateKind::Reply) {
        let view = ordinary(route, now);
        for (name, events) in events(now) {
            let default = cards::render_reply(&view, &events, now);
            if let Err(e) = templates.render_reply(&view, &events, now, &default) {
                problems.push(format!("reply {name:?}: {e}"));
            }
        }
    }
    problems
}

/// The sample cards, named.
pub fn cards(route: &RouteConfig, now: DateTime<Utc>) -> Vec<(&'static str, CardView)> {
    let mut at_limits = ordinary(route, now);
    let long = "x".repeat(LONG);
    for (k, v) in at_limits.common_labels.iter_mut() {
        if k != "alertname" && k != "severity" {
            *v = format!("{v}-{long}");
        }
    }
    at_limits.group_labels = at_limits.common_labels.clone();
    at_limits.common_annotations = Labels::from([
        ("summary".to_owned(), format!("summary {long}")),
        ("description".to_owned(), format!("description {long}")),
        (
            "runbook_url".to_owned(),
            format!("https://runbooks.example/{long}"),
        ),
    ]);
    at_limits.alerts = (0..MANY_ALERTS)
        .map(|i| {
            let mut a = alert(i, now);
            a.labels.insert("pod".to_owned(), format!("pod-{i}-{long}"));
            a.annotations
                .insert("summary".to_owned(), format!("alert {i} {long}"));
            a.occurrences = Some(Occurrences {
                count: 1_000,
                last_seen: now,
            });
            a
        })
        .collect();
    at_limits.firing_count = 500;
    at_limits.resolved_count = 500;
    at_limits.acknowledged = Some(Acknowledgement {
        by: "U0SAMPLE01".to_owned(),
        at: now,
    });
    at_limits.escalation_level = 3;
    at_limits.manual_resolve = true;

    let mut resolved = ordinary(route, now);
    resolved.state = CardState::Resolved;
    resolved.resolved_at = Some(now);
    resolved.firing_count = 0;
    resolved.resolved_count = resolved.alerts.len() as u64;
    for a in &mut resolved.alerts {
        a.status = AlertStatus::Resolved;
        a.ends_at = Some(now);
    }
    vec![
        ("ordinary", ordinary(route, now)),
        ("at limits", at_limits),
        ("resolved", resolved),
    ]
}

/// The sample batches of thread events, named.
pub fn events(now: DateTime<Utc>) -> Vec<(&'static str, Vec<ThreadEvent>)> {
    let at = now - Duration::minutes(5);
    let every_kind = vec![
        ThreadEvent::CardReopened { at },
        ThreadEvent::AlertFiring {
            fingerprint: Fingerprint(1).to_string(),
            name: "HighLatency".to_owned(),
            summary: Some("p99 above 2s @channel <!here>".to_owned()),
            details: Some("trace_id=0af7651916cd43dd8448eb211c80319c".to_owned()),
            at,
        },
        ThreadEvent::AlertResolved {
            fingerprint: Fingerprint(2).to_string(),
            name: "HighLatency".to_owned(),
            at,
        },
        ThreadEvent::Acknowledged {
            by: "U0SAMPLE01".to_owned(),
            at,
        },
        ThreadEvent::Unacknowledged {
            by: "U0SAMPLE01".to_owned(),
            at,
        },
        ThreadEvent::Escalated {
            level: 2,
            notify: vec!["U0SAMPLE02".to_owned(), "S0SAMPLE03".to_owned()],
            by: None,
            at,
        },
        ThreadEvent::StatusAsked {
            by: "U0SAMPLE01".to_owned(),
            at,
        },
        ThreadEvent::Silenced {
            by: "U0SAMPLE01".to_owned(),
            until: now + Duration::hours(2),
            silence_id: "d2b2e3c1-5a8e-4d5b-9f3e-3c1a2b4d5e6f".to_owned(),
            comment: Some("deploy in progress".to_owned()),
            at,
        },
        ThreadEvent::ResolvedBy {
            by: "U0SAMPLE01".to_owned(),
            at,
            duration_secs: 3_600,
        },
        ThreadEvent::CardResolved {
            at,
            duration_secs: 3_600,
        },
    ];
    let long = "y".repeat(LONG);
    let storm = (0..200)
        .map(|i| ThreadEvent::AlertFiring {
            fingerprint: Fingerprint(i).to_string(),
            name: format!("Storm{i}-{long}"),
            summary: Some(format!("summary {long}")),
            details: Some(format!("details {long}")),
            at,
        })
        .collect();
    vec![("every kind", every_kind), ("storm", storm)]
}

/// A firing card of three alerts with the usual labels and links.
fn ordinary(route: &RouteConfig, now: DateTime<Utc>) -> CardView {
    let common_labels = Labels::from(
        [
            ("alertname", "KubePodCrashLooping"),
            ("severity", "critical"),
            ("cluster", "prod-eu-1"),
            ("namespace", "payments"),
            ("service", "checkout"),
            ("job", "kube-state-metrics"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    CardView {
        id: CardId("0123456789abcdef0123456789abcdef".to_owned()),
        key: "sample".to_owned(),
        route: route.name.clone(),
        channel: route.channel.clone(),
        state: CardState::Firing,
        opened_at: now - Duration::minutes(42),
        resolved_at: None,
        group_labels: common_labels.clone(),
        common_annotations: Labels::from([
            (
                "summary".to_owned(),
                "Pod is restarting repeatedly".to_owned(),
            ),
            (
                "runbook_url".to_owned(),
                "https://runbooks.example/KubePodCrashLooping".to_owned(),
            ),
        ]),
        common_labels,
        external_url: Some("http://alertmanager.example:9093".to_owned()),
        key_labels: route.card.key_labels.clone(),
        alerts: (0..3).map(|i| alert(i, now)).collect(),
        firing_count: 3,
        resolved_count: 0,
        acknowledged: None,
        escalation_level: 0,
        manual_resolve: false,
    }
}

fn alert(i: usize, now: DateTime<Utc>) -> CardAlert {
    CardAlert {
        fingerprint: Fingerprint(i as u64),
        status: AlertStatus::Firing,
        labels: Labels::from([
            ("alertname".to_owned(), "KubePodCrashLooping".to_owned()),
            ("instance".to_owned(), format!("10.0.0.{i}:8080")),
            ("pod".to_owned(), format!("checkout-{i}")),
        ]),
        annotations: Labels::from([(
            "summary".to_owned(),
            format!("checkout-{i} restarted 5 times @here"),
        )]),
        starts_at: now - Duration::minutes(42),
        ends_at: None,
        generator_url: Some(format!("http://prometheus.example/graph?g0.expr=up&i={i}")),
        occurrences: None,
    }
}
