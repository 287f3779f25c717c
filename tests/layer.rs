//! The `tracing` Layer in a host process: filtering, the bounded queue, the
//! worker, the flush guard, and forwarding to a running `ackbar serve`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use ackbar::{EventRecord, GroupBy, LayerGuard, Sink, SpanRecord};
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Bound on every wait for the worker: generous, only there so a broken
/// layer fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

/// What a [`RecordingSink`] saw.
#[derive(Clone, Default)]
struct Recorded {
    records: Arc<Mutex<Vec<EventRecord>>>,
    closed: Arc<AtomicBool>,
}

impl Recorded {
    fn messages(&self) -> Vec<String> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.message.clone())
            .collect()
    }
}

struct RecordingSink(Recorded);

#[async_trait::async_trait]
impl Sink for RecordingSink {
    async fn send(&mut self, batch: Vec<EventRecord>) {
        self.0.records.lock().unwrap().extend(batch);
    }

    async fn close(&mut self, _deadline: tokio::time::Instant) {
        self.0.closed.store(true, Ordering::SeqCst);
    }
}

fn recording(builder: ackbar::LayerBuilder) -> (Dispatch, LayerGuard, Recorded) {
    let recorded = Recorded::default();
    let (layer, guard) = builder.build_with(RecordingSink(recorded.clone())).unwrap();
    (
        Dispatch::new(Registry::default().with(layer)),
        guard,
        recorded,
    )
}

/// Another layer of the host (its `fmt` output, say): counts what it sees.
#[derive(Clone, Default)]
struct HostLayer {
    seen: Arc<Mutex<Vec<(Level, String)>>>,
}

impl<S: Subscriber> Layer<S> for HostLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        self.seen
            .lock()
            .unwrap()
            .push((*event.metadata().level(), m.0));
    }
}

#[test]
fn events_the_filter_rejects_never_reach_the_sink() {
    let (dispatch, guard, recorded) = recording(
        ackbar::layer()
            .min_level(Level::WARN)
            .include_target("app")
            .exclude_target("app::noisy"),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::error!(target: "app::db", "kept error");
        tracing::info!(target: "app::db", "below the level");
        tracing::error!(target: "other", "not included");
        tracing::error!(target: "app::noisy::x", "excluded");
        tracing::warn!(target: "app", "kept warning");
    });
    drop(guard);
    assert_eq!(recorded.messages(), vec!["kept error", "kept warning"]);
}

#[test]
fn host_layers_still_see_events_the_ackbar_layer_filters() {
    // Both stacking orders: a layer vetoing the callsite would silence the
    // host's layer in at least one of them.
    for ackbar_innermost in [true, false] {
        let host = HostLayer::default();
        let recorded = Recorded::default();
        let sink = RecordingSink(recorded.clone());
        let (dispatch, guard) = if ackbar_innermost {
            let (layer, guard) = ackbar::layer().build_with(sink).unwrap();
            let subscriber = Registry::default().with(layer).with(host.clone());
            (Dispatch::new(subscriber), guard)
        } else {
            let (layer, guard) = ackbar::layer().build_with(sink).unwrap();
            let subscriber = Registry::default().with(host.clone()).with(layer);
            (Dispatch::new(subscriber), guard)
        };
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!("request served");
            tracing::error!("payment failed");
        });
        drop(guard);
        assert_eq!(
            *host.seen.lock().unwrap(),
            vec![
                (Level::INFO, "request served".to_owned()),
                (Level::ERROR, "payment failed".to_owned())
            ],
            "ackbar innermost: {ackbar_innermost}"
        );
        assert_eq!(recorded.messages(), vec!["payment failed"]);
    }
}

/// Holds the first batch until released; signals when it has it.
struct BlockingSink {
    recorded: Recorded,
    started: mpsc::Sender<()>,
    release: Option<tokio::sync::oneshot::Receiver<()>>,
}

#[async_trait::async_trait]
impl Sink for BlockingSink {
    async fn send(&mut self, batch: Vec<EventRecord>) {
        self.recorded.records.lock().unwrap().extend(batch);
        if let Some(release) = self.release.take() {
            let _ = self.started.send(());
            let _ = release.await;
        }
    }

