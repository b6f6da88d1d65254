//! Opening an S3 bucket (and prefix) from a URL with Sealbox's transport rules; shared by
//! external storage and the rotation job's S3 store.

use std::str::FromStr;
use std::sync::Arc;

use object_store::ClientConfigKey;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use sealbox_core::error::error_chain;
use sealbox_core::transport::{EndpointLabels, check_endpoint, redact_endpoint};

/// An opened S3 location.
pub struct S3Location {
    /// The bucket's store.
    pub store: Arc<dyn ObjectStore>,
    /// The bucket.
    pub bucket: String,
    /// The prefix inside it, without surrounding `/` (maybe empty).
    pub prefix: String,
    /// The endpoint override, if any.
    pub endpoint: Option<String>,
    /// Secrets the configuration holds, to scrub from messages.
    pub secrets: Vec<String>,
    /// Whether listings come in key order (not for S3 Express directory buckets).
    pub ordered: bool,
}

impl std::fmt::Debug for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Location")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// `message` with every non-empty secret replaced by `***`.
pub fn scrub(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(message.to_owned(), |m, s| m.replace(s.as_str(), "***"))
}

const S3_FORM: &str = "expected `s3://bucket[/prefix]`, with credentials, region and endpoint \
     in the options or the `AWS_*` environment";

fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "on" | "yes" | "y"
    )
}

/// Opens `s3://bucket[/prefix]`: `AmazonS3Builder::from_env()`, then the URL, then
/// `options` (object_store configuration keys). Conditional put by ETag is always on
/// (`If-Match` / `If-None-Match`); a plain-HTTP endpoint is accepted on loopback, elsewhere
/// only with `aws_allow_http=true` (`AWS_ALLOW_HTTP=true`). Errors never show a secret.
pub fn open_s3(url: &str, options: &[(&str, &str)]) -> Result<S3Location, String> {
    let shown = redact_endpoint(url);
    let invalid = |what: &str| format!("S3 store `{shown}`: {what}");
    let (bucket, prefix) = super::cloud::bucket_and_prefix(url, S3_FORM)
        .map_err(|e| format!("S3 {e} (an endpoint goes in the `aws_endpoint` option)"))?;

    let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
    for (name, value) in options {
        let key = AmazonS3ConfigKey::from_str(&name.to_ascii_lowercase()).map_err(|_| {
            invalid(&format!(
                "unknown option `{}`: expected an object_store S3 configuration key such as \
                 aws_endpoint, aws_region, aws_allow_http, aws_access_key_id, \
                 aws_secret_access_key or aws_session_token",
                name.escape_debug()
            ))
        })?;
        if key == AmazonS3ConfigKey::Bucket {
            return Err(invalid("the bucket comes from the URL, not an option"));
        }
        builder = builder.with_config(key, *value);
    }
    if let Some(mode) = builder.get_config_value(&AmazonS3ConfigKey::ConditionalPut)
        && mode.trim() != "etag"
    {
        return Err(invalid(&format!(
            "conditional put must stay `etag` (If-Match/If-None-Match), not `{}`: Sealbox \
             never overwrites a concurrent writer",
            mode.escape_debug()
        )));
    }
    builder = builder.with_conditional_put(S3ConditionalPut::ETagMatch);

    let endpoint = builder
        .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
    let allow_http = builder
        .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
        .is_some_and(|v| is_truthy(&v));
    if let Some(endpoint) = &endpoint {
        let labels = EndpointLabels {
            service: "S3",
            exposed: "envelopes and session tokens",
            opt_in: "the store option `aws_allow_http=true` (or `AWS_ALLOW_HTTP=true`)",
        };
        let transport = check_endpoint(endpoint, allow_http, &labels).map_err(|e| invalid(&e))?;
        if transport == sealbox_core::transport::Transport::LoopbackHttp {
            builder = builder.with_allow_http(true);
        }
    }
    let secrets: Vec<String> = [AmazonS3ConfigKey::SecretAccessKey, AmazonS3ConfigKey::Token]
        .iter()
        .filter_map(|k| builder.get_config_value(k))
        .collect();
    let ordered = !builder
        .get_config_value(&AmazonS3ConfigKey::S3Express)
        .is_some_and(|v| is_truthy(&v));
    let s3 = builder
        .build()
        .map_err(|e| invalid(&scrub(&error_chain(&e), &secrets)))?;

    Ok(S3Location {
        store: Arc::new(s3),
        bucket,
        prefix,
        endpoint,
        secrets,
        ordered,
    })
}
