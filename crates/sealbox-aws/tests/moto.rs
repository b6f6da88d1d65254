//! The AWS KMS provider against a real moto server started by each test: the shared
//! conformance suite plus AWS-specific behaviour (aliases, disabled keys, unreachable KMS).

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::config::Credentials;
use sealbox_aws::{AwsKms, AwsKmsConfig};
use sealbox_core::{
    EncryptionContext, Error, KeyProvider, ProviderError, ProviderErrorKind, inspect,
};
use sealbox_keyring::Keyring;
use sealbox_testkit::conformance::Harness;
use sealbox_testkit::servers::Moto;

struct Kms {
    moto: Moto,
    sdk: SdkConfig,
    admin: aws_sdk_kms::Client,
    a: Arc<AwsKms>,
    b: Arc<AwsKms>,
    a_arn: String,
}

async fn sdk(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "sealbox-tests",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

async fn create_key(admin: &aws_sdk_kms::Client) -> String {
    let out = admin
        .create_key()
        .description("sealbox test KEK")
        .send()
        .await
        .expect("CreateKey");
    out.key_metadata()
        .and_then(|m| m.arn())
        .expect("arn")
        .to_owned()
}

async fn harness() -> Kms {
    let moto = Moto::start();
    let sdk = sdk(&moto.endpoint).await;
    let admin = aws_sdk_kms::Client::new(&sdk);
    let a_arn = create_key(&admin).await;
    let b_arn = create_key(&admin).await;
    let a = Arc::new(
        AwsKms::connect_with(&sdk, AwsKmsConfig::new(&a_arn))
            .await
            .expect("connect a"),
    );
    let b = Arc::new(
        AwsKms::connect_with(&sdk, AwsKmsConfig::new(&b_arn))
            .await
            .expect("connect b"),
    );
    Kms {
        moto,
        sdk,
        admin,
        a,
        b,
        a_arn,
    }
}

#[async_trait]
impl Harness for Kms {
    fn provider(&self) -> Arc<dyn KeyProvider> {
        self.a.clone()
    }
    fn other(&self) -> Arc<dyn KeyProvider> {
        self.b.clone()
    }
    async fn missing(&self) -> Result<Arc<dyn KeyProvider>, ProviderError> {
        let absent = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
        AwsKms::connect_with(&self.sdk, AwsKmsConfig::new(absent))
            .await
            .map(|p| Arc::new(p) as Arc<dyn KeyProvider>)
    }
    async fn rotate(&self) {
        self.admin
            .rotate_key_on_demand()
            .key_id(&self.a_arn)
            .send()
            .await
            .expect("RotateKeyOnDemand");
    }
    fn versioned(&self) -> bool {
        false
    }
}

sealbox_testkit::conformance_tests!(harness);

fn ctx(ns: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("namespace", ns)
        .expect("valid")
}

#[tokio::test]
async fn an_alias_is_accepted_and_the_arn_is_recorded() {
    let h = harness().await;
    h.admin
        .create_alias()
        .alias_name("alias/sealbox-test")
        .target_key_id(&h.a_arn)
        .send()
        .await
        .expect("CreateAlias");
    let by_alias = Arc::new(
        AwsKms::connect_with(&h.sdk, AwsKmsConfig::new("alias/sealbox-test"))
            .await
            .expect("connect by alias"),
    );
    assert_eq!(by_alias.key_arn(), h.a_arn);
    let env = Keyring::builder(by_alias)
        .build()
        .expect("keyring")
        .seal(&ctx("a"), b"x")
        .await
        .expect("seal");
    assert_eq!(inspect(&env).expect("header").kek().key_id(), h.a_arn);
    assert_eq!(inspect(&env).expect("header").kek().key_version(), None);
    let reader = Keyring::builder(h.a.clone()).build().expect("keyring");
    assert_eq!(
        reader.open(&ctx("a"), &env).await.expect("open by ARN"),
        b"x"
    );
}

/// Connecting to a disabled key fails with `KeyDisabled`, naming the key. (moto 5.2.5 does
/// not enforce key state on data-plane calls — it encrypts and decrypts with a disabled key —
/// so the mapping of AWS's `DisabledException` on `Decrypt` cannot be exercised here.)
#[tokio::test]
async fn a_disabled_key_is_refused_at_connect() {
    let h = harness().await;
    // moto 5.2.5 answers DisableKey with a key ARN by a 500; AWS accepts both. Use the key ID.
    let key_id = h.a_arn.rsplit('/').next().expect("key id");
    h.admin
        .disable_key()
        .key_id(key_id)
        .send()
        .await
        .expect("DisableKey");
    let err = AwsKms::connect_with(&h.sdk, AwsKmsConfig::new(&h.a_arn))
        .await
        .expect_err("connect to disabled");
    assert_eq!(err.kind(), ProviderErrorKind::KeyDisabled, "{err}");
    assert!(
        err.to_string().contains(&h.a_arn) && err.to_string().contains("Disabled"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_kms_is_retried_then_reported() {
    let h = harness().await;
    let port = sealbox_testkit::servers::free_port();
    let config = AwsKmsConfig::new(&h.a_arn)
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .max_attempts(2);
    let err = AwsKms::connect_with(&h.sdk, config)
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(
            err.kind(),
            ProviderErrorKind::Unavailable | ProviderErrorKind::Timeout
        ),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(err.to_string().contains("after 2 attempts"), "{err}");
    drop(h.moto);
}

#[tokio::test]
async fn kms_enforces_the_context_through_the_key_ring() {
    let h = harness().await;
    let writer = Keyring::builder(h.a.clone()).build().expect("keyring");
    let env = writer
        .seal(&ctx("tenant-a"), b"a's data")
        .await
        .expect("seal");
    // Rewrite the stored context to tenant B: KMS refuses the data key under B's context.
    let parsed = sealbox_core::parse(&env).expect("parse");
    let mut header = parsed.header.clone();
    header.context = ctx("tenant-b");
    let mut moved = Vec::new();
    header.encode_into(&mut moved);
    moved.extend_from_slice(parsed.body);
    let reader = Keyring::builder(h.a.clone()).build().expect("keyring");
    match reader.open(&ctx("tenant-b"), &moved).await {
        Err(Error::Provider(p)) => {
            assert_eq!(p.kind(), ProviderErrorKind::InvalidWrappedKey, "{p}")
        }
        other => panic!("{other:?}"),
    }
}

/// A KMS endpoint that only ever throttles: the provider retries exactly `max_attempts`
/// times (counted by the endpoint), then reports a retryable `Throttled` error.
#[tokio::test]
async fn throttling_is_retried_a_bounded_number_of_times() {
    let throttling = sealbox_testkit::faults::FaultyHttp::always(
        400,
        "application/x-amz-json-1.1",
        r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
    )
    .await;
    let sdk = sdk(&throttling.endpoint).await;
    let arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000001";
    let err = AwsKms::connect_with(&sdk, AwsKmsConfig::new(arn).max_attempts(3))
        .await
        .expect_err("always throttled");
    assert_eq!(err.kind(), ProviderErrorKind::Throttled, "{err}");
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains("ThrottlingException")
            && err.to_string().contains("after 3 attempts"),
        "{err}"
    );
    assert_eq!(throttling.requests(), 3, "one request per attempt, no more");
}
