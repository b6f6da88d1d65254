//! # sealbox-policy — multi-tenant key policy
//!
//! A TOML policy file maps Temporal namespaces to keys: a **default** policy that every
//! unmatched namespace gets (fail closed: nothing is ever passed through in plaintext), and
//! **rules** matched by exact name or glob, first match wins. Each policy has one active KEK,
//! any number of decrypt-only KEKs, lease limits, optional compression, extra context fields,
//! and who may decode through the codec server. KEKs are named by URI ([`KekUri`]), parsed by
//! the provider crate that owns the scheme ([`schemes()`]).
//!
//! [`PolicyConfig`] validates a file with precise errors (file, line, field, problem);
//! [`PolicyKeyrings`] connects the KEKs and serves per-namespace key-rings;
//! [`ReloadablePolicy`] swaps in a new file atomically (SIGHUP), keeping the old one when the
//! new one is broken. See `docs/configuration.md` and the examples in `keyring-config/`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod keyrings;
pub mod schemes;

pub use config::{
    ConfigError, ConfigErrors, ExternalStorage, Policy, PolicyConfig, Rule, StorageSettings,
};
pub use keyrings::{PolicyError, PolicyKeyrings, ReloadablePolicy, Tenant, connect};
pub use schemes::{describe_kek, display_kek, parse_kek, schemes};
pub use sealbox_core::KekUri;