    async fn close(&mut self, _deadline: tokio::time::Instant) {}
}

#[test]
fn full_queue_drops_and_counts_without_blocking() {
    let recorded = Recorded::default();
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel();
    let (layer, guard) = ackbar::layer()
        .queue_capacity(2)
        .build_with(BlockingSink {
            recorded: recorded.clone(),
            started: started_tx,
            release: Some(release_rx),
        })
        .unwrap();
    let dispatch = Dispatch::new(Registry::default().with(layer));

    tracing::dispatcher::with_default(&dispatch, || tracing::error!("first"));
    started_rx
        .recv_timeout(WAIT)
        .expect("the sink got the first event");

    // The worker is stuck in the sink: two events fit the queue, eight do
    // not. Emitting happens on another thread so a blocking layer fails
    // the test rather than hanging it.
    let (emitted_tx, emitted_rx) = mpsc::channel();
    let emitter = {
        let dispatch = dispatch.clone();
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                for i in 0..10 {
                    tracing::error!("burst {i}");
                }
            });
            emitted_tx.send(()).unwrap();
        })
    };
    emitted_rx
        .recv_timeout(WAIT)
        .expect("emitting blocked while the queue was full");
    emitter.join().unwrap();
    release_tx.send(()).unwrap();
    drop(guard);

    let records = recorded.records.lock().unwrap();
    let messages: Vec<&str> = records.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "first",
            "burst 0",
            "burst 1",
            "8 events dropped: the ackbar queue was full"
        ]
    );
    let report = &records[3];
    assert_eq!(report.level, Level::ERROR);
    assert_eq!(report.target, "ackbar::layer");
}

/// Logs from inside the worker, on its thread and on a blocking thread of
/// its runtime, the way an HTTP client would.
struct LoggingSink(Recorded);

#[async_trait::async_trait]
impl Sink for LoggingSink {
    async fn send(&mut self, batch: Vec<EventRecord>) {
        tracing::error!("sink error on the worker thread");
        let _ = tokio::task::spawn_blocking(|| {
            tracing::error!("sink error on a blocking thread");
        })
        .await;
        self.0.records.lock().unwrap().extend(batch);
    }

    async fn close(&mut self, _deadline: tokio::time::Instant) {
        tracing::error!("sink error while closing");
    }
}

#[test]
fn worker_events_never_reenter() {
    // The worker's threads only see the global dispatcher, so this test
    // installs one (nextest runs every test in its own process).
    let host = HostLayer::default();
    let recorded = Recorded::default();
    let (layer, guard) = ackbar::layer()
        .build_with(LoggingSink(recorded.clone()))
        .unwrap();
    tracing::subscriber::set_global_default(Registry::default().with(layer).with(host.clone()))
        .expect("no other global subscriber in this process");

    tracing::error!("from the host");
    common_wait(|| !recorded.messages().is_empty());
    tracing::error!("from the host again");
    drop(guard);

    assert_eq!(
        recorded.messages(),
        vec!["from the host", "from the host again"]
    );
    // The sink's errors did happen, and the host's other layers saw them.
    let seen = host.seen.lock().unwrap();
    for message in [
        "sink error on the worker thread",
        "sink error on a blocking thread",
        "sink error while closing",
    ] {
        assert!(
            seen.iter().any(|(_, m)| m == message),
            "{message:?} not seen by the host: {seen:?}"
        );
    }
}

/// Polls (the worker is on its own thread) until `check` holds, at most [`WAIT`].
fn common_wait(check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn guard_drop_flushes_everything_queued_before_it() {
    let (dispatch, guard, recorded) = recording(ackbar::layer());
    let _default = tracing::dispatcher::set_default(&dispatch);
    for i in 0..500 {
        tracing::error!("error {i}");
    }
    drop(guard);
    let expected: Vec<String> = (0..500).map(|i| format!("error {i}")).collect();
    assert_eq!(recorded.messages(), expected);
    assert!(
        recorded.closed.load(Ordering::SeqCst),
        "the sink was closed"
    );

    // The layer has stopped: later events are ignored, without panicking.
    tracing::error!("after the guard");
    assert_eq!(recorded.messages().len(), 500);
}

fn emit_three_and_flush(builder: ackbar::LayerBuilder) -> Vec<String> {
    let (dispatch, guard, recorded) = recording(builder);
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..3 {
            tracing::error!("error {i}");
        }
    });
    drop(guard);
    recorded.messages()
}

