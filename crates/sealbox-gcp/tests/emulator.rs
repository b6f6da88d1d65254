//! The Cloud KMS provider against the Cloud KMS emulator (which `google_client.rs` holds to
//! Google's own client): the shared conformance suite, the OAuth service-account flow, CRC32C
//! integrity, disabled versions, retries.

use sealbox_testkit::fixtures::{assert_plain_http_opt_in_works, assert_plain_http_refused, ctx};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sealbox_core::{Error, KeyProvider, ProviderError, ProviderErrorKind, WrappedKey, inspect};
use sealbox_gcp::{GcpCredentials, GcpKms, GcpKmsConfig};
use sealbox_keyring::Keyring;
use sealbox_testkit::conformance::Harness;
use sealbox_testkit::faults::FaultyHttp;
use sealbox_testkit::gcpkms::{GcpKmsEmulator, ServiceAccount};

struct Gcp {
    emu: GcpKmsEmulator,
    sa: ServiceAccount,
    a_name: String,
    a: Arc<GcpKms>,
    b: Arc<GcpKms>,
}

fn config(emu: &GcpKmsEmulator, sa: &ServiceAccount, key: &str) -> GcpKmsConfig {
    GcpKmsConfig::new(key)
        .endpoint(&emu.endpoint)
        .credentials(GcpCredentials::ServiceAccountJson(sa.json.clone().into()))
        .primary_ttl(Duration::ZERO)
}

async fn harness() -> Gcp {
    let (emu, sa) = GcpKmsEmulator::start_with_trusted_account().await;
    let a_name = emu.create_key("sealbox", "europe-west1", "ring", "kek-a");
    let b_name = emu.create_key("sealbox", "europe-west1", "ring", "kek-b");
    let a = Arc::new(
        GcpKms::connect(config(&emu, &sa, &a_name))
            .await
            .expect("connect a"),
    );
    let b = Arc::new(
        GcpKms::connect(config(&emu, &sa, &b_name))
            .await
            .expect("connect b"),
    );
    Gcp {
        emu,
        sa,
        a_name,
        a,
        b,
    }
}

#[async_trait]
impl Harness for Gcp {
    fn keks(&self) -> [Arc<dyn KeyProvider>; 2] {
        [self.a.clone(), self.b.clone()]
    }
    async fn missing(&self) -> Result<Arc<dyn KeyProvider>, ProviderError> {
        let name = "projects/sealbox/locations/europe-west1/keyRings/ring/cryptoKeys/absent";
        GcpKms::connect(config(&self.emu, &self.sa, name))
            .await
            .map(|p| Arc::new(p) as Arc<dyn KeyProvider>)
    }
    async fn rotate(&self) {
        self.emu.rotate(&self.a_name);
    }
    fn versioned(&self) -> bool {
        true
    }
}

sealbox_testkit::conformance_tests!(harness);

#[tokio::test]
async fn the_service_account_flow_runs_for_real_and_every_kms_call_is_authorised() {
    let h = harness().await;
    // An untrusted service account cannot get a token.
    let stranger = ServiceAccount::generate(&h.emu.token_uri());
    let err = GcpKms::connect(config(&h.emu, &stranger, &h.a_name))
        .await
        .expect_err("untrusted");
    assert_eq!(err.kind(), ProviderErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("access token"), "{err}");
    // The trusted one made real KMS calls with its token.
    let keyring = Keyring::builder(h.a.clone()).build().expect("keyring");
    let env = keyring.seal(&ctx("a"), b"x").await.expect("seal");
    assert_eq!(
        inspect(&env).expect("header").kek().key_version(),
        Some("1")
    );
    assert!(
        h.emu
            .requests()
            .iter()
            .any(|r| r.ends_with("cryptoKeyVersions/1:encrypt")),
        "{:?}",
        h.emu.requests()
    );
}

#[tokio::test]
async fn a_disabled_version_refuses_and_says_so() {
    let h = harness().await;
    let keyring = Keyring::builder(h.a.clone()).build().expect("keyring");
    let old = keyring.seal(&ctx("a"), b"old").await.expect("seal");
    h.emu.rotate(&h.a_name);
    h.emu.disable(&h.a_name, 1);
    let reader = Keyring::builder(h.a.clone()).build().expect("keyring");
    match reader.open(&ctx("a"), &old).await {
        Err(Error::Provider(p)) => {
            assert_eq!(p.kind(), ProviderErrorKind::KeyDisabled, "{p}");
            assert!(p.to_string().contains("DISABLED"), "{p}");
        }
        other => panic!("{other:?}"),
    }
    // New data goes to version 2, which works.
    let new = reader.seal(&ctx("a"), b"new").await.expect("seal");
    assert_eq!(
        inspect(&new).expect("header").kek().key_version(),
        Some("2")
    );
    assert_eq!(reader.open(&ctx("a"), &new).await.expect("open"), b"new");
}

#[tokio::test]
async fn the_key_version_is_bound_so_an_altered_header_does_not_unwrap() {
    let h = harness().await;
    h.emu.rotate(&h.a_name);
    let g = h.a.generate_data_key(&ctx("a")).await.expect("generate");
    assert_eq!(g.wrapped.kek().key_version(), Some("2"));
    let relabelled = WrappedKey::new(
        g.wrapped.kek().clone().with_version("1").expect("v"),
        g.wrapped.ciphertext().to_vec(),
    )
    .expect("wrapped");
    let err =
        h.a.unwrap(&relabelled, &ctx("a"))
            .await
            .expect_err("version is bound");
    assert_eq!(err.kind(), ProviderErrorKind::InvalidWrappedKey, "{err}");
}

