//! The AWS KMS provider against a real moto server started by each test: the shared
//! conformance suite plus AWS-specific behaviour (aliases, disabled keys, unreachable KMS).

use sealbox_testkit::fixtures::{
    assert_kind_in, assert_plain_http_opt_in_works, assert_plain_http_refused, ctx,
};
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::config::Credentials;
use aws_sdk_kms::types::KeyMetadata;
use sealbox_aws::{AwsKms, AwsKmsConfig};
use sealbox_core::{
    Error, KekRef, KeyProvider, ProviderError, ProviderErrorKind, WrappedKey, inspect,
    replace_wrapped_key,
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

/// Creates a key (a Multi-Region primary with `multi_region`); its ARN.
async fn create_key(admin: &aws_sdk_kms::Client, description: &str, multi_region: bool) -> String {
    let out = admin
        .create_key()
        .multi_region(multi_region)
        .description(description)
        .send()
        .await
        .expect("CreateKey");
    arn_of(out.key_metadata())
}

/// The ARN in a key's metadata, as KMS answers `CreateKey` or `ReplicateKey`.
fn arn_of(metadata: Option<&KeyMetadata>) -> String {
    metadata.and_then(|m| m.arn()).expect("arn").to_owned()
}

async fn harness() -> Kms {
    let moto = Moto::start();
    let sdk = sdk(&moto.endpoint).await;
    let admin = aws_sdk_kms::Client::new(&sdk);
    let a_arn = create_key(&admin, "sealbox test KEK", false).await;
    let b_arn = create_key(&admin, "sealbox test KEK", false).await;
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
    fn keks(&self) -> [Arc<dyn KeyProvider>; 2] {
        [self.a.clone(), self.b.clone()]
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
    assert_kind_in(
        &err,
        &[ProviderErrorKind::Unavailable, ProviderErrorKind::Timeout],
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

/// Finding 1: a plain-HTTP endpoint is refused unless its host is loopback or the operator
/// opts in. `0.0.0.0` is not loopback by the rule (127.0.0.0/8, ::1, localhost), yet Linux
/// delivers connections to it to the local host, so moto is reachable through it: the refusal
/// is the check, not a network failure, and the opt-in really connects.
#[tokio::test]
async fn a_plain_http_endpoint_off_loopback_is_refused_unless_opted_in() {
    let h = harness().await;
    let remote = h.moto.endpoint.replace("127.0.0.1", "0.0.0.0");
    let refused = |e: ProviderError| {
        let wording = [
            "refusing plain-HTTP KMS endpoint",
            "allow_http(true)",
            "[aws] allow_http = true",
        ];
        assert_plain_http_refused(&e, &remote, &wording);
    };
    // The endpoint override of the configuration (what a KEK URI's `endpoint=` sets)…
    refused(
        AwsKms::connect_with(&h.sdk, AwsKmsConfig::new(&h.a_arn).endpoint_url(&remote))
            .await
            .expect_err("non-loopback http"),
    );
    // …through `connect` (refused before the credential chain runs)…
    refused(
        AwsKms::connect(AwsKmsConfig::new(&h.a_arn).endpoint_url(&remote))
            .await
            .expect_err("non-loopback http"),
    );
    // …and an endpoint that comes from the SdkConfig.
    refused(
        AwsKms::connect_with(&sdk(&remote).await, AwsKmsConfig::new(&h.a_arn))
            .await
            .expect_err("non-loopback http from the SdkConfig"),
    );

    // Loopback http needs no opt-in and logs nothing; the opt-in is accepted, works, and
    // warns loudly.
    assert_plain_http_opt_in_works(
        AwsKms::connect_with(
            &h.sdk,
            AwsKmsConfig::new(&h.a_arn).endpoint_url(&h.moto.endpoint),
        ),
        AwsKms::connect_with(
            &h.sdk,
            AwsKmsConfig::new(&h.a_arn)
                .endpoint_url(&remote)
                .allow_http(true),
        ),
        h.a.clone(),
        &remote,
    )
    .await;
}

/// Replaces the KEK reference in `env`'s header, keeping its wrapped key and everything else.
fn relabel(env: &[u8], kek: KekRef) -> Vec<u8> {
    let parsed = sealbox_core::parse(env).expect("parse");
    let wrapped =
        WrappedKey::new(kek, parsed.header.wrapped_key.ciphertext().to_vec()).expect("wrapped");
    replace_wrapped_key(env, &wrapped).expect("replace")
}

/// Unwraps the key in `envelope`'s header with `provider` directly (no key-ring routing),
/// checking that it is refused as an invalid wrapped key; the error.
async fn unwrap_refused(provider: &AwsKms, envelope: &[u8]) -> ProviderError {
    let wrapped = sealbox_core::parse(envelope)
        .expect("parse")
        .header
        .wrapped_key;
    let err = provider
        .unwrap(&wrapped, &ctx("a"))
        .await
        .expect_err("unwrap");
    assert_eq!(err.kind(), ProviderErrorKind::InvalidWrappedKey, "{err}");
    err
}

fn assert_invalid_wrapped_key<T: std::fmt::Debug>(result: Result<T, Error>) {
    match result {
        Err(Error::Provider(p)) => {
            assert_eq!(p.kind(), ProviderErrorKind::InvalidWrappedKey, "{p}");
            assert!(!p.is_retryable(), "{p}");
        }
        other => panic!("expected InvalidWrappedKey, got {other:?}"),
    }
}

/// Finding 3: AWS envelopes record no key version, so a header that gained one was edited and
/// must not open — by `open` or by `rewrap`, and not through the provider directly either.
/// (Before the fix the version was ignored and the envelope opened.)
#[tokio::test]
async fn a_key_version_added_to_the_header_does_not_open() {
    let h = harness().await;
    let keyring = Keyring::builder(h.a.clone()).build().expect("keyring");
    let env = keyring.seal(&ctx("a"), b"secret").await.expect("seal");
    let kek = inspect(&env).expect("header").kek().clone();
    assert_eq!(kek.key_version(), None);
    let edited = relabel(&env, kek.clone().with_version("1").expect("version"));

    let reader = Keyring::builder(h.a.clone()).build().expect("keyring");
    assert_invalid_wrapped_key(reader.open(&ctx("a"), &edited).await);
    assert_invalid_wrapped_key(reader.rewrap(&ctx("a"), &edited).await);
    let err = unwrap_refused(&h.a, &edited).await;
    assert!(err.to_string().contains("key version `1`"), "{err}");
    // The unedited envelope still opens.
    assert_eq!(reader.open(&ctx("a"), &env).await.expect("open"), b"secret");
}

/// Any other form of the key in the header — another region, the bare key ID, an alias —
/// is not what this provider writes: the key-ring does not route it to the provider at all.
#[tokio::test]
async fn another_form_of_the_key_id_in_the_header_does_not_open() {
    let h = harness().await;
    let keyring = Keyring::builder(h.a.clone()).build().expect("keyring");
    let env = keyring.seal(&ctx("a"), b"secret").await.expect("seal");
    let key_id = h.a_arn.rsplit('/').next().expect("key id").to_owned();
    for edited_id in [
        h.a_arn.replace("us-east-1", "us-west-2"),
        key_id,
        "alias/sealbox-test".to_owned(),
    ] {
        let edited = relabel(&env, KekRef::new("aws-kms", &edited_id).expect("kek"));
        match keyring.open(&ctx("a"), &edited).await {
            Err(Error::UnknownKek { key_id, .. }) => assert_eq!(key_id, edited_id),
            other => panic!("{edited_id}: {other:?}"),
        }
        unwrap_refused(&h.a, &edited).await;
    }
}

/// Finding 3, Multi-Region keys: by default an envelope sealed under the `us-east-1` primary
/// whose header is edited to name the `us-west-2` replica is refused by Sealbox itself, with
/// no KMS call (before the fix every provider accepted its whole MRK family and sent the
/// ciphertext to KMS), and a replica does not read its primary's envelopes. A version added
/// under the opt-in is still refused. (What the opt-in accepts is shown against a canned KMS
/// below: moto truncates Multi-Region key IDs in its ciphertexts and cannot decrypt them.)
#[tokio::test]
async fn a_multi_region_key_region_swap_does_not_open() {
    let h = harness().await;
    let east_arn = create_key(&h.admin, "sealbox MRK", true).await;
    assert!(east_arn.contains(":us-east-1:") && east_arn.contains(":key/mrk-"));
    // moto answers ReplicateKey with a key ARN by a 500, as it does DisableKey; use the ID.
    let mrk_id = east_arn.rsplit('/').next().expect("key id");
    let replicated = h
        .admin
        .replicate_key()
        .key_id(mrk_id)
        .replica_region("us-west-2")
        .send()
        .await
        .expect("ReplicateKey");
    let west_arn = arn_of(replicated.replica_key_metadata());
    assert_eq!(west_arn, east_arn.replace(":us-east-1:", ":us-west-2:"));

    let connect = |arn: &str, region: &str, replicas: bool| {
        let config = AwsKmsConfig::new(arn)
            .region(region)
            .multi_region_replicas(replicas);
        let sdk = h.sdk.clone();
        async move {
            Arc::new(
                AwsKms::connect_with(&sdk, config)
                    .await
                    .expect("connect MRK"),
            )
        }
    };
    let east = connect(&east_arn, "us-east-1", false).await;
    let env = Keyring::builder(east.clone())
        .build()
        .expect("keyring")
        .seal(&ctx("a"), b"replicated")
        .await
        .expect("seal");
    let swapped = relabel(&env, KekRef::new("aws-kms", &west_arn).expect("kek"));

    let east_reader = Keyring::builder(east.clone()).build().expect("keyring");
    match east_reader.open(&ctx("a"), &swapped).await {
        Err(Error::UnknownKek { key_id, .. }) => assert_eq!(key_id, west_arn),
        other => panic!("the region swap must be refused by Sealbox: {other:?}"),
    }
    assert_eq!(
        east_reader.stats().unwrap_calls,
        0,
        "not sent to the provider"
    );
    let wrapped = sealbox_core::parse(&swapped)
        .expect("parse")
        .header
        .wrapped_key;
    let err = east.unwrap(&wrapped, &ctx("a")).await.expect_err("swapped");
    assert_eq!(err.kind(), ProviderErrorKind::InvalidWrappedKey, "{err}");

    let west = connect(&west_arn, "us-west-2", false).await;
    let west_reader = Keyring::builder(west).build().expect("keyring");
    assert!(matches!(
        west_reader.open(&ctx("a"), &env).await,
        Err(Error::UnknownKek { .. })
    ));

    let west_mrk = connect(&west_arn, "us-west-2", true).await;
    let versioned = relabel(
        &env,
        KekRef::new("aws-kms", &east_arn)
            .and_then(|k| k.with_version("1"))
            .expect("kek"),
    );
    let reader = Keyring::builder(west_mrk).build().expect("keyring");
    assert_invalid_wrapped_key(reader.open(&ctx("a"), &versioned).await);
}

/// A canned KMS answer serving `DescribeKey` (key `arn`) and `Decrypt` (a 32-byte zero key,
/// reported as decrypted by `decrypted_by`) alike. The SDK ignores the fields it does not
/// expect in each answer.
fn canned_answer(arn: &str, decrypted_by: &str) -> &'static str {
    let key_id = arn.rsplit('/').next().expect("key id");
    Box::leak(
        format!(
            r#"{{"KeyMetadata":{{"KeyId":"{key_id}","Arn":"{arn}","KeyUsage":"ENCRYPT_DECRYPT","KeyState":"Enabled"}},"Plaintext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","KeyId":"{decrypted_by}"}}"#
        )
        .into_boxed_str(),
    )
}

/// What `multi_region_replicas(true)` accepts, as `docs/threat-model.md` documents: a replica
/// opens what its primary sealed, decrypting with its **own** regional ARN (KMS must report
/// that ARN); and the header's region is then only a claim — an envelope whose region was
/// swapped opens too, to the same plaintext. Without the opt-in neither opens.
#[tokio::test]
async fn with_the_replica_opt_in_the_header_region_of_a_multi_region_key_is_a_claim() {
    const EAST: &str =
        "arn:aws:kms:us-east-1:123456789012:key/mrk-0123456789abcdef0123456789abcdef";
    const WEST: &str =
        "arn:aws:kms:us-west-2:123456789012:key/mrk-0123456789abcdef0123456789abcdef";
    let zero = sealbox_core::DataKey::try_from_slice(&[0; 32]).expect("key");
    let seal = |arn: &str| {
        let wrapped = WrappedKey::new(KekRef::new("aws-kms", arn).expect("kek"), vec![7; 64])
            .expect("wrapped");
        sealbox_core::seal_with_data_key(&zero, &wrapped, &ctx("a"), b"replicated").expect("seal")
    };
    let sealed_in_east = seal(EAST);
    let swapped_to_east = relabel(&seal(WEST), KekRef::new("aws-kms", EAST).expect("kek"));

    let kms = sealbox_testkit::faults::FaultyHttp::always(
        200,
        "application/x-amz-json-1.1",
        canned_answer(WEST, WEST),
    )
    .await;
    let sdk = sdk(&kms.endpoint).await;
    let west = |replicas: bool| {
        AwsKms::connect_with(
            &sdk,
            AwsKmsConfig::new(WEST)
                .region("us-west-2")
                .multi_region_replicas(replicas),
        )
    };
    let strict = Keyring::builder(Arc::new(west(false).await.expect("connect")))
        .build()
        .expect("keyring");
    for env in [&sealed_in_east, &swapped_to_east] {
        assert!(matches!(
            strict.open(&ctx("a"), env).await,
            Err(Error::UnknownKek { .. })
        ));
    }
    let replica = Keyring::builder(Arc::new(west(true).await.expect("connect")))
        .build()
        .expect("keyring");
    for env in [&sealed_in_east, &swapped_to_east] {
        assert_eq!(
            replica.open(&ctx("a"), env).await.expect("opens"),
            b"replicated"
        );
    }

    // KMS reporting the primary instead of the replica that was asked is refused.
    let wrong = sealbox_testkit::faults::FaultyHttp::always(
        200,
        "application/x-amz-json-1.1",
        canned_answer(WEST, EAST),
    )
    .await;
    let kms = AwsKms::connect_with(
        &self::sdk(&wrong.endpoint).await,
        AwsKmsConfig::new(WEST)
            .region("us-west-2")
            .multi_region_replicas(true),
    )
    .await
    .expect("connect");
    let reader = Keyring::builder(Arc::new(kms)).build().expect("keyring");
    assert_invalid_wrapped_key(reader.open(&ctx("a"), &sealed_in_east).await);
}

/// Finding 3: the key KMS reports in a `Decrypt` answer must be this key. A server that
/// decrypts but names another key is refused; the same answer naming this key is accepted.
#[tokio::test]
async fn kms_must_report_this_key_as_the_one_that_decrypted() {
    const ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-00000000000a";
    const OTHER: &str =
        "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-00000000000b";
    for (decrypted_by, accepted) in [(OTHER, false), (ARN, true)] {
        let canned = sealbox_testkit::faults::FaultyHttp::always(
            200,
            "application/x-amz-json-1.1",
            canned_answer(ARN, decrypted_by),
        )
        .await;
        let kms = AwsKms::connect_with(&sdk(&canned.endpoint).await, AwsKmsConfig::new(ARN))
            .await
            .expect("connect");
        let wrapped = WrappedKey::new(KekRef::new("aws-kms", ARN).expect("kek"), vec![1; 64])
            .expect("wrapped");
        let result = kms.unwrap(&wrapped, &ctx("a")).await;
        if accepted {
            result.expect("KMS names this key");
        } else {
            let err = result.expect_err("KMS names another key");
            assert_eq!(err.kind(), ProviderErrorKind::InvalidWrappedKey, "{err}");
            assert!(
                err.to_string().contains("Decrypt reports key")
                    && err.to_string().contains("00000000000b"),
                "{err}"
            );
        }
    }
}

/// moto frozen (SIGSTOP) while 8 tasks seal (each for a new context: a new data key) and
/// open an envelope whose key is cached: opens keep succeeding; seals fail closed with a
/// typed, retryable error after `max_attempts × attempt_timeout` (nothing waits longer);
/// after SIGCONT sealing works again without reconnecting the provider. Prints the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_kms_under_load_fails_closed_and_recovers() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let h = harness().await;
    let mut config = AwsKmsConfig::new(&h.a_arn).max_attempts(2);
    config.attempt_timeout = Duration::from_millis(500);
    let kms = Arc::new(AwsKms::connect_with(&h.sdk, config).await.expect("connect"));
    let keyring = Keyring::builder(kms).build().expect("keyring");
    let cached = keyring.seal(&ctx("cached"), b"cached").await.expect("seal");
    let stop = Arc::new(AtomicBool::new(false));
    let frozen = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (keyring, cached, stop, frozen) = (
            keyring.clone(),
            cached.clone(),
            stop.clone(),
            frozen.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // (during the freeze?, seal ok?, open ok?, seal latency, seal error kind)
            let mut out = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let during = frozen.load(Ordering::Relaxed);
                let opened = keyring.open(&ctx("cached"), &cached).await;
                let start = Instant::now();
                let sealed = keyring
                    .seal(&ctx(&format!("new-{worker}-{i}")), b"secret payload")
                    .await;
                let took = start.elapsed();
                let kind = match &sealed {
                    Err(Error::Provider(p)) => {
                        assert!(p.is_retryable(), "{p}");
                        Some(p.kind())
                    }
                    Err(other) => panic!("a seal failed with an untyped error: {other:?}"),
                    Ok(env) => {
                        assert!(!env.windows(6).any(|w| w == b"secret"), "plaintext");
                        None
                    }
                };
                out.push((during, sealed.is_ok(), opened.is_ok(), took, kind));
            }
            out
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    frozen.store(true, Ordering::Relaxed);
    tokio::task::block_in_place(|| h.moto.freeze());
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| h.moto.thaw());
    frozen.store(false, Ordering::Relaxed);
    // Let the seals that were waiting on the frozen server finish, then some fresh ones.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    assert!(all.iter().all(|r| r.2), "an open of a cached key failed");
    let during: Vec<_> = all.iter().filter(|r| r.0).collect();
    let failed: Vec<_> = during.iter().filter(|r| !r.1).collect();
    assert!(!failed.is_empty(), "no seal failed while KMS was frozen");
    let max_failed = failed.iter().map(|r| r.3).max().unwrap_or_default();
    let recovered = all.iter().rev().take(8).filter(|r| r.1).count();
    assert!(recovered > 0, "sealing did not recover after SIGCONT");
    let probe = keyring.seal(&ctx("after"), b"x").await;
    assert!(probe.is_ok(), "{probe:?}");
    let kinds: std::collections::BTreeSet<String> = failed
        .iter()
        .filter_map(|r| r.4)
        .map(|k| format!("{k:?}"))
        .collect();
    eprintln!(
        "moto frozen 3 s under load (8 tasks; 2 attempts × 500 ms): {} opens of a cached key, \
         all ok; {} seals during the freeze, {} failed ({kinds:?}), slowest failure {max_failed:?}; \
         {} seals in all, sealing recovered after SIGCONT",
        all.len(),
        during.len(),
        failed.len(),
        all.len(),
    );
}
