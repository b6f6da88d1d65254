//! `temporal.api.common.v1.Payloads` in protobuf JSON, as Temporal's clients send it:
//! `{"payloads":[{"metadata":{"encoding":"<base64>"},"data":"<base64>",
//! "externalPayloads":[{"sizeBytes":"123"}]}]}`. Input follows protobuf JSON's parsing rules
//! (lowerCamelCase or original field names, standard or URL-safe base64 with or without
//! padding, int64 as string or number, `null` = absent); output is canonical (lowerCamelCase,
//! padded standard base64, int64 as strings, empty fields omitted, keys in sorted order).
//!
//! The body is read in one pass into a small typed tree whose strings borrow from the body
//! (no `serde_json::Value`, no copy of a base64 string), then checked in the order a reader
//! of the tree would check it, so every error names the first offending field; the answer is
//! written straight into one buffer, base64 included. Unknown fields are skipped (nesting
//! limits as for any JSON value); a repeated field keeps its last value.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::Payload;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use temporalio_common::protos::temporal::api::common::v1::payload::ExternalPayloadDetails;

#[cfg(test)]
mod tests;

/// Parses `Payloads` JSON (a codec request body). The error names the offending field
/// (`payloads[3].metadata.encoding: invalid base64`); it never echoes payload bytes.
pub fn parse_payloads(body: &[u8]) -> Result<Vec<Payload>, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let root: Obj<Root<'_>> = seed()
        .deserialize(&mut de)
        .and_then(|root| de.end().map(|()| root))
        .map_err(|e| format!("invalid JSON: {e}"))?;
    let Obj::Is(root) = root else {
        return Err("expected a JSON object {\"payloads\": [...]}".into());
    };
    let list = match root.payloads {
        None | Some(Arr::Null) => return Ok(Vec::new()),
        Some(Arr::Is(list)) => list,
        Some(Arr::Other) => return Err("payloads: expected an array".into()),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, p)| match p {
            Obj::Is(p) => p.check(i),
            _ => Err(format!("payloads[{i}]: expected an object")),
        })
        .collect()
}

/// Serializes payloads as canonical `Payloads` JSON (a codec response body).
pub fn render_payloads(payloads: &[Payload]) -> Vec<u8> {
    let size: usize = payloads
        .iter()
        .map(|p| {
            let metadata: usize = p
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.len().div_ceil(3) * 4 + 6)
                .sum();
            p.data.len().div_ceil(3) * 4 + metadata + 32 * p.external_payloads.len() + 32
        })
        .sum();
    let mut out = String::with_capacity(size + 16);
    out.push_str("{\"payloads\":[");
    for (i, p) in payloads.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Keys in sorted order: data, externalPayloads, metadata.
        let mut sep = '{';
        if !p.data.is_empty() {
            out.push(sep);
            sep = ',';
            out.push_str("\"data\":");
            push_base64(&mut out, &p.data);
        }
        if !p.external_payloads.is_empty() {
            out.push(sep);
            sep = ',';
            out.push_str("\"externalPayloads\":[");
            for (j, d) in p.external_payloads.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str("{\"sizeBytes\":\"");
                out.push_str(&d.size_bytes.to_string());
                out.push_str("\"}");
            }
            out.push(']');
        }
        if !p.metadata.is_empty() {
            out.push(sep);
            sep = ',';
            out.push_str("\"metadata\":");
            let mut keys: Vec<&String> = p.metadata.keys().collect();
            keys.sort();
            for (j, k) in keys.into_iter().enumerate() {
                out.push(if j == 0 { '{' } else { ',' });
                push_json_string(&mut out, k);
                out.push(':');
                push_base64(&mut out, &p.metadata[k]);
            }
            out.push('}');
        }
        if sep == '{' {
            out.push('{');
        }
        out.push('}');
    }
    out.push_str("]}");
    out.into_bytes()
}

/// A quoted base64 string (padded standard alphabet).
fn push_base64(out: &mut String, bytes: &[u8]) {
    out.push('"');
    base64_simd::STANDARD.encode_append(bytes, out);
    out.push('"');
}

/// A JSON string, escaped as serde_json escapes it (short forms for `\b \t \n \f \r`,
/// `\u00XX` for other control characters, nothing else).
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let short = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\u{8}' => "\\b",
            '\t' => "\\t",
            '\n' => "\\n",
            '\u{c}' => "\\f",
            '\r' => "\\r",
            c if c < ' ' => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push_str(short);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// The typed tree. Every position records what kind of JSON value stood there, so the checks
