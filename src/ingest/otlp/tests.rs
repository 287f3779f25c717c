//! Decoding and record-to-alert rules, on bodies built here.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use prost::Message;
use serde_json::{Value, json};

use super::proto::*;
use super::*;
use crate::config::OtlpConfig;
use crate::ingest::alertmanager::fingerprint;
use crate::model::{AlertStatus, Fingerprint, OtlpSignal};

const TRACE_ID: &str = "5b8efff798038103d269b633813fc60c";
const SPAN_ID: &str = "eee19b7ec3c1b174";

fn config() -> OtlpConfig {
    OtlpConfig::default()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

fn logs_json(records: Value) -> Vec<u8> {
    json!({
        "resourceLogs": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": "checkout" } },
                { "key": "deployment.environment", "value": { "stringValue": "prod" } },
                { "key": "host.name", "value": { "stringValue": "web-1" } }
            ]},
            "scopeLogs": [{
                "scope": { "name": "checkout::payment", "version": "1.2.0" },
                "logRecords": records
            }]
        }]
    })
    .to_string()
    .into_bytes()
}

fn decode_logs(body: &[u8], config: &OtlpConfig) -> Result<Decoded, OtlpError> {
    decode(OtlpSignal::Logs, Encoding::Json, body, config, now())
}

fn error_record(body: &str) -> Value {
    json!({
        "timeUnixNano": "1764331200000000000",
        "severityNumber": 17,
        "severityText": "ERROR",
        "body": { "stringValue": body },
        "attributes": [ { "key": "order.id", "value": { "intValue": "42" } } ],
        "traceId": TRACE_ID,
        "spanId": SPAN_ID
    })
}

#[test]
fn error_log_record_becomes_a_firing_alert_with_labels_and_details() {
    let body = logs_json(json!([error_record("payment declined\nstack: ...")]));
    let decoded = decode_logs(&body, &config()).unwrap();
    assert_eq!((decoded.records, decoded.rejected), (1, 0));
    let [alert] = decoded.notification.alerts.as_slice() else {
        panic!("one alert expected: {:?}", decoded.notification.alerts);
    };
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.labels["alertname"], "payment declined");
    assert_eq!(alert.labels["service"], "checkout");
    assert_eq!(alert.labels["scope"], "checkout::payment");
    assert_eq!(alert.labels["severity"], "error");
    assert_eq!(alert.labels.len(), 4, "{:?}", alert.labels);
    assert_eq!(alert.annotations["summary"], "payment declined\nstack: ...");
    let details = &alert.annotations["details"];
    for line in [
        "severity: ERROR (17)",
        "order.id: 42",
        &format!("trace_id: {TRACE_ID}"),
        &format!("span_id: {SPAN_ID}"),
        "host.name: web-1",
    ] {
        assert!(details.contains(line), "{line:?} missing from {details}");
    }
    assert!(!details.contains("service.name"), "{details}");
    assert_eq!(alert.starts_at.timestamp(), 1_764_331_200);
    let occurrences = alert.occurrences.unwrap();
    assert_eq!(
        (occurrences.count, occurrences.last_seen),
        (1, alert.starts_at)
    );
    assert_eq!(alert.generator_url, None);
    assert_eq!(alert.fingerprint, fingerprint(&alert.labels));
    assert_eq!(
        decoded.notification.source,
        crate::model::Source::Otlp {
            signal: OtlpSignal::Logs
        }
    );
}

#[test]
fn records_below_the_threshold_are_skipped_and_text_severity_counts() {
    let records = json!([
        { "severityNumber": 13, "body": { "stringValue": "slow" } },
        { "severityNumber": 0, "severityText": "fatal", "body": { "stringValue": "down" } },
        { "severityText": "Error2", "body": { "stringValue": "err2" } },
        { "severityText": "verbose", "body": { "stringValue": "unknown text" } },
        { "body": { "stringValue": "no severity at all" } }
    ]);
    let decoded = decode_logs(&logs_json(records.clone()), &config()).unwrap();
    let names: Vec<(&str, &str)> = decoded
        .notification
        .alerts
        .iter()
        .map(|a| {
            (
                a.labels["alertname"].as_str(),
                a.labels["severity"].as_str(),
            )
        })
        .collect();
    assert_eq!(names, [("down", "critical"), ("err2", "error")]);
    assert_eq!((decoded.skipped(), decoded.rejected), (3, 0));

    let mut warn = config();
    warn.logs.min_severity = 13;
    let decoded = decode_logs(&logs_json(records), &warn).unwrap();
    assert_eq!(decoded.notification.alerts[0].labels["severity"], "warning");
    assert_eq!(decoded.notification.alerts.len(), 3);
}

