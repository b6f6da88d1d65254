//! The key-policy file (TOML): parsing and validation with precise errors.
//!
//! Every error names the file, the line and column, the field, and what is wrong. All errors
//! of a file are reported at once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use globset::{Glob, GlobMatcher};
use sealbox_core::EncryptionContext;
use sealbox_keyring::LeaseLimits;

use sealbox_core::{KekRef, KekScheme, KekUri, SchemeSettings, Suite};

/// The context key Sealbox sets to the namespace; policies cannot override it.
pub const NAMESPACE_KEY: &str = "namespace";

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or the name given to in-memory text).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field, as a dotted path (`rule[2].lease.max_age`).
    pub field: String,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.field, self.message
        )
    }
}

/// All problems found in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

mod raw;
mod validate;

use raw::RawFile;
use validate::Validator;

/// A validated policy file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// Where it was read from.
    pub source: String,
    /// The policy of every namespace no rule matches.
    pub default: Policy,
    /// Rules in file order; the first match wins.
    pub rules: Vec<Rule>,
    /// External storage, when configured.
    pub storage: Option<StorageSettings>,
    /// Each compiled-in scheme's validated settings table (`[vault]`, `[aws]`, …).
    settings: SchemeTable,
}

/// The settings of every scheme compiled in, in [`crate::schemes()`] order.
#[derive(Clone)]
pub(crate) struct SchemeTable(pub(crate) Vec<(&'static dyn KekScheme, SchemeSettings)>);

impl fmt::Debug for SchemeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(s, _)| s.uri_schemes()))
            .finish()
    }
}

/// A per-namespace rule.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Rule {
    /// The namespace name or glob (`payments-*`).
    pub pattern: String,
    /// The line it starts on.
    pub line: usize,
    matcher: GlobMatcher,
    /// The policy (unset fields inherited from the default).
    pub policy: Policy,
}

impl Rule {
    /// Whether the rule matches `namespace`.
    pub fn matches(&self, namespace: &str) -> bool {
        self.matcher.is_match(namespace)
    }
}

/// The effective key policy of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// `default` or `rule `PATTERN``.
    pub name: String,
    /// The KEK that wraps new data keys.
    pub active: KekUri,
    /// KEKs that may still unwrap old data.
    pub decrypt_only: Vec<KekUri>,
    /// Data-key lease limits.
    pub lease: LeaseLimits,
    /// Optional compression before encryption (applied by the Temporal codec).
    pub compression: Option<Compression>,
    /// Extra context fields bound to every envelope (besides `namespace`).
    pub context: BTreeMap<String, String>,
    /// Who may decode through the codec server.
    pub access: Access,
    /// Whether decoding refuses payloads that are not encrypted (default `true`): a
    /// plaintext payload where a sealed one is expected may have been forged by whoever can
    /// write to Temporal's store. Temporal's null payloads and external-storage references
    /// are accepted either way. Turn off only while migrating a namespace to encryption.
    pub require_encryption: bool,
    /// Which payloads go to external storage (`[storage]`); default: payloads of 256 KiB
    /// and more when `[storage]` is configured, none otherwise.
    pub external_storage: ExternalStorage,
    /// The envelope suite new payloads are sealed with (`suite = 1` or `2`; default
    /// [`Suite::DEFAULT`], `0x0001`). Both are always read.
    pub suite: Suite,
}

/// A namespace's use of external storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalStorage {
    /// Nothing is stored outside Temporal (references are still read where `[storage]` is
    /// configured).
    Off,
    /// Payloads whose sealed protobuf size is at least this many bytes.
    Threshold(u64),
    /// Every payload: history holds only references.
    Always,
    /// The worker's SDK stores with its own driver (Temporal's `ExternalStorage`), after this
    /// codec: the codec server only seals (a pure codec, so nothing is offloaded twice), takes
    /// payloads up to `[storage] max_size`, and resolves the SDK's references on decode and
    /// download.
    Sdk,
}

/// `[storage]`: where external storage keeps (sealed) payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageSettings {
    /// `s3://BUCKET[/PREFIX]` (credentials, region and endpoint from the `AWS_*`
    /// environment), `file:///DIR`, or `memory://` (tests).
    pub url: String,
    /// The largest payload stored or retrieved (default 50 MiB, at most 1 GiB).
    pub max_size: u64,
    /// `options`: object_store configuration keys for an `s3://` store (e.g. `aws_endpoint`,
    /// `aws_region`, `aws_allow_http`). Secrets are never written here: `KEY_file = "PATH"`
    /// reads `KEY` from a file (e.g. `aws_secret_access_key_file`); otherwise they come from
    /// the environment or the instance's role.
    pub options: std::collections::BTreeMap<String, String>,
}