// run after the whole body parsed (a syntax error anywhere is reported as such, first).

/// A position that should hold an object.
enum Obj<T> {
    Null,
    Is(T),
    Other,
}

/// A position that should hold an array.
enum Arr<T> {
    Null,
    Is(Vec<T>),
    Other,
}

/// A leaf: a string (borrowed from the body unless it had escapes), a number, or another kind.
enum Scalar<'a> {
    Null,
    Str(Cow<'a, str>),
    Num(serde_json::Number),
    Other,
}

#[derive(Default)]
struct Root<'a> {
    payloads: Option<Arr<Obj<RawPayload<'a>>>>,
}

#[derive(Default)]
struct RawPayload<'a> {
    metadata: Option<Obj<BTreeMap<String, Scalar<'a>>>>,
    data: Option<Scalar<'a>>,
    external_camel: Option<Arr<Obj<RawExternal<'a>>>>,
    external_snake: Option<Arr<Obj<RawExternal<'a>>>>,
}

#[derive(Default)]
struct RawExternal<'a> {
    camel: Option<Scalar<'a>>,
    snake: Option<Scalar<'a>>,
}

/// protobuf JSON's rule for a field with two names: the lowerCamelCase one when present,
/// the original otherwise; `null` is absent.
fn either<T>(camel: Option<T>, snake: Option<T>, is_null: impl Fn(&T) -> bool) -> Option<T> {
    camel.or(snake).filter(|v| !is_null(v))
}

impl RawPayload<'_> {
    fn check(self, i: usize) -> Result<Payload, String> {
        let mut metadata = HashMap::new();
        match self.metadata {
            None | Some(Obj::Null) => {}
            Some(Obj::Is(m)) => {
                for (k, v) in m {
                    let value = v.bytes(&format!("payloads[{i}].metadata.{k}"))?;
                    metadata.insert(k, value);
                }
            }
            Some(Obj::Other) => return Err(format!("payloads[{i}].metadata: expected an object")),
        }
        let data = match self.data {
            Some(v) => v.bytes(&format!("payloads[{i}].data"))?,
            None => Vec::new(),
        };
        let mut external_payloads = Vec::new();
        match either(self.external_camel, self.external_snake, |a| {
            matches!(a, Arr::Null)
        }) {
            None | Some(Arr::Null) => {}
            Some(Arr::Is(list)) => {
                for (j, e) in list.into_iter().enumerate() {
                    let size = match e {
                        Obj::Is(e) => either(e.camel, e.snake, |s| matches!(s, Scalar::Null)),
                        _ => None,
                    };
                    let size_bytes = match size {
                        Some(v) => {
                            v.int64(&format!("payloads[{i}].externalPayloads[{j}].sizeBytes"))?
                        }
                        None => 0,
                    };
                    external_payloads.push(ExternalPayloadDetails { size_bytes });
                }
            }
            Some(Arr::Other) => {
                return Err(format!("payloads[{i}].externalPayloads: expected an array"));
            }
        }
        Ok(Payload {
            metadata,
            data,
            external_payloads,
        })
    }
}

impl Scalar<'_> {
    /// Base64 (any of protobuf JSON's four spellings) as bytes; `null` is empty.
    fn bytes(&self, field: &str) -> Result<Vec<u8>, String> {
        match self {
            Scalar::Null => Ok(Vec::new()),
            // The common spelling (padded standard, what Temporal's SDKs write) through the
            // SIMD decoder, which accepts a subset of what `STANDARD` accepts and decodes it
            // to the same bytes (checked by a property test); anything else as before.
            Scalar::Str(s) => base64_simd::STANDARD
                .decode_to_vec(s.as_bytes())
                .ok()
                .or_else(|| {
                    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
                        .iter()
                        .find_map(|e| e.decode(s.as_bytes()).ok())
                })
                .ok_or_else(|| format!("{field}: invalid base64")),
            _ => Err(format!("{field}: expected a base64 string")),
        }
    }

    /// An int64 given as a string or as a number (an integral float counts).
    fn int64(&self, field: &str) -> Result<i64, String> {
        let n = match self {
            Scalar::Str(s) => {
                return s
                    .parse()
                    .map_err(|_| format!("{field}: `{s}` is not an int64"));
            }
            Scalar::Num(n) => n,
            _ => return Err(format!("{field}: expected an int64")),
        };
        n.as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| format!("{field}: {n} is not an int64"))
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialization. Every position takes any JSON value: what is not the expected kind is
// recorded as `Null` or `Other` (and read through `Skip`, which nests exactly as a
// `serde_json::Value` would, so the nesting limit applies the same everywhere).

