//! External storage (claim check) in Temporal's standard format: large payloads are sealed,
//! stored outside Temporal, and replaced in history by an `ExternalStorageReference` that
//! other SDKs (Go, Python, TypeScript, Java) and the Web UI understand.
//!
//! - [`ExternalStorageReference`] — the reference message (protobuf and protobuf JSON);
//! - [`StorageDriver`] — store payloads / retrieve them by claim, shaped like the Rust SDK's
//!   own (unreleased) trait so adopting it later is a thin adapter;
//! - [`ObjectStoreDriver`] — S3 (as Temporal's `aws.s3driver`: same claims and keys), a local
//!   directory, or memory, through `object_store`;
//! - [`StorageCodec`] — the Sealbox codec with storage around it: seal first, then store,
//!   on the way out; retrieve first, then open, on the way in.
//!
//! See `docs/temporal.md`, "External storage".

mod cloud;
mod codec;
mod driver;
mod reference;
mod s3;

pub use codec::{DEFAULT_THRESHOLD, StorageCodec, Threshold};
pub use driver::{
    AZURE_DRIVER, DEFAULT_MAX_SIZE, FILE_DRIVER, GCS_DRIVER, ObjectStoreDriver, S3_DRIVER,
    StorageClaim, StorageContext, StorageDriver, StorageError, StoredObject, canonical_key,
    key_namespace, key_segment,
};
pub use reference::{ExternalStorageReference, is_marked_reference, is_plain_reference};
pub use s3::{S3Location, open_s3, scrub};

/// What a namespace's `external_storage` asks of the codec on encode: the threshold over
/// which payloads are stored. `off` and `sdk` store nothing here (with `sdk`, a worker's SDK
/// stores after the codec; a Rust worker, whose SDK has no external storage, keeps them
/// inline).
#[cfg(feature = "policy")]
pub fn threshold_for(setting: sealbox_policy::ExternalStorage) -> Threshold {
    use sealbox_policy::ExternalStorage;
    match setting {
        ExternalStorage::Always => Threshold::Always,
        ExternalStorage::Threshold(n) => Threshold::Bytes(usize::try_from(n).unwrap_or(usize::MAX)),
        ExternalStorage::Off | ExternalStorage::Sdk => Threshold::Bytes(usize::MAX),
    }
}

/// The driver of a policy's `[storage]`: its URL, options and size cap. An option
/// `KEY_file = "PATH"` gives `KEY` the contents of that file (trimmed): secrets such as
/// `aws_secret_access_key` are never written in the policy.
#[cfg(feature = "policy")]
pub fn driver_for(
    settings: &sealbox_policy::StorageSettings,
) -> Result<ObjectStoreDriver, StorageError> {
    let mut values: Vec<(String, zeroize::Zeroizing<String>)> = Vec::new();
    for (key, value) in &settings.options {
        match key.strip_suffix("_file") {
            Some(name) => {
                let text =
                    zeroize::Zeroizing::new(std::fs::read_to_string(value).map_err(|e| {
                        StorageError::Invalid(format!(
                            "[storage] options.{key}: cannot read {value}: {e}"
                        ))
                    })?);
                values.push((
                    name.to_owned(),
                    zeroize::Zeroizing::new(text.trim().to_owned()),
                ));
            }
            None => values.push((key.clone(), zeroize::Zeroizing::new(value.clone()))),
        }
    }
    let options: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ObjectStoreDriver::open_with(&settings.url, &options, cap_of(settings))
}

/// A policy's `[storage] max_size` in bytes.
#[cfg(feature = "policy")]
pub fn cap_of(settings: &sealbox_policy::StorageSettings) -> usize {
    usize::try_from(settings.max_size).unwrap_or(usize::MAX)
}
