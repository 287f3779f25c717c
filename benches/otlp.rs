//! OTLP/HTTP decode throughput: body -> notification (records parsed,
//! alert-worthy ones turned into merged alerts with labels and details).
//!
//! `cargo bench --bench otlp -- --warm-up-time 1 --measurement-time 3`
//!
//! The requests are built with the `opentelemetry-proto` types (an
//! independent encoder) and look like a Collector batch: 100 log records
//! from 4 services, a third of them ERROR, 6 attributes each, 8 resource
//! attributes; 100 spans of which a fifth have status ERROR.

use std::hint::black_box;
use std::io::Write;

use ackbar::config::OtlpConfig;
use ackbar::ingest::otlp::{Encoding, decode, decompress};
use ackbar::model::OtlpSignal;
use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

const RECORDS: usize = 100;
const SERVICES: [&str; 4] = [
    "checkout",
    "payment-gateway",
    "ledger-writer",
    "fraud-scorer",
];
const BASE_NANOS: u64 = 1_764_331_200_000_000_000;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.to_owned())
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("service.version", s("2026.11.3")),
            kv("deployment.environment", s("prod")),
            kv("host.name", s("ip-10-42-7-19.eu-west-1.compute.internal")),
            kv("k8s.namespace.name", s("payments")),
            kv("k8s.pod.name", s(&format!("{service}-7d9f8b6c5d-x2k4q"))),
            kv("telemetry.sdk.language", s("rust")),
            kv("telemetry.sdk.version", s("0.31.0")),
        ],
        ..Default::default()
    })
}

fn scope(service: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: format!("{service}::handlers"),
        version: "1.0.0".to_owned(),
        ..Default::default()
    })
}

fn logs_request() -> ExportLogsServiceRequest {
    let per_service = RECORDS / SERVICES.len();
    ExportLogsServiceRequest {
        resource_logs: SERVICES
            .iter()
            .map(|service| ResourceLogs {
                resource: resource(service),
                scope_logs: vec![ScopeLogs {
                    scope: scope(service),
                    log_records: (0..per_service)
                        .map(|i| {
                            let error = i % 3 == 0;
                            LogRecord {
                                time_unix_nano: BASE_NANOS + i as u64 * 1_000_000,
                                observed_time_unix_nano: BASE_NANOS + i as u64 * 1_000_000 + 5_000,
                                severity_number: if error { 17 } else { 9 },
                                severity_text: if error { "ERROR" } else { "INFO" }.to_owned(),
                                body: Some(AnyValue {
                                    value: Some(s(&if error {
                                        format!(
                                            "request failed: upstream timeout after 30s (order {i})"
                                        )
                                    } else {
                                        format!("request served in {} ms", 20 + i)
                                    })),
                                }),
                                attributes: vec![
                                    kv("http.request.method", s("POST")),
                                    kv("http.route", s("/v1/orders/{id}")),
                                    kv(
                                        "http.response.status_code",
                                        Value::IntValue(if error { 504 } else { 200 }),
                                    ),
                                    kv("order.id", Value::IntValue(100_000 + i as i64)),
                                    kv("user_agent.original", s("okhttp/4.12.0")),
                                    kv("retry", Value::BoolValue(i % 2 == 0)),
                                ],
                                trace_id: vec![(i % 251) as u8 + 1; 16],
                                span_id: vec![(i % 241) as u8 + 1; 8],
                                flags: 1,
                                ..Default::default()
                            }
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn traces_request() -> ExportTraceServiceRequest {
    let per_service = RECORDS / SERVICES.len();
    ExportTraceServiceRequest {
        resource_spans: SERVICES
            .iter()
            .map(|service| ResourceSpans {
                resource: resource(service),
                scope_spans: vec![ScopeSpans {
                    scope: scope(service),
                    spans: (0..per_service)
                        .map(|i| {
                            let error = i % 5 == 0;
                            Span {
                                trace_id: vec![(i % 251) as u8 + 1; 16],
                                span_id: vec![(i % 241) as u8 + 1; 8],
                                parent_span_id: vec![0x42; 8],
                                name: if error {
                                    "POST /v1/orders/{id}"
                                } else {
                                    "GET /v1/orders/{id}"
                                }
                                .to_owned(),
                                kind: 2,
                                start_time_unix_nano: BASE_NANOS + i as u64 * 1_000_000,
                                end_time_unix_nano: BASE_NANOS + i as u64 * 1_000_000 + 35_000_000,
                                attributes: vec![
                                    kv(
                                        "http.request.method",
                                        s(if error { "POST" } else { "GET" }),
                                    ),
                                    kv("http.route", s("/v1/orders/{id}")),
                                    kv(
                                        "http.response.status_code",
                                        Value::IntValue(if error { 500 } else { 200 }),
                                    ),
                                    kv("server.address", s("orders.internal")),
                                    kv("network.protocol.version", s("1.1")),
                                    kv("order.id", Value::IntValue(100_000 + i as i64)),
                                ],
                                status: Some(Status {
                                    code: if error { 2 } else { 0 },
                                    message: if error {
                                        "database connection reset".to_owned()
                                    } else {
                                        String::new()
                                    },
                                }),
                                ..Default::default()
                            }
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn decode_benches(c: &mut Criterion) {
    let config = OtlpConfig::default();
    let now = Utc::now();
    let logs = logs_request();
    let traces = traces_request();
    let bodies = [
        (
            OtlpSignal::Logs,
            "logs",
            logs.encode_to_vec(),
            serde_json::to_vec(&logs).unwrap(),
        ),
        (
            OtlpSignal::Traces,
            "traces",
            traces.encode_to_vec(),
            serde_json::to_vec(&traces).unwrap(),
        ),
    ];
    let mut group = c.benchmark_group("otlp");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (signal, name, protobuf, json) in &bodies {
        let gzipped = gzip(protobuf);
        group.bench_with_input(BenchmarkId::new(*name, "protobuf"), protobuf, |b, body| {
            b.iter(|| decode(*signal, Encoding::Protobuf, black_box(body), &config, now).unwrap())
        });
        group.bench_with_input(
            BenchmarkId::new(*name, "protobuf+gzip"),
            &gzipped,
            |b, body| {
                b.iter(|| {
                    let body = decompress(black_box(body), Some("gzip"), usize::MAX).unwrap();
                    decode(*signal, Encoding::Protobuf, &body, &config, now).unwrap()
                })
            },
        );
        group.bench_with_input(BenchmarkId::new(*name, "json"), json, |b, body| {
            b.iter(|| decode(*signal, Encoding::Json, black_box(body), &config, now).unwrap())
        });
        eprintln!(
            "{name}: {} records, protobuf {} B, gzip {} B, json {} B",
            RECORDS,
            protobuf.len(),
            gzipped.len(),
            json.len()
        );
    }
    group.finish();
}

criterion_group!(benches, decode_benches);
criterion_main!(benches);
