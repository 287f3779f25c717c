//! Ingest hot paths.
//!
//! `cargo bench --bench ingest -- --warm-up-time 1 --measurement-time 2`
//!
//! * `decode_benches`: Alertmanager webhook decoding and fingerprints, on
//!   payloads shaped like the load harness's `webhook-N.json`
//!   (`../shared/bench/gen_payloads.py`), generated here so the bench needs no
//!   Python.
//! * `pipeline_benches`: decode + the ingest pipeline with the SQLite store
//!   (durable: WAL, `synchronous = FULL`), in the two load-harness modes:
//!   `repeat` (the same alerts again: the dedupe path, no write; decoded
//!   and decided by the state cache, as a re-send whose bytes differ),
//!   `resend_recognised` (the same bytes again, as Alertmanager re-sends
//!   them: recognised without decoding, see `pipeline::resend`) and `unique`
//!   (new alerts joining 100 cycling groups: state, alerts and outbox rows
//!   written in one transaction per notification), and `unique_16_at_once`
//!   (16 such notifications in flight together, as from the load harness's
//!   16 connections: the store commits them in groups).
//!
//! Allocations go through jemalloc, as in the `ackbar` binary.

use std::hint::black_box;

// What the `ackbar` binary allocates with (see the `jemalloc` feature), so
// that these figures are the binary's.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use ackbar::ingest::alertmanager::{decode, fingerprint};
use ackbar::model::Labels;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Decode benchmarks.

const SIZES: [usize; 3] = [1, 10, 100];

const DEPLOYMENTS: [&str; 8] = [
    "checkout-api",
    "payment-gateway",
    "ledger-writer",
    "fraud-scorer",
    "invoice-renderer",
    "refund-worker",
    "card-tokenizer",
    "settlement-batch",
];
const GENERATOR_URL: &str = "http://prometheus-k8s-0.prometheus-operated.monitoring.svc:9090/graph?g0.expr=max_over_time%28kube_pod_container_status_waiting_reason%7Breason%3D%22CrashLoopBackOff%22%2Cjob%3D%22kube-state-metrics%22%7D%5B5m%5D%29+%3E%3D+1&g0.tab=1";

/// A webhook v4 body like `webhook-N.json`: N firing `KubePodCrashLooping`
/// alerts with 8 labels and 3 annotations each, Go's JSON escaping of `&`
/// (so `generatorURL` is an escaped, hence owned, string as in production).
fn webhook(n: usize, with_fingerprints: bool) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(20261128);
    let alnum: Vec<char> = "bcdfghjklmnpqrstvwxz2456789".chars().collect();
    let mut word = |len: usize| {
        (0..len)
            .map(|_| alnum[rng.usize(..alnum.len())])
            .collect::<String>()
    };
    let alerts: Vec<Value> = (0..n)
        .map(|i| {
            let dep = DEPLOYMENTS[i % DEPLOYMENTS.len()];
            let pod = format!("{dep}-{}-{}", word(10), word(5));
            let labels: Labels = [
                ("alertname", "KubePodCrashLooping"),
                ("cluster", "prod-eu-west-1"),
                ("container", dep),
                ("instance", "10.42.7.19:8080"),
                ("job", "kube-state-metrics"),
                ("namespace", "payments"),
                ("pod", pod.as_str()),
                ("severity", "warning"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            let mut alert = json!({
                "status": "firing",
                "labels": labels,
                "annotations": {
                    "description": format!("Pod payments/{pod} ({dep}) is in waiting state (reason: \"CrashLoopBackOff\") for more than 15 minutes on cluster prod-eu-west-1. Restarts in the last hour: {}.", 4 + i % 37),
                    "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
                    "summary": "Pod is crash looping.",
                },
                "startsAt": format!("2026-11-28T11:{:02}:{:02}.{:09}Z", (i / 60) % 60, i % 60, 203_921_424 + i),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": GENERATOR_URL,
            });
            if with_fingerprints {
                alert["fingerprint"] = json!(fingerprint(&labels).to_string());
            }
            alert
        })
        .collect();
    let body = json!({
        "receiver": "alert-ingest",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": "KubePodCrashLooping", "namespace": "payments"},
        "commonLabels": {"alertname": "KubePodCrashLooping", "cluster": "prod-eu-west-1", "job": "kube-state-metrics", "namespace": "payments", "severity": "warning"},
        "commonAnnotations": {"runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping", "summary": "Pod is crash looping."},
        "externalURL": "http://alertmanager-main-0.alertmanager-operated.monitoring.svc:9093",
        "version": "4",
        "groupKey": "{}:{alertname=\"KubePodCrashLooping\", namespace=\"payments\"}",
        "truncatedAlerts": 0,
    });
    // Go's encoding/json escapes & < > inside strings; they occur nowhere else.
    body.to_string().replace('&', "\\u0026").into_bytes()
}

fn decode_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("alertmanager");
    for n in SIZES {
        let with = webhook(n, true);
        let without = webhook(n, false);
        let label_sets: Vec<Labels> = match decode(&without) {
            Ok(notification) => notification.alerts.into_iter().map(|a| a.labels).collect(),
            Err(e) => panic!("generated payload does not decode: {e}"),
        };
        assert_eq!(label_sets.len(), n);
        group.throughput(Throughput::Elements(n as u64));
        // Floor: serde_json validating the body without building anything.
        group.bench_with_input(BenchmarkId::new("json_scan_only", n), &with, |b, body| {
            b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body)).is_ok())
        });
        // Alertmanager's fingerprint in the payload: parsed, not computed.
        group.bench_with_input(BenchmarkId::new("decode", n), &with, |b, body| {
            b.iter(|| decode(black_box(body)))
        });
        // No fingerprint field: decode computes every alert's.
        group.bench_with_input(
            BenchmarkId::new("decode_computing_fingerprints", n),
            &without,
            |b, body| b.iter(|| decode(black_box(body))),
        );
        group.bench_with_input(
            BenchmarkId::new("fingerprint", n),
            &label_sets,
            |b, sets| {
                b.iter(|| {
                    sets.iter()
                        .fold(0u64, |x, l| x ^ fingerprint(black_box(l)).0)
                })
            },
        );
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// Pipeline benchmarks.