#[test]
fn event_name_names_the_alert_and_long_bodies_are_cut() {
    let long = "x".repeat(500);
    let records = json!([
        { "severityNumber": 17, "eventName": "payment.failed", "body": { "stringValue": "card expired" } },
        { "severityNumber": 17, "body": { "stringValue": long } }
    ]);
    let decoded = decode_logs(&logs_json(records), &config()).unwrap();
    let alerts = &decoded.notification.alerts;
    assert_eq!(alerts[0].labels["alertname"], "payment.failed");
    assert_eq!(alerts[0].annotations["summary"], "card expired");
    assert_eq!(
        alerts[1].labels["alertname"].chars().count(),
        MAX_ALERTNAME_CHARS + 1,
        "cut with an ellipsis"
    );
}

#[test]
fn identical_records_in_one_request_merge_into_one_alert() {
    let mut later = error_record("db timeout");
    later["timeUnixNano"] = json!(1_764_331_260_000_000_000u64); // a number this time
    later["attributes"] = json!([]);
    let records = json!([error_record("db timeout"), later, error_record("other")]);
    let decoded = decode_logs(&logs_json(records), &config()).unwrap();
    let alerts = &decoded.notification.alerts;
    assert_eq!(alerts.len(), 2);
    let occurrences = alerts[0].occurrences.unwrap();
    assert_eq!(occurrences.count, 2);
    assert_eq!(alerts[0].starts_at.timestamp(), 1_764_331_200);
    assert_eq!(occurrences.last_seen.timestamp(), 1_764_331_260);
    assert!(
        alerts[0].annotations["details"].contains("order.id: 42"),
        "first record's annotations stay"
    );
    assert_eq!(decoded.alerted(), 3);
}

#[test]
fn ackbar_group_attribute_decides_the_fingerprint() {
    let grouped = |body: &str, group: &str| {
        json!({
            "severityNumber": 17,
            "body": { "stringValue": body },
            "attributes": [ { "key": "ackbar.group", "value": { "stringValue": group } } ]
        })
    };
    let records = json!([
        grouped("disk full on /a", "disk"),
        grouped("disk full on /b", "disk"),
        grouped("disk full on /a", "other")
    ]);
    let decoded = decode_logs(&logs_json(records), &config()).unwrap();
    let alerts = &decoded.notification.alerts;
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0].occurrences.unwrap().count, 2);
    assert_ne!(alerts[0].fingerprint, fingerprint(&alerts[0].labels));
    assert!(!alerts[0].annotations["details"].contains("ackbar.group"));
    // Stable across requests and releases: service + group only.
    let again = decode_logs(
        &logs_json(json!([grouped("anything else", "disk")])),
        &config(),
    )
    .unwrap();
    assert_eq!(
        again.notification.alerts[0].fingerprint,
        alerts[0].fingerprint
    );
    // FNV-1a of "ackbar.group\xffcheckout\xffdisk\xff", computed independently.
    assert_eq!(alerts[0].fingerprint, Fingerprint(0x8f27_3542_f5c1_5166));
}

#[test]
fn configured_attributes_become_labels_most_specific_first() {
    let mut config = config();
    config.logs.label_attributes = vec!["deployment.environment".into(), "k8s.pod.name".into()];
    let mut record = error_record("boom");
    record["attributes"] = json!([
        { "key": "deployment.environment", "value": { "stringValue": "canary" } }
    ]);
    let decoded = decode_logs(&logs_json(json!([record])), &config).unwrap();
    let alert = &decoded.notification.alerts[0];
    assert_eq!(alert.labels["deployment_environment"], "canary");
    assert!(!alert.labels.contains_key("k8s_pod_name"));
    assert!(!alert.annotations["details"].contains("deployment.environment"));
}

#[test]
fn bad_records_are_rejected_one_by_one_with_the_first_reason() {
    let mut short_trace = error_record("a");
    short_trace["traceId"] = json!("abcdef");
    let mut long_span = error_record("b");
    long_span["spanId"] = json!("00112233445566778899");
    let nameless = json!({ "severityNumber": 18 });
    let out_of_range = json!({ "severityNumber": 99, "body": { "stringValue": "x" } });
    let records = json!([
        short_trace,
        error_record("fine"),
        long_span,
        nameless,
        out_of_range
    ]);
    let decoded = decode_logs(&logs_json(records), &config()).unwrap();
    assert_eq!(decoded.notification.alerts.len(), 1);
    assert_eq!(decoded.rejected, 4);
    let message = decoded.rejection.as_deref().unwrap();
    assert_eq!(
        message,
        "rejected 4 of 5 log records; the first: resourceLogs[0].scopeLogs[0].logRecords[0]: traceId is 3 bytes; trace ids are 16 bytes (or absent)"
    );
    let response: Value = serde_json::from_slice(&decoded.response(Encoding::Json)).unwrap();
    assert_eq!(
        response,
        json!({ "partialSuccess": { "rejectedLogRecords": 4, "errorMessage": message } })
    );
    let response =
        ExportLogsServiceResponse::decode(decoded.response(Encoding::Protobuf).as_slice()).unwrap();
    assert_eq!(response.partial_success.unwrap().rejected_log_records, 4);
}

