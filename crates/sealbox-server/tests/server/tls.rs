//! The server as `sealbox serve` runs it: HTTPS with rustls, mTLS for workers, and the
//! exposure rules; graceful shutdown.

use std::path::Path;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_pem: String,
    stranger_pem: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaf = |names: Vec<String>, issuer: &Issuer<'_, &KeyPair>| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, issuer)
            .expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], &issuer);
    let (client_cert, client_key) = leaf(vec!["worker.internal".into()], &issuer);
    // A client certificate from another CA.
    let other_key = KeyPair::generate().expect("key");
    let mut other_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other_issuer = Issuer::new(other_params, &other_key);
    let (stranger_cert, stranger_key) = leaf(vec!["stranger".into()], &other_issuer);
    Pki {
        ca: ca_cert.pem(),
        server_cert,
        server_key,
        client_pem: format!("{client_cert}{client_key}"),
        stranger_pem: format!("{stranger_cert}{stranger_key}"),
    }
}

fn write_policy(dir: &Path, server: &str) -> std::path::PathBuf {
    let key = dir.join("kek");
    sealbox_testkit::write_secret_file(&key, "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=");
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        format!(
            "version = 1\n[default]\nactive = \"local:///tls?file={}\"\n[server]\naudit_log = \"{}\"\n{server}\n",
            key.display(),
            dir.join("audit.jsonl").display()
        ),
    )
    .expect("policy");
    path
}

fn client(ca: &str, identity: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).expect("ca")])
        .timeout(Duration::from_secs(10));
    if let Some(pem) = identity {
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

#[tokio::test]
async fn https_with_client_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pki();
    for (name, text) in [
        ("ca.pem", &p.ca),
        ("server.pem", &p.server_cert),
        ("server.key", &p.server_key),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let tls = format!(
        "anonymous = [\"decode\"]\n[server.tls]\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\nclient_ca = \"{d}/ca.pem\"\n",
        d = dir.path().display()
    );
    let policy = write_policy(dir.path(), &tls);
    let server = sealbox_server::start(policy, Some("127.0.0.1:0".parse().expect("addr")))
        .await
        .expect("start");
    assert_eq!(server.scheme, "https");
    let url = format!("https://127.0.0.1:{}/decode", server.addr.port());
    let body = r#"{"payloads":[]}"#;

    let ok = client(&p.ca, Some(&p.client_pem))
        .post(&url)
        .header("x-namespace", "default")
        .body(body)
        .send()
        .await
        .expect("mTLS request");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.expect("body"), r#"{"payloads":[]}"#);
    // No client certificate, or one from another CA: the handshake fails.
    assert!(
        client(&p.ca, None)
            .post(&url)
            .body(body)
            .send()
            .await
            .is_err()
    );
    assert!(
        client(&p.ca, Some(&p.stranger_pem))
            .post(&url)
            .body(body)
            .send()
            .await
            .is_err()
    );
    // Plain HTTP to the TLS port gets nothing useful.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/decode", server.addr.port()))
        .body(body)
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    server
        .shutdown(Duration::from_secs(5))
        .await
        .expect("graceful shutdown");
}

#[tokio::test]
async fn refuses_public_plaintext_and_anonymous_listeners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), "anonymous = [\"encode\", \"decode\"]");
    let err = sealbox_server::start(policy, Some("0.0.0.0:0".parse().expect("addr")))
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("refusing") && text.contains("TLS"), "{text}");
}
