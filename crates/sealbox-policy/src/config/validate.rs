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
use crate::uri::{KekUri, LocalSource};

pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a str,
    pub(super) errors: Vec<ConfigError>,
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
        let vault = raw.vault.and_then(|v| self.vault(v));
        let aws = raw.aws.map_or_else(AwsSettings::default, |a| self.aws(a));
        let gcp = raw.gcp.map_or_else(GcpSettings::default, |g| self.gcp(g));
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
        let default = self.policy(
            "default",
            "default",
            span,
            PolicyParts {
                active: d.active,
                decrypt_only: d.decrypt_only,
                lease: d.lease,
                compression: d.compression,
                context: d.context,
                access: d.access,
                require_encryption: d.require_encryption,
            },
            None,
        );

        let mut rules: Vec<Rule> = Vec::new();
        for (i, raw_rule) in raw.rule.into_iter().enumerate() {
            let span = raw_rule.span();
            let r = raw_rule.into_inner();
            let field = format!("rule[{i}]");
            let pattern = r.namespace.get_ref().clone();
            let pattern_span = r.namespace.span();
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
            let Some(policy) = self.policy(
                &name,
                &field,
                span,
                PolicyParts {
                    active: r.active,
                    decrypt_only: r.decrypt_only,
                    lease: r.lease,
                    compression: r.compression,
                    context: r.context,
                    access: r.access,
                    require_encryption: r.require_encryption,
                },
                default.as_ref(),
            ) else {
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
        let uses_vault = std::iter::once(&default)
            .chain(rules.iter().map(|r| &r.policy))
            .flat_map(|p| std::iter::once(&p.active).chain(p.decrypt_only.iter()))
            .any(|k| matches!(k, KekUri::Vault { .. }));
        let uses_dev_key = std::iter::once(&default)
            .chain(rules.iter().map(|r| &r.policy))
            .flat_map(|p| std::iter::once(&p.active).chain(p.decrypt_only.iter()))
            .any(|k| {
                matches!(
                    k,
                    KekUri::Local {
                        source: LocalSource::DevDefault,
                        ..
                    }
                )
            });
        if uses_dev_key && !raw.local.is_some_and(|l| l.development_key) {
            self.err(
                0..0,
                "local",
                "`local:///dev` is the development key (read from $SEALBOX_LOCAL_KEK or \
                 generated into .sealbox/dev.kek in the working directory, next to the data): \
                 add `[local] development_key = true` to use it — never in production, where a \
                 KMS KEK or `local:///NAME?file=…` belongs",
            );
        }
        if uses_vault && vault.is_none() && self.errors.is_empty() {
            self.err(
                0..0,
                "vault",
                "a vault:// KEK is used but there is no [vault] table saying how to authenticate",
            );
        }
        Some(PolicyConfig {
            source: self.file.to_owned(),
            default,
            rules,
            vault,
            aws,
            gcp,
        })
    }

    fn kek(&mut self, s: &Spanned<String>, field: &str) -> Option<KekUri> {
        match KekUri::parse(s.get_ref()) {
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
        parts: PolicyParts,
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
        Some(Policy {
            name: name.to_owned(),
            active: active?,
            decrypt_only,
            lease,
            compression,
            context,
            access,
            require_encryption,
        })
    }

    fn duration(&mut self, s: &Spanned<String>, field: &str) -> Option<Duration> {
        match humantime::parse_duration(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    s.span(),
                    field,
                    format!(
                        "`{}` is not a duration ({e}); write e.g. \"30s\", \"5m\", \"1h\"",
                        s.get_ref()
                    ),
                );
                None
            }
        }
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

    fn vault(&mut self, raw: Spanned<RawVault>) -> Option<VaultSettings> {
        let span = raw.span();
        let v = raw.into_inner();
        if let Some(t) = &v.token {
            self.err(
                t.span(),
                "vault.token",
                "secrets are never written in the policy file: use token_env or token_file",
            );
        }
        if let Some(t) = &v.secret_id {
            self.err(
                t.span(),
                "vault.secret_id",
                "secrets are never written in the policy file: use secret_id_env or secret_id_file",
            );
        }
        let timeout = match &v.timeout {
            Some(t) => self.duration(t, "vault.timeout")?,
            None => Duration::from_secs(10),
        };
        let auth = match v.auth.get_ref().as_str() {
            "token" => {
                if v.token_env.is_some() && v.token_file.is_some() {
                    self.err(span, "vault", "give token_env or token_file, not both");
                }
                VaultAuthSetting::Token {
                    env: v
                        .token_env
                        .clone()
                        .or_else(|| v.token_file.is_none().then(|| "VAULT_TOKEN".to_owned())),
                    file: v.token_file.clone(),
                }
            }
            "approle" => {
                let Some(role_id) = v.role_id.clone() else {
                    self.err(span, "vault.role_id", "AppRole auth needs role_id");
                    return None;
                };
                if v.secret_id_env.is_none() == v.secret_id_file.is_none() {
                    self.err(
                        span,
                        "vault",
                        "AppRole auth needs exactly one of secret_id_env, secret_id_file",
                    );
                    return None;
                }
                VaultAuthSetting::AppRole {
                    mount: v.approle_mount.clone().unwrap_or_else(|| "approle".into()),
                    role_id,
                    secret_id_env: v.secret_id_env.clone(),
                    secret_id_file: v.secret_id_file.clone(),
                }
            }
            "kubernetes" => {
                let Some(role) = v.kubernetes_role.clone() else {
                    self.err(
                        span,
                        "vault.kubernetes_role",
                        "Kubernetes auth needs kubernetes_role",
                    );
                    return None;
                };
                VaultAuthSetting::Kubernetes {
                    mount: v
                        .kubernetes_mount
                        .clone()
                        .unwrap_or_else(|| "kubernetes".into()),
                    role,
                    jwt_path: v.jwt_path.clone().unwrap_or_else(|| {
                        "/var/run/secrets/kubernetes.io/serviceaccount/token".into()
                    }),
                }
            }
            other => {
                self.err(
                    v.auth.span(),
                    "vault.auth",
                    format!("unknown auth method `{other}` (token, approle, kubernetes)"),
                );
                return None;
            }
        };
        Some(VaultSettings {
            auth,
            ca_cert: v.ca_cert,
            timeout,
        })
    }

    fn gcp(&mut self, raw: Spanned<RawGcp>) -> GcpSettings {
        let g = raw.into_inner();
        let mut out = GcpSettings {
            credentials_file: g.credentials_file,
            endpoint: g.endpoint,
            max_attempts: None,
            allow_http: g.allow_http.unwrap_or(false),
        };
        if let Some(m) = &g.max_attempts {
            if !(1..=20).contains(m.get_ref()) {
                self.err(m.span(), "gcp.max_attempts", "must be 1-20");
            } else {
                out.max_attempts = Some(*m.get_ref() as u32);
            }
        }
        out
    }

    fn aws(&mut self, raw: Spanned<RawAws>) -> AwsSettings {
        let a = raw.into_inner();
        let mut out = AwsSettings {
            allow_http: a.allow_http.unwrap_or(false),
            multi_region_replicas: a.multi_region_replicas.unwrap_or(false),
            ..AwsSettings::default()
        };
        if let Some(m) = &a.max_attempts {
            if !(1..=20).contains(m.get_ref()) {
                self.err(m.span(), "aws.max_attempts", "must be 1-20");
            } else {
                out.max_attempts = *m.get_ref() as u32;
            }
        }
        if let Some(t) = &a.attempt_timeout
            && let Some(d) = self.duration(t, "aws.attempt_timeout")
        {
            out.attempt_timeout = d;
        }
        out
    }
}

pub(super) struct PolicyParts {
    active: Option<Spanned<String>>,
    decrypt_only: Vec<Spanned<String>>,
    lease: Option<Spanned<RawLease>>,
    compression: Option<Spanned<RawCompression>>,
    context: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    access: Option<Spanned<RawAccess>>,
    require_encryption: Option<bool>,
}
