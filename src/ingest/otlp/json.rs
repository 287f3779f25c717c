//! The parts of the OTLP/JSON mapping that serde's derive cannot express:
//! ids as hex, 64-bit integers as strings or numbers, `bytesValue` as
//! base64, and `AnyValue`'s oneof flattened into its object.

use std::fmt;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::proto::{AnyValue, ArrayValue, KeyValueList, any_value::Value};

/// A `fixed64` or `uint64` field: the JSON mapping writes 64-bit integers as
/// decimal strings (JavaScript numbers lose precision past 2^53), but many
/// senders write plain numbers; both are accepted.
pub fn u64_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(IntVisitor::<u64>::default())
}

/// An `int64` field, as a string or a number.
fn i64_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(IntVisitor::<i64>::default())
}

struct IntVisitor<T>(std::marker::PhantomData<T>);

impl<T> Default for IntVisitor<T> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T> Visitor<'_> for IntVisitor<T>
where
    T: TryFrom<u64> + TryFrom<i64> + std::str::FromStr,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer, as a number or a decimal string")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

/// A trace or span id: OTLP/JSON writes these as hex, unlike other `bytes`
/// fields. Case-insensitive; the empty string is the empty id. Whether the
/// length is right is the caller's business (a wrong length rejects one
/// record, not the request).
pub fn hex_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct HexVisitor;
    impl Visitor<'_> for HexVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a hex string")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            decode_hex(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_str(HexVisitor)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// `bytesValue`: standard base64, padded or not.
struct Base64Bytes(Vec<u8>);

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct B64Visitor;
        impl Visitor<'_> for B64Visitor {
            type Value = Base64Bytes;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a base64 string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Base64Bytes, E> {
                let engine = base64::engine::GeneralPurpose::new(
                    &base64::alphabet::STANDARD,
                    base64::engine::GeneralPurposeConfig::new()
                        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
                );
                engine
                    .decode(v)
                    .map(Base64Bytes)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(B64Visitor)
    }
}

struct LenientI64(i64);

impl<'de> Deserialize<'de> for LenientI64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        i64_from_string_or_number(d).map(LenientI64)
    }
}

/// `AnyValue` is `{"stringValue": "x"}`, `{"intValue": "1"}`, ...: one key
/// naming the oneof member. `{}` is the empty value; unknown keys are
/// skipped; two members at once are an error (protobuf JSON forbids it).
impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AnyValueVisitor;
        impl<'de> Visitor<'de> for AnyValueVisitor {
            type Value = AnyValue;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an AnyValue object such as {\"stringValue\": \"...\"}")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
                let mut value = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let member = match key.as_ref() {
                        "stringValue" => Value::StringValue(map.next_value()?),
                        "boolValue" => Value::BoolValue(map.next_value()?),
                        "intValue" => Value::IntValue(map.next_value::<LenientI64>()?.0),
                        "doubleValue" => Value::DoubleValue(map.next_value()?),
                        "arrayValue" => Value::ArrayValue(map.next_value::<ArrayValue>()?),
                        "kvlistValue" => Value::KvlistValue(map.next_value::<KeyValueList>()?),
                        "bytesValue" => Value::BytesValue(map.next_value::<Base64Bytes>()?.0),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if value.replace(member).is_some() {
                        return Err(de::Error::custom(
                            "more than one value in one AnyValue object",
                        ));
                    }
                }
                Ok(AnyValue { value })
            }
        }
        d.deserialize_map(AnyValueVisitor)
    }
}