#[test]
fn works_in_a_host_without_a_tokio_runtime() {
    assert!(tokio::runtime::Handle::try_current().is_err());
    assert_eq!(
        emit_three_and_flush(ackbar::layer()),
        vec!["error 0", "error 1", "error 2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_inside_a_multi_thread_runtime() {
    let messages = tokio::spawn(async { emit_three_and_flush(ackbar::layer()) })
        .await
        .unwrap();
    assert_eq!(messages, vec!["error 0", "error 1", "error 2"]);
}

#[tokio::test(flavor = "current_thread")]
async fn works_inside_a_current_thread_runtime() {
    // Built, used and flushed on the runtime's only thread: the worker must
    // not need this runtime to make progress.
    assert_eq!(
        emit_three_and_flush(ackbar::layer()),
        vec!["error 0", "error 1", "error 2"]
    );
}

#[test]
fn span_context_fields_and_labels_reach_the_record() {
    let (dispatch, guard, recorded) = recording(
        ackbar::layer()
            .service_name("shop")
            .label_fields(["user_id"])
            .span_label_fields(["order", "region"]),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        // Spans below the layer's level still make the context.
        let checkout =
            tracing::info_span!("checkout", order = tracing::field::Empty, region = "eu");
        let _checkout = checkout.enter();
        checkout.record("order", 7);
        let charge = tracing::debug_span!("charge", attempt = 2);
        let _charge = charge.enter();
        tracing::error!(user_id = 42, card = "visa", "payment failed");
    });
    drop(guard);

    let records = recorded.records.lock().unwrap();
    let [record] = records.as_slice() else {
        panic!("expected one record, got {records:?}");
    };
    assert_eq!(
        record.spans,
        vec![
            SpanRecord {
                name: "checkout",
                fields: vec![("region", "eu".to_owned()), ("order", "7".to_owned())]
            },
            SpanRecord {
                name: "charge",
                fields: vec![]
            },
        ]
    );
    assert_eq!(
        record.fields,
        vec![("user_id", "42".to_owned()), ("card", "visa".to_owned())]
    );
    assert_eq!(
        record.labels,
        vec![
            ("service", "shop".to_owned()),
            ("region", "eu".to_owned()),
            ("order", "7".to_owned()),
            ("user_id", "42".to_owned()),
        ]
    );
    let alert = record.to_alert();
    assert_eq!(alert.labels["alertname"], "payment failed");
    assert_eq!(alert.labels["service"], "shop");
    assert_eq!(alert.labels["target"], module_path!());
    assert_eq!(
        alert.annotations["details"],
        "user_id = 42\ncard = visa\nin span checkout{region=eu, order=7} > charge"
    );
    assert!(alert.annotations["location"].starts_with("tests/layer.rs:"));
}

#[test]
fn callsite_grouping_makes_one_alert_of_varying_messages() {
    let (dispatch, guard, recorded) = recording(ackbar::layer().group_by(GroupBy::Callsite));
    tracing::dispatcher::with_default(&dispatch, || {
        for id in [1, 2] {
            tracing::error!("order {id} failed");
        }
        tracing::error!("order 3 failed");
    });
    drop(guard);
    let records = recorded.records.lock().unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].group_key, records[1].group_key);
    assert_ne!(
        records[1].group_key, records[2].group_key,
        "another callsite"
    );
    let name = &records[0].to_alert().labels["alertname"];
    assert!(name.starts_with("layer at tests/layer.rs:"), "{name}");
}

// ---- forwarding mode -----------------------------------------------------

/// Drops the guard off the runtime's threads: the flush waits for requests
/// that a server on this same runtime has to answer.
async fn flush(guard: LayerGuard) {
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();
}

fn card_texts(slack: &common::Slack) -> Vec<String> {
    common::cards(&slack.sandbox.state(), common::CHANNEL)
        .iter()
        .map(|(_, _, message)| common::message_text(message))
        .collect()
}