const KEY: &str = "projects/p/locations/l/keyRings/r/cryptoKeys/k";

async fn against_canned(body: &'static str) -> ProviderError {
    let (emu, sa) = GcpKmsEmulator::start_with_trusted_account().await;
    let canned = FaultyHttp::always(200, "application/json", body).await;
    let kms = GcpKms::connect(config(&emu, &sa, KEY).endpoint(&canned.endpoint))
        .await
        .expect("connect");
    kms.generate_data_key(&ctx("a"))
        .await
        .expect_err("corrupted response")
}

/// An answer (to the key lookup at connect and to `:encrypt` alike) whose ciphertext CRC32C
/// (`1`) is wrong, saying the request's plaintext CRC32C was verified, or not.
fn wrong_crc_answer(verified_plaintext: bool) -> &'static str {
    let body = format!(
        r#"{{"name":"{KEY}/cryptoKeyVersions/1","purpose":"ENCRYPT_DECRYPT",
            "primary":{{"name":"{KEY}/cryptoKeyVersions/1"}},
            "ciphertext":"c2VhbGJveA==","ciphertextCrc32c":"1",
            "verifiedPlaintextCrc32c":{verified_plaintext},"verifiedAdditionalAuthenticatedDataCrc32c":true}}"#
    );
    Box::leak(body.into_boxed_str())
}

#[tokio::test]
async fn a_corrupted_ciphertext_crc32c_fails_loudly() {
    let err = against_canned(wrong_crc_answer(true)).await;
    assert_eq!(err.kind(), ProviderErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("CRC32C mismatch"), "{err}");
}

#[tokio::test]
async fn an_unverified_request_crc32c_fails_loudly() {
    let err = against_canned(wrong_crc_answer(false)).await;
    assert!(err.to_string().contains("did not verify"), "{err}");
}

#[tokio::test]
async fn unavailable_is_retried_a_bounded_number_of_times() {
    let (emu, sa) = GcpKmsEmulator::start_with_trusted_account().await;
    let down = FaultyHttp::always(
        503,
        "application/json",
        r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#,
    )
    .await;
    let err = GcpKms::connect(
        config(&emu, &sa, KEY)
            .endpoint(&down.endpoint)
            .max_attempts(3),
    )
    .await
    .expect_err("unavailable");
    assert_eq!(err.kind(), ProviderErrorKind::Unavailable, "{err}");
    assert!(
        err.is_retryable() && err.to_string().contains("after 3 attempts"),
        "{err}"
    );
    assert_eq!(down.requests(), 3);
}

#[tokio::test]
async fn a_malformed_key_name_is_refused_before_any_call() {
    let emu = GcpKmsEmulator::start().await;
    let sa = ServiceAccount::generate(&emu.token_uri());
    let err = GcpKms::connect(config(&emu, &sa, "projects/p/keyRings/r"))
        .await
        .expect_err("bad name");
    assert_eq!(err.kind(), ProviderErrorKind::Misconfigured, "{err}");
    assert!(emu.requests().is_empty());
}

/// Finding 1: a plain-HTTP endpoint is refused unless its host is loopback or the operator
/// opts in — before credentials are even looked for, since the access token would go there.
/// `0.0.0.0` is not loopback by the rule (127.0.0.0/8, ::1, localhost), yet Linux delivers
/// connections to it to the local host, so the emulator is reachable through it: the refusal
/// is the check, not a network failure, and the opt-in really works.
#[tokio::test]
async fn a_plain_http_endpoint_off_loopback_is_refused_unless_opted_in() {
    let h = harness().await;
    let remote = h.emu.endpoint.replace("127.0.0.1", "0.0.0.0");
    let before = h.emu.requests().len();
    for credentials in [
        GcpCredentials::Default,
        GcpCredentials::ServiceAccountJson(h.sa.json.clone().into()),
    ] {
        let err = GcpKms::connect(
            GcpKmsConfig::new(&h.a_name)
                .endpoint(&remote)
                .credentials(credentials),
        )
        .await
        .expect_err("non-loopback http");
        let wording = [
            "refusing plain-HTTP Cloud KMS endpoint",
            "allow_http(true)",
            "[gcp] allow_http = true",
        ];
        assert_plain_http_refused(&err, &remote, &wording);
    }
    assert_eq!(h.emu.requests().len(), before, "nothing was sent");

    // Loopback http (the harness's endpoint) needs no opt-in and logs nothing; the opt-in is
    // accepted, works, and warns loudly.
    assert_plain_http_opt_in_works(
        GcpKms::connect(config(&h.emu, &h.sa, &h.a_name)),
        GcpKms::connect(
            config(&h.emu, &h.sa, &h.a_name)
                .endpoint(&remote)
                .allow_http(true),
        ),
        h.a.clone(),
        &remote,
    )
    .await;
}

/// Answers are read into bounded zeroizing memory: a body over 1 MiB is a `Protocol` error,
/// not an allocation without limit.
#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let (emu, sa) = GcpKmsEmulator::start_with_trusted_account().await;
    let huge: &'static str = Box::leak(format!("{{\"x\":\"{}\"}}", "a".repeat(2 << 20)).into());
    let canned = FaultyHttp::always(200, "application/json", huge).await;
    let err = GcpKms::connect(config(&emu, &sa, KEY).endpoint(&canned.endpoint))
        .await
        .expect_err("oversized");
    assert_eq!(err.kind(), ProviderErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("more than 1048576 bytes"), "{err}");
}
