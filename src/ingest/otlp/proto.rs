//! OTLP wire types: the messages of `opentelemetry-proto` (v1) that the
//! logs and traces export services use, plus `google.rpc.Status` for error
//! bodies, written by hand for `prost`'s derive (no protoc, no build script).
//!
//! Field numbers and types follow the `.proto` files of
//! `opentelemetry-proto` (`collector/{logs,trace}/v1/*_service.proto`,
//! `logs/v1/logs.proto`, `trace/v1/trace.proto`, `common/v1/common.proto`,
//! `resource/v1/resource.proto`). Fields still marked "development" there
//! (entity refs, string-table indices) are left out: prost skips unknown
//! fields when decoding, so leaving them out loses nothing ackbar uses.
//!
//! The types both decode and encode protobuf; the ackbar `tracing` Layer's
//! forwarding mode encodes [`ExportLogsServiceRequest`] with them.
//!
//! Requests also decode from OTLP/JSON through serde: keys in lowerCamelCase,
//! unknown keys ignored, trace and span ids as hex (not the base64 of the
//! generic protobuf JSON mapping), 64-bit integers as strings or numbers,
//! enums as integers, `bytesValue` as base64. The helpers for those live in
//! the sibling `json` module. Responses and [`RpcStatus`] serialize to the
//! same mapping.

use serde::{Deserialize, Serialize};

use super::json;

// ---------------------------------------------------------------------------
// collector/logs/v1/logs_service.proto

/// Body of `POST /v1/logs`.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExportLogsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

/// Answer to `POST /v1/logs`; empty when every record was accepted.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportLogsServiceResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_success: Option<ExportLogsPartialSuccess>,
}

/// Records the receiver accepted the request but rejected.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportLogsPartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_log_records: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

// ---------------------------------------------------------------------------
// collector/trace/v1/trace_service.proto

/// Body of `POST /v1/traces`.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// Answer to `POST /v1/traces`; empty when every span was accepted.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportTraceServiceResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

/// Spans the receiver accepted the request but rejected.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportTracePartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

// ---------------------------------------------------------------------------
// logs/v1/logs.proto

/// Log records from one resource (one service instance).
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// Log records from one instrumentation scope (library, module, target).
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ScopeLogs {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// One log record. Field 4 is reserved in the `.proto`.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LogRecord {
    /// When the event happened; 0 = unknown.
    #[prost(fixed64, tag = "1")]
    #[serde(deserialize_with = "json::u64_from_string_or_number")]
    pub time_unix_nano: u64,
    /// When a collector first saw the event; 0 = unknown.
    #[prost(fixed64, tag = "11")]
    #[serde(deserialize_with = "json::u64_from_string_or_number")]
    pub observed_time_unix_nano: u64,
    #[prost(enumeration = "SeverityNumber", tag = "2")]
    pub severity_number: i32,
    #[prost(string, tag = "3")]
    pub severity_text: String,
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "7")]
    pub dropped_attributes_count: u32,
    /// W3C trace flags in the low 8 bits.
    #[prost(fixed32, tag = "8")]
    pub flags: u32,
    /// 16 bytes, or empty when the record is not part of a trace.
    #[prost(bytes = "vec", tag = "9")]
    #[serde(deserialize_with = "json::hex_bytes")]
    pub trace_id: Vec<u8>,
    /// 8 bytes, or empty.
    #[prost(bytes = "vec", tag = "10")]
    #[serde(deserialize_with = "json::hex_bytes")]
    pub span_id: Vec<u8>,
    /// Names the class of event (`event.name` of the semantic conventions).
    #[prost(string, tag = "12")]
    pub event_name: String,
}

/// `LogRecord.severity_number`: four steps per level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SeverityNumber {
    Unspecified = 0,
    Trace = 1,
    Trace2 = 2,
    Trace3 = 3,
    Trace4 = 4,
    Debug = 5,
    Debug2 = 6,
    Debug3 = 7,
    Debug4 = 8,
    Info = 9,
    Info2 = 10,
    Info3 = 11,
    Info4 = 12,
    Warn = 13,
    Warn2 = 14,
    Warn3 = 15,
    Warn4 = 16,
    Error = 17,
    Error2 = 18,
    Error3 = 19,
    Error4 = 20,
    Fatal = 21,
    Fatal2 = 22,
    Fatal3 = 23,
    Fatal4 = 24,
}

