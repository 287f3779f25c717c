//! The HTTP body of an OTLP export: which encoding it is in and how it is
//! compressed, and decompression that never holds more than the body limit.

use std::borrow::Cow;
use std::io::Read;

use flate2::read::MultiGzDecoder;

use super::receiver::{OtlpError, echo};

/// How a request body (and so its answer) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`: the Collector's default.
    Protobuf,
    /// `application/json`: OTLP/JSON.
    Json,
}

impl Encoding {
    /// Reads a `Content-Type` value; parameters (`; charset=utf-8`) are
    /// ignored, case is not significant.
    pub fn from_content_type(value: Option<&str>) -> Result<Encoding, OtlpError> {
        let mime = value
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        if mime.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(Encoding::Protobuf)
        } else if mime.eq_ignore_ascii_case("application/json") {
            Ok(Encoding::Json)
        } else {
            Err(OtlpError::ContentType {
                found: value.map(echo),
            })
        }
    }

    /// The `Content-Type` of answers in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Undoes `Content-Encoding` (`gzip`, or none/`identity`). A decompressed
/// body longer than `limit` bytes is [`OtlpError::TooLarge`]: decompression
/// streams and stops at the limit, so a small gzip bomb cannot make us
/// allocate more than `limit` bytes.
pub fn decompress<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Cow<'a, [u8]>, OtlpError> {
    let coding = content_encoding.map(str::trim).unwrap_or_default();
    if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
        return Ok(Cow::Borrowed(body));
    }
    if !(coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip")) {
        return Err(OtlpError::ContentEncoding {
            found: echo(coding),
        });
    }
    gunzip(body, limit).map(Cow::Owned)
}

fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, OtlpError> {
    // A guess that fits typical export ratios (5-10x) without a realloc,
    // never above the limit.
    let mut out = Vec::with_capacity(body.len().saturating_mul(8).min(limit));
    let mut decoder = MultiGzDecoder::new(body);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = decoder
            .read(&mut chunk)
            .map_err(|e| OtlpError::Gzip(e.to_string()))?;
        if n == 0 {
            return Ok(out);
        }
        let needed = out.len() + n;
        if needed > limit {
            return Err(OtlpError::TooLarge {
                limit,
                decompressed: true,
            });
        }
        if out.capacity() < needed {
            // Vec's own growth doubles, which could overshoot the limit.
            let target = out.capacity().saturating_mul(2).clamp(needed, limit);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn content_types_accept_parameters_and_any_case() {
        assert_eq!(
            Encoding::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            Encoding::Json
        );
        assert_eq!(
            Encoding::from_content_type(Some("Application/X-Protobuf")).unwrap(),
            Encoding::Protobuf
        );
        for other in [Some("text/plain"), Some("application/protobuf"), None] {
            assert!(matches!(
                Encoding::from_content_type(other),
                Err(OtlpError::ContentType { .. })
            ));
        }
    }

    #[test]
    fn gzip_round_trips_and_identity_borrows() {
        let data = b"hello otlp".repeat(100);
        let compressed = gzip(&data);
        let out = decompress(&compressed, Some("gzip"), 4096).unwrap();
        assert_eq!(out.as_ref(), data.as_slice());
        assert!(matches!(
            decompress(&data, Some("identity"), 10).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn gzip_bomb_stops_at_the_limit_without_growing_past_it() {
        let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024, "{}", bomb.len());
        let err = gunzip(&bomb, 100_000).unwrap_err();
        assert!(matches!(
            err,
            OtlpError::TooLarge {
                limit: 100_000,
                decompressed: true
            }
        ));
        // Exactly at the limit is fine, and the buffer never exceeds it.
        let out = gunzip(&gzip(&[7u8; 100_000]), 100_000).unwrap();
        assert_eq!(out.len(), 100_000);
        assert!(out.capacity() <= 100_000, "{}", out.capacity());
    }

    #[test]
    fn corrupt_gzip_and_unknown_codings_are_refused() {
        let mut body = gzip(b"some log records");
        let n = body.len();
        body[n - 6] ^= 0xff; // the CRC
        assert!(matches!(
            decompress(&body, Some("gzip"), 4096),
            Err(OtlpError::Gzip(_))
        ));
        assert!(matches!(
            decompress(b"x", Some("zstd"), 4096),
            Err(OtlpError::ContentEncoding { .. })
        ));
    }
}
