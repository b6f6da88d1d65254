//! The `local://` KEK scheme: `local:///dev` (the development key) and
//! `local:///NAME?file=PATH` / `local:///NAME?env=VAR`, with the `[local]` settings table.

use std::sync::Arc;

use async_trait::async_trait;
use sealbox_core::scheme::{SchemeSettings, UriParts, misconfigured, toml_error, with_query};
use sealbox_core::{KekRef, KekScheme, KekUri, KeyProvider, ProviderError, SettingError};
use serde::Deserialize;

use crate::{DEFAULT_KEY_ID, LocalKek, PROVIDER_ID};

/// The `local://` scheme (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalScheme;

/// Where a local KEK comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LocalSource {
    /// [`LocalKek::dev_default`] (only for the name `dev`).
    DevDefault,
    /// A key file.
    File(String),
    /// An environment variable.
    Env(String),
    /// Not given: `local:///NAME` names a key for matching envelopes only.
    Unspecified,
}

/// A parsed `local://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalUri {
    name: String,
    source: LocalSource,
}

/// The `[local]` table.
#[derive(Debug, Clone, Copy, Default)]
struct LocalSettings {
    development_key: bool,
}

#[derive(Deserialize)]
struct Doc {
    local: Option<RawLocal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocal {
    #[serde(default)]
    development_key: bool,
}

impl LocalScheme {
    /// Where `kek` (a `local://` URI) comes from, or `None` for another scheme's URI.
    pub fn source(kek: &KekUri) -> Option<&LocalSource> {
        kek.parsed::<LocalUri>().map(|u| &u.source)
    }
}

#[async_trait]
impl KekScheme for LocalScheme {
    fn uri_schemes(&self) -> &'static [&'static str] {
        &["local"]
    }

    fn provider_id(&self) -> &'static str {
        PROVIDER_ID
    }

    fn section(&self) -> Option<&'static str> {
        Some("local")
    }

    fn parse(&self, uri: &str) -> Result<KekUri, String> {
        let parts = UriParts::parse(uri, &["file", "env"])?;
        let name = parts.path.strip_prefix('/').unwrap_or(parts.path);
        if name.is_empty() || name.contains('/') {
            return Err(format!("`{uri}`: expected local:///NAME"));
        }
        let source = match (parts.get("file"), parts.get("env")) {
            (Some(_), Some(_)) => return Err(format!("`{uri}`: give `file` or `env`, not both")),
            (Some(f), None) => LocalSource::File(f),
            (None, Some(e)) => LocalSource::Env(e),
            (None, None) if name == DEFAULT_KEY_ID => LocalSource::DevDefault,
            (None, None) => LocalSource::Unspecified,
        };
        let (file, env) = match &source {
            LocalSource::DevDefault | LocalSource::Unspecified => (None, None),
            LocalSource::File(f) => (Some(f.as_str()), None),
            LocalSource::Env(e) => (None, Some(e.as_str())),
        };
        let text = with_query(format!("local:///{name}"), &[("file", file), ("env", env)]);
        Ok(KekUri::new(
            text,
            PROVIDER_ID,
            LocalUri {
                name: name.to_owned(),
                source,
            },
        ))
    }

    fn connectable(&self, kek: &KekUri) -> Result<(), String> {
        match Self::source(kek) {
            Some(LocalSource::Unspecified) => Err(format!(
                "`{kek}`: a local KEK other than `dev` needs ?file=PATH or ?env=VAR"
            )),
            _ => Ok(()),
        }
    }

    fn settings(
        &self,
        policy_text: &str,
        used: &[&KekUri],
    ) -> Result<SchemeSettings, Vec<SettingError>> {
        let doc: Doc = toml::from_str(policy_text)
            .map_err(|e| vec![toml_error(e.span(), "local", e.message())])?;
        let settings = LocalSettings {
            development_key: doc.local.is_some_and(|l| l.development_key),
        };
        let uses_dev_key = used
            .iter()
            .any(|k| Self::source(k) == Some(&LocalSource::DevDefault));
        if uses_dev_key && !settings.development_key {
            return Err(vec![SettingError::new(
                0..0,
                "local",
                "`local:///dev` is the development key (read from $SEALBOX_LOCAL_KEK or \
                 generated into .sealbox/dev.kek in the working directory, next to the data): \
                 add `[local] development_key = true` to use it — never in production, where a \
                 KMS KEK or `local:///NAME?file=…` belongs",
            )]);
        }
        Ok(Arc::new(settings))
    }

    async fn connect(
        &self,
        kek: &KekUri,
        _settings: &SchemeSettings,
    ) -> Result<Arc<dyn KeyProvider>, ProviderError> {
        let uri = kek
            .parsed::<LocalUri>()
            .ok_or_else(|| misconfigured(PROVIDER_ID, kek, "not a local:// KEK"))?;
        let provider = match &uri.source {
            LocalSource::Unspecified => {
                let why = self.connectable(kek).err().unwrap_or_default();
                return Err(misconfigured(PROVIDER_ID, kek, why));
            }
            LocalSource::DevDefault => LocalKek::dev_default()?,
            LocalSource::File(path) => LocalKek::from_file(&uri.name, path)?,
            LocalSource::Env(var) => LocalKek::from_env(&uri.name, var)?,
        };
        Ok(Arc::new(provider))
    }

    fn key_id(&self, kek: &KekUri) -> Option<String> {
        kek.parsed::<LocalUri>().map(|u| u.name.clone())
    }

    fn display(&self, kek: &KekRef) -> String {
        format!("local:///{}", kek.key_id())
    }

    fn describe(&self, kek: &KekUri) -> String {
        match Self::source(kek) {
            Some(LocalSource::DevDefault) => {
                "development key (.sealbox/dev.kek or $SEALBOX_LOCAL_KEK)".into()
            }
            Some(LocalSource::File(p)) => format!("key file {p}"),
            Some(LocalSource::Env(v)) => format!("env var {v}"),
            Some(LocalSource::Unspecified) => "local key (source not given)".into(),
            None => "not a local KEK".into(),
        }
    }
}
