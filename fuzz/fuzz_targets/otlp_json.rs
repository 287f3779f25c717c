//! `POST /v1/logs` and `POST /v1/traces` with `Content-Type:
//! application/json`, gzip or not: see `ackbar_fuzz::otlp_export` for the
//! input layout and the properties checked.
#![no_main]

use ackbar::ingest::otlp::Encoding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ackbar_fuzz::otlp_export(data, Encoding::Json));
