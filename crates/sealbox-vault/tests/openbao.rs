//! The Transit provider against a real OpenBao dev server started by each test: the shared
//! conformance suite (derived and associated-data keys) and Vault-specific failures.

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
    fn provider(&self) -> Arc<dyn KeyProvider> {
        self.a.clone()
    }
    fn other(&self) -> Arc<dyn KeyProvider> {
        self.b.clone()
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

fn ctx(ns: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("namespace", ns)
        .expect("valid")
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
    let g = limited
        .generate_data_key(&ctx("a"))
        .await
        .expect("may generate");
    let err = limited
        .unwrap(&g.wrapped, &ctx("a"))
        .await
        .expect_err("may not decrypt");
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
    assert!(
        matches!(
            err.kind(),
            ProviderErrorKind::Unavailable | ProviderErrorKind::Timeout
        ),
        "{err}"
    );
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("cannot reach Vault"), "{err}");
}

#[tokio::test]
async fn approle_login_works_and_a_bad_secret_id_is_permission_denied() {
    let h = derived_harness().await;
    h.bao.cli(&["auth", "enable", "approle"]);
    h.bao.token_with_policy(
        "sealbox",
        r#"path "transit/keys/kek-a" { capabilities = ["read"] }
           path "transit/datakey/plaintext/kek-a" { capabilities = ["update"] }
           path "transit/decrypt/kek-a" { capabilities = ["update"] }"#,
    );
    h.bao.cli(&[
        "write",
        "auth/approle/role/sealbox",
        "token_policies=sealbox",
    ]);
    let role_id = h
        .bao
        .cli_json(&["read", "auth/approle/role/sealbox/role-id"])["data"]["role_id"]
        .as_str()
        .expect("role_id")
        .to_owned();
    let secret_id = h
        .bao
        .cli_json(&["write", "-f", "auth/approle/role/sealbox/secret-id"])["data"]["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_owned();
    let approle = |secret: String| VaultAuth::AppRole {
        mount: "approle".into(),
        role_id: role_id.clone(),
        secret_id: SecretString::from(secret),
    };
    let p = Arc::new(
        VaultTransit::connect(VaultTransitConfig::new(
            &h.bao.addr,
            "kek-a",
            approle(secret_id),
        ))
        .await
        .expect("AppRole login"),
    );
    let keyring = Keyring::builder(p).build().expect("keyring");
    let env = keyring.seal(&ctx("a"), b"approle").await.expect("seal");
    let reader = Keyring::builder(h.a.clone()).build().expect("keyring");
    assert_eq!(
        reader.open(&ctx("a"), &env).await.expect("open"),
        b"approle"
    );

    let err = VaultTransit::connect(VaultTransitConfig::new(
        &h.bao.addr,
        "kek-a",
        approle("wrong".into()),
    ))
    .await
    .expect_err("bad secret id");
    assert!(
        matches!(
            err.kind(),
            ProviderErrorKind::PermissionDenied | ProviderErrorKind::Protocol
        ),
        "{err}"
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
