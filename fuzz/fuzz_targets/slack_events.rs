//! `POST /slack/events` bodies: the envelope decoder is total and refuses
//! only as `Malformed`; a `url_verification` challenge is always read.
#![no_main]

use ackbar::slack::events::EventRequest;
use ackbar::slack::interact::InteractError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match EventRequest::from_json(data) {
        Ok(_) | Err(InteractError::Malformed(_)) => {}
        Err(e) => panic!("decoding failed with {e:?}"),
    }
    // The same bytes as a challenge: Slack's handshake must never fail to
    // decode, whatever the challenge holds.
    let challenge = String::from_utf8_lossy(data);
    let handshake = format!(
        r#"{{"token":"t","type":"url_verification","challenge":{}}}"#,
        json_string(&challenge)
    );
    if let Err(e) = EventRequest::from_json(handshake.as_bytes()) {
        panic!("url_verification refused: {e}");
    }
});

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
