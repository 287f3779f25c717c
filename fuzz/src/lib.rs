//! What the OTLP targets share: `POST /v1/logs` and `POST /v1/traces` after
//! the headers, run as the server runs them ([`otlp::decompress`] with the
//! body limit, then [`otlp::decode`]), and the properties every outcome
//! must have.

use std::borrow::Cow;
use std::io::Write;

use ackbar::config::{OtlpConfig, OtlpLogsConfig, OtlpTracesConfig};
use ackbar::ingest::otlp::{
    self, Decoded, Encoding, MAX_ALERTS, MAX_DETAILS_CHARS, MAX_LABEL_VALUE_CHARS,
    MAX_SUMMARY_CHARS, OtlpError,
};
use ackbar::model::OtlpSignal;
use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;

/// Longest error message the OTLP decoder may produce, in characters.
/// Messages repeat at most `MAX_ECHO_CHARS` of any input string and cut
/// serde's and prost's own messages; what remains unbounded by input would
/// be a JSON path, and that is bounded by serde_json's recursion limit (128
/// levels) times the longest field name.
pub const MAX_ERROR_CHARS: usize = 4096;

/// How an input is laid out. The first two bytes steer the harness; the
/// rest is the request body.
///
/// * byte 0, bit 0: traces (set) or logs;
/// * byte 0, bits 1-2: `Content-Encoding`: 0 none; 1 `gzip`, the body
///   passed on as it is (the decoder must cope with any stream); 2 or 3 `gzip`,
///   compressed by the harness, so decompression must give back exactly the
///   body, or refuse it as too large when it is;
/// * byte 1: the body limit, `1 + 32 * byte` bytes, small enough that the
///   fuzzer reaches it.
pub fn otlp_export(data: &[u8], encoding: Encoding) {
    let [control, limit, body @ ..] = data else {
        return;
    };
    let signal = if control & 1 == 1 {
        OtlpSignal::Traces
    } else {
        OtlpSignal::Logs
    };
    let limit = 1 + 32 * usize::from(*limit);
    let mode = (control >> 1) & 3;
    let sent = if mode >= 2 {
        Cow::Owned(gzip(body))
    } else {
        Cow::Borrowed(body)
    };
    // The server refuses a body over the limit as sent before looking at
    // it (axum's `DefaultBodyLimit`); decompression applies it again.
    if sent.len() > limit {
        return;
    }
    let decompressed = match mode {
        0 => otlp::decompress(&sent, None, limit),
        1 => otlp::decompress(&sent, Some("gzip"), limit),
        _ => {
            let out = otlp::decompress(&sent, Some("gzip"), limit);
            match &out {
                Ok(out) => assert_eq!(out.as_ref(), body, "gzip did not round-trip"),
                Err(e) => assert!(
                    body.len() > limit && matches!(e, OtlpError::TooLarge { .. }),
                    "a {}-byte body under a {limit}-byte limit refused: {e}",
                    body.len()
                ),
            }
            out
        }
    };
    let body = match decompressed {
        Ok(body) => body,
        Err(e) => return check_error(encoding, &e),
    };
    assert!(body.len() <= limit, "decompressed past the limit");
    match otlp::decode(signal, encoding, &body, &config(), now()) {
        Ok(decoded) => check_decoded(&decoded, encoding),
        Err(e) => check_error(encoding, &e),
    }
}

/// A configuration that reaches the configurable paths: label attributes on both
/// signals (one of them the `service.name` every seed carries), a trace link.
fn config() -> OtlpConfig {
    let label_attributes = vec![
        "deployment.environment".to_owned(),
        "http.route".to_owned(),
        "service.name".to_owned(),
    ];
    OtlpConfig {
        logs: OtlpLogsConfig {
            min_severity: 13,
            label_attributes: label_attributes.clone(),
        },
        traces: OtlpTracesConfig {
            trace_url: Some("https://traces.example/{service}/{trace_id}/{span_id}".to_owned()),
            label_attributes,
        },
    }
}

/// A fixed "now": the same input must give the same outcome every run.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
}

fn check_decoded(decoded: &Decoded, encoding: Encoding) {
    let alerts = &decoded.notification.alerts;
    assert!(alerts.len() <= MAX_ALERTS, "{} alerts", alerts.len());
    assert!(decoded.rejected <= decoded.records);
    assert!(
        decoded.alerted() + decoded.rejected <= decoded.records,
        "{} alerted + {} rejected of {} records",
        decoded.alerted(),
        decoded.rejected,
        decoded.records
    );
    assert_eq!(decoded.rejected > 0, decoded.rejection.is_some());
    // `truncate_chars` adds one character, the ellipsis, to what it cuts.
    let at_most = |text: &str, max: usize, what: &str| {
        let n = text.chars().count();
        assert!(n <= max + 1, "{what}: {n} characters, limit {max}");
    };
    for alert in alerts {
        assert!(alert.occurrences.is_some_and(|o| o.count >= 1));
        for (name, value) in &alert.labels {
            assert!(!value.is_empty(), "empty label {name}");
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "label name {name:?}"
            );
            at_most(value, MAX_LABEL_VALUE_CHARS, name);
        }
        if let Some(summary) = alert.annotations.get("summary") {
            at_most(summary, MAX_SUMMARY_CHARS, "summary");
        }
        if let Some(details) = alert.annotations.get("details") {
            at_most(details, MAX_DETAILS_CHARS, "details");
        }
    }
    let answer = decoded.response(encoding);
    if encoding == Encoding::Protobuf {
        check_response(decoded, &answer);
    }
}

/// The protobuf answer decodes, and reports the rejected records.
fn check_response(decoded: &Decoded, answer: &[u8]) {
    use ackbar::ingest::otlp::proto::{ExportLogsServiceResponse, ExportTraceServiceResponse};
    use prost::Message as _;
    let rejected = match decoded.signal {
        OtlpSignal::Logs => ExportLogsServiceResponse::decode(answer)
            .map(|r| r.partial_success.map_or(0, |p| p.rejected_log_records)),
        OtlpSignal::Traces => ExportTraceServiceResponse::decode(answer)
            .map(|r| r.partial_success.map_or(0, |p| p.rejected_spans)),
    };
    match rejected {
        Ok(n) => assert_eq!(u64::try_from(n).ok(), Some(decoded.rejected)),
        Err(e) => panic!("our own answer does not decode: {e}"),
    }
}

fn check_error(encoding: Encoding, e: &OtlpError) {
    let message = e.to_string();
    let n = message.chars().count();
    assert!(n <= MAX_ERROR_CHARS, "{n}-character error: {message}");
    assert!(!otlp::error_body(encoding, e).is_empty());
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    // Writing to a Vec cannot fail.
    match encoder.write_all(data).and_then(|()| encoder.try_finish()) {
        Ok(()) => encoder.get_ref().clone(),
        Err(e) => panic!("gzip into memory: {e}"),
    }
}
