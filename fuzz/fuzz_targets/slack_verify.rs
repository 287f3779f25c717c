//! Slack request signatures: arbitrary headers and bodies never panic and
//! verify only when the signature is the secret's MAC of this timestamp and
//! body, within the time window; a request signed with the secret verifies,
//! and one flipped byte of body or signature makes it fail.
#![no_main]

use ackbar::slack::verify::{
    MAX_SKEW, SIGNATURE_HEADER, TIMESTAMP_HEADER, VerifyError, sign, verify,
};
use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    secret: &'a [u8],
    body: &'a [u8],
    /// Unix seconds the request was signed at.
    signed_at: i64,
    /// Now, relative to `signed_at`; the window is ±300 s.
    skew: i16,
    /// Headers as sent by someone else; `None` leaves the header out.
    timestamp: Option<&'a [u8]>,
    signature: Option<&'a [u8]>,
    /// Which byte of the body, or of the signature's hex, to change.
    flip: u16,
}

fuzz_target!(|input: Input<'_>| {
    let Input {
        secret,
        body,
        signed_at,
        skew,
        timestamp,
        signature,
        flip,
    } = input;
    let now = signed_at.saturating_add(i64::from(skew));
    let in_window =
        (i128::from(now) - i128::from(signed_at)).unsigned_abs() <= u128::from(MAX_SKEW.as_secs());

    // Arbitrary headers: verified only if they are exactly right.
    let mut headers = HeaderMap::new();
    for (name, value) in [(TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature)] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            headers.insert(name, value);
        }
    }
    if verify(secret, &headers, body, now).is_ok() {
        let ts = header(&headers, TIMESTAMP_HEADER).trim().parse::<i64>();
        let Ok(ts) = ts else {
            panic!("verified with a malformed timestamp");
        };
        assert!((i128::from(now) - i128::from(ts)).unsigned_abs() <= 300);
        assert!(
            header(&headers, SIGNATURE_HEADER).eq_ignore_ascii_case(&sign(secret, ts, body)),
            "verified a signature that is not the MAC"
        );
    }

    // A request signed with the secret.
    let good = sign(secret, signed_at, body);
    let signed = |signature: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(TIMESTAMP_HEADER, HeaderValue::from(signed_at));
        match HeaderValue::from_str(signature) {
            Ok(v) => headers.insert(SIGNATURE_HEADER, v),
            Err(e) => panic!("sign() made an invalid header value: {e}"),
        };
        headers
    };
    let result = verify(secret, &signed(&good), body, now);
    match (secret.is_empty(), in_window) {
        (true, _) => assert_eq!(result, Err(VerifyError::NoSecret)),
        (false, true) => assert_eq!(result, Ok(())),
        (false, false) => assert!(
            matches!(
                result,
                Err(VerifyError::Stale { .. } | VerifyError::FutureDated { .. })
            ),
            "{result:?}"
        ),
    }
    if secret.is_empty() || !in_window {
        return;
    }

    // One byte of the body changed.
    if !body.is_empty() {
        let mut tampered = body.to_vec();
        tampered[usize::from(flip) % body.len()] ^= 1 << (flip % 8);
        assert_eq!(
            verify(secret, &signed(&good), &tampered, now),
            Err(VerifyError::BadSignature)
        );
    }
    // One hex digit of the signature changed (to another hex digit).
    let mut forged = good.into_bytes();
    let at = 3 + usize::from(flip) % 64;
    forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8_lossy(&forged).into_owned();
    assert_eq!(
        verify(secret, &signed(&forged), body, now),
        Err(VerifyError::BadSignature)
    );
});

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}
