//! Temporal's `temporal.api.sdk.v1.ExternalStorageReference` and the payload that carries
//! it in history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use temporalio_common::protos::temporal::api::common::v1::payload::ExternalPayloadDetails;

use crate::{
    ENCODING_JSON_PROTOBUF, EXTERNAL_STORAGE_REFERENCE_TYPE, METADATA_ENCODING,
    METADATA_EXTERNAL_STORAGE_REFERENCE, METADATA_MESSAGE_TYPE, Payload, meta,
};

/// `temporal.api.sdk.v1.ExternalStorageReference`: which driver stored a payload and the
/// claim it needs to retrieve it. Protobuf (two fields) and protobuf JSON
/// (`{"driverName":…,"claimData":{…}}`; the proto field names are read too).
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalStorageReference {
    /// The driver's name (`aws.s3driver`).
    #[prost(string, tag = "1")]
    #[serde(default, alias = "driver_name")]
    pub driver_name: String,
    /// The driver's claim (`bucket`, `key`, `hash_algorithm`, `hash_value`).
    #[prost(btree_map = "string, string", tag = "2")]
    #[serde(default, alias = "claim_data")]
    pub claim_data: BTreeMap<String, String>,
}

impl ExternalStorageReference {
    /// The reference payload written into history: `json/protobuf` of this message, with
    /// the stored payload's protobuf size in `external_payloads`.
    pub fn to_payload(&self, stored_size: usize) -> Payload {
        let metadata = std::collections::HashMap::from([
            (METADATA_ENCODING.to_owned(), ENCODING_JSON_PROTOBUF.into()),
            (
                METADATA_MESSAGE_TYPE.to_owned(),
                EXTERNAL_STORAGE_REFERENCE_TYPE.into(),
            ),
        ]);
        Payload {
            metadata,
            // Serializing a struct of a string and a string map cannot fail.
            data: serde_json::to_vec(self).unwrap_or_default(),
            external_payloads: vec![ExternalPayloadDetails {
                size_bytes: i64::try_from(stored_size).unwrap_or(i64::MAX),
            }],
        }
    }

    /// The reference a plain reference payload holds; `None` if `p` is not one, an error
    /// if it claims to be one but does not parse.
    pub fn from_payload(p: &Payload) -> Option<Result<Self, String>> {
        if !is_plain_reference(p) {
            return None;
        }
        Some(
            serde_json::from_slice(&p.data)
                .map_err(|e| format!("the external-storage reference does not parse: {e}")),
        )
    }
}

/// Whether `p` is a plain (not codec-encoded) reference payload.
pub fn is_plain_reference(p: &Payload) -> bool {
    meta(p, METADATA_ENCODING) == Some(ENCODING_JSON_PROTOBUF)
        && meta(p, METADATA_MESSAGE_TYPE) == Some(EXTERNAL_STORAGE_REFERENCE_TYPE)
}

/// Whether `p` is a codec-encoded reference, marked `__temporal_external_storage_reference`
/// (decode it first, then resolve it).
pub fn is_marked_reference(p: &Payload) -> bool {
    p.metadata.contains_key(METADATA_EXTERNAL_STORAGE_REFERENCE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_in_both_json_spellings() {
        let r = ExternalStorageReference {
            driver_name: "aws.s3driver".into(),
            claim_data: [("bucket".to_owned(), "b".to_owned())].into(),
        };
        let p = r.to_payload(1234);
        assert!(is_plain_reference(&p) && !is_marked_reference(&p));
        assert_eq!(p.external_payloads[0].size_bytes, 1234);
        let json: serde_json::Value = serde_json::from_slice(&p.data).expect("json");
        assert_eq!(json["driverName"], "aws.s3driver");
        assert_eq!(json["claimData"]["bucket"], "b");
        assert_eq!(
            ExternalStorageReference::from_payload(&p),
            Some(Ok(r.clone()))
        );
        let snake: ExternalStorageReference =
            serde_json::from_str(r#"{"driver_name":"aws.s3driver","claim_data":{"bucket":"b"}}"#)
                .expect("snake case");
        assert_eq!(snake, r);
        // Protobuf encoding, as another SDK would read it from a marked reference.
        let bytes = prost::Message::encode_to_vec(&r);
        assert_eq!(
            <ExternalStorageReference as prost::Message>::decode(bytes.as_slice()).expect("pb"),
            r
        );
        let mut bad = p.clone();
        bad.data = b"{".to_vec();
        assert!(matches!(
            ExternalStorageReference::from_payload(&bad),
            Some(Err(_))
        ));
    }
}
