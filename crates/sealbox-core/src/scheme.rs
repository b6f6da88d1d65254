//! The KEK-scheme seam: how a provider crate names its KEKs, reads its settings and connects.
//!
//! Every KMS provider crate exports one [`KekScheme`]: it parses and prints its own KEK URIs
//! (`vault://…`, `awskms://…`), validates its own section of the policy file (`[vault]`,
//! `[aws]`), connects a [`KeyProvider`] for a KEK, and prints the URI of a KEK an envelope
//! header names. The policy crate is only a dispatcher over the schemes compiled in, so a new
//! KMS is a new crate plus one line in that table (see `docs/providers.md`).
//!
//! A parsed URI is a [`KekUri`]: its canonical text (equality and hashing use it), the
//! provider ID its envelopes carry, and the scheme's own typed form, which only that scheme
//! reads back ([`KekUri::parsed`]).

use std::any::Any;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{ProviderError, ProviderErrorKind};
use crate::key::KekRef;
use crate::provider::KeyProvider;

/// A KEK named by URI, as parsed by its scheme.
#[derive(Clone)]
pub struct KekUri {
    text: String,
    provider_id: &'static str,
    parsed: Arc<dyn Any + Send + Sync>,
}

impl KekUri {
    /// A parsed URI: `text` is its canonical form (what [`fmt::Display`] prints and parsing
    /// reads back), `parsed` the scheme's typed form.
    pub fn new<T: Any + Send + Sync>(
        text: impl Into<String>,
        provider_id: &'static str,
        parsed: T,
    ) -> Self {
        Self {
            text: text.into(),
            provider_id,
            parsed: Arc::new(parsed),
        }
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The URI scheme (`vault`, `awskms`, …).
    pub fn scheme(&self) -> &str {
        self.text.split_once("://").map_or("", |(s, _)| s)
    }

    /// The provider ID this KEK's envelopes carry (`vault-transit`, `aws-kms`, …).
    pub fn provider_id(&self) -> &'static str {
        self.provider_id
    }

    /// The scheme's typed form, if it is a `T`.
    pub fn parsed<T: Any>(&self) -> Option<&T> {
        self.parsed.downcast_ref()
    }
}

impl fmt::Display for KekUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for KekUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekUri({:?})", self.text)
    }
}

impl PartialEq for KekUri {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for KekUri {}

impl Hash for KekUri {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

/// A problem in a scheme's settings: `span` is a byte range in the policy text (the policy
/// turns it into FILE:LINE:COL; `0..0` when there is no better place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// Where, as a byte range of the policy text.
    pub span: Range<usize>,
    /// The field, as a dotted path (`vault.timeout`).
    pub field: String,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

impl SettingError {
    /// A problem at `span` in `field`.
    pub fn new(span: Range<usize>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            span,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A scheme's validated settings; only the scheme that made them reads them back.
pub type SchemeSettings = Arc<dyn Any + Send + Sync>;

/// One KMS's KEK URIs, settings and connect code.
#[async_trait]
pub trait KekScheme: Send + Sync + fmt::Debug {
    /// The URI schemes it parses (`["vault", "vault+http"]`).
    fn uri_schemes(&self) -> &'static [&'static str];

    /// The provider ID its envelopes carry.
    fn provider_id(&self) -> &'static str;

    /// Its settings table in the policy file (`vault` for `[vault]`), if it has one.
    fn section(&self) -> Option<&'static str> {
        None
    }

    /// Parses one of its URIs; the error says what is wrong and shows the expected form.
    fn parse(&self, uri: &str) -> Result<KekUri, String>;

    /// Whether `kek` can be connected, or only names a key for matching envelopes (the form
    /// [`KekScheme::display`] prints: a Vault key without its host, a local key without its
    /// source). A policy file may only name connectable KEKs; the error says what is missing.
    fn connectable(&self, kek: &KekUri) -> Result<(), String> {
        let _ = kek;
        Ok(())
    }

    /// Validates its settings from the policy file's text (the scheme reads its own table)
    /// given the KEKs of this scheme the file names: a scheme may require settings only when
    /// one of its KEKs is used.
    fn settings(
        &self,
        policy_text: &str,
        used: &[&KekUri],
    ) -> Result<SchemeSettings, Vec<SettingError>>;

    /// Connects the provider for `kek` with `settings` (from [`KekScheme::settings`]).
    async fn connect(
        &self,
        kek: &KekUri,
        settings: &SchemeSettings,
    ) -> Result<Arc<dyn KeyProvider>, ProviderError>;

    /// The key ID envelopes sealed by `kek` carry, where the URI alone determines it (an AWS
    /// alias does not: only the connected provider knows its key).
    fn key_id(&self, kek: &KekUri) -> Option<String>;

    /// The URI naming the KEK an envelope header names. Headers carry no host or region, so
    /// this is the host-less form where the URI has one (`vault:///transit/keys/k`); it
    /// parses back, for matching but not for connecting.
    fn display(&self, kek: &KekRef) -> String;

