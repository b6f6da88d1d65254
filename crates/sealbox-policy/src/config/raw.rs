//! The policy file as written: serde structs with spans, before validation.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) version: Option<Spanned<i64>>,
    pub(super) default: Option<Spanned<RawPolicy>>,
    #[serde(default)]
    pub(super) rule: Vec<Spanned<RawRule>>,
    pub(super) vault: Option<Spanned<RawVault>>,
    pub(super) aws: Option<Spanned<RawAws>>,
    pub(super) gcp: Option<Spanned<RawGcp>>,
    pub(super) local: Option<RawLocal>,
    /// The codec server's settings: read and validated by `sealbox-server`, not here.
    #[allow(dead_code)]
    pub(super) server: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) active: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) decrypt_only: Vec<Spanned<String>>,
    pub(super) lease: Option<Spanned<RawLease>>,
    pub(super) compression: Option<Spanned<RawCompression>>,
    pub(super) context: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub(super) access: Option<Spanned<RawAccess>>,
    pub(super) require_encryption: Option<bool>,
}

/// A rule: `namespace` plus the fields of [`RawPolicy`]. Spelled out because serde's
/// `flatten` cannot be combined with `deny_unknown_fields`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) namespace: Spanned<String>,
    pub(super) active: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) decrypt_only: Vec<Spanned<String>>,
    pub(super) lease: Option<Spanned<RawLease>>,
    pub(super) compression: Option<Spanned<RawCompression>>,
    pub(super) context: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub(super) access: Option<Spanned<RawAccess>>,
    pub(super) require_encryption: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLease {
    pub(super) max_age: Option<Spanned<String>>,
    pub(super) max_payloads: Option<Spanned<i64>>,
    pub(super) max_bytes: Option<Spanned<String>>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocal {
    #[serde(default)]
    pub(super) development_key: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVault {
    pub(super) auth: Spanned<String>,
    pub(super) token: Option<Spanned<String>>,
    pub(super) token_env: Option<String>,
    pub(super) token_file: Option<String>,
    pub(super) approle_mount: Option<String>,
    pub(super) role_id: Option<String>,
    pub(super) secret_id: Option<Spanned<String>>,
    pub(super) secret_id_env: Option<String>,
    pub(super) secret_id_file: Option<String>,
    pub(super) kubernetes_mount: Option<String>,
    pub(super) kubernetes_role: Option<String>,
    pub(super) jwt_path: Option<String>,
    pub(super) ca_cert: Option<String>,
    pub(super) timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGcp {
    pub(super) credentials_file: Option<String>,
    pub(super) endpoint: Option<String>,
    pub(super) max_attempts: Option<Spanned<i64>>,
    pub(super) allow_http: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAws {
    pub(super) max_attempts: Option<Spanned<i64>>,
    pub(super) attempt_timeout: Option<Spanned<String>>,
    pub(super) allow_http: Option<bool>,
    pub(super) multi_region_replicas: Option<bool>,
}
