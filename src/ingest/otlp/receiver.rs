//! The receiving side of OTLP/HTTP: decoding a request body of either
//! encoding, turning it into a notification, and the answers (success,
//! partial success, `google.rpc.Status` errors).

use chrono::{DateTime, Utc};
use prost::Message;

use super::body::Encoding;
use super::proto::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse, RpcStatus,
};
use super::{logs, traces};
use crate::config::OtlpConfig;
use crate::ingest::truncate_chars;
use crate::model::{Notification, OtlpSignal};

/// Most distinct alerts (fingerprints) one request may produce; records
/// past it are rejected. Every distinct alert can be a card of its own.
pub const MAX_ALERTS: usize = 1_000;
/// Longest `alertname` taken from a log body, in characters.
pub const MAX_ALERTNAME_CHARS: usize = 100;
/// Longest `summary` annotation, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1_000;
/// Longest `details` annotation, in characters: a Slack section holds 3000.
pub const MAX_DETAILS_CHARS: usize = 2_500;
/// Longest label value, in characters.
pub const MAX_LABEL_VALUE_CHARS: usize = 256;
/// Most characters of the input that an error message repeats.
pub const MAX_ECHO_CHARS: usize = 64;
/// Longest serde or prost message kept in an error: both may quote input.
const MAX_MESSAGE_CHARS: usize = 300;

/// `google.rpc.Code` values in error bodies.
mod rpc_code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const UNAUTHENTICATED: i32 = 16;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNAVAILABLE: i32 = 14;
}

/// Why an OTLP request was refused whole. The HTTP edge maps each variant
/// to a status; `Display` is meant for the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtlpError {
    #[error(
        "unsupported Content-Type {}: OTLP/HTTP bodies are application/x-protobuf or application/json",
        .found.as_deref().map_or("(none)".to_owned(), |f| format!("{f:?}"))
    )]
    ContentType { found: Option<String> },
    #[error("unsupported Content-Encoding {found:?}: send gzip or uncompressed bodies")]
    ContentEncoding { found: String },
    #[error(
        "request body is larger than ingest.max_body_bytes ({limit} bytes){}",
        if *.decompressed { " once decompressed" } else { "" }
    )]
    TooLarge { limit: usize, decompressed: bool },
    /// The connection failed while the body was read (the message says so).
    #[error("{0}")]
    Unreadable(String),
    #[error("malformed gzip body: {0}")]
    Gzip(String),
    #[error("malformed protobuf {what}: {message}")]
    Protobuf { what: &'static str, message: String },
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("invalid OTLP/JSON {what} at {path}: {message} (line {line}, column {column})")]
    JsonInvalid {
        what: &'static str,
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "no {records} found: the body uses the snake_case key {found:?}, but OTLP/JSON keys are lowerCamelCase ({expected:?})"
    )]
    SnakeCaseKeys {
        records: &'static str,
        found: String,
        expected: String,
    },
}

impl OtlpError {
    /// The `google.rpc.Code` of the error body.
    fn rpc_code(&self) -> i32 {
        match self {
            OtlpError::TooLarge { .. } => rpc_code::RESOURCE_EXHAUSTED,
            _ => rpc_code::INVALID_ARGUMENT,
        }
    }
}

/// A request read and turned into alerts.
#[derive(Debug)]
pub struct Decoded {
    pub signal: OtlpSignal,
    /// Empty `alerts` when nothing was alert-worthy.
    pub notification: Notification,
    /// Records (log records or spans) in the request.
    pub records: u64,
    /// Records rejected one by one (see the module docs).
    pub rejected: u64,
    /// Why the first rejected record was rejected.
    pub rejection: Option<String>,
}

impl Decoded {
    /// Records that became an alert or joined one.
    pub fn alerted(&self) -> u64 {
        self.notification
            .alerts
            .iter()
            .filter_map(|a| a.occurrences.map(|o| o.count))
            .sum()
    }

    /// Records accepted but not alert-worthy (below the severity threshold,
    /// spans without ERROR status).
    pub fn skipped(&self) -> u64 {
        self.records
            .saturating_sub(self.rejected)
            .saturating_sub(self.alerted())
    }

    /// The success answer: `Export{Logs,Trace}ServiceResponse`, with
    /// `partialSuccess` when records were rejected.
    pub fn response(&self, encoding: Encoding) -> Vec<u8> {
        let rejected = i64::try_from(self.rejected).unwrap_or(i64::MAX);
        let message = self.rejection.clone().unwrap_or_default();
        match self.signal {
            OtlpSignal::Traces => encode(
                encoding,
                &ExportTraceServiceResponse {
                    partial_success: (rejected > 0).then_some(ExportTracePartialSuccess {
                        rejected_spans: rejected,
                        error_message: message,
                    }),
                },
            ),
            OtlpSignal::Logs => encode(
                encoding,
                &ExportLogsServiceResponse {
                    partial_success: (rejected > 0).then_some(ExportLogsPartialSuccess {
                        rejected_log_records: rejected,
                        error_message: message,
                    }),
                },
            ),
        }
    }
}

