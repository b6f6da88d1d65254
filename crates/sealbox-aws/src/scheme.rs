//! The `awskms://` KEK scheme and the `[aws]` settings table.
//!
//! | URI | KEK |
//! |---|---|
//! | `awskms:///arn:aws:kms:REGION:ACCOUNT:key/ID?region=R&endpoint=URL` | a key by ARN |
//! | `awskms:///alias/NAME?region=R` (also `awskms://alias/NAME`) | a key by alias |
//! | `awskms:///KEY-ID?region=R` | a key by ID |

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sealbox_core::scheme::{
    SchemeSettings, UriParts, bounded_setting, duration_setting, misconfigured, toml_error,
    with_query,
};
use sealbox_core::{KekRef, KekScheme, KekUri, KeyProvider, ProviderError, SettingError};
use serde::Deserialize;
use toml::Spanned;

use crate::{AwsKms, AwsKmsConfig, PROVIDER_ID};

/// The `awskms://` scheme (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsKmsScheme;

#[derive(Debug, Clone, PartialEq, Eq)]
struct AwsUri {
    key: String,
    region: Option<String>,
    endpoint: Option<String>,
}

/// The validated `[aws]` table; unset fields keep [`AwsKmsConfig::new`]'s defaults.
#[derive(Debug, Clone, Default)]
struct AwsSettings {
    max_attempts: Option<u32>,
    attempt_timeout: Option<Duration>,
    allow_http: bool,
    multi_region_replicas: bool,
}

#[derive(Deserialize)]
struct Doc {
    aws: Option<RawAws>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAws {
    max_attempts: Option<Spanned<i64>>,
    attempt_timeout: Option<Spanned<String>>,
    allow_http: Option<bool>,
    multi_region_replicas: Option<bool>,
}

#[async_trait]
impl KekScheme for AwsKmsScheme {
    fn uri_schemes(&self) -> &'static [&'static str] {
        &["awskms"]
    }

