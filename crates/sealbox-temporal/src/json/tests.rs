//! The typed parser and writer against the `serde_json::Value` implementation they replaced
//! (kept here as the oracle, unchanged): same payloads or the same error message for every
//! input, byte-identical output.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use temporalio_common::protos::temporal::api::common::v1::payload::ExternalPayloadDetails;

use super::{parse_payloads, render_payloads};
use crate::Payload;

// ---- The oracle: the previous implementation, verbatim but for the names. ----

fn old_bytes(v: &Value, field: &str) -> Result<Vec<u8>, String> {
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

fn old_field<'a>(m: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    m.get(camel)
        .or_else(|| m.get(snake))
        .filter(|v| !v.is_null())
}

fn old_int64(v: &Value, field: &str) -> Result<i64, String> {
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

fn old_parse(body: &[u8]) -> Result<Vec<Payload>, String> {
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
                        metadata.insert(
                            k.clone(),
                            old_bytes(v, &format!("payloads[{i}].metadata.{k}"))?,
                        );
                    }
                }
                Some(_) => return Err(format!("payloads[{i}].metadata: expected an object")),
            }
            let data = match p.get("data") {
                Some(v) => old_bytes(v, &format!("payloads[{i}].data"))?,
                None => Vec::new(),
            };
            let mut external_payloads = Vec::new();
            match old_field(p, "externalPayloads", "external_payloads") {
                None => {}
                Some(Value::Array(a)) => {
                    for (j, e) in a.iter().enumerate() {
                        let f = format!("payloads[{i}].externalPayloads[{j}].sizeBytes");
                        let size_bytes = match e
                            .as_object()
                            .and_then(|o| old_field(o, "sizeBytes", "size_bytes"))
                        {
                            Some(v) => old_int64(v, &f)?,
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

fn old_render(payloads: &[Payload]) -> Vec<u8> {
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

// ---- The comparisons. ----

fn same_parse(body: &[u8]) {
    assert_eq!(
        parse_payloads(body),
        old_parse(body),
        "input: {}",
        String::from_utf8_lossy(body)
    );
}

#[test]
fn tricky_inputs_parse_as_before() {
    let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let deep_field = format!(
        "{{\"payloads\":[],\"x\":{}{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let cases: Vec<String> = vec![
        "".into(),
        " ".into(),
        "{not json".into(),
        "null".into(),
        "[]".into(),
        "\"payloads\"".into(),
        "{}".into(),
        "{\"payloads\":null}".into(),
        "{\"payloads\":{}}".into(),
        "{\"payloads\":\"x\"}".into(),
        "{\"payloads\":[]} trailing".into(),
        "{\"payloads\":[null,1,\"s\",[],{}]}".into(),
        "{\"payloads\":[{}]}".into(),
        "{\"payloads\":[{\"data\":null,\"metadata\":null}]}".into(),
        "{\"payloads\":[{\"data\":\"aGk=\",\"metadata\":{\"encoding\":\"anNvbi9wbGFpbg==\"}}]}".into(),
        "{\"payloads\":[{\"data\":\"aGk\"}]}".into(),
        "{\"payloads\":[{\"data\":\"-_8\"}]}".into(),
        "{\"payloads\":[{\"data\":\"!!\"}]}".into(),
        "{\"payloads\":[{\"data\":5}]}".into(),
        "{\"payloads\":[{\"data\":\"aGk=\",\"data\":\"!!\"}]}".into(),
        "{\"payloads\":[{\"data\":\"!!\",\"data\":\"aGk=\"}]}".into(),
        "{\"payloads\":[{\"metadata\":{\"b\":\"!!\",\"a\":\"??\"}}]}".into(),
        "{\"payloads\":[{\"metadata\":{\"a\":\"aGk=\",\"a\":\"!!\"}}]}".into(),
        "{\"payloads\":[{\"metadata\":{\"a\":null,\"b\":[1]}}]}".into(),
        "{\"payloads\":[{\"metadata\":[]}]}".into(),
        "{\"payloads\":[{\"metadata\":{\"\\u0065ncoding\":\"a\\u0047k=\"}}]}".into(),
        "{\"pay\\u006coads\":[{\"da\\u0074a\":\"aGk=\"}]}".into(),
        "{\"payloads\":[{\"metadata\":{\"bad\":\"!!\"},\"data\":\"!!\"}]}".into(),
        "{\"payloads\":[{\"data\":\"!!\",\"metadata\":{\"bad\":\"!!\"}}]}".into(),
        "{\"payloads\":[{\"data\":\"!!\"},{\"data\":\"aGk=\"}],\"payloads\":[]}".into(),
        "{\"payloads\":[{\"externalPayloads\":[{\"sizeBytes\":\"12\"},{\"size_bytes\":7},{},null,3]}]}".into(),
        "{\"payloads\":[{\"externalPayloads\":null,\"external_payloads\":[{\"sizeBytes\":1}]}]}".into(),
        "{\"payloads\":[{\"external_payloads\":[{\"sizeBytes\":null,\"size_bytes\":4}]}]}".into(),
        "{\"payloads\":[{\"externalPayloads\":[{\"sizeBytes\":1.5}]}]}".into(),
        "{\"payloads\":[{\"externalPayloads\":[{\"sizeBytes\":2.0}]}]}".into(),
        "{\"payloads\":[{\"externalPayloads\":[{\"sizeBytes\":1e3}]}]}".into(),
        "{\"payloads\":[{\"externalPayloads\":[{\"sizeBytes\":18446744073709551615}]}]}".into(),
        "{\"payloads\":[{\"externalPayloads\":[{\"sizeBytes\":-9223372036854775808}]}]}".into(),
        "{\"payloads\":[{\"externalPayloads\":[{\"sizeBytes\":\"9223372036854775808\"}]}]}".into(),
        "{\"payloads\":[{\"externalPayloads\":[{\"sizeBytes\":\"abc\"}]}]}".into(),
        "{\"payloads\":[{\"externalPayloads\":[{\"sizeBytes\":true}]}]}".into(),
        "{\"payloads\":[{\"externalPayloads\":{}}]}".into(),
        "{\"payloads\":[{\"externalPayloads\":1e999}]}".into(),
        "{\"payloads\":[{\"data\":\"\\ud800\"}]}".into(),
        deep,
        deep_field,
    ];
    for c in &cases {
        same_parse(c.as_bytes());
    }
    // Invalid UTF-8 inside a string, and outside any.
    same_parse(b"{\"payloads\":[{\"data\":\"\xff\"}]}");
    same_parse(b"{\"payloads\":[{\"x\":\"\xc3\"}]}");
    same_parse(b"{\"payloads\":[]\xff}");
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("payloads".to_owned()),
        Just("metadata".to_owned()),
        Just("data".to_owned()),
        Just("externalPayloads".to_owned()),
        Just("external_payloads".to_owned()),
        Just("sizeBytes".to_owned()),
        Just("size_bytes".to_owned()),
        Just("encoding".to_owned()),
        "[a-z\\\\\"\\n\\u{1}é]{0,4}",
    ]
}

/// JSON values biased towards the shape of `Payloads`.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(|b| Value::from(STANDARD.encode(b))),
        prop::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| Value::from(URL_SAFE_NO_PAD.encode(b))),
        "[A-Za-z0-9+/=_!-]{0,12}".prop_map(Value::from),
        "-?[0-9]{1,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn payload() -> impl Strategy<Value = Payload> {
    (
        prop::collection::hash_map(
            "[a-z\\\\\"\\n\\t\\u{1f}\\u{7f}é\\u{2028}-]{0,8}",
            prop::collection::vec(any::<u8>(), 0..20),
            0..4,
        ),
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(any::<i64>(), 0..3),
    )
        .prop_map(|(metadata, data, sizes)| Payload {
            metadata,
            data,
            external_payloads: sizes
                .into_iter()
                .map(|size_bytes| ExternalPayloadDetails { size_bytes })
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn json_documents_parse_as_before(v in value(), wrap in any::<bool>()) {
        let doc = if wrap { json!({ "payloads": [v] }) } else { v };
        same_parse(doc.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_bytes_parse_as_before(b in prop::collection::vec(any::<u8>(), 0..64)) {
        same_parse(&b);
    }

    /// Base64 strings near the valid ones (valid encodings of any spelling, then damaged):
    /// the parser's answer is the oracle's for each, whichever decoder took it.
    #[test]
    fn base64_strings_decode_as_before(
        bytes in prop::collection::vec(any::<u8>(), 0..80),
        spelling in 0usize..4,
        damage in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(b"AZaz09+/-_= \n".to_vec())), 0..3),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let engines = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD];
        let mut text = engines[spelling].encode(&bytes).into_bytes();
        for (at, c) in &damage {
            if !text.is_empty() {
                let i = at.index(text.len());
                text[i] = *c;
            }
        }
        if let Some(cut) = cut {
            text.truncate(cut.index(text.len() + 1));
        }
        let text = String::from_utf8(text).expect("ASCII");
        let doc = json!({ "payloads": [{ "data": text, "metadata": { "encoding": text } }] });
        same_parse(doc.to_string().as_bytes());
    }

    #[test]
    fn output_is_byte_identical_and_parses_back(ps in prop::collection::vec(payload(), 0..4)) {
        let out = render_payloads(&ps);
        prop_assert_eq!(&out, &old_render(&ps));
        prop_assert_eq!(parse_payloads(&out), Ok(ps));
    }
}
