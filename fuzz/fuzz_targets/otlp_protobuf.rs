//! `POST /v1/logs` and `POST /v1/traces` with `Content-Type:
//! application/x-protobuf`, gzip or not (see `ackbar_fuzz::otlp_export`),
//! and the wire types' own round trip: whatever decodes re-encodes to bytes
//! that decode to the same message. (Compared as encodings: a `doubleValue`
//! NaN is not equal to itself.)
#![no_main]

use ackbar::ingest::otlp::Encoding;
use ackbar::ingest::otlp::proto::{ExportLogsServiceRequest, ExportTraceServiceRequest};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    ackbar_fuzz::otlp_export(data, Encoding::Protobuf);
    if let Some(body) = data.get(2..) {
        round_trip::<ExportLogsServiceRequest>(body);
        round_trip::<ExportTraceServiceRequest>(body);
    }
});

fn round_trip<M: Message + Default>(body: &[u8]) {
    let Ok(message) = M::decode(body) else {
        return;
    };
    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len());
    match M::decode(encoded.as_slice()) {
        Ok(again) => assert_eq!(again.encode_to_vec(), encoded, "re-encoding changed"),
        Err(e) => panic!("our own encoding does not decode: {e}"),
    }
}
