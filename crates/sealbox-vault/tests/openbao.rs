//! The Transit provider against a real OpenBao dev server started by each test: the shared
//! conformance suite (derived and associated-data keys) and Vault-specific failures.

use sealbox_testkit::fixtures::{assert_kind_in, ctx, unwrap_refused};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sealbox_core::{
    EncryptionContext, KeyProvider, ProviderError, ProviderErrorKind, WrappedKey, inspect,
};
use sealbox_keyring::Keyring;
use sealbox_testkit::conformance::Harness;
use sealbox_testkit::servers::OpenBao;
use sealbox_vault::{ContextBinding, VaultAuth, VaultTransit, VaultTransitConfig};
use secrecy::SecretString;

struct Transit {
    bao: OpenBao,
    a: Arc<VaultTransit>,
    b: Arc<VaultTransit>,
}

fn config(bao: &OpenBao, key: &str) -> VaultTransitConfig {
    VaultTransitConfig::new(
        &bao.addr,
        key,
        VaultAuth::Token(SecretString::from(bao.root_token.clone())),
    )
}

async fn connect(bao: &OpenBao, key: &str) -> Result<VaultTransit, ProviderError> {
    VaultTransit::connect(config(bao, key)).await
}

async fn harness(derived: bool) -> Transit {
    let bao = OpenBao::start();
    bao.enable_transit("transit");
    bao.create_key("transit", "kek-a", derived);
    bao.create_key("transit", "kek-b", derived);
    let a = Arc::new(connect(&bao, "kek-a").await.expect("connect a"));
    let b = Arc::new(connect(&bao, "kek-b").await.expect("connect b"));
    let want = if derived {
        ContextBinding::Derived
    } else {
        ContextBinding::AssociatedData
    };
    assert_eq!(a.binding(), want);
    Transit { bao, a, b }
}

async fn derived_harness() -> Transit {
    harness(true).await
}

async fn associated_data_harness() -> Transit {
    harness(false).await
}

#[async_trait]
impl Harness for Transit {
    fn keks(&self) -> [Arc<dyn KeyProvider>; 2] {
        [self.a.clone(), self.b.clone()]
    }
    async fn missing(&self) -> Result<Arc<dyn KeyProvider>, ProviderError> {
        connect(&self.bao, "no-such-key")
            .await
            .map(|p| Arc::new(p) as Arc<dyn KeyProvider>)
    }
    async fn rotate(&self) {
        self.bao.rotate("transit", "kek-a");
    }
    fn versioned(&self) -> bool {
        true
    }
}

mod derived_key {
    sealbox_testkit::conformance_tests!(super::derived_harness);
}

mod associated_data_key {
    sealbox_testkit::conformance_tests!(super::associated_data_harness);
}

#[tokio::test]
async fn transit_version_is_recorded_and_cross_checked() {
    let h = derived_harness().await;
    let keyring = Keyring::builder(h.a.clone()).build().expect("keyring");
    let env = keyring.seal(&ctx("a"), b"v").await.expect("seal");
    let header = inspect(&env).expect("header");
    assert_eq!(header.kek().key_version(), Some("1"));
    assert!(header.wrapped_key.ciphertext().starts_with(b"vault:v1:"));
    // An envelope whose header claims another version than its ciphertext is refused.
    let forged_ref = header.kek().clone().with_version("2").expect("version");
    let forged =
        WrappedKey::new(forged_ref, header.wrapped_key.ciphertext().to_vec()).expect("wrapped");
    let err =
        h.a.unwrap(&forged, &ctx("a"))
            .await
            .expect_err("mismatched version");
    assert_eq!(err.kind(), ProviderErrorKind::InvalidWrappedKey, "{err}");
}

#[tokio::test]
async fn derived_keys_rewrap_natively_and_associated_data_keys_say_they_do_not() {
    let d = derived_harness().await;
    assert!(d.a.describe().await.expect("describe").native_rewrap);
    let a = associated_data_harness().await;
    assert!(!a.a.describe().await.expect("describe").native_rewrap);
}