fn emit(dispatch: &Dispatch, messages: impl IntoIterator<Item = String>) {
    tracing::dispatcher::with_default(dispatch, || {
        for message in messages {
            tracing::error!(order = 7, "{message}");
        }
    });
}

/// Installs this process's recorder, before the layer counts anything.
fn install_recorder() -> metrics_exporter_prometheus::PrometheusHandle {
    ackbar::metrics::install().expect("no other recorder in this process")
}

/// A counter of this process's own recorder.
fn own_metric(name: &str, labels: &str) -> f64 {
    common::metric_in(&install_recorder().render(), name, labels)
}

/// An address nothing listens on (yet).
fn unused_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_errors_become_cards() {
    let slack = common::start_slack(common::sandbox_options(&[common::CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::test_config(&slack.api_url, &dir.path().join("ackbar.db"));
    let server = common::start_ackbar(&config).await;

    let (layer, guard) = ackbar::layer()
        .service_name("shop")
        .forward(&server.base())
        .unwrap();
    let dispatch = Dispatch::new(Registry::default().with(layer));
    emit(
        &dispatch,
        ["payment failed", "payment failed", "refund failed"].map(String::from),
    );
    tracing::dispatcher::with_default(&dispatch, || tracing::warn!("below the level"));
    flush(guard).await;

    common::eventually(WAIT, "two cards", || card_texts(&slack).len() == 2).await;
    let texts = card_texts(&slack);
    for name in ["payment failed", "refund failed"] {
        assert_eq!(
            texts.iter().filter(|t| t.contains(name)).count(),
            1,
            "one card for {name:?}: {texts:#?}"
        );
    }
    assert!(!texts.iter().any(|t| t.contains("below the level")));
    // Three records arrived, two alerts: the repeated error joined its card.
    assert_eq!(
        common::metric_where(
            &server.base(),
            "ackbar_otlp_records_total",
            "outcome=\"alert\""
        )
        .await,
        3.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_label_fields_are_labels_the_server_routes_by() {
    const TENANT_CHANNEL: &str = "C0TENANT01";
    let slack =
        common::start_slack(common::sandbox_options(&[common::CHANNEL, TENANT_CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(&slack.api_url, &dir.path().join("ackbar.db"));
    config["routes"] = serde_json::json!([
        { "name": "acme", "matchers": ["tenant=acme"], "channel": TENANT_CHANNEL },
        { "name": "all", "channel": common::CHANNEL }
    ]);
    let server = common::start_ackbar(&config).await;

    let (layer, guard) = ackbar::layer()
        .label_fields(["tenant"])
        .forward(&server.base())
        .unwrap();
    let dispatch = Dispatch::new(Registry::default().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::error!(tenant = "acme", "quota exceeded");
        tracing::error!(tenant = "other", "quota exceeded");
    });
    flush(guard).await;

    // Without any `otlp.logs.label_attributes`: the layer said which
    // attributes are labels, and the route matched on one.
    common::eventually(WAIT, "a card in each channel", || {
        let state = slack.sandbox.state();
        common::cards(&state, TENANT_CHANNEL).len() == 1
            && common::cards(&state, common::CHANNEL).len() == 1
    })
    .await;
    let state = slack.sandbox.state();
    let (_, _, card) = &common::cards(&state, TENANT_CHANNEL)[0];
    assert!(common::message_text(card).contains("tenant=acme"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_survives_a_server_that_starts_late() {
    install_recorder();
    let slack = common::start_slack(common::sandbox_options(&[common::CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::test_config(&slack.api_url, &dir.path().join("ackbar.db"));
    let addr = unused_addr();

    let (layer, guard) = ackbar::layer().forward(&format!("http://{addr}")).unwrap();
    let dispatch = Dispatch::new(Registry::default().with(layer));
    // The host goes on while nothing listens: these return at once.
    emit(&dispatch, (0..3).map(|i| format!("error while down {i}")));
    common::eventually(WAIT, "a failed attempt while the server is down", || {
        own_metric("ackbar_layer_forward_requests_total", "outcome=\"retried\"") >= 1.0
    })
    .await;

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let server = common::start_ackbar_on(listener, &config).await;
    common::eventually(WAIT, "a card per error sent while down", || {
        card_texts(&slack).len() == 3
    })
    .await;
    let texts = card_texts(&slack);
    for i in 0..3 {
        let name = format!("error while down {i}");
        assert!(
            texts.iter().any(|t| t.contains(&name)),
            "{name:?} in {texts:#?}"
        );
    }
    flush(guard).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_buffer_keeps_the_newest_records_and_reports_the_rest() {
    install_recorder();
    let slack = common::start_slack(common::sandbox_options(&[common::CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::test_config(&slack.api_url, &dir.path().join("ackbar.db"));
    let addr = unused_addr();

    let (layer, guard) = ackbar::layer()
        .forward_buffer_capacity(5)
        .forward(&format!("http://{addr}"))
        .unwrap();
    let dispatch = Dispatch::new(Registry::default().with(layer));
    emit(&dispatch, (0..20).map(|i| format!("event {i:02}")));
    // 15 evictions mean all 20 reached the buffer, which holds the last 5.
    common::eventually(WAIT, "15 records evicted", || {
        own_metric(
            "ackbar_layer_events_dropped_total",
            "reason=\"forward_buffer_full\"",
        ) == 15.0
    })
    .await;

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let server = common::start_ackbar_on(listener, &config).await;
    common::eventually(WAIT, "the newest five and the drop report", || {
        card_texts(&slack).len() == 6
    })
    .await;
    let texts = card_texts(&slack);
    for i in 0..20 {
        let name = format!("event {i:02}");
        let expected = usize::from(i >= 15);
        assert_eq!(
            texts.iter().filter(|t| t.contains(&name)).count(),
            expected,
            "{name:?} in {texts:#?}"
        );
    }
    assert!(
        texts.iter().any(|t| t.contains(
            "15 events dropped: the ackbar forwarding buffer was full (server unreachable)"
        )),
        "{texts:#?}"
    );
    flush(guard).await;
    server.stop().await;
}

/// A stand-in OTLP receiver answering from a script (the real server
/// cannot be made to answer 429 or 400 on demand); records when each
/// request came.
async fn scripted_receiver(
    answers: Vec<(u16, Option<&'static str>)>,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<std::time::Instant>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(answers.into_iter()));
    let app = axum::Router::new().route(
        "/v1/logs",
        axum::routing::post({
            let seen = Arc::clone(&seen);
            move || {
                seen.lock().unwrap().push(std::time::Instant::now());
                let (status, retry_after) = script.lock().unwrap().next().unwrap_or((200, None));
                let mut headers = HeaderMap::new();
                if let Some(seconds) = retry_after {
                    headers.insert("retry-after", seconds.parse().unwrap());
                }
                async move { (StatusCode::from_u16(status).unwrap(), headers) }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_429_after_retry_after() {
    let (addr, seen) = scripted_receiver(vec![(429, Some("1")), (503, None)]).await;
    let (layer, guard) = ackbar::layer().forward(&format!("http://{addr}")).unwrap();
    emit(
        &Dispatch::new(Registry::default().with(layer)),
        ["x".to_owned()],
    );
    common::eventually(WAIT, "429, 503, then 200", || {
        seen.lock().unwrap().len() == 3
    })
    .await;
    let times = seen.lock().unwrap().clone();
    assert!(
        times[1] - times[0] >= Duration::from_secs(1),
        "the retry came before Retry-After: {:?}",
        times[1] - times[0]
    );
    flush(guard).await;
    assert_eq!(seen.lock().unwrap().len(), 3, "nothing sent after the 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_server_refuses_is_dropped_not_retried() {
    install_recorder();
    let (addr, seen) = scripted_receiver(vec![(400, None)]).await;
    let (layer, guard) = ackbar::layer().forward(&format!("http://{addr}")).unwrap();
    let dispatch = Dispatch::new(Registry::default().with(layer));
    emit(&dispatch, ["refused".to_owned()]);
    common::eventually(WAIT, "the refusal is counted", || {
        own_metric("ackbar_layer_events_dropped_total", "reason=\"rejected\"") == 1.0
    })
    .await;
    emit(&dispatch, ["accepted".to_owned()]);
    flush(guard).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "one request per batch, no retry"
    );
}