/// Decodes an (already decompressed) export request of `signal` and turns
/// its records into one notification. `now` stands in for records without
/// a time.
pub fn decode(
    signal: OtlpSignal,
    encoding: Encoding,
    body: &[u8],
    config: &OtlpConfig,
    now: DateTime<Utc>,
) -> Result<Decoded, OtlpError> {
    match signal {
        OtlpSignal::Logs => {
            let request: ExportLogsServiceRequest = parse(encoding, body, "logs request")?;
            if encoding == Encoding::Json && logs::record_count(&request) == 0 {
                snake_case_check(body, "log records")?;
            }
            Ok(logs::to_alerts(request, config, now))
        }
        OtlpSignal::Traces => {
            let request: ExportTraceServiceRequest = parse(encoding, body, "traces request")?;
            if encoding == Encoding::Json && traces::span_count(&request) == 0 {
                snake_case_check(body, "spans")?;
            }
            Ok(traces::to_alerts(request, config, now))
        }
    }
}

/// The body of an error answer: `google.rpc.Status` in `encoding`.
pub fn error_body(encoding: Encoding, error: &OtlpError) -> Vec<u8> {
    status_body(encoding, error.rpc_code(), &error.to_string())
}

/// Error bodies for refusals that are not about the body: missing
/// credentials, the store being unavailable.
pub fn unauthenticated_body(encoding: Encoding, message: &str) -> Vec<u8> {
    status_body(encoding, rpc_code::UNAUTHENTICATED, message)
}

/// See [`unauthenticated_body`].
pub fn unavailable_body(encoding: Encoding, message: &str) -> Vec<u8> {
    status_body(encoding, rpc_code::UNAVAILABLE, message)
}

fn status_body(encoding: Encoding, code: i32, message: &str) -> Vec<u8> {
    encode(
        encoding,
        &RpcStatus {
            code,
            message: message.to_owned(),
        },
    )
}

fn encode<T: Message + serde::Serialize>(encoding: Encoding, message: &T) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => message.encode_to_vec(),
        // Serializing these plain structs cannot fail.
        Encoding::Json => serde_json::to_vec(message).unwrap_or_default(),
    }
}

fn parse<T>(encoding: Encoding, body: &[u8], what: &'static str) -> Result<T, OtlpError>
where
    T: Message + Default + serde::de::DeserializeOwned,
{
    match encoding {
        Encoding::Protobuf => T::decode(body).map_err(|e| OtlpError::Protobuf {
            what,
            message: truncate_chars(&e.to_string(), MAX_MESSAGE_CHARS),
        }),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| json_error::<T>(body, what, e)),
    }
}

/// Says where a JSON body went wrong. Only runs on failure: the second
/// parse tracks the path (`resourceLogs[0].scopeLogs[1].logRecords[3].timeUnixNano`),
/// which allocates for every key.
fn json_error<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &'static str,
    first: serde_json::Error,
) -> OtlpError {
    if !first.is_data() {
        return OtlpError::Json {
            line: first.line(),
            column: first.column(),
            message: bare_message(&first),
        };
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let (path, error) = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => (e.path().to_string(), e.into_inner()),
        Ok(_) => (".".to_owned(), first),
    };
    OtlpError::JsonInvalid {
        what,
        path: if path == "." {
            "the top level".to_owned()
        } else {
            path
        },
        line: error.line(),
        column: error.column(),
        message: bare_message(&error),
    }
}

/// serde_json's message without its " at line L column C" suffix (the
/// error prints the position itself), capped in length.
fn bare_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    truncate_chars(
        full.strip_suffix(&suffix).unwrap_or(&full),
        MAX_MESSAGE_CHARS,
    )
}

/// OTLP/JSON keys that senders write in snake_case by mistake (the names in
/// the `.proto` files), down to the record lists.
const SNAKE_CASE_KEYS: [(&str, &str); 5] = [
    ("resource_logs", "resourceLogs"),
    ("scope_logs", "scopeLogs"),
    ("log_records", "logRecords"),
    ("resource_spans", "resourceSpans"),
    ("scope_spans", "scopeSpans"),
];

/// A JSON body without records: fine when it is really empty, a client
/// error when snake_case keys hid the records from us.
fn snake_case_check(body: &[u8], records: &'static str) -> Result<(), OtlpError> {
    fn find(value: &serde_json::Value) -> Option<(&'static str, &'static str)> {
        match value {
            serde_json::Value::Object(map) => map.iter().find_map(|(key, value)| {
                SNAKE_CASE_KEYS
                    .iter()
                    .find(|(snake, _)| key == snake)
                    .copied()
                    .or_else(|| find(value))
            }),
            serde_json::Value::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    // The body parsed once already, so this parse succeeds; it only runs for
    // bodies without records.
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match find(&value) {
        Some((found, expected)) => Err(OtlpError::SnakeCaseKeys {
            records,
            found: found.to_owned(),
            expected: expected.to_owned(),
        }),
        None => Ok(()),
    }
}

/// `s` cut to at most `MAX_ECHO_CHARS` characters, for error messages.
pub(super) fn echo(s: &str) -> String {
    truncate_chars(s, MAX_ECHO_CHARS)
}