#[test]
fn a_full_request_answers_with_an_empty_response() {
    let decoded = decode_logs(&logs_json(json!([error_record("a")])), &config()).unwrap();
    assert_eq!(decoded.response(Encoding::Json), b"{}");
    assert!(decoded.response(Encoding::Protobuf).is_empty());
}

#[test]
fn json_mapping_details_decode() {
    let body = json!({
        "resourceLogs": [{
            "scopeLogs": [{
                "logRecords": [{
                    "observedTimeUnixNano": 1_764_331_200_000_000_000u64,
                    "severityNumber": 21,
                    "body": { "kvlistValue": { "values": [
                        { "key": "b", "value": { "bytesValue": "3q2+7w==" } },
                        { "key": "d", "value": { "doubleValue": 1.5 } },
                        { "key": "n", "value": { "intValue": -7 } },
                        { "key": "t", "value": { "boolValue": true } },
                        { "key": "e", "value": {} }
                    ]}},
                    "someFutureField": { "nested": [1, 2] },
                    "traceId": TRACE_ID.to_uppercase()
                }]
            }]
        }]
    });
    let decoded = decode_logs(body.to_string().as_bytes(), &config()).unwrap();
    let alert = &decoded.notification.alerts[0];
    assert_eq!(
        alert.annotations["summary"],
        r#"{"b": deadbeef, "d": 1.5, "n": -7, "t": true, "e": }"#
    );
    assert_eq!(
        alert.starts_at.timestamp(),
        1_764_331_200,
        "observed time fallback"
    );
    assert!(!alert.labels.contains_key("service"));
    assert!(alert.annotations["details"].contains(&format!("trace_id: {TRACE_ID}")));
}

#[test]
fn wrongly_typed_json_fields_name_their_path() {
    let mut record = error_record("x");
    record["severityNumber"] = json!("17");
    let err = decode_logs(&logs_json(json!([record])), &config()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, OtlpError::JsonInvalid { .. }), "{err:?}");
    assert!(
        message.starts_with(
            "invalid OTLP/JSON logs request at resourceLogs[0].scopeLogs[0].logRecords[0].severityNumber: invalid type: string \"17\", expected i32"
        ),
        "{message}"
    );

    for (field, value, expected) in [
        ("traceId", json!("not hex!"), "expected a hex string"),
        ("timeUnixNano", json!(true), "expected an integer"),
        ("body", json!({ "intValue": "4x2" }), "expected an integer"),
        (
            "body",
            json!({ "stringValue": "a", "boolValue": true }),
            "more than one value",
        ),
    ] {
        let mut record = error_record("x");
        record[field] = value;
        let message = decode_logs(&logs_json(json!([record])), &config())
            .unwrap_err()
            .to_string();
        assert!(message.contains(expected), "{field}: {message}");
    }
}

#[test]
fn malformed_json_says_where() {
    let err = decode_logs(b"{\"resourceLogs\": [", &config()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("malformed JSON at line 1, column 18"),
        "{err}"
    );
}

#[test]
fn snake_case_json_is_a_client_error_but_an_empty_request_is_fine() {
    let snake =
        json!({ "resource_logs": [{ "scope_logs": [{ "log_records": [error_record("x")] }] }] });
    let err = decode_logs(snake.to_string().as_bytes(), &config()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no log records found: the body uses the snake_case key \"resource_logs\", but OTLP/JSON keys are lowerCamelCase (\"resourceLogs\")"
    );
    let nested = json!({ "resourceSpans": [{ "scope_spans": [] }] });
    let err = decode(
        OtlpSignal::Traces,
        Encoding::Json,
        nested.to_string().as_bytes(),
        &config(),
        now(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"scope_spans\""), "{err}");

    for empty in [json!({}), json!({ "resourceLogs": [] })] {
        let decoded = decode_logs(empty.to_string().as_bytes(), &config()).unwrap();
        assert_eq!(decoded.records, 0);
    }
}

