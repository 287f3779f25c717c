//! Slack request signatures, version `v0`.
//!
//! Slack signs every request it sends to an app (interactions, slash
//! commands, events): `X-Slack-Signature: v0=hex(HMAC_SHA256(signing_secret,
//! "v0:" + X-Slack-Request-Timestamp + ":" + raw_body))`. [`verify`] checks
//! such a request before anything parses its body; [`sign`] produces the
//! header (the sandbox uses it to act as Slack, tests use it to forge).
//!
//! Replay protection is the timestamp window: a request whose timestamp is
//! more than [`MAX_SKEW`] away from now, in either direction, is refused.

use std::time::Duration;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Largest accepted distance between the request timestamp and now.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Header carrying the unix seconds the request was signed at.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Header carrying `v0=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// Set by Slack on a retried event delivery (1, 2, 3).
pub const RETRY_NUM_HEADER: &str = "x-slack-retry-num";
/// Why Slack retried, e.g. `http_timeout`.
pub const RETRY_REASON_HEADER: &str = "x-slack-retry-reason";

const VERSION: &str = "v0";
/// Hex digits of a SHA-256 MAC.
const SIGNATURE_HEX_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why a request is not accepted as coming from Slack. Never carries the
/// expected signature, nor the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No signing secret configured: nothing can be verified.
    #[error("no signing secret configured")]
    NoSecret,
    /// The header is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// The header is present but not in the expected form (not ASCII, not a
    /// number, not `v0=` followed by 64 hex digits).
    #[error("malformed {0} header")]
    MalformedHeader(&'static str),
    /// The request was signed too long ago (or is a replay).
    #[error("request timestamp is {age_secs}s old (limit {}s)", MAX_SKEW.as_secs())]
    Stale { age_secs: u64 },
    /// The request claims to be signed in the future.
    #[error("request timestamp is {ahead_secs}s in the future (limit {}s)", MAX_SKEW.as_secs())]
    FutureDated { ahead_secs: u64 },
    /// Well-formed, recent, and wrong.
    #[error("signature does not match")]
    BadSignature,
}

/// `v0=<hex>` for `body` signed at `timestamp` (unix seconds) with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mac = mac_for(secret, timestamp, body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + SIGNATURE_HEX_LEN);
    out.push_str(VERSION);
    out.push('=');
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Check the Slack signature headers of a request whose raw body is `body`,
/// `now_unix` being the current unix time in seconds. Order: headers
/// present and well-formed, timestamp within [`MAX_SKEW`], then the MAC,
/// compared in constant time.
pub fn verify(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let timestamp = header(headers, TIMESTAMP_HEADER)?;
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::MalformedHeader(TIMESTAMP_HEADER))?;
    let signature = header(headers, SIGNATURE_HEADER)?;
    let provided = signature
        .strip_prefix("v0=")
        .and_then(decode_hex)
        .ok_or(VerifyError::MalformedHeader(SIGNATURE_HEADER))?;

    // i128: a hostile timestamp near i64::MIN/MAX must not overflow.
    let age = i128::from(now_unix) - i128::from(timestamp);
    let max = i128::from(MAX_SKEW.as_secs());
    if age > max {
        return Err(VerifyError::Stale {
            age_secs: u64::try_from(age).unwrap_or(u64::MAX),
        });
    }
    if -age > max {
        return Err(VerifyError::FutureDated {
            ahead_secs: u64::try_from(-age).unwrap_or(u64::MAX),
        });
    }
    mac_for(secret, timestamp, body)
        .verify_slice(&provided)
        .map_err(|_| VerifyError::BadSignature)
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    let value = headers.get(name).ok_or(VerifyError::MissingHeader(name))?;
    value
        .to_str()
        .map_err(|_| VerifyError::MalformedHeader(name))
}

fn mac_for(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // `new_from_slice` only fails for MACs with a fixed key size; HMAC
    // takes keys of any length, so this arm cannot run.
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        unreachable!("HMAC accepts keys of any length")
    };
    mac.update(VERSION.as_bytes());
    mac.update(b":");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Exactly 64 hex digits (either case) into 32 bytes.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != SIGNATURE_HEX_LEN {
        return None;
    }
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// The example in Slack's "Verifying requests from Slack" guide.
    const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TIMESTAMP: i64 = 1_531_420_618;
    const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn headers(timestamp: &str, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            TIMESTAMP_HEADER,
            HeaderValue::from_str(timestamp).expect("ascii"),
        );
        h.insert(
            SIGNATURE_HEADER,
            HeaderValue::from_str(signature).expect("ascii"),
        );
        h
    }

    fn signed(secret: &str, ts: i64, body: &str) -> HeaderMap {
        headers(
            &ts.to_string(),
            &sign(secret.as_bytes(), ts, body.as_bytes()),
        )
    }

    #[test]
    fn slack_documented_example_signs_and_verifies() {
        assert_eq!(
            sign(
                SLACK_SECRET.as_bytes(),
                SLACK_TIMESTAMP,
                SLACK_BODY.as_bytes()
            ),
            SLACK_SIGNATURE
        );
        let h = headers(&SLACK_TIMESTAMP.to_string(), SLACK_SIGNATURE);
        assert_eq!(
            verify(
                SLACK_SECRET.as_bytes(),
                &h,
                SLACK_BODY.as_bytes(),
                SLACK_TIMESTAMP + 10
            ),
            Ok(())
        );
    }

    #[test]
    fn signature_in_upper_case_hex_is_accepted() {
        let h = headers(
            &SLACK_TIMESTAMP.to_string(),
            &format!("v0={}", SLACK_SIGNATURE[3..].to_ascii_uppercase()),
        );
        assert_eq!(
            verify(
                SLACK_SECRET.as_bytes(),
                &h,
                SLACK_BODY.as_bytes(),
                SLACK_TIMESTAMP
            ),
            Ok(())
        );
    }

    #[test]
    fn signed_request_round_trips() {
        let body = r#"payload={"type":"block_actions"}"#;
        let h = signed("s3cret", 1_700_000_000, body);
        assert_eq!(
            verify(b"s3cret", &h, body.as_bytes(), 1_700_000_000),
            Ok(())
        );
        assert_eq!(
            verify(b"s3cret", &h, body.as_bytes(), 1_700_000_000 + 300),
            Ok(())
        );
        assert_eq!(
            verify(b"s3cret", &h, body.as_bytes(), 1_700_000_000 - 300),
            Ok(())
        );
    }

    #[test]
    fn tampered_body_is_rejected() {
        let h = signed("s3cret", 1_700_000_000, "text=hello");
        assert_eq!(
            verify(b"s3cret", &h, b"text=hellO", 1_700_000_000),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn wrong_secret_is_rejected() {
        let h = signed("other", 1_700_000_000, "text=hello");
        assert_eq!(
            verify(b"s3cret", &h, b"text=hello", 1_700_000_000),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn timestamp_cannot_be_swapped_under_a_valid_signature() {
        let sig = sign(b"s3cret", 1_700_000_000, b"x");
        let h = headers("1700000001", &sig);
        assert_eq!(
            verify(b"s3cret", &h, b"x", 1_700_000_000),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn stale_timestamp_is_rejected_even_with_a_valid_signature() {
        let h = signed("s3cret", 1_700_000_000, "x");
        assert_eq!(
            verify(b"s3cret", &h, b"x", 1_700_000_000 + 301),
            Err(VerifyError::Stale { age_secs: 301 })
        );
    }

    #[test]
    fn future_dated_timestamp_is_rejected_even_with_a_valid_signature() {
        let h = signed("s3cret", 1_700_000_000, "x");
        assert_eq!(
            verify(b"s3cret", &h, b"x", 1_700_000_000 - 301),
            Err(VerifyError::FutureDated { ahead_secs: 301 })
        );
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        for ts in [i64::MIN, i64::MAX] {
            let h = signed("s3cret", ts, "x");
            let err = verify(b"s3cret", &h, b"x", 1_700_000_000).expect_err("far off");
            assert!(
                matches!(
                    err,
                    VerifyError::Stale { .. } | VerifyError::FutureDated { .. }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn missing_headers_are_named() {
        let mut h = signed("s3cret", 1_700_000_000, "x");
        h.remove(SIGNATURE_HEADER);
        assert_eq!(
            verify(b"s3cret", &h, b"x", 1_700_000_000),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        let mut h = signed("s3cret", 1_700_000_000, "x");
        h.remove(TIMESTAMP_HEADER);
        assert_eq!(
            verify(b"s3cret", &h, b"x", 1_700_000_000),
            Err(VerifyError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            verify(b"s3cret", &HeaderMap::new(), b"x", 1_700_000_000),
            Err(VerifyError::MissingHeader(TIMESTAMP_HEADER))
        );
    }

    #[test]
    fn non_numeric_timestamp_is_malformed() {
        let sig = sign(b"s3cret", 1_700_000_000, b"x");
        for ts in ["", "soon", "1700000000.5", "0x10", "99999999999999999999"] {
            let h = headers(ts, &sig);
            assert_eq!(
                verify(b"s3cret", &h, b"x", 1_700_000_000),
                Err(VerifyError::MalformedHeader(TIMESTAMP_HEADER)),
                "{ts:?}"
            );
        }
    }

    #[test]
    fn garbled_signature_is_malformed() {
        let good = sign(b"s3cret", 1_700_000_000, b"x");
        let hex = &good[3..];
        for sig in [
            String::new(),
            hex.to_owned(),
            format!("v1={hex}"),
            format!("v0={}", &hex[1..]),
            format!("v0={hex}00"),
            format!("v0={}zz", &hex[2..]),
            format!("v0=é{}", &hex[2..]),
        ] {
            let mut h = signed("s3cret", 1_700_000_000, "x");
            h.insert(
                SIGNATURE_HEADER,
                HeaderValue::from_bytes(sig.as_bytes()).expect("header bytes"),
            );
            assert_eq!(
                verify(b"s3cret", &h, b"x", 1_700_000_000),
                Err(VerifyError::MalformedHeader(SIGNATURE_HEADER)),
                "{sig:?}"
            );
        }
    }

    #[test]
    fn empty_secret_verifies_nothing() {
        let h = signed("", 1_700_000_000, "x");
        assert_eq!(
            verify(b"", &h, b"x", 1_700_000_000),
            Err(VerifyError::NoSecret)
        );
    }

    #[test]
    fn errors_never_show_the_expected_signature() {
        let body = "text=hello";
        let expected = sign(b"s3cret", 1_700_000_000, body.as_bytes());
        let h = headers(
            "1700000000",
            &sign(b"wrong", 1_700_000_000, body.as_bytes()),
        );
        let err = verify(b"s3cret", &h, body.as_bytes(), 1_700_000_000).expect_err("bad");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&expected[3..]), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