/// How a position reads each kind of JSON value; by default anything but `null` is `OTHER`.
trait Shaped<'de>: Sized {
    const NULL: Self;
    const OTHER: Self;
    fn number(_: serde_json::Number) -> Self {
        Self::OTHER
    }
    /// A string, borrowed from the body unless it had escapes.
    fn string(_: Cow<'de, str>) -> Self {
        Self::OTHER
    }
    fn seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element_seed(seed::<Skip>())?.is_some() {}
        Ok(Self::OTHER)
    }
    fn map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map
            .next_entry_seed(seed::<Skip>(), seed::<Skip>())?
            .is_some()
        {}
        Ok(Self::OTHER)
    }
}

/// Reads a `T` by its [`Shaped`] rules.
struct Seed<T>(std::marker::PhantomData<T>);

fn seed<T>() -> Seed<T> {
    Seed(std::marker::PhantomData)
}

impl<'de, T: Shaped<'de>> DeserializeSeed<'de> for Seed<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Shaped<'de>> Visitor<'de> for Seed<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::NULL)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Ok(T::OTHER)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Ok(T::number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok(T::number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        Ok(serde_json::Number::from_f64(v).map_or(T::OTHER, T::number))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<T, E> {
        Ok(T::string(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok(T::string(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<T, E> {
        Ok(T::string(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::map(map)
    }
}

/// Any JSON value, read and dropped.
struct Skip;

impl Shaped<'_> for Skip {
    const NULL: Self = Skip;
    const OTHER: Self = Skip;
}

/// A leaf keeps strings and numbers; containers are read through and recorded as `Other`.
impl<'de> Shaped<'de> for Scalar<'de> {
    const NULL: Self = Scalar::Null;
    const OTHER: Self = Scalar::Other;
    fn number(n: serde_json::Number) -> Self {
        Scalar::Num(n)
    }
    fn string(s: Cow<'de, str>) -> Self {
        Scalar::Str(s)
    }
}

impl<'de, T: Shaped<'de>> Shaped<'de> for Arr<T> {
    const NULL: Self = Arr::Null;
    const OTHER: Self = Arr::Other;
    fn seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(seed())? {
            items.push(item);
        }
        Ok(Arr::Is(items))
    }
}

/// An object read field by field into a `T` that starts empty.
trait Fields<'de>: Default {
    /// Reads the value of `key` from `map` (or skips it).
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

impl<'de, T: Fields<'de>> Shaped<'de> for Obj<T> {
    const NULL: Self = Obj::Null;
    const OTHER: Self = Obj::Other;
    fn map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut fields = T::default();
        while let Some(key) = map.next_key_seed(seed::<Scalar<'de>>())? {
            let Scalar::Str(key) = key else {
                // serde_json only ever gives strings as keys.
                return Err(de::Error::custom("object key is not a string"));
            };
            fields.field(&key, &mut map)?;
        }
        Ok(Obj::Is(fields))
    }
}

/// The value of the current field, read as a `T`.
fn value<'de, T: Shaped<'de>, A: MapAccess<'de>>(map: &mut A) -> Result<Option<T>, A::Error> {
    map.next_value_seed(seed()).map(Some)
}

impl<'de> Fields<'de> for Root<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "payloads" => self.payloads = value(map)?,
            _ => value::<Skip, _>(map).map(drop)?,
        }
        Ok(())
    }
}

impl<'de> Fields<'de> for RawPayload<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "metadata" => self.metadata = value(map)?,
            "data" => self.data = value(map)?,
            "externalPayloads" => self.external_camel = value(map)?,
            "external_payloads" => self.external_snake = value(map)?,
            _ => value::<Skip, _>(map).map(drop)?,
        }
        Ok(())
    }
}

/// Metadata: every key kept (a repeated key keeps its last value).
impl<'de> Fields<'de> for BTreeMap<String, Scalar<'de>> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        if let Some(v) = value(map)? {
            self.insert(key.to_owned(), v);
        }
        Ok(())
    }
}

impl<'de> Fields<'de> for RawExternal<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "sizeBytes" => self.camel = value(map)?,
            "size_bytes" => self.snake = value(map)?,
            _ => value::<Skip, _>(map).map(drop)?,
        }
        Ok(())
    }
}
