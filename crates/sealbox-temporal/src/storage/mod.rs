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

mod codec;
mod driver;
mod reference;
mod s3;

pub use codec::{DEFAULT_THRESHOLD, StorageCodec, Threshold};
pub use driver::{
    DEFAULT_MAX_SIZE, FILE_DRIVER, ObjectStoreDriver, S3_DRIVER, StorageClaim, StorageContext,
    StorageDriver, StorageError, key_segment,
};
pub use reference::{ExternalStorageReference, is_marked_reference, is_plain_reference};
pub use s3::{S3Location, open_s3, scrub};
