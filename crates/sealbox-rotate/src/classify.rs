//! What a stored object is: an envelope, an external-storage object holding one, something
//! else, or a damaged envelope.

use prost::Message;
use sealbox_core::format::MAGIC;
use sealbox_core::{EnvelopeHeader, inspect};
use sealbox_temporal::{
    ENCODING_ENCRYPTED, FORMAT_ENVELOPE_V1, METADATA_ENCODING, METADATA_FORMAT, Payload,
};

/// A stored object, classified.
#[derive(Debug)]
pub(crate) enum Item {
    /// A Sealbox envelope.
    Envelope(Box<EnvelopeHeader>),
    /// An external-storage object: a protobuf `Payload` marked `sealbox-format` whose data is
    /// an envelope. Its SHA-256 sits in immutable workflow history, so it is never rewritten.
    External(Box<EnvelopeHeader>),
    /// Not an envelope (never touched).
    NotEnvelope,
    /// Starts like an envelope (or is marked as one) but its header does not parse.
    Damaged(String),
}

/// Classifies `bytes` by their header alone (no key is used).
pub(crate) fn classify(bytes: &[u8]) -> Item {
    if bytes.starts_with(&MAGIC) {
        return match inspect(bytes) {
            Ok(h) => Item::Envelope(Box::new(h)),
            Err(e) => Item::Damaged(format!("damaged envelope: {e}")),
        };
    }
    match Payload::decode(bytes) {
        Ok(p)
            if p.metadata.get(METADATA_FORMAT).map(Vec::as_slice)
                == Some(FORMAT_ENVELOPE_V1.as_bytes()) =>
        {
            match inspect(&p.data) {
                Ok(h) => Item::External(Box::new(h)),
                Err(e) => Item::Damaged(format!("damaged external-storage envelope: {e}")),
            }
        }
        _ => Item::NotEnvelope,
    }
}

/// Encodes an external-storage object (tests and tools).
pub fn external_storage_object(envelope: &[u8]) -> Vec<u8> {
    let metadata = std::collections::HashMap::from([
        (METADATA_FORMAT.to_owned(), FORMAT_ENVELOPE_V1.into()),
        (METADATA_ENCODING.to_owned(), ENCODING_ENCRYPTED.into()),
    ]);
    Payload {
        metadata,
        data: envelope.to_vec(),
        external_payloads: vec![],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn things_that_are_not_envelopes_are_told_apart() {
        assert!(matches!(classify(b""), Item::NotEnvelope));
        assert!(matches!(classify(b"hello"), Item::NotEnvelope));
        assert!(matches!(classify(b"SBXE\x01garbage"), Item::Damaged(_)));
        // A payload marked as Sealbox whose data is not an envelope is damaged.
        let bad = external_storage_object(b"not an envelope");
        assert!(matches!(classify(&bad), Item::Damaged(_)));
    }
}
