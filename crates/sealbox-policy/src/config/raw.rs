//! The policy file as written: serde structs with spans, before validation.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The file's own tables. Top-level keys not named here are the KEK schemes' settings
/// tables (`[vault]`, `[aws]`, …, each read by its scheme) and `[server]` (read by
/// `sealbox-server`); anything else is reported by the validator.
#[derive(Deserialize)]
pub(super) struct RawFile {
    pub(super) version: Option<Spanned<i64>>,
    pub(super) default: Option<Spanned<RawPolicy>>,
    #[serde(default)]
    pub(super) rule: Vec<Spanned<RawPolicy>>,
    pub(super) storage: Option<Spanned<RawStorage>>,
}

/// `[storage]`: where external storage keeps payloads.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub(super) url: Spanned<String>,
    pub(super) max_size: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) options: std::collections::BTreeMap<String, Spanned<String>>,
}

/// `[default]` or a `[[rule]]` (which adds `namespace`, refused in `[default]`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) namespace: Option<Spanned<String>>,
    pub(super) active: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) decrypt_only: Vec<Spanned<String>>,
    pub(super) lease: Option<Spanned<RawLease>>,
    pub(super) compression: Option<Spanned<RawCompression>>,
    pub(super) context: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub(super) access: Option<Spanned<RawAccess>>,
    pub(super) require_encryption: Option<bool>,
    pub(super) suite: Option<Spanned<i64>>,
    pub(super) external_storage: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLease {
    pub(super) max_age: Option<Spanned<String>>,
    pub(super) max_payloads: Option<Spanned<i64>>,
    pub(super) max_bytes: Option<Spanned<String>>,
    pub(super) renew_before: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompression {
    pub(super) algorithm: Spanned<String>,
    pub(super) min_size: Option<Spanned<String>>,
    pub(super) level: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    #[serde(default)]
    pub(super) roles: Vec<String>,
    #[serde(default)]
    pub(super) subjects: Vec<String>,
    #[serde(default)]
    pub(super) encode_roles: Vec<String>,
    #[serde(default)]
    pub(super) encode_subjects: Vec<String>,
}
