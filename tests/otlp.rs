//! `POST /v1/logs` and `POST /v1/traces` against a running ackbar: the
//! OpenTelemetry SDK's own OTLP/HTTP exporter (protobuf and JSON), a
//! Collector-style gzip + protobuf body built with the `opentelemetry-proto`
//! types, bad requests (refused with a `google.rpc.Status`, nothing stored)
//! and partial success.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use ackbar::ingest::otlp::proto::RpcStatus;
use common::*;
use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{Span as _, Status, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue as ProtoValue, InstrumentationScope, KeyValue as ProtoKeyValue, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Value, json};

const PROTOBUF: &str = "application/x-protobuf";

/// Card texts in the test channel.
fn card_texts(slack: &Slack) -> Vec<String> {
    cards(&slack.sandbox.state(), CHANNEL)
        .iter()
        .map(|(_, _, message)| message_text(message))
        .collect()
}

async fn wait_for_cards(slack: &Slack, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(10), &format!("{n} cards"), || {
        card_texts(slack).len() >= n
    })
    .await;
    card_texts(slack)
}

fn otlp_config(slack: &Slack, db: &Path) -> Value {
    let mut config = test_config(&slack.api_url, db);
    config["otlp"] = json!({
        "logs": { "label_attributes": ["deployment.environment"] },
        "traces": { "trace_url": "https://jaeger.example/trace/{trace_id}" }
    });
    config
}

/// One ERROR and one INFO log record, one ERROR and one OK span, through
/// the SDK's logger and tracer providers and the OTLP/HTTP exporter.
/// The SDK's simple processors block on the export, so this runs on a
/// blocking thread (which still sees the tokio runtime reqwest needs).
async fn export_with_sdk(
    base: String,
    protocol: Protocol,
    compression: Option<opentelemetry_otlp::Compression>,
) {
    tokio::task::spawn_blocking(move || {
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("checkout")
            .with_attribute(KeyValue::new("deployment.environment", "prod"))
            .build();
        let http = || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap()
        };

        let mut logs = opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_http_client(http())
            .with_protocol(protocol)
            .with_endpoint(format!("{base}/v1/logs"));
        let mut spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(http())
            .with_protocol(protocol)
            .with_endpoint(format!("{base}/v1/traces"));
        if let Some(compression) = compression {
            logs = logs.with_compression(compression);
            spans = spans.with_compression(compression);
        }

        let loggers = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_simple_exporter(logs.build().expect("log exporter"))
            .build();
        let logger = loggers.logger("checkout::payment");
        for (severity, body) in [
            (Severity::Error, "payment declined by the card processor"),
            (Severity::Info, "payment accepted"),
        ] {
            let mut record = logger.create_log_record();
            record.set_severity_number(severity);
            record.set_severity_text(severity.name());
            record.set_body(AnyValue::from(body));
            record.add_attribute("order.id", 42);
            logger.emit(record);
        }
        loggers.shutdown().expect("logs exported");

        let tracers = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(resource)
            .with_simple_exporter(spans.build().expect("span exporter"))
            .build();
        let tracer = tracers.tracer("checkout::http");
        let mut failing = tracer.start("POST /pay");
        failing.set_attribute(KeyValue::new("http.route", "/pay"));
        failing.set_status(Status::error("card processor unavailable"));
        failing.end();
        let mut fine = tracer.start("GET /health");
        fine.set_status(Status::Ok);
        fine.end();
        tracers.shutdown().expect("spans exported");
    })
    .await
    .unwrap();
}

