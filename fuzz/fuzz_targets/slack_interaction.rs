//! `POST /slack/interactions` bodies (a form with a `payload` field) and
//! the bare JSON payloads of Socket Mode: both decoders are total, and
//! agree: a payload decodes over HTTP exactly when it decodes over Socket
//! Mode.
#![no_main]

use ackbar::slack::interact::{InteractError, Interaction};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(Interaction::from_form(data));
    let json = check(Interaction::from_json(data));
    if let Ok(text) = std::str::from_utf8(data) {
        let form = format!("payload={}", form_encode(text));
        let over_http = check(Interaction::from_form(form.as_bytes()));
        assert_eq!(json, over_http, "Socket Mode and HTTP disagree on {text:?}");
    }
});

/// Whether it decoded; a refusal is always `Malformed` (a 400, never a 503).
fn check(result: Result<Interaction, InteractError>) -> bool {
    match result {
        Ok(_) => true,
        Err(InteractError::Malformed(_)) => false,
        Err(e) => panic!("decoding failed with {e:?}"),
    }
}

/// `application/x-www-form-urlencoded` escaping of a value, as Slack sends.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._*".contains(&b) {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