struct Bench {
    runtime: tokio::runtime::Runtime,
    pipeline: ackbar::pipeline::Pipeline,
    _dir: tempfile::TempDir,
}

fn pipeline_with_sqlite() -> Bench {
    use std::sync::Arc;
    use std::time::Duration;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = runtime
        .block_on(ackbar::store::open(&url, Duration::from_secs(5)))
        .expect("open store");
    let config = ackbar::config::Config::from_json("{}").expect("default config");
    let router = Arc::new(ackbar::pipeline::route::Router::new(
        config.effective_routes(),
    ));
    let pipeline = ackbar::pipeline::Pipeline::new(router, store, Duration::from_secs(2));
    Bench {
        runtime,
        pipeline,
        _dir: dir,
    }
}

fn pipeline_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline_sqlite");
    group.sample_size(30);
    for n in SIZES {
        let body = webhook(n, true);
        group.throughput(Throughput::Elements(n as u64));

        let bench = pipeline_with_sqlite();
        let first = decode(&body).expect("decode");
        bench
            .runtime
            .block_on(bench.pipeline.ingest(first.clone(), chrono::Utc::now()))
            .expect("first ingest");
        group.bench_with_input(BenchmarkId::new("repeat", n), &body, |b, body| {
            b.iter(|| {
                let notification = decode(black_box(body)).expect("decode");
                bench
                    .runtime
                    .block_on(bench.pipeline.ingest(notification, chrono::Utc::now()))
                    .expect("ingest")
            })
        });
        // The webhook's path for the same bytes: decided once from the
        // database (which teaches the cache), once from the cache (which
        // remembers the body), recognised from then on.
        for _ in 0..2 {
            let notification = decode(&body).expect("decode");
            bench
                .runtime
                .block_on(
                    bench
                        .pipeline
                        .ingest_resendable(&body, notification, chrono::Utc::now()),
                )
                .expect("ingest");
        }
        group.bench_with_input(
            BenchmarkId::new("resend_recognised", n),
            &body,
            |b, body| {
                b.iter(|| {
                    bench
                        .pipeline
                        .recognise_resend(black_box(body))
                        .expect("recognised")
                })
            },
        );

        let bench = pipeline_with_sqlite();
        let mut counter = 0u64;
        group.bench_with_input(BenchmarkId::new("unique", n), &first, |b, base| {
            b.iter_batched(
                || {
                    counter += 1;
                    unique_variant(base, counter)
                },
                |notification| {
                    bench
                        .runtime
                        .block_on(bench.pipeline.ingest(notification, chrono::Utc::now()))
                        .expect("ingest")
                },
                criterion::BatchSize::SmallInput,
            )
        });

        // What the load harness's 16 connections do: notifications arriving
        // together, which the SQLite store commits in groups.
        let bench = pipeline_with_sqlite();
        group.throughput(Throughput::Elements((CONCURRENT * n) as u64));
        group.bench_with_input(
            BenchmarkId::new("unique_16_at_once", n),
            &first,
            |b, base| {
                b.iter_batched(
                    || {
                        (0..CONCURRENT)
                            .map(|_| {
                                counter += 1;
                                unique_variant(base, counter)
                            })
                            .collect::<Vec<_>>()
                    },
                    |notifications| {
                        let now = chrono::Utc::now();
                        let all = notifications
                            .into_iter()
                            .map(|notification| bench.pipeline.ingest(notification, now));
                        bench
                            .runtime
                            .block_on(futures_util::future::try_join_all(all))
                            .expect("ingest")
                    },
                    criterion::BatchSize::SmallInput,
                )
            },
        );
    }
    group.finish();
}

/// Notifications in flight at once in `unique_16_at_once`.
const CONCURRENT: usize = 16;

/// The notification with never-seen alerts (a new `seq` label, hence a new
/// fingerprint) in one of 100 groups, as in the harness's unique mode.
fn unique_variant(base: &ackbar::model::Notification, counter: u64) -> ackbar::model::Notification {
    let mut n = base.clone();
    let namespace = format!("payments-{:02}", counter % 100);
    if let ackbar::model::Source::Alertmanager { group_key, .. } = &mut n.source {
        *group_key =
            format!("{{}}:{{alertname=\"KubePodCrashLooping\", namespace=\"{namespace}\"}}");
    }
    n.group_labels.insert("namespace".into(), namespace.clone());
    n.common_labels
        .insert("namespace".into(), namespace.clone());
    for (i, alert) in n.alerts.iter_mut().enumerate() {
        alert.labels.insert("namespace".into(), namespace.clone());
        alert.labels.insert("seq".into(), format!("{counter}-{i}"));
        alert.fingerprint = fingerprint(&alert.labels);
    }
    n
}

criterion_group!(benches, decode_benches, pipeline_benches);
criterion_main!(benches);