#[tokio::test]
async fn permission_denied_is_typed_and_names_the_key() {
    let h = derived_harness().await;
    let token = h.bao.token_with_policy(
        "encrypt-only",
        r#"path "transit/keys/kek-a" { capabilities = ["read"] }
           path "transit/datakey/plaintext/kek-a" { capabilities = ["update"] }"#,
    );
    let limited = VaultTransit::connect(VaultTransitConfig::new(
        &h.bao.addr,
        "kek-a",
        VaultAuth::Token(token.into()),
    ))
    .await
    .expect("connect with a limited token");
    let (_, err) = unwrap_refused(&limited, &ctx("a"), &ctx("a"), "may not decrypt").await;
    assert_eq!(err.kind(), ProviderErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("transit/keys/kek-a"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_version_below_min_decryption_version_is_key_disabled() {
    let h = derived_harness().await;
    let keyring = Keyring::builder(h.a.clone()).build().expect("keyring");
    let old = keyring.seal(&ctx("a"), b"old").await.expect("seal");
    h.bao.rotate("transit", "kek-a");
    h.bao.cli(&[
        "write",
        "transit/keys/kek-a/config",
        "min_decryption_version=2",
    ]);
    let reader = Keyring::builder(h.a.clone()).build().expect("keyring");
    let err = reader
        .open(&ctx("a"), &old)
        .await
        .expect_err("v1 is retired");
    match err {
        sealbox_core::Error::Provider(p) => {
            assert_eq!(p.kind(), ProviderErrorKind::KeyDisabled, "{p}");
            assert!(p.to_string().contains("min_decryption_version"), "{p}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_sealed_vault_is_reported_as_such() {
    let h = derived_harness().await;
    let g = h.a.generate_data_key(&ctx("a")).await.expect("generate");
    h.bao.cli(&["operator", "seal"]);
    let err = h.a.unwrap(&g.wrapped, &ctx("a")).await.expect_err("sealed");
    assert_eq!(err.kind(), ProviderErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("sealed"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_with_a_clear_error() {
    let port = sealbox_testkit::servers::free_port();
    let config = VaultTransitConfig::new(
        format!("http://127.0.0.1:{port}"),
        "kek",
        VaultAuth::Token(SecretString::from("t".to_owned())),
    )
    .timeout(Duration::from_secs(2));
    let err = VaultTransit::connect(config)
        .await
        .expect_err("nothing listens there");
    assert_kind_in(
        &err,
        &[ProviderErrorKind::Unavailable, ProviderErrorKind::Timeout],
    );
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("cannot reach Vault"), "{err}");
}

#[tokio::test]
async fn approle_login_works_and_a_bad_secret_id_is_permission_denied() {
    let h = derived_harness().await;
    let auth = approle(&h.bao, &[]);
    let VaultAuth::AppRole { role_id, .. } = &auth else {
        panic!("an AppRole login")
    };
    let wrong_secret = VaultAuth::AppRole {
        mount: "approle".into(),
        role_id: role_id.clone(),
        secret_id: SecretString::from("wrong".to_owned()),
    };
    let p = Arc::new(connect_as(&h.bao, auth).await.expect("AppRole login"));
    let keyring = Keyring::builder(p).build().expect("keyring");
    let env = keyring.seal(&ctx("a"), b"approle").await.expect("seal");
    let reader = Keyring::builder(h.a.clone()).build().expect("keyring");
    assert_eq!(
        reader.open(&ctx("a"), &env).await.expect("open"),
        b"approle"
    );

    let err = connect_as(&h.bao, wrong_secret)
        .await
        .expect_err("bad secret id");
    assert_kind_in(
        &err,
        &[
            ProviderErrorKind::PermissionDenied,
            ProviderErrorKind::Protocol,
        ],
    );
    assert!(err.to_string().contains("AppRole login"), "{err}");
}

#[tokio::test]
async fn tls_with_a_custom_ca() {
    let bao = OpenBao::start_tls();
    bao.enable_transit("transit");
    bao.create_key("transit", "kek", true);
    let ca = bao.ca_cert.clone().expect("TLS server has a CA");
    assert!(bao.addr.starts_with("https://"));

    let p = Arc::new(
        VaultTransit::connect(config(&bao, "kek").ca_cert(&ca))
            .await
            .expect("connect with the CA"),
    );
    let keyring = Keyring::builder(p).build().expect("keyring");
    let env = keyring.seal(&ctx("a"), b"over TLS").await.expect("seal");
    assert_eq!(
        keyring.open(&ctx("a"), &env).await.expect("open"),
        b"over TLS"
    );

    // Without the CA the server's certificate is not trusted.
    let mut untrusted = config(&bao, "kek");
    untrusted.ca_cert = None;
    match VaultTransit::connect(untrusted).await {
        Ok(_) => panic!("connected to a server whose certificate is not trusted"),
        Err(err) => {
            assert_eq!(err.kind(), ProviderErrorKind::Unavailable, "{err}");
            assert!(err.to_string().contains("cannot reach Vault"), "{err}");
        }
    }
}

#[tokio::test]
async fn namespaces_are_sent_and_recorded_in_the_key_id() {
    let bao = OpenBao::start();
    bao.cli(&["namespace", "create", "tenant-ns"]);
    bao.cli_in("tenant-ns", &["secrets", "enable", "-path=kms", "transit"]);
    bao.cli_in(
        "tenant-ns",
        &["write", "-f", "kms/keys/kek", "derived=true"],
    );

    let p = Arc::new(
        VaultTransit::connect(config(&bao, "kek").namespace("tenant-ns").mount("kms"))
            .await
            .expect("connect in the namespace"),
    );
    assert_eq!(p.key_id(), "tenant-ns/kms/keys/kek");
    let keyring = Keyring::builder(p).build().expect("keyring");
    let env = keyring.seal(&ctx("a"), b"namespaced").await.expect("seal");
    assert_eq!(
        inspect(&env).expect("header").kek().key_id(),
        "tenant-ns/kms/keys/kek"
    );
    assert_eq!(
        keyring.open(&ctx("a"), &env).await.expect("open"),
        b"namespaced"
    );

    // The same mount and key do not exist in the root namespace.
    let err = VaultTransit::connect(config(&bao, "kek").mount("kms"))
        .await
        .expect_err("root namespace");
    assert_eq!(err.kind(), ProviderErrorKind::NotFound, "{err}");
}

/// `open_many` unwraps all distinct keys with one `batch_input` request — counted by the
/// server's own audit log — and a bad item fails alone.
#[tokio::test]
async fn open_many_uses_one_batch_request_and_isolates_failures() {
    for derived in [true, false] {
        let h = harness(derived).await;
        let writer = Keyring::builder(h.a.clone())
            .lease_limits(sealbox_keyring::LeaseLimits::one_payload_per_key())
            .build()
            .expect("keyring");
        let c = ctx("batch");
        let mut envs = Vec::new();
        for i in 0..10u8 {
            envs.push(writer.seal(&c, &[i; 32]).await.expect("seal"));
        }
        // An eleventh envelope whose wrapped key was sealed under another context.
        let foreign = writer.seal(&ctx("other"), b"foreign").await.expect("seal");
        let parsed = sealbox_core::parse(&foreign).expect("parse");
        let mut header = parsed.header.clone();
        header.context = c.clone();
        let mut moved = Vec::new();
        header.encode_into(&mut moved);
        moved.extend_from_slice(parsed.body);

        let before = h.bao.audited_requests("transit/decrypt/kek-a");
        let reader = Keyring::builder(h.a.clone()).build().expect("keyring");
        let mut items: Vec<(&EncryptionContext, &[u8])> =
            envs.iter().map(|e| (&c, e.as_slice())).collect();
        items.push((&c, moved.as_slice()));
        let results = reader.open_many(&items).await;
        for (i, r) in results.iter().take(10).enumerate() {
            assert_eq!(
                r.as_ref().expect("open"),
                &vec![i as u8; 32],
                "derived={derived}"
            );
        }
        match &results[10] {
            Err(sealbox_core::Error::Provider(p)) => {
                assert_eq!(p.kind(), ProviderErrorKind::InvalidWrappedKey, "{p}")
            }
            other => panic!("derived={derived}: {other:?}"),
        }
        assert_eq!(
            h.bao.audited_requests("transit/decrypt/kek-a") - before,
            1,
            "derived={derived}"
        );
        let stats = reader.stats();
        assert_eq!(
            (stats.batch_unwrap_calls, stats.batch_unwrapped_keys),
            (1, 11)
        );
        // Everything that unwrapped is cached now.
        let again = reader.open_many(&items[..10]).await;
        assert!(again.iter().all(Result::is_ok));
        assert_eq!(h.bao.audited_requests("transit/decrypt/kek-a") - before, 1);
    }
}

#[tokio::test]
async fn keys_that_cannot_bind_the_context_and_malformed_settings_are_refused() {
    let bao = OpenBao::start();
    bao.enable_transit("transit");
    bao.cli(&["write", "-f", "transit/keys/rsa", "type=rsa-2048"]);
    let err = connect(&bao, "rsa")
        .await
        .expect_err("an RSA key does not bind associated data");
    assert_eq!(err.kind(), ProviderErrorKind::Misconfigured, "{err}");
    assert!(err.to_string().contains("AEAD"), "{err}");

    let token = || VaultAuth::Token(SecretString::from(bao.root_token.clone()));
    for (config, want) in [
        (
            VaultTransitConfig::new("http://bad host:8200", "k", token()),
            "must be an http(s):// URL",
        ),
        (
            VaultTransitConfig::new(&bao.addr, "k", token()).namespace("t\u{e9}am"),
            "namespace may only hold",
        ),
        (
            VaultTransitConfig::new(
                &bao.addr,
                "k",
                VaultAuth::Token(SecretString::from("tok\r\n".to_owned())),
            ),
            "whitespace or non-ASCII",
        ),
    ] {
        let err = VaultTransit::connect(config).await.expect_err(want);
        assert_eq!(err.kind(), ProviderErrorKind::Misconfigured, "{err}");
        assert!(err.to_string().contains(want), "{err}");
    }
}

// ---- Token renewal and re-login ----------------------------------------------------------

const SEALBOX_POLICY: &str = r#"path "transit/keys/kek-a" { capabilities = ["read"] }
   path "transit/datakey/plaintext/kek-a" { capabilities = ["update"] }
   path "transit/decrypt/kek-a" { capabilities = ["update"] }"#;

/// An AppRole `sealbox` with `role_options` (e.g. `token_ttl=3s`), whose tokens carry the
/// `sealbox` policy; returns its credentials.
/// A provider for `kek-a` that authenticates with `auth`.
async fn connect_as(bao: &OpenBao, auth: VaultAuth) -> Result<VaultTransit, ProviderError> {
    VaultTransit::connect(VaultTransitConfig::new(&bao.addr, "kek-a", auth)).await
}

/// A provider for `kek-a` logged in with AppRole (see [`approle`]).
async fn approle_provider(bao: &OpenBao, role_options: &[&str]) -> VaultTransit {
    let auth = approle(bao, role_options);
    connect_as(bao, auth).await.expect("AppRole login")
}

fn approle(bao: &OpenBao, role_options: &[&str]) -> VaultAuth {
    bao.cli(&["auth", "enable", "approle"]);
    bao.token_with_policy("sealbox", SEALBOX_POLICY);
    let mut args = vec![
        "write",
        "auth/approle/role/sealbox",
        "token_policies=sealbox",
    ];
    args.extend_from_slice(role_options);
    bao.cli(&args);
    let role_id = bao.cli_json(&["read", "auth/approle/role/sealbox/role-id"])["data"]["role_id"]
        .as_str()
        .expect("role_id")
        .to_owned();
    let secret_id =
        bao.cli_json(&["write", "-f", "auth/approle/role/sealbox/secret-id"])["data"]["secret_id"]
            .as_str()
            .expect("secret_id")
            .to_owned();
    VaultAuth::AppRole {
        mount: "approle".into(),
        role_id,
        secret_id: SecretString::from(secret_id),
    }
}

/// One Vault round trip each: a data key from `datakey`, and its unwrap with `decrypt`.
async fn round_trip(p: &VaultTransit, what: &str) {
    let g = p
        .generate_data_key(&ctx("a"))
        .await
        .unwrap_or_else(|e| panic!("{what}: generate: {e}"));
    let k = p
        .unwrap(&g.wrapped, &ctx("a"))
        .await
        .unwrap_or_else(|e| panic!("{what}: unwrap: {e}"));
    assert_eq!(k.expose_secret(), g.data_key.expose_secret());
}

/// Calls Vault every half second until `total` has passed since `start`.
async fn keep_calling(p: &VaultTransit, total: Duration) {
    let start = std::time::Instant::now();
    let mut n = 0;
    while start.elapsed() < total {
        round_trip(p, &format!("call {n}, {:?} after connect", start.elapsed())).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A renewable token with a 6 s TTL (max TTL 120 s) keeps working for more than three times its
/// TTL: the provider renews it in the background (without renewal, calls fail with 403 after
/// 6 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewable_token_is_renewed_before_it_expires() {
    let h = derived_harness().await;
    h.bao.token_with_policy("sealbox", SEALBOX_POLICY);
    let created = h.bao.cli_json(&[
        "token",
        "create",
        "-policy=sealbox",
        "-ttl=6s",
        "-explicit-max-ttl=120s",
    ]);
    assert_eq!(created["auth"]["renewable"], true, "{created}");
    let token = created["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let p = VaultTransit::connect(VaultTransitConfig::new(
        &h.bao.addr,
        "kek-a",
        VaultAuth::Token(SecretString::from(token.clone())),
    ))
    .await
    .expect("connect");

    keep_calling(&p, Duration::from_secs(19)).await;

    let stats = p.session_stats();
    assert!(stats.renewals >= 2, "{stats:?}");
    assert_eq!(stats.logins, 0, "a static token cannot log in: {stats:?}");
    assert!(h.bao.audited_requests("auth/token/renew-self") >= 2);
    // The server agrees the original token was renewed well past twice its TTL (the last
    // renewal may be a moment away on a loaded machine, so its remaining TTL is not checked).
    let lookup = h.bao.cli_json(&["token", "lookup", &token]);
    let renewed = lookup["data"]["last_renewal_time"].as_u64().unwrap_or(0);
    let created_at = lookup["data"]["creation_time"]
        .as_u64()
        .expect("creation_time");
    assert!(renewed >= created_at + 12, "{lookup}");
}

/// AppRole tokens whose max TTL (3 s) stops renewal: the provider logs in again, so calls keep
/// working for more than three times the max TTL (without re-login they fail after 3 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_tokens_past_their_max_ttl_are_replaced_by_logging_in_again() {
    let h = derived_harness().await;
    let p = approle_provider(&h.bao, &["token_ttl=3s", "token_max_ttl=3s"]).await;
    assert_eq!(p.session_stats().logins, 1);

    keep_calling(&p, Duration::from_secs(10)).await;

    // A call more than 3 s after connect and another more than 3 s later both succeeded, so
    // at least two tokens besides the first were issued.
    let stats = p.session_stats();
    assert!(stats.logins >= 3, "{stats:?}");
    assert!(h.bao.audited_requests("auth/approle/login") >= 3);
}

/// A token revoked behind the provider's back: the next calls get 403, the provider finds the
/// token invalid, logs in again once (concurrent calls share that login), and retries. A call
/// the policy denies is not "fixed" by logging in again: it stays `PermissionDenied`, with no
/// extra login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_approle_token_is_replaced_on_permission_denied() {
    let h = derived_harness().await;
    let p = Arc::new(approle_provider(&h.bao, &["token_ttl=1h"]).await);
    let g = p.generate_data_key(&ctx("a")).await.expect("generate");

    h.bao
        .cli(&["token", "revoke", "-mode=path", "auth/approle"]);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (p, w) = (p.clone(), g.wrapped.clone());
        tasks.push(tokio::spawn(async move { p.unwrap(&w, &ctx("a")).await }));
    }
    for t in tasks {
        let k = t.await.expect("task").expect("unwrap after re-login");
        assert_eq!(k.expose_secret(), g.data_key.expose_secret());
    }
    assert_eq!(p.session_stats().logins, 2, "{:?}", p.session_stats());
    assert_eq!(h.bao.audited_requests("auth/approle/login"), 2);

    // The policy has no rewrap: a genuine denial, reported as such, without a login.
    let err = p.rewrap(&g.wrapped, &ctx("a")).await.expect_err("denied");
    assert_eq!(err.kind(), ProviderErrorKind::PermissionDenied, "{err}");
    assert_eq!(p.session_stats().logins, 2);
}

/// Dropping the provider stops its maintenance task: no renewals or logins afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_provider_stops_token_maintenance() {
    let h = derived_harness().await;
    let p = approle_provider(&h.bao, &["token_ttl=2s", "token_max_ttl=2s"]).await;
    round_trip(&p, "before drop").await;
    drop(p);
    let count = || {
        h.bao.audited_requests("auth/approle/login")
            + h.bao.audited_requests("auth/token/renew-self")
    };
    // Requests already on the wire when the provider was dropped may still land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_drop = count();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        count(),
        after_drop,
        "token maintenance continued after drop"
    );
}

// ---- The associated-data self-test ------------------------------------------------------

/// Connecting to a non-derived key runs the self-test (one `encrypt`, two `decrypt`s, seen in
/// the server's audit log), which OpenBao passes; a derived key needs none. A token that may
/// encrypt but not decrypt cannot run it and still connects.
#[tokio::test]
async fn non_derived_keys_pass_the_associated_data_self_test() {
    let bao = OpenBao::start();
    bao.enable_transit("transit");
    bao.create_key("transit", "plain", false);
    bao.create_key("transit", "derived", true);
    let p = connect(&bao, "plain").await.expect("self-test passes");
    assert_eq!(p.binding(), ContextBinding::AssociatedData);
    assert_eq!(bao.audited_requests("transit/encrypt/plain"), 1);
    assert_eq!(bao.audited_requests("transit/decrypt/plain"), 2);
    connect(&bao, "derived").await.expect("derived");
    assert_eq!(bao.audited_requests("transit/encrypt/derived"), 0);
    assert_eq!(bao.audited_requests("transit/decrypt/derived"), 0);

    let writer = bao.token_with_policy(
        "writer",
        r#"path "transit/keys/plain" { capabilities = ["read"] }
           path "transit/encrypt/plain" { capabilities = ["update"] }"#,
    );
    let w = VaultTransit::connect(VaultTransitConfig::new(
        &bao.addr,
        "plain",
        VaultAuth::Token(writer.into()),
    ))
    .await
    .expect("a writer-only token connects (self-test skipped)");
    w.generate_data_key(&ctx("a")).await.expect("may seal");
}

// ---- TLS: the configured CA is pinned ---------------------------------------------------

/// A self-signed CA that signed nothing the server uses.
fn other_ca(dir: &std::path::Path) -> std::path::PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("CA");
    let path = dir.join("other-ca.pem");
    std::fs::write(&path, cert.pem()).expect("write CA");
    path
}

const PIN_CHILD: &str = "SEALBOX_TEST_PIN_CHILD";

/// With `ca_cert` set, only that CA is trusted. The server's CA is made a *system* root for a
/// child process (`SSL_CERT_FILE`, read by the platform verifier): there the server is
/// reachable without `ca_cert`, but with `ca_cert` naming another CA the connection is refused
/// — it would succeed if the configured CA were merely added to the system roots.
#[tokio::test]
async fn a_configured_ca_is_pinned_and_system_roots_are_not_used() {
    if let Ok(spec) = std::env::var(PIN_CHILD) {
        return pinning_child(&spec).await;
    }
    let bao = OpenBao::start_tls();
    bao.enable_transit("transit");
    bao.create_key("transit", "kek", true);
    let server_ca = bao.ca_cert.clone().expect("TLS server has a CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let other = other_ca(dir.path());

    // In this process: the right CA connects, another CA is refused, a file without a
    // certificate is a configuration error.
    connect_with_ca(&bao.addr, &bao.root_token, Some(&server_ca))
        .await
        .expect("the server's CA");
    let err = connect_with_ca(&bao.addr, &bao.root_token, Some(&other))
        .await
        .expect_err("another CA");
    assert_eq!(err.kind(), ProviderErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("cannot reach Vault"), "{err}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    let err = connect_with_ca(&bao.addr, &bao.root_token, Some(&junk))
        .await
        .expect_err("no certificate");
    assert_eq!(err.kind(), ProviderErrorKind::Misconfigured, "{err}");
    assert!(err.to_string().contains("junk.pem"), "{err}");

    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_configured_ca_is_pinned_and_system_roots_are_not_used",
            "--nocapture",
        ])
        .env(
            PIN_CHILD,
            format!("{}|{}|{}", bao.addr, bao.root_token, other.display()),
        )
        .env("SSL_CERT_FILE", &server_ca)
        .env_remove("SSL_CERT_DIR")
        .env_remove("VAULT_CACERT")
        .env_remove("BAO_CACERT")
        .output()
        .expect("run the child test");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{log}");
    assert!(
        log.contains("pinning child: ok"),
        "the child did not run:\n{log}"
    );
}

async fn connect_with_ca(
    addr: &str,
    token: &str,
    ca: Option<&std::path::Path>,
) -> Result<VaultTransit, ProviderError> {
    let mut config = VaultTransitConfig::new(
        addr,
        "kek",
        VaultAuth::Token(SecretString::from(token.to_owned())),
    )
    .timeout(Duration::from_secs(5));
    if let Some(ca) = ca {
        config = config.ca_cert(ca);
    }
    VaultTransit::connect(config).await
}

async fn pinning_child(spec: &str) {
    let mut parts = spec.splitn(3, '|');
    let (addr, token, other) = (
        parts.next().expect("addr"),
        parts.next().expect("token"),
        std::path::PathBuf::from(parts.next().expect("CA")),
    );
    connect_with_ca(addr, token, None)
        .await
        .expect("SSL_CERT_FILE makes the server's CA a system root");
    match connect_with_ca(addr, token, Some(&other)).await {
        Ok(_) => panic!("the system roots were trusted although another CA was configured"),
        Err(err) => {
            assert_eq!(err.kind(), ProviderErrorKind::Unavailable, "{err}");
            assert!(err.to_string().contains("cannot reach Vault"), "{err}");
        }
    }
    eprintln!("pinning child: ok");
}

// ---- Addresses -------------------------------------------------------------------------

/// Out-of-range ports and malformed addresses are `Misconfigured` errors naming the address
/// (vaultrs would panic on them).
#[tokio::test]
async fn out_of_range_ports_and_malformed_addresses_are_refused_without_panicking() {
    for (address, want) in [
        ("http://127.0.0.1:99999", "a port is 1-65535"),
        ("http://127.0.0.1:0", "port 0"),
        ("https://1.2.3.999:8200", "does not parse"),
        ("https://[zz]:8200", "does not parse"),
        ("https://vault.example:8200/v1", "without a path"),
        ("vault.example:8200", "must be an http(s):// URL"),
    ] {
        let err = VaultTransit::connect(VaultTransitConfig::new(
            address,
            "k",
            VaultAuth::Token(SecretString::from("t".to_owned())),
        ))
        .await
        .expect_err(address);
        assert_eq!(err.kind(), ProviderErrorKind::Misconfigured, "{err}");
        assert!(err.to_string().contains(want), "{address}: {err}");
        assert!(
            err.to_string().contains(&format!("`{address}`")),
            "names the address: {err}"
        );
    }
}
