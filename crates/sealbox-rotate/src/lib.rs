//! # sealbox-rotate — key rotation over stored envelopes
//!
//! The rotation job walks *stores* — places that hold Sealbox envelopes as opaque byte blobs —
//! and rewrites each envelope whose header names an old KEK, with a **conditional replace**:
//! a write lands only if the object is still the version that was read, so a concurrent
//! writer is never overwritten.
//!
//! This crate provides the store layer: the [`Store`] seam and its implementations, opened
//! from a URL with [`open_store`]:
//!
//! | URL | Store |
//! |---|---|
//! | `file:///abs/dir` or a plain path | a directory tree of envelope files |
//! | `memory://` | an in-process store (tests, dry runs) |
//! | `s3://bucket/prefix` | Amazon S3 or an S3-compatible service (`object_store`) |
//! | `postgres://user@host:port/db?table=T&column=C&key=K` | a `bytea` column of a table |
//!
//! Temporal workflow histories (`temporal://host:port/namespace`) are immutable, so they are
//! not a [`Store`]: the [`temporal`] module inventories and checks them (read-only).
//!
//! See the [`store`] module for each store's semantics (versions, ordering, durability and,
//! for the file store, the remaining race window).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod gc;
pub mod store;
pub mod temporal;
// The SDK's macros generate public items without docs (the workflow's and activities'
// definitions); everything written here is documented.
#[cfg(feature = "workflow")]
#[allow(missing_docs)]
pub mod workflow;

mod check;
mod checkpoint;
mod classify;
mod inventory;
mod report;
mod rewrite;
mod shard;
mod walk;

pub use check::{CheckReport, ResolveError, Retire, check};
pub use checkpoint::CheckpointError;
pub use classify::external_storage_object;
pub use inventory::{Inventory, KekCount, inventory};
pub use report::{Failure, Report};
pub use rewrite::{Mode, Position, Progress, RunError, RunOptions, run};
pub use shard::Shard;

pub use store::{
    Object, ObjectMeta, Store, StoreError, Version, from_object_store, open_store, open_store_with,
};
