//! Validation: from the raw file to a [`PolicyConfig`], every problem reported with its
//! FILE:LINE:COL and field.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use globset::Glob;
use sealbox_core::EncryptionContext;
use sealbox_keyring::LeaseLimits;
use toml::Spanned;

use super::raw::*;
use super::*;
use sealbox_core::KekUri;

pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a str,
    pub(super) errors: Vec<ConfigError>,
    pub(super) storage_configured: bool,
}

impl Validator<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    pub(super) fn err(
        &mut self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = self.position(span.start);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    pub(super) fn file(&mut self, raw: RawFile) -> Option<PolicyConfig> {
        if let Some(version) = &raw.version
            && *version.get_ref() != 1
        {
            self.err(
                version.span(),
                "version",
                format!(
                    "unsupported policy version {} (this build reads 1)",
                    version.get_ref()
                ),
            );
        }
        self.top_level_keys();
        let storage = raw.storage.and_then(|s| self.storage(s));
        self.storage_configured = storage.is_some();
        let Some(default_raw) = raw.default else {
            self.err(
                0..0,
                "default",
                "no [default] policy: with encryption on, every namespace not matched by a rule — including \
                 ones created later — must be encrypted with the default, never passed through. Add a [default] \
                 table with an `active` KEK",
            );
            return None;
        };
        let span = default_raw.span();
        let d = default_raw.into_inner();
        if let Some(ns) = &d.namespace {
            self.err(
                ns.span(),
                "default.namespace",
                "the default policy applies to every namespace no rule matches; \
                 `namespace` belongs in a [[rule]]",
            );
        }
        let default = self.policy("default", "default", span, d, None);

        let mut rules: Vec<Rule> = Vec::new();
        for (i, raw_rule) in raw.rule.into_iter().enumerate() {
            let span = raw_rule.span();
            let r = raw_rule.into_inner();
            let field = format!("rule[{i}]");
            let Some(namespace) = &r.namespace else {
                self.err(
                    span,
                    format!("{field}.namespace"),
                    "missing `namespace`: the namespace name or glob this rule applies to",
                );
                continue;
            };
            let pattern = namespace.get_ref().clone();
            let pattern_span = namespace.span();
            let line = self.position(span.start).0;
            if pattern.is_empty() {
                self.err(
                    pattern_span.clone(),
                    format!("{field}.namespace"),
                    "the namespace pattern is empty",
                );
                continue;
            }
            let matcher = match Glob::new(&pattern) {
                Ok(g) => g.compile_matcher(),
                Err(e) => {
                    self.err(
                        pattern_span.clone(),
                        format!("{field}.namespace"),
                        format!("invalid glob `{pattern}`: {e}"),
                    );
                    continue;
                }
            };
            if let Some(prev) = rules.iter().find(|p| p.pattern == pattern) {
                self.err(
                    pattern_span.clone(),
                    format!("{field}.namespace"),
                    format!(
                        "duplicate rule for `{pattern}` (first defined at line {})",
                        prev.line
                    ),
                );
            } else if let Some(prev) = rules.iter().find(|p| shadows(&p.pattern, &pattern)) {
                self.err(
                    pattern_span.clone(),
                    format!("{field}.namespace"),
                    format!(
                        "rule `{pattern}` can never match: every namespace it names already matches the earlier rule \
                         `{}` at line {} (first match wins; move it above that rule)",
                        prev.pattern, prev.line
                    ),
                );
            }
            let name = format!("rule `{pattern}`");
            let Some(policy) = self.policy(&name, &field, span, r, default.as_ref()) else {
                continue;
            };
            rules.push(Rule {
                pattern,
                line,
                matcher,
                policy,
            });
        }

        // Rules were validated even if the default was not, so all errors are reported.
        let default = default?;
        let settings = self.scheme_settings(&default, &rules);
        Some(PolicyConfig {
            source: self.file.to_owned(),
            default,
            rules,
            storage,
            settings,
        })
    }

    /// Reports top-level keys that are neither the file's own tables, `[server]`, nor a
    /// compiled-in scheme's settings table.
    fn top_level_keys(&mut self) {
        let Ok(table) = toml::de::DeTable::parse(self.text) else {
            return;
        };
        let mut known: Vec<&str> = vec!["version", "default", "rule", "server", "storage"];
        known.extend(crate::schemes().iter().filter_map(|s| s.section()));
        let unknown: Vec<_> = table
            .get_ref()
            .keys()
            .filter(|k| !known.contains(&k.get_ref().as_ref()))
            .map(|k| (k.span(), k.get_ref().to_string()))
            .collect();
        for (span, key) in unknown {
            self.err(
                span,
                key.clone(),
                format!(
                    "unknown table or key `{key}` (expected one of: {}; a KMS's table needs its \
                     provider compiled in)",
                    known.join(", ")
                ),
            );
        }
    }

    /// Every compiled-in scheme validates its own settings table, knowing which of its KEKs
    /// the file names.
    fn scheme_settings(&mut self, default: &Policy, rules: &[Rule]) -> SchemeTable {
        let keks: Vec<&KekUri> = std::iter::once(default)
            .chain(rules.iter().map(|r| &r.policy))
            .flat_map(|p| std::iter::once(&p.active).chain(p.decrypt_only.iter()))
            .collect();
        let mut table = Vec::new();
        for scheme in crate::schemes() {
            let used: Vec<&KekUri> = keks
                .iter()
                .copied()
                .filter(|k| scheme.uri_schemes().contains(&k.scheme()))
                .collect();
            match scheme.settings(self.text, &used) {
                Ok(settings) => table.push((*scheme, settings)),
                Err(errors) => {
                    for e in errors {
                        self.err(e.span, e.field, e.message);
                    }
                }
            }
        }
        SchemeTable(table)
    }

    fn kek(&mut self, s: &Spanned<String>, field: &str) -> Option<KekUri> {
        let parsed = crate::schemes::parse_kek(s.get_ref()).and_then(|uri| {
            crate::schemes::scheme_for_uri(uri.scheme())
                .map_or(Ok(()), |scheme| scheme.connectable(&uri))
                .map(|()| uri)
        });
        match parsed {
            Ok(uri) => Some(uri),
            Err(e) => {
                self.err(s.span(), field, e);
                None
            }
        }
    }

    fn policy(
        &mut self,
        name: &str,
        field: &str,
        span: Range<usize>,
        parts: RawPolicy,
        inherit: Option<&Policy>,
    ) -> Option<Policy> {
        let Some(active_raw) = parts.active else {
            self.err(
                span,
                format!("{field}.active"),
                "missing `active`: the KEK that wraps new data keys",
            );
            return None;
        };
        let active = self.kek(&active_raw, &format!("{field}.active"));
        let mut decrypt_only = Vec::new();
        for (i, d) in parts.decrypt_only.iter().enumerate() {
            let f = format!("{field}.decrypt_only[{i}]");
            let Some(uri) = self.kek(d, &f) else { continue };
            if Some(&uri) == active.as_ref() {
                self.err(
                    d.span(),
                    &f,
                    format!("`{uri}` is the active KEK; a KEK is either active or decrypt-only"),
                );
            } else if decrypt_only.contains(&uri) {
                self.err(d.span(), &f, format!("`{uri}` is listed twice"));
            } else {
                decrypt_only.push(uri);
            }
        }
        let lease = match parts.lease {
            Some(l) => self.lease(l, &format!("{field}.lease")),
            None => inherit.map_or_else(LeaseLimits::default, |p| p.lease),
        };
        let compression = match parts.compression {
            Some(c) => self.compression(c, &format!("{field}.compression")),
            None => inherit.and_then(|p| p.compression.clone()),
        };
        let context = match parts.context {
            Some(c) => {
                let mut out = BTreeMap::new();
                let mut probe = EncryptionContext::new();
                for (k, v) in c.into_inner() {
                    let f = format!("{field}.context.{k}");
                    if k == NAMESPACE_KEY {
                        self.err(v.span(), &f, "`namespace` is set by Sealbox to the Temporal namespace; choose another key");
                        continue;
                    }
                    if let Err(e) = probe.insert(k.clone(), v.get_ref().clone()) {
                        self.err(v.span(), &f, e.to_string());
                        continue;
                    }
                    out.insert(k, v.into_inner());
                }
                out
            }
            None => inherit.map(|p| p.context.clone()).unwrap_or_default(),
        };
        let access = match parts.access {
            Some(a) => {
                let a = a.into_inner();
                Access {
                    roles: a.roles,
                    subjects: a.subjects,
                    encode_roles: a.encode_roles,
                    encode_subjects: a.encode_subjects,
                }
            }
            None => inherit.map(|p| p.access.clone()).unwrap_or_default(),
        };
        let require_encryption = parts
            .require_encryption
            .or(inherit.map(|p| p.require_encryption))
            .unwrap_or(true);
        let external_storage = match &parts.external_storage {
            Some(v) => self.external_storage(v, &format!("{field}.external_storage"))?,
            None => inherit.map_or(
                if self.storage_configured {
                    ExternalStorage::Threshold(256 * 1024)
                } else {
                    ExternalStorage::Off
                },
                |p| p.external_storage,
            ),
        };
        let suite = match &parts.suite {
            Some(v) => self.suite(v, &format!("{field}.suite"))?,
            None => inherit.map_or(Suite::DEFAULT, |p| p.suite),
        };
        Some(Policy {
            name: name.to_owned(),
            active: active?,
            decrypt_only,
            lease,
            compression,
            context,
            access,
            require_encryption,
            external_storage,
            suite,
        })
    }

    fn suite(&mut self, v: &Spanned<i64>, field: &str) -> Option<Suite> {
        let found = u16::try_from(*v.get_ref())
            .ok()
            .and_then(|id| Suite::from_id(id).ok());
        if found.is_none() {
            let known: Vec<String> = Suite::ALL
                .iter()
                .map(|s| format!("{} ({})", s.id(), s.name()))
                .collect();
            self.err(
                v.span(),
                field,
                format!(
                    "suite {} is not one this build writes; choose {}",
                    v.get_ref(),
                    known.join(" or ")
                ),
            );
        }
        found
    }

    fn storage(&mut self, raw: Spanned<RawStorage>) -> Option<StorageSettings> {
        let s = raw.into_inner();
        let url = s.url.get_ref().clone();
        let known = ["s3://", "gs://", "az://", "file:///", "memory://"];
        if !known.iter().any(|k| url.starts_with(k)) {
            self.err(
                s.url.span(),
                "storage.url",
                format!("`{url}` is not a store this build reads (s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX], az://CONTAINER[/PREFIX], file:///DIR, memory://)"),
            );
            return None;
        }
        let max_size = match &s.max_size {
            Some(m) => self.size(m, "storage.max_size")?,
            None => 50 * 1024 * 1024,
        };
        if !(1..=1024 * 1024 * 1024).contains(&max_size) {
            self.err(
                s.max_size.map_or(0..0, |m| m.span()),
                "storage.max_size",
                "must be 1 byte to 1 GiB",
            );
            return None;
        }
        let mut options = std::collections::BTreeMap::new();
        for (name, value) in s.options {
            if names_a_secret(&name) {
                self.err(
                    value.span(),
                    "storage.options",
                    format!(
                        "`{name}`: secrets do not belong in the policy file; name a file holding \
                         it (`{name}_file = \"/run/secrets/…\"`), set it in the environment \
                         (AWS_SECRET_ACCESS_KEY, …) or use the instance's role"
                    ),
                );
                return None;
            }
            if !["s3://", "gs://", "az://"]
                .iter()
                .any(|c| url.starts_with(c))
            {
                self.err(
                    value.span(),
                    "storage.options",
                    format!("`{name}`: options apply to s3://, gs:// and az:// stores only"),
                );
                return None;
            }
            options.insert(name, value.into_inner());
        }
        Some(StorageSettings {
            url,
            max_size,
            options,
        })
    }

    fn external_storage(&mut self, v: &Spanned<String>, field: &str) -> Option<ExternalStorage> {
        let setting = match v.get_ref().as_str() {
            "off" => return Some(ExternalStorage::Off),
            "always" => ExternalStorage::Always,
            "sdk" => ExternalStorage::Sdk,
            _ => ExternalStorage::Threshold(self.size(v, field)?),
        };
        if !self.storage_configured {
            self.err(
                v.span(),
                field,
                "external storage needs a [storage] table saying where payloads go",
            );
            return None;
        }
        Some(setting)
    }

    fn duration(&mut self, s: &Spanned<String>, field: &str) -> Option<Duration> {
        sealbox_core::scheme::duration_setting(s.get_ref(), s.span(), field)
            .map_err(|e| self.err(e.span, e.field, e.message))
            .ok()
    }

    fn size(&mut self, s: &Spanned<String>, field: &str) -> Option<u64> {
        match s.get_ref().parse::<bytesize::ByteSize>() {
            Ok(b) => Some(b.as_u64()),
            Err(e) => {
                self.err(
                    s.span(),
                    field,
                    format!(
                        "`{}` is not a size ({e}); write e.g. \"64KiB\", \"4GiB\"",
                        s.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn lease(&mut self, raw: Spanned<RawLease>, field: &str) -> LeaseLimits {
        let span = raw.span();
        let l = raw.into_inner();
        let mut out = LeaseLimits::default();
        if let Some(a) = &l.max_age
            && let Some(d) = self.duration(a, &format!("{field}.max_age"))
        {
            out.max_age = d;
        }
        if let Some(p) = &l.max_payloads {
            if *p.get_ref() < 1 {
                self.err(
                    p.span(),
                    format!("{field}.max_payloads"),
                    "must be at least 1",
                );
            } else {
                out.max_payloads = *p.get_ref() as u64;
            }
        }
        if let Some(b) = &l.max_bytes
            && let Some(n) = self.size(b, &format!("{field}.max_bytes"))
        {
            out.max_bytes = n;
        }
        if let Some(r) = &l.renew_before
            && let Some(d) = self.duration(r, &format!("{field}.renew_before"))
        {
            out.renew_before = d;
        }
        if let Err(e) = out.validate() {
            let msg = e.to_string();
            let msg = msg
                .strip_prefix("invalid key-ring configuration: ")
                .unwrap_or(&msg)
                .to_owned();
            self.err(span, field, msg);
        }
        out
    }

    fn compression(&mut self, raw: Spanned<RawCompression>, field: &str) -> Option<Compression> {
        let c = raw.into_inner();
        if c.algorithm.get_ref() != "zstd" {
            self.err(
                c.algorithm.span(),
                format!("{field}.algorithm"),
                format!(
                    "unknown compression `{}` (supported: zstd)",
                    c.algorithm.get_ref()
                ),
            );
            return None;
        }
        let min_size = match &c.min_size {
            Some(s) => self.size(s, &format!("{field}.min_size"))?,
            None => 1024,
        };
        let level = match &c.level {
            Some(l) if !(1..=19).contains(l.get_ref()) => {
                self.err(
                    l.span(),
                    format!("{field}.level"),
                    "zstd level must be 1-19",
                );
                return None;
            }
            Some(l) => *l.get_ref() as i32,
            None => 3,
        };
        Some(Compression {
            algorithm: "zstd".into(),
            min_size,
            level,
        })
    }
}

/// Whether a `[storage]` option holds a secret (which must come from a `…_file` option, the
/// environment or the instance's identity, never from the policy file).
fn names_a_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    // `…_file` options and Google's credentials option hold paths.
    !lower.ends_with("_file")
        && lower != "google_application_credentials"
        && sealbox_core::transport::names_a_secret(&lower)
}
