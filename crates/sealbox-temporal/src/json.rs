//! `temporal.api.common.v1.Payloads` in protobuf JSON, as Temporal's clients send it:
//! `{"payloads":[{"metadata":{"encoding":"<base64>"},"data":"<base64>",
//! "externalPayloads":[{"sizeBytes":"123"}]}]}`. Input follows protobuf JSON's parsing rules
//! (lowerCamelCase or original field names, standard or URL-safe base64 with or without
//! padding, int64 as string or number, `null` = absent); output is canonical (lowerCamelCase,
//! padded standard base64, int64 as strings, empty fields omitted).

use std::collections::HashMap;

use crate::Payload;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use temporalio_common::protos::temporal::api::common::v1::payload::ExternalPayloadDetails;

fn bytes(v: &Value, field: &str) -> Result<Vec<u8>, String> {
    let s = match v {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) => s,
        _ => return Err(format!("{field}: expected a base64 string")),
    };
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
        .ok_or_else(|| format!("{field}: invalid base64"))
}

fn field<'a>(m: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    m.get(camel)
        .or_else(|| m.get(snake))
        .filter(|v| !v.is_null())
}

fn int64(v: &Value, field: &str) -> Result<i64, String> {
    match v {
        Value::String(s) => s
            .parse()
            .map_err(|_| format!("{field}: `{s}` is not an int64")),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| format!("{field}: {n} is not an int64")),
        _ => Err(format!("{field}: expected an int64")),
    }
}

/// Parses `Payloads` JSON (a codec request body). The error names the offending field
/// (`payloads[3].metadata.encoding: invalid base64`); it never echoes payload bytes.
pub fn parse_payloads(body: &[u8]) -> Result<Vec<Payload>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let root = v
        .as_object()
        .ok_or("expected a JSON object {\"payloads\": [...]}")?;
    let list = match root.get("payloads") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("payloads: expected an array".into()),
    };
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let p = p
                .as_object()
                .ok_or_else(|| format!("payloads[{i}]: expected an object"))?;
            let mut metadata = HashMap::new();
            match p.get("metadata") {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => {
                    for (k, v) in m {
                        metadata
                            .insert(k.clone(), bytes(v, &format!("payloads[{i}].metadata.{k}"))?);
                    }
                }
                Some(_) => return Err(format!("payloads[{i}].metadata: expected an object")),
            }
            let data = match p.get("data") {
                Some(v) => bytes(v, &format!("payloads[{i}].data"))?,
                None => Vec::new(),
            };
            let mut external_payloads = Vec::new();
            match field(p, "externalPayloads", "external_payloads") {
                None => {}
                Some(Value::Array(a)) => {
                    for (j, e) in a.iter().enumerate() {
                        let f = format!("payloads[{i}].externalPayloads[{j}].sizeBytes");
                        let size_bytes = match e
                            .as_object()
                            .and_then(|o| field(o, "sizeBytes", "size_bytes"))
                        {
                            Some(v) => int64(v, &f)?,
                            None => 0,
                        };
                        external_payloads.push(ExternalPayloadDetails { size_bytes });
                    }
                }
                Some(_) => {
                    return Err(format!("payloads[{i}].externalPayloads: expected an array"));
                }
            }
            Ok(Payload {
                metadata,
                data,
                external_payloads,
            })
        })
        .collect()
}

/// Serializes payloads as canonical `Payloads` JSON (a codec response body).
pub fn render_payloads(payloads: &[Payload]) -> Vec<u8> {
    let list: Vec<Value> = payloads
        .iter()
        .map(|p| {
            let mut o = Map::new();
            if !p.metadata.is_empty() {
                let mut keys: Vec<&String> = p.metadata.keys().collect();
                keys.sort();
                let m: Map<String, Value> = keys
                    .into_iter()
                    .map(|k| (k.clone(), Value::String(STANDARD.encode(&p.metadata[k]))))
                    .collect();
                o.insert("metadata".into(), Value::Object(m));
            }
            if !p.data.is_empty() {
                o.insert("data".into(), Value::String(STANDARD.encode(&p.data)));
            }
            if !p.external_payloads.is_empty() {
                let e: Vec<Value> = p
                    .external_payloads
                    .iter()
                    .map(|d| json!({ "sizeBytes": d.size_bytes.to_string() }))
                    .collect();
                o.insert("externalPayloads".into(), Value::Array(e));
            }
            Value::Object(o)
        })
        .collect();
    json!({ "payloads": list }).to_string().into_bytes()
}