    /// Where `kek` lives, in words (`Vault at https://…`, `key file /etc/…`).
    fn describe(&self, kek: &KekUri) -> String;
}

/// A KEK URI split into its parts, with its query parameters checked against the allowed
/// names: every scheme's parser starts here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriParts<'a> {
    /// The scheme (`vault`).
    pub scheme: &'a str,
    /// What follows `://`, before `?`.
    pub path: &'a str,
    params: Vec<(String, String)>,
}

impl<'a> UriParts<'a> {
    /// Splits `uri`; refuses query parameters not in `allowed`, empty or repeated ones.
    pub fn parse(uri: &'a str, allowed: &[&str]) -> Result<Self, String> {
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
            format!("`{uri}` is not a KEK URI (expected SCHEME://…, e.g. awskms:///arn:…)")
        })?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, q),
            None => (rest, ""),
        };
        let mut params: Vec<(String, String)> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("query parameter `{pair}` has no value"))?;
            if v.is_empty() {
                return Err(format!("query parameter `{k}` is empty"));
            }
            if params.iter().any(|(key, _)| key == k) {
                return Err(format!("query parameter `{k}` is given twice"));
            }
            if !allowed.contains(&k) {
                return Err(format!(
                    "unknown parameter `{k}` in `{uri}` (allowed: {})",
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ));
            }
            params.push((k.to_owned(), v.to_owned()));
        }
        Ok(Self {
            scheme,
            path,
            params,
        })
    }

    /// The value of query parameter `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Parses a duration setting (`"30s"`, `"5m"`, `"1h"`) found at `span`.
pub fn duration_setting(
    value: &str,
    span: Range<usize>,
    field: &str,
) -> Result<std::time::Duration, SettingError> {
    humantime::parse_duration(value).map_err(|e| {
        SettingError::new(
            span,
            field,
            format!("`{value}` is not a duration ({e}); write e.g. \"30s\", \"5m\", \"1h\""),
        )
    })
}

/// A bounded integer setting (`max_attempts = 5`) found at `span`.
pub fn bounded_setting(
    value: i64,
    range: std::ops::RangeInclusive<u32>,
    span: Range<usize>,
    field: &str,
) -> Result<u32, SettingError> {
    u32::try_from(value)
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            SettingError::new(
                span,
                field,
                format!("must be {}-{}", range.start(), range.end()),
            )
        })
}

/// A policy-text parse error, as a [`SettingError`] of `section`.
pub fn toml_error(span: Option<Range<usize>>, section: &str, message: &str) -> SettingError {
    SettingError::new(span.unwrap_or(0..0), section, message.replace('\n', " "))
}

/// A `Misconfigured` error of the provider `provider_id` about `kek`, as a scheme's
/// [`KekScheme::connect`] returns for a KEK or settings it cannot connect.
pub fn misconfigured(provider_id: &str, kek: &KekUri, message: impl Into<String>) -> ProviderError {
    ProviderError::new(
        provider_id,
        kek.as_str(),
        ProviderErrorKind::Misconfigured,
        message,
    )
}

/// Appends `?k=v&…` for the parameters that are set.
pub fn with_query(mut base: String, params: &[(&str, Option<&str>)]) -> String {
    let mut sep = '?';
    for (k, v) in params {
        if let Some(v) = v {
            base.push(sep);
            base.push_str(k);
            base.push('=');
            base.push_str(v);
            sep = '&';
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parts_check_their_parameters() {
        let p = UriParts::parse("x://a/b?k=v&m=w", &["k", "m"]).expect("valid");
        assert_eq!((p.scheme, p.path), ("x", "a/b"));
        assert_eq!(p.get("k").as_deref(), Some("v"));
        assert_eq!(p.get("n"), None);
        for (uri, want) in [
            ("no-scheme", "is not a KEK URI"),
            ("x://a?k=1&k=2", "given twice"),
            ("x://a?k=", "is empty"),
            ("x://a?k", "has no value"),
            ("x://a?z=1", "unknown parameter `z`"),
        ] {
            let err = UriParts::parse(uri, &["k"]).expect_err(uri);
            assert!(err.contains(want), "{uri}: {err}");
        }
        assert_eq!(
            with_query(
                "x://a".into(),
                &[("k", None), ("m", Some("1")), ("n", Some("2"))]
            ),
            "x://a?m=1&n=2"
        );
    }

    #[test]
    fn uris_compare_by_text_and_keep_their_parsed_form() {
        let a = KekUri::new("t://k", "test", 7_u32);
        let b = KekUri::new("t://k", "test", "other");
        assert_eq!(a, b);
        assert_eq!(a.parsed::<u32>(), Some(&7));
        assert_eq!(a.parsed::<String>(), None);
        assert_eq!(a.scheme(), "t");
        assert_eq!(a.to_string(), "t://k");
    }
}
