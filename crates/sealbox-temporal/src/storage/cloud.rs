//! `gs://BUCKET[/PREFIX]` (Google Cloud Storage) and `az://CONTAINER[/PREFIX]` (Azure Blob
//! Storage) through `object_store`, configured like `s3://`: the builder's environment
//! (`GOOGLE_*`, `AZURE_*`), then the URL, then object_store configuration keys as options.
//!
//! Objects Sealbox writes to GCS carry the driver name of Temporal's official GCS driver
//! (`gcp.gcsdriver`, same claims and keys as `aws.s3driver`); Temporal has no official Azure
//! driver, so Azure objects carry `sealbox.azuredriver` (only Sealbox reads them).
//!
//! These backends are compiled and configured by the same code as S3, but they are **not
//! tested against a real service** here (no GCS or Azure server runs in the test suite).

use std::str::FromStr;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use sealbox_core::error::error_chain;
use sealbox_core::transport::{names_a_secret, redact_endpoint};

use super::scrub;

/// An opened `gs://` or `az://` store.
pub(super) struct CloudLocation {
    pub(super) store: Arc<dyn ObjectStore>,
    /// The bucket (GCS) or container (Azure).
    pub(super) bucket: String,
    /// Keys are under this prefix (no slashes at either end; may be empty).
    pub(super) prefix: String,
    /// Secret option values, scrubbed from errors.
    pub(super) secrets: Vec<String>,
}

/// Bucket and prefix of `scheme://BUCKET[/PREFIX]`, refusing credentials, ports, queries.
pub(super) fn bucket_and_prefix(url: &str, form: &str) -> Result<(String, String), String> {
    let shown = redact_endpoint(url);
    let invalid = |what: &str| format!("store `{shown}`: {what}; expected `{form}`");
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("credentials do not belong in the URL"));
    }
    if parsed.port().is_some() || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("no port, query or fragment is allowed"));
    }
    let bucket = parsed
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| invalid("no bucket"))?
        .to_owned();
    let prefix = percent_encoding::percent_decode_str(parsed.path())
        .decode_utf8()
        .map_err(|e| invalid(&format!("the prefix is not UTF-8: {e}")))?
        .trim_matches('/')
        .to_owned();
    Ok((bucket, prefix))
}

/// Opens `gs://BUCKET[/PREFIX]`.
pub(super) fn open_gcs(url: &str, options: &[(&str, &str)]) -> Result<CloudLocation, String> {
    let (bucket, prefix) = bucket_and_prefix(url, "gs://BUCKET[/PREFIX]")?;
    let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(&bucket);
    let mut secrets = Vec::new();
    for (name, value) in options {
        let key = GoogleConfigKey::from_str(&name.to_ascii_lowercase())
            .map_err(|_| format!("gs:// store: unknown option `{}`", name.escape_debug()))?;
        if names_a_secret(name) {
            secrets.push((*value).to_owned());
        }
        builder = builder.with_config(key, *value);
    }
    let store = builder
        .build()
        .map_err(|e| scrub(&format!("gs://{bucket}: {}", error_chain(&e)), &secrets))?;
    Ok(CloudLocation {
        store: Arc::new(store),
        bucket,
        prefix,
        secrets,
    })
}

/// Opens `az://CONTAINER[/PREFIX]` (the account from `AZURE_STORAGE_ACCOUNT_NAME` or the
/// `azure_storage_account_name` option).
pub(super) fn open_azure(url: &str, options: &[(&str, &str)]) -> Result<CloudLocation, String> {
    let (container, prefix) = bucket_and_prefix(url, "az://CONTAINER[/PREFIX]")?;
    let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(&container);
    let mut secrets = Vec::new();
    for (name, value) in options {
        let key = AzureConfigKey::from_str(&name.to_ascii_lowercase())
            .map_err(|_| format!("az:// store: unknown option `{}`", name.escape_debug()))?;
        if names_a_secret(name) {
            secrets.push((*value).to_owned());
        }
        builder = builder.with_config(key, *value);
    }
    let store = builder
        .build()
        .map_err(|e| scrub(&format!("az://{container}: {}", error_chain(&e)), &secrets))?;
    Ok(CloudLocation {
        store: Arc::new(store),
        bucket: container,
        prefix,
        secrets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_bucket_and_prefix_and_refuse_the_rest() {
        let form = "gs://BUCKET[/PREFIX]";
        assert_eq!(
            bucket_and_prefix("gs://payloads/temporal/prod/", form),
            Ok(("payloads".into(), "temporal/prod".into()))
        );
        assert_eq!(
            bucket_and_prefix("az://container", form),
            Ok(("container".into(), String::new()))
        );
        for bad in [
            "gs://user:pw@bucket",
            "gs://bucket:99",
            "gs://bucket?x=1",
            "gs:///nobucket",
        ] {
            let e = bucket_and_prefix(bad, form).expect_err(bad);
            assert!(!e.contains("pw@"), "{e}");
        }
    }
}
