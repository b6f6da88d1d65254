//! # sealbox-testkit (dev-dependency only)
//!
//! - [`servers`]: real KMS servers (OpenBao; moto later) started on free loopback ports and
//!   stopped when their guard drops, even when the test panics.
//! - [`conformance`]: the provider conformance suite every `KeyProvider` runs.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod conformance;
pub mod faults;
pub mod gcpkms;
pub mod servers;
