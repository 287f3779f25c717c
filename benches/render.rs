//! Card rendering, including the JSON serialization that is actually sent.
//!
//! cargo bench --bench render -- --warm-up-time 1 --measurement-time 2

use ackbar::model::{
    AlertStatus, CardAlert, CardId, CardState, CardView, Fingerprint, Labels, ThreadEvent,
};
use ackbar::slack::cards::{render_card, render_reply};
use chrono::{DateTime, Duration, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// An alert as kube-prometheus sends them: 8 labels, 3 annotations.
fn alert(i: usize, opened: DateTime<Utc>) -> CardAlert {
    CardAlert {
        fingerprint: Fingerprint(0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(i as u64 + 1)),
        status: if i % 4 == 3 { AlertStatus::Resolved } else { AlertStatus::Firing },
        labels: labels(&[
            ("alertname", "KubePodCrashLooping".into()),
            ("severity", "critical".into()),
            ("cluster", "prod-eu-west-1".into()),
            ("namespace", "payments".into()),
            ("pod", format!("payments-api-7d9f8b6c5-{i:05}")),
            ("container", "api".into()),
            ("job", "kube-state-metrics".into()),
            ("instance", format!("10.42.{}.{}:8080", i / 250, i % 250)),
        ]),
        annotations: labels(&[
            ("summary", format!("Pod payments/payments-api-7d9f8b6c5-{i:05} (api) is in CrashLoopBackOff")),
            ("description", "Pod is restarting 2.35 times / 10 minutes. Last termination reason: OOMKilled & exit code 137.".into()),
            ("runbook_url", "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping".into()),
        ]),
        starts_at: opened,
        ends_at: None,
        generator_url: Some(format!(
            "http://prometheus.monitoring.svc:9090/graph?g0.expr=max_over_time%28kube_pod_container_status_waiting_reason%7Breason%3D%22CrashLoopBackOff%22%7D%5B5m%5D%29+%3E%3D+1&g0.tab=1&i={i}"
        )),
        occurrences: None,
    }
}

fn view(n: usize, now: DateTime<Utc>) -> CardView {
    let opened = now - Duration::minutes(83);
    let alerts: Vec<CardAlert> = (0..n).map(|i| alert(i, opened)).collect();
    let firing = alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .count() as u64;
    CardView {
        id: CardId("5f0c6a1e9b2d4c7a8e3f1b0d2c4a6e8f".into()),
        key: "payments/{alertname=\"KubePodCrashLooping\",namespace=\"payments\"}".into(),
        route: "payments".into(),
        channel: "C0123ABCD".into(),
        state: CardState::Firing,
        opened_at: opened,
        resolved_at: None,
        group_labels: labels(&[
            ("alertname", "KubePodCrashLooping".into()),
            ("namespace", "payments".into()),
        ]),
        common_labels: labels(&[
            ("alertname", "KubePodCrashLooping".into()),
            ("severity", "critical".into()),
            ("cluster", "prod-eu-west-1".into()),
            ("namespace", "payments".into()),
            ("container", "api".into()),
            ("job", "kube-state-metrics".into()),
        ]),
        common_annotations: labels(&[(
            "runbook_url",
            "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"
                .into(),
        )]),
        external_url: Some("http://alertmanager.monitoring.svc:9093".into()),
        key_labels: vec!["cluster".into(), "namespace".into(), "severity".into()],
        firing_count: firing,
        resolved_count: n as u64 - firing,
        acknowledged: None,
        escalation_level: 0,
        manual_resolve: false,
        alerts,
    }
}

fn bench_render(c: &mut Criterion) {
    let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let mut group = c.benchmark_group("render_card+json");
    for n in [1usize, 10, 30] {
        let v = view(n, now);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}_alerts")),
            &v,
            |b, v| {
                b.iter(|| {
                    let m = render_card(black_box(v), now);
                    serde_json::to_vec(&m).map(|body| body.len()).unwrap_or(0)
                })
            },
        );
    }
    group.finish();

    let v = view(30, now);
    let events: Vec<ThreadEvent> = (0..500)
        .map(|i| ThreadEvent::AlertResolved {
            fingerprint: format!("{:016x}", i * 7919),
            name: format!("KubePodCrashLooping{}", i % 25),
            at: now,
        })
        .collect();
    c.bench_function("render_reply+json/500_resolves", |b| {
        b.iter(|| {
            let m = render_reply(black_box(&v), black_box(&events), now);
            serde_json::to_vec(&m).map(|body| body.len()).unwrap_or(0)
        })
    });
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
