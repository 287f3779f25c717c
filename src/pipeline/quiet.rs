//! The quiet-period timer: event sources (the `tracing` Layer, OTLP) never
//! say an alert is over, so an alert that has not occurred for its route's
//! `quiet_period` is resolved here, through the same store transaction and
//! outbox as any resolve. The deadline lives in the store (`expires_at`), so
//! it survives restarts, and a later occurrence moves it (see
//! [`super::card::plan`], which drops a resolve that lost that race).

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::watch;
use tracing::warn;

use super::Pipeline;
use crate::deliver::Deliverer;

/// Resolves quiet alerts until `stop` turns true.
pub async fn run_timer(
    pipeline: Arc<Pipeline>,
    deliverer: Deliverer,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        match pipeline.resolve_quiet(Utc::now()).await {
            Ok(report) => {
                for channel in report.channels_to_wake() {
                    deliverer.wake(channel);
                }
            }
            Err(e) => warn!(error = %e, "cannot resolve quiet alerts; will retry"),
        }
        super::timer::wait_for_next(pipeline.next_quiet_at().await, &mut stop).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{DateTime, TimeZone};

    use super::super::route::Router;
    use super::*;
    use crate::config::RouteConfig;
    use crate::model::{
        Alert, AlertStatus, Fingerprint, Labels, Notification, Occurrences, Source,
    };
    use crate::store::Store;
    use crate::store::sqlite::SqliteStore;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).single().unwrap()
    }

    fn pipeline(store: &Arc<dyn Store>, route: &str) -> Pipeline {
        let route = RouteConfig {
            name: route.to_owned(),
            quiet_period: Duration::from_secs(60),
            ..RouteConfig::catch_all()
        };
        Pipeline::new(
            Arc::new(Router::new(vec![route])),
            store.clone(),
            Duration::from_secs(1),
        )
    }

    fn error_event(at: DateTime<Utc>) -> Notification {
        let labels = Labels::from([("alertname".to_owned(), "payment failed".to_owned())]);
        Notification {
            source: Source::Tracing,
            group_labels: Labels::new(),
            common_labels: Labels::new(),
            common_annotations: Labels::new(),
            alerts: vec![Alert {
                fingerprint: Fingerprint(7),
                status: AlertStatus::Firing,
                labels,
                annotations: Labels::new(),
                starts_at: at,
                ends_at: None,
                generator_url: None,
                occurrences: Some(Occurrences {
                    count: 1,
                    last_seen: at,
                }),
            }],
            truncated_alerts: 0,
        }
    }

    #[tokio::test]
    async fn a_quiet_alert_resolves_even_after_its_route_left_the_config() {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open("sqlite::memory:", Duration::from_secs(5))
                .await
                .unwrap(),
        );
        let before = pipeline(&store, "payments");
        let opened = before.ingest(error_event(t(0)), t(0)).await.unwrap();
        assert!(opened.outcomes[0].opened);

        // The config changed: route "payments" is gone.
        let after = pipeline(&store, "renamed");
        let early = after.resolve_quiet(t(59)).await.unwrap();
        assert!(early.outcomes.is_empty(), "still inside the quiet period");
        let report = after.resolve_quiet(t(60)).await.unwrap();
        assert_eq!(report.outcomes.len(), 1);
        assert!(report.outcomes[0].resolved, "{report:?}");
        assert_eq!(after.next_quiet_at().await.unwrap(), None);
    }
}