// ---------------------------------------------------------------------------
// trace/v1/trace.proto

/// Spans from one resource (one service instance).
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// Spans from one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// One span.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Span {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    #[serde(deserialize_with = "json::hex_bytes")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    #[serde(deserialize_with = "json::hex_bytes")]
    pub span_id: Vec<u8>,
    /// W3C `tracestate`.
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// 8 bytes, or empty for a root span.
    #[prost(bytes = "vec", tag = "4")]
    #[serde(deserialize_with = "json::hex_bytes")]
    pub parent_span_id: Vec<u8>,
    /// W3C trace flags in the low 8 bits; bits 8-9 say whether the parent
    /// is remote.
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(enumeration = "span::SpanKind", tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    #[serde(deserialize_with = "json::u64_from_string_or_number")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    #[serde(deserialize_with = "json::u64_from_string_or_number")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "10")]
    pub dropped_attributes_count: u32,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<span::Event>,
    #[prost(uint32, tag = "12")]
    pub dropped_events_count: u32,
    #[prost(message, repeated, tag = "13")]
    pub links: Vec<span::Link>,
    #[prost(uint32, tag = "14")]
    pub dropped_links_count: u32,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

/// Types nested in `Span` in the `.proto`.
pub mod span {
    use serde::Deserialize;

    use super::{KeyValue, json};

    /// What role a span plays in a trace.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum SpanKind {
        Unspecified = 0,
        Internal = 1,
        Server = 2,
        Client = 3,
        Producer = 4,
        Consumer = 5,
    }

    /// Something that happened at one point during a span.
    #[derive(Clone, PartialEq, prost::Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Event {
        #[prost(fixed64, tag = "1")]
        #[serde(deserialize_with = "json::u64_from_string_or_number")]
        pub time_unix_nano: u64,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "3")]
        pub attributes: Vec<KeyValue>,
        #[prost(uint32, tag = "4")]
        pub dropped_attributes_count: u32,
    }

    /// A pointer to another span, in this trace or another.
    #[derive(Clone, PartialEq, prost::Message, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Link {
        #[prost(bytes = "vec", tag = "1")]
        #[serde(deserialize_with = "json::hex_bytes")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        #[serde(deserialize_with = "json::hex_bytes")]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "3")]
        pub trace_state: String,
        #[prost(message, repeated, tag = "4")]
        pub attributes: Vec<KeyValue>,
        #[prost(uint32, tag = "5")]
        pub dropped_attributes_count: u32,
        #[prost(fixed32, tag = "6")]
        pub flags: u32,
    }
}

/// A span's outcome. Field 1 is reserved in the `.proto`.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(enumeration = "status::StatusCode", tag = "3")]
    pub code: i32,
}

/// Types nested in `Status` in the `.proto`.
pub mod status {
    /// `Status.code`; only `Error` makes a span an alert.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum StatusCode {
        Unset = 0,
        Ok = 1,
        Error = 2,
    }
}

// ---------------------------------------------------------------------------
// resource/v1/resource.proto, common/v1/common.proto

/// The entity that produced the telemetry (`service.name`, host, ...).
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

/// The library, module or `tracing` target that emitted the telemetry.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// One attribute.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// An attribute value or log body. `value: None` is the empty value.
///
/// JSON: `{"stringValue": "..."}`, `{"intValue": "42"}`, ... decoded by
/// hand in `super::json` because the oneof is flattened into the object.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<any_value::Value>,
}

/// Types nested in `AnyValue` in the `.proto`.
pub mod any_value {
    use super::{ArrayValue, KeyValueList};

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(message, tag = "5")]
        ArrayValue(ArrayValue),
        #[prost(message, tag = "6")]
        KvlistValue(KeyValueList),
        #[prost(bytes = "vec", tag = "7")]
        BytesValue(Vec<u8>),
    }
}

/// A list value.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

/// A map value; keys should be unique but the wire does not enforce it.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

// ---------------------------------------------------------------------------
// google/rpc/status.proto

/// Error body of a rejected OTLP/HTTP request (`google.rpc.Status`).
/// `details` (field 3, `repeated google.protobuf.Any`) is never sent.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct RpcStatus {
    /// A `google.rpc.Code`; OTLP/HTTP receivers use `INVALID_ARGUMENT` (3)
    /// and friends, the HTTP status carries the real meaning.
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}