    fn provider_id(&self) -> &'static str {
        PROVIDER_ID
    }

    fn section(&self) -> Option<&'static str> {
        Some("aws")
    }

    fn parse(&self, uri: &str) -> Result<KekUri, String> {
        let parts = UriParts::parse(uri, &["region", "endpoint"])?;
        let key = parts.path.strip_prefix('/').unwrap_or(parts.path);
        if key.is_empty() {
            return Err(format!(
                "`{uri}`: expected awskms:///KEY-ARN or awskms://alias/NAME"
            ));
        }
        let parsed = AwsUri {
            key: key.to_owned(),
            region: parts.get("region"),
            endpoint: parts.get("endpoint"),
        };
        let text = with_query(
            format!("awskms:///{key}"),
            &[
                ("region", parsed.region.as_deref()),
                ("endpoint", parsed.endpoint.as_deref()),
            ],
        );
        Ok(KekUri::new(text, PROVIDER_ID, parsed))
    }

    fn settings(
        &self,
        policy_text: &str,
        _used: &[&KekUri],
    ) -> Result<SchemeSettings, Vec<SettingError>> {
        let doc: Doc = toml::from_str(policy_text)
            .map_err(|e| vec![toml_error(e.span(), "aws", e.message())])?;
        let Some(raw) = doc.aws else {
            return Ok(Arc::new(AwsSettings::default()));
        };
        let mut errors = Vec::new();
        let mut out = AwsSettings {
            allow_http: raw.allow_http.unwrap_or(false),
            multi_region_replicas: raw.multi_region_replicas.unwrap_or(false),
            ..AwsSettings::default()
        };
        if let Some(m) = &raw.max_attempts {
            match bounded_setting(*m.get_ref(), 1..=20, m.span(), "aws.max_attempts") {
                Ok(v) => out.max_attempts = Some(v),
                Err(e) => errors.push(e),
            }
        }
        if let Some(t) = &raw.attempt_timeout {
            match duration_setting(t.get_ref(), t.span(), "aws.attempt_timeout") {
                Ok(d) => out.attempt_timeout = Some(d),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Arc::new(out))
        } else {
            Err(errors)
        }
    }

    async fn connect(
        &self,
        kek: &KekUri,
        settings: &SchemeSettings,
    ) -> Result<Arc<dyn KeyProvider>, ProviderError> {
        let uri = kek
            .parsed::<AwsUri>()
            .ok_or_else(|| misconfigured(PROVIDER_ID, kek, "not an awskms:// KEK"))?;
        let settings = settings
            .downcast_ref::<AwsSettings>()
            .ok_or_else(|| misconfigured(PROVIDER_ID, kek, "no [aws] settings"))?;
        let mut config = AwsKmsConfig::new(&uri.key)
            .allow_http(settings.allow_http)
            .multi_region_replicas(settings.multi_region_replicas);
        if let Some(m) = settings.max_attempts {
            config = config.max_attempts(m);
        }
        if let Some(t) = settings.attempt_timeout {
            config.attempt_timeout = t;
        }
        if let Some(r) = &uri.region {
            config = config.region(r);
        }
        if let Some(e) = &uri.endpoint {
            config = config.endpoint_url(e);
        }
        Ok(Arc::new(AwsKms::connect(config).await?))
    }

    fn key_id(&self, kek: &KekUri) -> Option<String> {
        // Envelopes carry the key ARN: only a key ARN names it without asking KMS.
        kek.parsed::<AwsUri>()
            .filter(|u| u.key.starts_with("arn:") && u.key.contains(":key/"))
            .map(|u| u.key.clone())
    }

    fn display(&self, kek: &KekRef) -> String {
        format!("awskms:///{}", kek.key_id())
    }

    fn describe(&self, _kek: &KekUri) -> String {
        "AWS KMS".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> AwsSettings {
        let s = AwsKmsScheme.settings(text, &[]).expect("valid");
        s.downcast_ref::<AwsSettings>().expect("ours").clone()
    }

    #[test]
    fn opt_ins_are_off_unless_the_file_says_true() {
        let off = settings("[default]\nactive = \"x\"\n");
        assert!(!off.allow_http && !off.multi_region_replicas);
        assert_eq!((off.max_attempts, off.attempt_timeout), (None, None));
        let on = settings(
            "[aws]\nallow_http = true\nmulti_region_replicas = true\nmax_attempts = 3\nattempt_timeout = \"2s\"\n",
        );
        assert!(on.allow_http && on.multi_region_replicas);
        assert_eq!(on.max_attempts, Some(3));
        assert_eq!(on.attempt_timeout, Some(Duration::from_secs(2)));
        let errors = AwsKmsScheme
            .settings("[aws]\nmax_attempts = 0\nattempt_timeout = \"soon\"\n", &[])
            .expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["aws.max_attempts", "aws.attempt_timeout"]);
        // Spans point into the policy text.
        assert_eq!(&"[aws]\nmax_attempts = 0\n"[errors[0].span.clone()], "0");
    }

    #[test]
    fn uris_parse_and_round_trip() {
        for uri in [
            "awskms:///arn:aws:kms:eu-west-1:111122223333:key/abc?region=eu-west-1",
            "awskms:///alias/payments?region=us-east-1&endpoint=http://127.0.0.1:5000",
        ] {
            let parsed = AwsKmsScheme
                .parse(uri)
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(parsed.to_string(), uri);
        }
        assert_eq!(
            AwsKmsScheme
                .parse("awskms://alias/x")
                .map(|u| u.to_string()),
            Ok("awskms:///alias/x".to_owned())
        );
        let arn = "arn:aws:kms:eu-west-1:111122223333:key/abc";
        let by_arn = AwsKmsScheme
            .parse(&format!("awskms:///{arn}"))
            .expect("valid");
        assert_eq!(AwsKmsScheme.key_id(&by_arn).as_deref(), Some(arn));
        let by_alias = AwsKmsScheme.parse("awskms:///alias/x").expect("valid");
        assert_eq!(AwsKmsScheme.key_id(&by_alias), None);
        for (uri, want) in [
            ("awskms:///", "expected awskms:///KEY-ARN"),
            ("awskms:///k?regoin=x", "unknown parameter `regoin`"),
            ("awskms:///k?region=a&region=b", "given twice"),
        ] {
            let err = AwsKmsScheme.parse(uri).expect_err(uri);
            assert!(err.contains(want), "{uri}: {err}");
        }
    }
}