async fn sdk_exports_become_cards(
    protocol: Protocol,
    compression: Option<opentelemetry_otlp::Compression>,
) {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&otlp_config(&slack, &dir.path().join("a.db"))).await;
    let base = ackbar.base();
    let skipped = || metric_where(&base, "ackbar_otlp_records_total", "outcome=\"skipped\"");
    let skipped_before = skipped().await;

    export_with_sdk(ackbar.base(), protocol, compression).await;

    let texts = wait_for_cards(&slack, 2).await;
    assert_eq!(
        texts.len(),
        2,
        "only the ERROR log and the ERROR span: {texts:#?}"
    );
    let log_card = texts
        .iter()
        .find(|t| t.contains("payment declined by the card processor"))
        .unwrap_or_else(|| panic!("no card for the ERROR log record: {texts:#?}"));
    assert!(log_card.contains("checkout"), "{log_card}");
    assert!(
        log_card.contains("prod"),
        "configured label attribute: {log_card}"
    );
    let span_card = texts
        .iter()
        .find(|t| t.contains("POST /pay"))
        .unwrap_or_else(|| panic!("no card for the ERROR span: {texts:#?}"));
    assert!(
        span_card.contains("card processor unavailable"),
        "{span_card}"
    );
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("payment accepted") || t.contains("GET /health"))
    );
    assert_eq!(skipped().await - skipped_before, 2.0);
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_exporter_over_gzip_protobuf_makes_cards_for_errors_only() {
    sdk_exports_become_cards(
        Protocol::HttpBinary,
        Some(opentelemetry_otlp::Compression::Gzip),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_exporter_over_json_makes_cards_for_errors_only() {
    sdk_exports_become_cards(Protocol::HttpJson, None).await;
}

fn string_value(s: &str) -> Option<ProtoValue> {
    Some(ProtoValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    })
}

fn attribute(key: &str, value: &str) -> ProtoKeyValue {
    ProtoKeyValue {
        key: key.to_owned(),
        value: string_value(value),
    }
}

/// What the Collector's `otlphttp` exporter sends: protobuf, gzip.
fn collector_logs_body(records: Vec<LogRecord>) -> Vec<u8> {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", "ledger"),
                    attribute("deployment.environment", "staging"),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "ledger::writer".to_owned(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    gzip(&request.encode_to_vec())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn error_log(body: &str, trace_id: Vec<u8>) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_764_331_200_000_000_000,
        severity_number: 17,
        severity_text: "ERROR".to_owned(),
        body: string_value(body),
        trace_id,
        span_id: vec![0xee; 8],
        ..Default::default()
    }
}

async fn post(
    url: &str,
    content_type: Option<&str>,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = http().post(url).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.send().await.expect("OTLP request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_style_gzip_protobuf_logs_make_a_card_with_a_trace_link() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&otlp_config(&slack, &dir.path().join("a.db"))).await;

    let body = collector_logs_body(vec![
        error_log("ledger write failed: disk full", vec![0xab; 16]),
        error_log("ledger write failed: disk full", vec![0xcd; 16]),
    ]);
    let response = post(&ackbar.url("/v1/logs"), Some(PROTOBUF), Some("gzip"), body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], PROTOBUF);
    let answer = ExportLogsServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.partial_success, None);

    let texts = wait_for_cards(&slack, 1).await;
    assert_eq!(
        texts.len(),
        1,
        "identical records are one alert: {texts:#?}"
    );
    let card = &texts[0];
    assert!(card.contains("ledger write failed: disk full"), "{card}");
    assert!(card.contains("staging"), "{card}");
    let link = format!("https://jaeger.example/trace/{}", "ab".repeat(16));
    assert!(
        serde_json::to_string(&cards(&slack.sandbox.state(), CHANNEL)[0].2)
            .unwrap()
            .contains(&link),
        "card links to the first record's trace: {card}"
    );
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_status_body_and_store_nothing() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let mut config = otlp_config(&slack, &db);
    config["ingest"] = json!({ "max_body_bytes": 16384 });
    let ackbar = start_ackbar(&config).await;

    let good_json = json!({ "resourceLogs": [{ "scopeLogs": [{ "logRecords": [
        { "severityNumber": 17, "body": { "stringValue": "boom" } }
    ]}]}]});
    let mut wrong_type = good_json.clone();
    wrong_type["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["severityNumber"] =
        json!("ERROR");
    let snake = json!({ "resource_logs": [{ "scope_logs": [{ "log_records": [
        { "severity_number": 17, "body": { "stringValue": "boom" } }
    ]}]}]});
    let good_protobuf = collector_logs_body(vec![error_log("boom", Vec::new())]);
    let mut too_big = vec![0x0a; 20_000];
    too_big[1] = 0x7f;

    struct Case {
        what: &'static str,
        content_type: Option<&'static str>,
        encoding: Option<&'static str>,
        body: Vec<u8>,
        status: u16,
        message: &'static str,
    }
    let cases = [
        Case {
            what: "malformed protobuf",
            content_type: Some(PROTOBUF),
            encoding: None,
            body: vec![0x0a, 0xff, 0xff, 0xff],
            status: 400,
            message: "malformed protobuf logs request",
        },
        Case {
            what: "malformed JSON",
            content_type: Some("application/json"),
            encoding: None,
            body: b"{\"resourceLogs\": [".to_vec(),
            status: 400,
            message: "malformed JSON at line 1",
        },
        Case {
            what: "snake_case JSON",
            content_type: Some("application/json; charset=utf-8"),
            encoding: None,
            body: snake.to_string().into_bytes(),
            status: 400,
            message: "snake_case key \"resource_logs\"",
        },
        Case {
            what: "wrongly typed JSON field",
            content_type: Some("application/json"),
            encoding: None,
            body: wrong_type.to_string().into_bytes(),
            status: 400,
            message: "at resourceLogs[0].scopeLogs[0].logRecords[0].severityNumber: invalid type: string",
        },
        Case {
            what: "body over the limit as sent",
            content_type: Some(PROTOBUF),
            encoding: None,
            body: too_big,
            status: 413,
            message: "larger than ingest.max_body_bytes (16384 bytes)",
        },
        Case {
            what: "gzip bomb",
            content_type: Some(PROTOBUF),
            encoding: Some("gzip"),
            body: gzip(&vec![0u8; 10 * 1024 * 1024]),
            status: 413,
            message: "once decompressed",
        },
        Case {
            what: "corrupt gzip",
            content_type: Some(PROTOBUF),
            encoding: Some("gzip"),
            body: good_protobuf[..good_protobuf.len() - 4].to_vec(),
            status: 400,
            message: "malformed gzip body",
        },
        Case {
            what: "unsupported compression",
            content_type: Some(PROTOBUF),
            encoding: Some("br"),
            body: good_protobuf.clone(),
            status: 415,
            message: "unsupported Content-Encoding \"br\"",
        },
        Case {
            what: "wrong content type",
            content_type: Some("text/plain"),
            encoding: None,
            body: good_json.to_string().into_bytes(),
            status: 415,
            message: "unsupported Content-Type \"text/plain\"",
        },
    ];
    for case in cases {
        let response = post(
            &ackbar.url("/v1/logs"),
            case.content_type,
            case.encoding,
            case.body,
        )
        .await;
        assert_eq!(response.status(), case.status, "{}", case.what);
        let protobuf = case.content_type == Some(PROTOBUF);
        let expected_type = if protobuf {
            PROTOBUF
        } else {
            "application/json"
        };
        assert_eq!(
            response.headers()["content-type"],
            expected_type,
            "{}",
            case.what
        );
        let body = response.bytes().await.unwrap();
        let (code, message) = if protobuf {
            let status = RpcStatus::decode(body).unwrap_or_else(|e| panic!("{}: {e}", case.what));
            (status.code, status.message)
        } else {
            let status: Value = serde_json::from_slice(&body).unwrap();
            (
                status["code"].as_i64().unwrap() as i32,
                status["message"].as_str().unwrap().to_owned(),
            )
        };
        assert!(message.contains(case.message), "{}: {message}", case.what);
        assert_eq!(
            code,
            if case.status == 413 { 8 } else { 3 },
            "{}",
            case.what
        );
    }

    // The same bodies, well-formed, would have made cards; these made none.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count_rows(&db, "cards").await, 0);
    assert_eq!(count_rows(&db, "alerts").await, 0);
    assert!(card_texts(&slack).is_empty());
    let response = post(
        &ackbar.url("/v1/logs"),
        Some(PROTOBUF),
        Some("gzip"),
        good_protobuf,
    )
    .await;
    assert_eq!(response.status(), 200, "the control request is accepted");
    assert_eq!(count_rows(&db, "cards").await, 1);
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_in_the_request_encoding() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = otlp_config(&slack, &dir.path().join("a.db"));
    config["ingest"] = json!({ "auth": { "bearer": "s3cret-token" } });
    let ackbar = start_ackbar(&config).await;
    let body = collector_logs_body(vec![error_log("boom", Vec::new())]);

    let response = post(
        &ackbar.url("/v1/traces"),
        Some(PROTOBUF),
        Some("gzip"),
        body.clone(),
    )
    .await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let status = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 16);
    assert!(status.message.contains("ingest.auth"), "{}", status.message);

    let response = http()
        .post(ackbar.url("/v1/logs"))
        .bearer_auth("s3cret-token")
        .header("content-type", PROTOBUF)
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    wait_for_cards(&slack, 1).await;
    ackbar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_records_are_reported_as_partial_success_in_both_encodings() {
    let slack = start_slack(sandbox_options(&[CHANNEL])).await;
    let dir = tempfile::tempdir().unwrap();
    let ackbar = start_ackbar(&otlp_config(&slack, &dir.path().join("a.db"))).await;
    let base = ackbar.base();
    let rejected = || metric_where(&base, "ackbar_otlp_records_total", "outcome=\"rejected\"");
    let rejected_before = rejected().await;

    // JSON logs: the second record's trace id is 3 bytes.
    let logs = json!({ "resourceLogs": [{ "scopeLogs": [{ "logRecords": [
        { "severityNumber": 17, "body": { "stringValue": "accepted error" } },
        { "severityNumber": 17, "body": { "stringValue": "bad ids" }, "traceId": "abcdef" }
    ]}]}]});
    let response = post(
        &ackbar.url("/v1/logs"),
        Some("application/json"),
        None,
        logs.to_string().into_bytes(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedLogRecords"], json!(1));
    let message = answer["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("logRecords[1]: traceId is 3 bytes"),
        "{message}"
    );

    // Protobuf spans, read with the opentelemetry-proto types: one ERROR
    // span with a 4-byte span id, one good.
    let span = |name: &str, span_id: Vec<u8>| opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: vec![0x11; 16],
        span_id,
        name: name.to_owned(),
        status: Some(opentelemetry_proto::tonic::trace::v1::Status {
            code: 2,
            message: format!("{name} broke"),
        }),
        ..Default::default()
    };
    let traces = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attribute("service.name", "ledger")],
                ..Default::default()
            }),
            scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                spans: vec![span("bad span", vec![1; 4]), span("good span", vec![2; 8])],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let response = post(
        &ackbar.url("/v1/traces"),
        Some(PROTOBUF),
        None,
        traces.encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = answer.partial_success.expect("partialSuccess");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial
            .error_message
            .contains("spans[0]: spanId is 4 bytes"),
        "{}",
        partial.error_message
    );

    let texts = wait_for_cards(&slack, 2).await;
    assert!(
        texts.iter().any(|t| t.contains("accepted error")),
        "{texts:#?}"
    );
    assert!(texts.iter().any(|t| t.contains("good span")), "{texts:#?}");
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("bad ids") || t.contains("bad span"))
    );
    assert_eq!(rejected().await - rejected_before, 2.0);
    ackbar.stop().await;
}
