//! The `gcpkms://` KEK scheme and the `[gcp]` settings table.
//!
//! | URI | KEK |
//! |---|---|
//! | `gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K` | a Cloud KMS key |

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use sealbox_core::scheme::{SchemeSettings, UriParts, bounded_setting, misconfigured, toml_error};
use sealbox_core::{KekRef, KekScheme, KekUri, KeyProvider, ProviderError, SettingError};
use serde::Deserialize;
use toml::Spanned;

use crate::{GcpCredentials, GcpKms, GcpKmsConfig, PROVIDER_ID};

/// The `gcpkms://` scheme (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct GcpKmsScheme;

/// The key name (`projects/…/cryptoKeys/…`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct GcpUri(String);

/// The validated `[gcp]` table; unset fields keep [`GcpKmsConfig::new`]'s defaults.
#[derive(Debug, Clone, Default)]
struct GcpSettings {
    credentials_file: Option<String>,
    endpoint: Option<String>,
    max_attempts: Option<u32>,
    allow_http: bool,
}

#[derive(Deserialize)]
struct Doc {
    gcp: Option<RawGcp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGcp {
    credentials_file: Option<String>,
    endpoint: Option<String>,
    max_attempts: Option<Spanned<i64>>,
    allow_http: Option<bool>,
}

#[async_trait]
impl KekScheme for GcpKmsScheme {
    fn uri_schemes(&self) -> &'static [&'static str] {
        &["gcpkms"]
    }

    fn provider_id(&self) -> &'static str {
        PROVIDER_ID
    }

    fn section(&self) -> Option<&'static str> {
        Some("gcp")
    }

    fn parse(&self, uri: &str) -> Result<KekUri, String> {
        let path = UriParts::parse(uri, &[])?.path;
        let parts: Vec<&str> = path.split('/').collect();
        let ok = parts.len() == 8
            && parts[0] == "projects"
            && parts[2] == "locations"
            && parts[4] == "keyRings"
            && parts[6] == "cryptoKeys"
            && parts.iter().all(|p| !p.is_empty());
        if !ok {
            return Err(format!(
                "`{uri}`: expected gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K"
            ));
        }
        Ok(KekUri::new(
            format!("gcpkms://{path}"),
            PROVIDER_ID,
            GcpUri(path.to_owned()),
        ))
    }

    fn settings(
        &self,
        policy_text: &str,
        _used: &[&KekUri],
    ) -> Result<SchemeSettings, Vec<SettingError>> {
        let doc: Doc = toml::from_str(policy_text)
            .map_err(|e| vec![toml_error(e.span(), "gcp", e.message())])?;
        let Some(raw) = doc.gcp else {
            return Ok(Arc::new(GcpSettings::default()));
        };
        let max_attempts = match &raw.max_attempts {
            Some(m) => Some(
                bounded_setting(*m.get_ref(), 1..=20, m.span(), "gcp.max_attempts")
                    .map_err(|e| vec![e])?,
            ),
            None => None,
        };
        Ok(Arc::new(GcpSettings {
            credentials_file: raw.credentials_file,
            endpoint: raw.endpoint,
            max_attempts,
            allow_http: raw.allow_http.unwrap_or(false),
        }))
    }

    async fn connect(
        &self,
        kek: &KekUri,
        settings: &SchemeSettings,
    ) -> Result<Arc<dyn KeyProvider>, ProviderError> {
        let GcpUri(name) = kek
            .parsed::<GcpUri>()
            .ok_or_else(|| misconfigured(PROVIDER_ID, kek, "not a gcpkms:// KEK"))?;
        let settings = settings
            .downcast_ref::<GcpSettings>()
            .ok_or_else(|| misconfigured(PROVIDER_ID, kek, "no [gcp] settings"))?;
        let mut config = GcpKmsConfig::new(name).allow_http(settings.allow_http);
        if let Some(e) = &settings.endpoint {
            config = config.endpoint(e);
        }
        if let Some(f) = &settings.credentials_file {
            config = config.credentials(GcpCredentials::ServiceAccountFile(PathBuf::from(f)));
        }
        if let Some(m) = settings.max_attempts {
            config = config.max_attempts(m);
        }
        Ok(Arc::new(GcpKms::connect(config).await?))
    }

    fn key_id(&self, kek: &KekUri) -> Option<String> {
        kek.parsed::<GcpUri>().map(|u| u.0.clone())
    }

    fn display(&self, kek: &KekRef) -> String {
        format!("gcpkms://{}", kek.key_id())
    }

    fn describe(&self, _kek: &KekUri) -> String {
        "Cloud KMS".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_off_unless_the_file_says_true() {
        let read = |text: &str| {
            let s = GcpKmsScheme.settings(text, &[]).expect("valid");
            s.downcast_ref::<GcpSettings>().expect("ours").clone()
        };
        assert!(!read("").allow_http);
        assert!(!read("[gcp]\n").allow_http);
        let on = read("[gcp]\nallow_http = true\nmax_attempts = 7\nendpoint = \"https://e\"\n");
        assert!(on.allow_http);
        assert_eq!(on.max_attempts, Some(7));
        assert_eq!(on.endpoint.as_deref(), Some("https://e"));
        let errors = GcpKmsScheme
            .settings("[gcp]\nmax_attempts = 21\n", &[])
            .expect_err("out of range");
        assert_eq!(errors[0].field, "gcp.max_attempts");
    }

    #[test]
    fn uris_parse_and_round_trip() {
        let uri = "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k";
        let parsed = GcpKmsScheme.parse(uri).expect("valid");
        assert_eq!(parsed.to_string(), uri);
        assert_eq!(
            GcpKmsScheme.key_id(&parsed).as_deref(),
            Some("projects/p/locations/global/keyRings/r/cryptoKeys/k")
        );
        for (bad, want) in [
            (
                "gcpkms://projects/p/keyRings/r",
                "expected gcpkms://projects/P/locations/L",
            ),
            (
                "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k?x=1",
                "unknown parameter",
            ),
        ] {
            let err = GcpKmsScheme.parse(bad).expect_err(bad);
            assert!(err.contains(want), "{bad}: {err}");
        }
    }
}