impl Policy {
    /// The encryption context for `namespace` under this policy.
    pub fn context_for(
        &self,
        namespace: &str,
    ) -> Result<EncryptionContext, sealbox_core::ContextError> {
        let mut ctx = EncryptionContext::new().with(NAMESPACE_KEY, namespace)?;
        for (k, v) in &self.context {
            ctx.insert(k.clone(), v.clone())?;
        }
        Ok(ctx)
    }
}

/// Compression settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compression {
    /// Only `zstd` today.
    pub algorithm: String,
    /// Payloads smaller than this are not compressed.
    pub min_size: u64,
    /// zstd level (1–19).
    pub level: i32,
}

/// Who may decode (and encode) a namespace's payloads through the codec server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Access {
    /// Roles (JWT claims) allowed to decode.
    pub roles: Vec<String>,
    /// Subjects (users) allowed to decode.
    pub subjects: Vec<String>,
    /// Roles allowed to encode.
    pub encode_roles: Vec<String>,
    /// Subjects allowed to encode.
    pub encode_subjects: Vec<String>,
}

impl PolicyConfig {
    /// Reads and validates a policy file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigErrors> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: name.clone(),
                line: 0,
                column: 0,
                field: "file".into(),
                message: format!("cannot read the policy file: {e}"),
            }])
        })?;
        Self::from_toml(&text, &name)
    }

    /// Validates policy text; `name` labels errors.
    pub fn from_toml(text: &str, name: &str) -> Result<Self, ConfigErrors> {
        let mut v = Validator {
            text,
            file: name,
            errors: Vec::new(),
            storage_configured: false,
        };
        let raw: RawFile = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let message = e.message().to_owned();
                v.err(span, "file", message.replace('\n', " "));
                return Err(ConfigErrors(v.errors));
            }
        };
        let config = v.file(raw);
        match config {
            Some(c) if v.errors.is_empty() => Ok(c),
            _ => Err(ConfigErrors(v.errors)),
        }
    }

    /// The rule matching `namespace` (first match), or `None` for the default.
    pub fn rule_for(&self, namespace: &str) -> Option<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(namespace))
    }

    /// The effective policy of `namespace`.
    pub fn policy_for(&self, namespace: &str) -> &Policy {
        self.rule_for(namespace)
            .map_or(&self.default, |(_, r)| &r.policy)
    }

    /// The scheme that parsed `kek` and its validated settings.
    pub fn scheme_of(&self, kek: &KekUri) -> Option<(&'static dyn KekScheme, &SchemeSettings)> {
        self.settings
            .0
            .iter()
            .find(|(s, _)| s.uri_schemes().contains(&kek.scheme()))
            .map(|(s, settings)| (*s, settings))
    }

    /// The file's URI for the KEK an envelope header names, when the URI alone identifies
    /// it (no KMS is asked: an AWS alias is not matched here; [`crate::PolicyKeyrings::uri_of`]
    /// asks the connected providers).
    pub fn uri_for(&self, kek: &KekRef) -> Option<&KekUri> {
        self.keks().into_iter().find(|uri| {
            uri.provider_id() == kek.provider()
                && self
                    .scheme_of(uri)
                    .and_then(|(s, _)| s.key_id(uri))
                    .is_some_and(|id| id == kek.key_id())
        })
    }

    /// Every distinct KEK the file names, in order of first appearance.
    pub fn keks(&self) -> Vec<&KekUri> {
        let mut out: Vec<&KekUri> = Vec::new();
        let policies = std::iter::once(&self.default).chain(self.rules.iter().map(|r| &r.policy));
        for p in policies {
            for k in std::iter::once(&p.active).chain(p.decrypt_only.iter()) {
                if !out.contains(&k) {
                    out.push(k);
                }
            }
        }
        out
    }
}

/// Whether every namespace matching `later` also matches `earlier` — claimed only when it is
/// certain: `earlier` uses no wildcard but `*` and matches `later`'s text literally (then
/// `earlier`'s literal characters align with `later`'s literal ones, and `later`'s wildcards
/// fall inside `earlier`'s `*`s).
pub(crate) fn shadows(earlier: &str, later: &str) -> bool {
    if earlier
        .chars()
        .any(|c| matches!(c, '?' | '[' | ']' | '{' | '}' | '\\'))
    {
        return false;
    }
    Glob::new(earlier)
        .map(|g| g.compile_matcher().is_match(later))
        .unwrap_or(false)
}