#[test]
fn malformed_protobuf_is_refused() {
    let err = decode(
        OtlpSignal::Logs,
        Encoding::Protobuf,
        &[0x0a, 0xff, 0xff],
        &config(),
        now(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("malformed protobuf logs request: "),
        "{err}"
    );
}

fn span(name: &str, code: i32) -> Span {
    Span {
        trace_id: vec![0x5b; 16],
        span_id: vec![0xee; 8],
        name: name.to_owned(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_764_331_200_000_000_000,
        end_time_unix_nano: 1_764_331_200_250_000_000,
        attributes: vec![KeyValue {
            key: "http.route".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("/pay".into())),
            }),
        }],
        status: Some(Status {
            message: String::new(),
            code,
        }),
        ..Span::default()
    }
}

fn traces_request(spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("checkout".into())),
                    }),
                }],
                dropped_attributes_count: 0,
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "axum".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

#[test]
fn error_spans_become_alerts_with_a_trace_link() {
    let mut failing = span("POST /pay", 2);
    failing.events.push(span::Event {
        name: "exception".into(),
        attributes: vec![
            KeyValue {
                key: "exception.type".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("TimeoutError".into())),
                }),
            },
            KeyValue {
                key: "exception.message".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("upstream took 30s".into())),
                }),
            },
        ],
        ..Default::default()
    });
    let body = traces_request(vec![span("GET /health", 1), failing, span("GET /", 0)]);
    let mut config = config();
    config.traces.trace_url = Some("https://jaeger.example/trace/{trace_id}?svc={service}".into());
    let decoded = decode(
        OtlpSignal::Traces,
        Encoding::Protobuf,
        &body,
        &config,
        now(),
    )
    .unwrap();
    assert_eq!(
        (decoded.records, decoded.skipped(), decoded.rejected),
        (3, 2, 0)
    );
    let alert = &decoded.notification.alerts[0];
    assert_eq!(alert.labels["alertname"], "POST /pay");
    assert_eq!(alert.labels["severity"], "error");
    assert_eq!(alert.labels["service"], "checkout");
    assert_eq!(alert.labels["scope"], "axum");
    assert_eq!(
        alert.annotations["summary"],
        "TimeoutError: upstream took 30s"
    );
    let details = &alert.annotations["details"];
    for line in [
        "kind: server",
        "duration: 250.000 ms",
        "http.route: /pay",
        "exception.type: TimeoutError",
    ] {
        assert!(details.contains(line), "{line:?} missing from {details}");
    }
    assert_eq!(
        alert.generator_url.as_deref(),
        Some(
            format!(
                "https://jaeger.example/trace/{}?svc=checkout",
                "5b".repeat(16)
            )
            .as_str()
        )
    );
    assert_eq!(
        alert.starts_at.timestamp_millis(),
        1_764_331_200_250,
        "the span's end"
    );
}

#[test]
fn spans_with_bad_ids_are_rejected() {
    let mut zero = span("a", 2);
    zero.trace_id = vec![0; 16];
    let mut short = span("b", 1);
    short.span_id = vec![1; 4];
    let body = traces_request(vec![zero, short, span("c", 2)]);
    let decoded = decode(
        OtlpSignal::Traces,
        Encoding::Protobuf,
        &body,
        &config(),
        now(),
    )
    .unwrap();
    assert_eq!(
        (decoded.notification.alerts.len(), decoded.rejected),
        (1, 2)
    );
    let response =
        ExportTraceServiceResponse::decode(decoded.response(Encoding::Protobuf).as_slice())
            .unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial
            .error_message
            .contains("spans[0]: traceId is 16 bytes of zeros"),
        "{}",
        partial.error_message
    );
}

#[test]
fn error_bodies_are_rpc_status_in_the_request_encoding() {
    let err = OtlpError::TooLarge {
        limit: 1024,
        decompressed: true,
    };
    let json: Value = serde_json::from_slice(&error_body(Encoding::Json, &err)).unwrap();
    assert_eq!(
        json,
        json!({ "code": 8, "message": "request body is larger than ingest.max_body_bytes (1024 bytes) once decompressed" })
    );
    let status = RpcStatus::decode(error_body(Encoding::Protobuf, &err).as_slice()).unwrap();
    assert_eq!(status.code, 8);
}

#[test]
fn wire_types_round_trip_through_protobuf() {
    let record = LogRecord {
        time_unix_nano: 1,
        observed_time_unix_nano: 2,
        severity_number: SeverityNumber::Error as i32,
        severity_text: "ERROR".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(any_value::Value::DoubleValue(0.5)),
                }],
            })),
        }),
        flags: 1,
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        event_name: "e".into(),
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let bytes = request.encode_to_vec();
    assert_eq!(
        ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap(),
        request
    );
}

proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        for signal in [OtlpSignal::Logs, OtlpSignal::Traces] {
            for encoding in [Encoding::Protobuf, Encoding::Json] {
                let _ = decode(signal, encoding, &body, &config(), now());
            }
        }
    }
}
