//! Policy files: validation with precise errors, rule matching, fail-closed default,
//! isolation, decrypt-only keys, reload, every shipped example, and OpenBao end to end.

use std::path::{Path, PathBuf};

use base64::Engine;
use std::sync::Arc;

use sealbox_core::{Error, inspect};
use sealbox_policy::{PolicyConfig, PolicyKeyrings, ReloadablePolicy};
use sealbox_testkit::servers::OpenBao;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../keyring-config")
}

/// Writes two local key files into `dir` and returns their paths.
fn local_keys(dir: &Path) -> (String, String) {
    use std::os::unix::fs::PermissionsExt;
    let mut paths = Vec::new();
    for (name, byte) in [("a.kek", 1u8), ("b.kek", 2u8)] {
        let path = dir.join(name);
        let key = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        std::fs::write(&path, key).expect("write key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        paths.push(path.display().to_string());
    }
    (paths[0].clone(), paths[1].clone())
}

/// A reloadable policy read from `dir/policy.toml`, whose active KEK is the local key `a` of
/// [`local_keys`]; with the file's path and the key files `(a, b)`.
async fn reloadable_on_key_a(dir: &Path) -> (Arc<ReloadablePolicy>, PathBuf, (String, String)) {
    let (a, b) = local_keys(dir);
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        format!("[default]\nactive = \"local:///a?file={a}\"\n"),
    )
    .expect("write");
    let policy = Arc::new(ReloadablePolicy::load(&path).await.expect("load"));
    (policy, path, (a, b))
}

fn errors_of(text: &str) -> Vec<String> {
    match PolicyConfig::from_toml(text, "policy.toml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn assert_error(text: &str, line: usize, field: &str, want: &str) {
    let errors = errors_of(text);
    let prefix = format!("policy.toml:{line}:");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&prefix) && e.contains(field) && e.contains(want)),
        "expected `{prefix} … {field} … {want}` in {errors:#?}"
    );
}

#[test]
fn every_shipped_example_validates() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).expect("keyring-config/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            PolicyConfig::from_file(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
            seen.push(
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "aws.toml",
            "dev.toml",
            "gcp.toml",
            "multi-tenant.toml",
            "vault.toml"
        ]
    );
}

#[test]
fn the_multi_tenant_example_resolves_as_documented() {
    let c = PolicyConfig::from_file(examples_dir().join("multi-tenant.toml")).expect("valid");
    assert_eq!(c.policy_for("acme").active.provider_id(), "aws-kms");
    assert_eq!(c.policy_for("acme").decrypt_only.len(), 1);
    assert_eq!(c.policy_for("payments-eu").name, "rule `payments-*`");
    assert_eq!(c.policy_for("payments-eu").lease.max_payloads, 1000);
    assert_eq!(c.policy_for("health-records").lease.max_payloads, 1);
    let dev = PolicyConfig::from_file(examples_dir().join("dev.toml")).expect("valid");
    assert_eq!(
        dev.policy_for("any").lease.renew_before,
        std::time::Duration::from_secs(30)
    );
    // Inherited from the default: the extra context field.
    assert_eq!(
        c.policy_for("health-records")
            .context
            .get("deployment")
            .map(String::as_str),
        Some("prod-eu")
    );
    // A namespace nobody configured is encrypted with the default — never passed through.
    let brand_new = c.policy_for("created-tomorrow");
    assert_eq!(brand_new.name, "default");
    assert_eq!(
        brand_new.active.to_string(),
        "vault://vault.internal:8200/transit/keys/tenants-default"
    );
    let ctx = brand_new.context_for("created-tomorrow").expect("context");
    assert_eq!(ctx.get("namespace"), Some("created-tomorrow"));
    assert_eq!(ctx.get("deployment"), Some("prod-eu"));
}

#[test]
fn first_matching_rule_wins_and_exact_names_match_exactly() {
    let c = PolicyConfig::from_toml(
        r#"
[local]
development_key = true
[default]
active = "local:///dev"
[[rule]]
namespace = "payments"
active = "local:///p?env=P"
[[rule]]
namespace = "pay*"
active = "local:///q?env=Q"
"#,
        "t",
    )
    .expect("valid");
    assert_eq!(c.policy_for("payments").name, "rule `payments`");
    assert_eq!(c.policy_for("payments-eu").name, "rule `pay*`");
    assert_eq!(c.policy_for("paymentsx").name, "rule `pay*`");
    assert_eq!(c.policy_for("billing").name, "default");
    assert_eq!(c.keks().len(), 3);
}

#[test]
fn the_development_key_needs_an_explicit_opt_in() {
    // A production binary given a policy naming `local:///dev` must not quietly generate a
    // key in its working directory.
    for text in [
        "[default]\nactive = \"local:///dev\"\n",
        "[default]\nactive = \"local:///p?env=P\"\ndecrypt_only = [\"local:///dev\"]\n",
        "[local]\ndevelopment_key = false\n[default]\nactive = \"local:///dev\"\n",
    ] {
        let errors = errors_of(text);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("local") && e.contains("development_key = true")),
            "{text}: {errors:#?}"
        );
    }
    PolicyConfig::from_toml(
        "[local]\ndevelopment_key = true\n[default]\nactive = \"local:///dev\"\n",
        "t",
    )
    .expect("opted in");
    PolicyConfig::from_toml("[default]\nactive = \"local:///k?env=K\"\n", "t")
        .expect("named local keys need no opt-in");
}

#[test]
fn require_encryption_defaults_on_and_rules_inherit_or_override_it() {
    let c = PolicyConfig::from_toml(
        r#"
[default]
active = "local:///d?env=D"
[[rule]]
namespace = "legacy-*"
active = "local:///l?env=L"
require_encryption = false
[[rule]]
namespace = "payments"
active = "local:///p?env=P"
"#,
        "t",
    )
    .expect("valid");
    assert!(c.policy_for("orders").require_encryption);
    assert!(c.policy_for("payments").require_encryption);
    assert!(!c.policy_for("legacy-billing").require_encryption);
    let off = PolicyConfig::from_toml(
        "[default]\nactive = \"local:///d?env=D\"\nrequire_encryption = false\n[[rule]]\nnamespace = \"x\"\nactive = \"local:///x?env=X\"\n",
        "t",
    )
    .expect("valid");
    assert!(!off.policy_for("x").require_encryption, "inherited");
}

/// `suite` picks what new envelopes are written with, per namespace, inherited by rules;
/// every namespace still reads both suites; an unknown suite is a configuration error.
#[tokio::test]
async fn suite_is_chosen_per_policy_and_both_suites_are_always_read() {
    use sealbox_core::Suite;
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, _) = local_keys(dir.path());
    // The exact rule comes first: after "fast-*" it could never match.
    let text = format!(
        "[default]\nactive = \"local:///a?file={a}\"\n\
         [[rule]]\nnamespace = \"fast-legacy\"\nactive = \"local:///a?file={a}\"\nsuite = 1\n\
         [[rule]]\nnamespace = \"fast-*\"\nactive = \"local:///a?file={a}\"\nsuite = 2\n"
    );
    let config = PolicyConfig::from_toml(&text, "t").expect("valid");
    assert_eq!(config.policy_for("orders").suite, Suite::DEFAULT);
    assert_eq!(config.policy_for("fast-lane").suite.id(), 2);
    assert_eq!(config.policy_for("fast-legacy").suite.id(), 1);
    let keyrings = PolicyKeyrings::build(config).await.expect("build");
    for (ns, want) in [("orders", 1), ("fast-lane", 2), ("fast-legacy", 1)] {
        let env = keyrings.seal(ns, b"payload").await.expect("seal");
        assert_eq!(inspect(&env).expect("header").suite.id(), want, "{ns}");
        assert_eq!(keyrings.open(ns, &env).await.expect("open"), b"payload");
    }
    // A namespace written with suite 1 reads suite 2 (and the reverse): a rollout can switch
    // writers one namespace at a time without stranding what is already stored.
    let inherited = PolicyConfig::from_toml(
        &format!("[default]\nactive = \"local:///a?file={a}\"\nsuite = 2\n[[rule]]\nnamespace = \"x\"\nactive = \"local:///a?file={a}\"\n"),
        "t",
    )
    .expect("valid");
    assert_eq!(
        inherited.policy_for("x").suite.id(),
        2,
        "inherited from [default]"
    );
    let writes_2 = PolicyKeyrings::build(inherited).await.expect("build");
    let v1 = keyrings.seal("x", b"one").await.expect("seal");
    let v2 = writes_2.seal("x", b"two").await.expect("seal");
    assert_eq!(writes_2.open("x", &v1).await.expect("suite 1 read"), b"one");
    assert_eq!(keyrings.open("x", &v2).await.expect("suite 2 read"), b"two");

    for bad in ["3", "0", "-1", "65537"] {
        assert_error(
            &format!("[default]\nactive = \"local:///d?env=D\"\nsuite = {bad}\n"),
            3,
            "default.suite",
            "choose 1 (AES-256-GCM/HKDF-SHA256/commit) or 2",
        );
    }
}

#[test]
fn validation_errors_name_the_line_field_and_problem() {
    assert_error(
        "version = 1\n[[rule]]\nnamespace = \"a\"\nactive = \"local:///dev\"\n",
        1,
        "default",
        "no [default] policy",
    );
    assert_error(
        "[default]\nactive = \"local:///dev\"\nactiv = \"x\"\n",
        3,
        "file",
        "unknown field `activ`",
    );
    assert_error(
        "[default]\nactive = \"kms://key\"\n",
        2,
        "default.active",
        "unknown KEK provider `kms`",
    );
    assert_error(
        "[default]\nactive = \"local:///dev\"\ndecrypt_only = [\"local:///dev\"]\n",
        3,
        "default.decrypt_only[0]",
        "either active or decrypt-only",
    );
    assert_error(
        "[default]\nactive = \"local:///dev\"\n[default.lease]\nmax_age = \"9d\"\n",
        3,
        "default.lease",
        "max_age",
    );
    assert_error(
        "[default]\nactive = \"local:///dev\"\n[default.lease]\nrenew_before = \"soon\"\n",
        4,
        "default.lease.renew_before",
        "soon",
    );
    assert_error(
        "[default]\nactive = \"local:///dev\"\n[default.lease]\nmax_bytes = \"lots\"\n",
        4,
        "default.lease.max_bytes",
        "not a size",
    );
    assert_error(
        "[default]\nactive = \"local:///dev\"\n[[rule]]\nnamespace = \"a\"\nactive = \"local:///dev\"\n[[rule]]\nnamespace = \"a\"\nactive = \"local:///dev\"\n",
        7,
        "rule[1].namespace",
        "duplicate rule for `a` (first defined at line 3)",
    );
    assert_error(
        "[default]\nactive = \"local:///dev\"\n[[rule]]\nnamespace = \"pay*\"\nactive = \"local:///dev\"\n[[rule]]\nnamespace = \"payments-eu-*\"\nactive = \"local:///dev\"\n",
        7,
        "rule[1].namespace",
        "can never match",
    );
    assert_error(
        "[default]\nactive = \"local:///dev\"\n[default.context]\nnamespace = \"x\"\n",
        4,
        "default.context.namespace",
        "set by Sealbox",
    );
    assert_error(
        "[vault]\nauth = \"token\"\ntoken = \"s.secret\"\n[default]\nactive = \"vault://h/transit/keys/k\"\n",
        3,
        "vault.token",
        "never written in the policy file",
    );
    assert_error(
        "[default]\nactive = \"vault://h/transit/keys/k\"\n",
        1,
        "vault",
        "no [vault] table",
    );
    // The forms a header displays name a key for matching, not for connecting.
    assert_error(
        "[local]\ndevelopment_key = true\n[default]\nactive = \"local:///dev\"\ndecrypt_only = [\"local:///old\"]\n",
        5,
        "default.decrypt_only[0]",
        "needs ?file=PATH or ?env=VAR",
    );
    assert_error(
        "[default]\nactive = \"vault:///transit/keys/k\"\n",
        2,
        "default.active",
        "the Vault host is missing",
    );
    // Tables the file does not know, and a namespace where there can be none.
    assert_error(
        "[default]\nactive = \"local:///dev\"\n[local]\ndevelopment_key = true\n[azure]\nvault = \"x\"\n",
        5,
        "azure",
        "unknown table or key `azure`",
    );
    assert_error(
        "[local]\ndevelopment_key = true\n[default]\nnamespace = \"x\"\nactive = \"local:///dev\"\n",
        4,
        "default.namespace",
        "belongs in a [[rule]]",
    );
    assert_error(
        "[default]\nactive = \"gcpkms://projects/p/keyRings/r/cryptoKeys/k\"\n",
        2,
        "default.active",
        "expected gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K",
    );
    assert_error(
        "[default]\nactive = \"local:///dev\"\n[[rule]]\nnamespace = \"x\"\n",
        3,
        "rule[0].active",
        "missing `active`",
    );
    assert_error("[default\n", 1, "file", "");
    // All problems are reported at once.
    let all = errors_of(
        "[default]\nactive = \"kms://a\"\n[[rule]]\nnamespace = \"[\"\nactive = \"local:///dev\"\n",
    );
    assert_eq!(all.len(), 2, "{all:#?}");
}

#[test]
fn a_later_rule_is_not_flagged_when_it_can_still_match() {
    // `?`-patterns and specific-then-general orders are fine.
    PolicyConfig::from_toml(
        "[local]\ndevelopment_key = true\n[default]\nactive = \"local:///dev\"\n[[rule]]\nnamespace = \"a?c\"\nactive = \"local:///dev\"\n[[rule]]\nnamespace = \"a*c\"\nactive = \"local:///dev\"\n[[rule]]\nnamespace = \"x-*\"\nactive = \"local:///dev\"\n[[rule]]\nnamespace = \"*\"\nactive = \"local:///dev\"\n",
        "t",
    )
    .expect("no false shadowing");
}

#[tokio::test]
async fn namespaces_sharing_a_kek_are_isolated_and_decrypt_only_keys_still_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = local_keys(dir.path());
    let old_policy = format!("[default]\nactive = \"local:///a?file={a}\"\n");
    let old = PolicyKeyrings::build(PolicyConfig::from_toml(&old_policy, "old").expect("valid"))
        .await
        .expect("build");
    let sealed_by_old = old.seal("tenant-a", b"old data").await.expect("seal");

    let new_policy = format!(
        "[default]\nactive = \"local:///b?file={b}\"\ndecrypt_only = [\"local:///a?file={a}\"]\n[[rule]]\nnamespace = \"tenant-b\"\nactive = \"local:///b?file={b}\"\n"
    );
    let new = PolicyKeyrings::build(PolicyConfig::from_toml(&new_policy, "new").expect("valid"))
        .await
        .expect("build");
    assert_eq!(
        new.open("tenant-a", &sealed_by_old)
            .await
            .expect("decrypt-only KEK opens"),
        b"old data"
    );
    let fresh = new.seal("tenant-a", b"new data").await.expect("seal");
    assert_eq!(inspect(&fresh).expect("header").kek().key_id(), "b");

    // tenant-a and tenant-b share KEK b, but neither opens the other's envelopes.
    let for_b = new.seal("tenant-b", b"b's data").await.expect("seal");
    assert!(matches!(
        new.open("tenant-a", &for_b).await,
        Err(Error::ContextMismatch(_))
    ));
    assert!(matches!(
        new.open("tenant-b", &fresh).await,
        Err(Error::ContextMismatch(_))
    ));
    assert_ne!(
        inspect(&fresh).expect("header").wrapped_key,
        inspect(&for_b).expect("header").wrapped_key,
        "a data key leased for one tenant is never used for another"
    );
    // A policy without KEK a refuses old data with a clear error.
    let b_only = PolicyKeyrings::build(
        PolicyConfig::from_toml(
            &format!("[default]\nactive = \"local:///b?file={b}\"\n"),
            "b",
        )
        .expect("valid"),
    )
    .await
    .expect("build");
    assert!(matches!(
        b_only.open("tenant-a", &sealed_by_old).await,
        Err(Error::UnknownKek { .. })
    ));
}

#[tokio::test]
async fn reload_swaps_atomically_and_a_broken_file_keeps_the_old_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (policy, path, (a, b)) = reloadable_on_key_a(dir.path()).await;

    let in_flight = policy.current();
    std::fs::write(&path, format!("[default]\nactive = \"local:///b?file={b}\"\ndecrypt_only = [\"local:///a?file={a}\"]\n"))
        .expect("write");
    policy.reload().await.expect("good reload");
    // A request that started before the reload finishes on the old policy ...
    let old_env = in_flight.seal("ns", b"x").await.expect("seal");
    assert_eq!(inspect(&old_env).expect("header").kek().key_id(), "a");
    // ... new requests use the new one, which still opens the old data.
    let now = policy.current();
    let new_env = now.seal("ns", b"y").await.expect("seal");
    assert_eq!(inspect(&new_env).expect("header").kek().key_id(), "b");
    assert_eq!(now.open("ns", &old_env).await.expect("open"), b"x");

    // A broken file is rejected and the policy in force does not change.
    std::fs::write(&path, "[default]\nactive = \"kms://typo\"\n").expect("write");
    let err = policy.reload().await.expect_err("broken file");
    assert!(err.to_string().contains("policy.toml:2:"), "{err}");
    let still = policy.current();
    assert_eq!(
        inspect(&still.seal("ns", b"z").await.expect("seal"))
            .expect("header")
            .kek()
            .key_id(),
        "b"
    );
    // So is a valid file naming a KEK that cannot be loaded.
    std::fs::write(
        &path,
        "[default]\nactive = \"local:///c?file=/nonexistent/c.kek\"\n",
    )
    .expect("write");
    assert!(policy.reload().await.is_err());
    assert_eq!(
        inspect(&policy.current().seal("ns", b"z").await.expect("seal"))
            .expect("header")
            .kek()
            .key_id(),
        "b"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (policy, path, (_, b)) = reloadable_on_key_a(dir.path()).await;
    let task = policy.reload_on_sighup().expect("signal handler");
    std::fs::write(
        &path,
        format!("[default]\nactive = \"local:///b?file={b}\"\n"),
    )
    .expect("write");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut reloaded = false;
    for _ in 0..2000 {
        if policy
            .current()
            .config()
            .default
            .active
            .as_str()
            .starts_with("local:///b?")
        {
            reloaded = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    task.abort();
    assert!(reloaded, "SIGHUP did not reload the policy");
}

#[tokio::test]
async fn a_vault_policy_works_end_to_end_against_openbao() {
    let bao = OpenBao::start_with_transit_keys(&["default-kek", "payments-kek"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let host = bao.addr.trim_start_matches("http://");
    let text = format!(
        r#"{}
[[rule]]
namespace = "payments-*"
active = "vault+http://{host}/transit/keys/payments-kek"
"#,
        bao.token_policy(dir.path(), "default-kek")
    );
    let policy = PolicyKeyrings::build(PolicyConfig::from_toml(&text, "vault").expect("valid"))
        .await
        .expect("build");
    let p = policy.seal("payments-eu", b"card").await.expect("seal");
    let d = policy.seal("orders", b"order").await.expect("seal");
    assert_eq!(
        inspect(&p).expect("header").kek().key_id(),
        "transit/keys/payments-kek"
    );
    assert_eq!(
        inspect(&d).expect("header").kek().key_id(),
        "transit/keys/default-kek"
    );
    assert_eq!(policy.open("payments-eu", &p).await.expect("open"), b"card");
    assert_eq!(policy.open("orders", &d).await.expect("open"), b"order");
    assert!(
        policy.open("payments-us", &p).await.is_err(),
        "another namespace must not open it"
    );
}

#[tokio::test]
async fn a_gcp_policy_works_end_to_end_against_the_cloud_kms_emulator() {
    use sealbox_testkit::gcpkms::GcpKmsEmulator;
    let (emu, sa) = GcpKmsEmulator::start_with_trusted_account().await;
    let key = emu.create_key("acme", "europe-west1", "sealbox", "default");
    let dir = tempfile::tempdir().expect("tempdir");
    let sa_file = dir.path().join("sa.json");
    std::fs::write(&sa_file, &sa.json).expect("sa file");
    let text = format!(
        "[gcp]\ncredentials_file = \"{}\"\nendpoint = \"{}\"\n[default]\nactive = \"gcpkms://{key}\"\n",
        sa_file.display(),
        emu.endpoint
    );
    let policy = PolicyKeyrings::build(PolicyConfig::from_toml(&text, "gcp").expect("valid"))
        .await
        .expect("build");
    let env = policy.seal("billing-eu", b"invoice").await.expect("seal");
    let header = inspect(&env).expect("header");
    assert_eq!(
        (header.kek().provider(), header.kek().key_id()),
        ("gcp-kms", key.as_str())
    );
    assert_eq!(header.kek().key_version(), Some("1"));
    assert_eq!(
        policy.open("billing-eu", &env).await.expect("open"),
        b"invoice"
    );
    assert!(policy.open("billing-us", &env).await.is_err());
}

// ------------------------------------------------ AWS / Cloud KMS transport settings ----

/// `[aws]` and `[gcp]` take `allow_http` (and `[aws]` `multi_region_replicas`); both are off
/// unless the file says `true`, and anything but a boolean is an error naming the field.
#[test]
fn aws_and_gcp_plain_http_and_replica_opt_ins_are_explicit_booleans() {
    const ACTIVE: &str =
        "[default]\nactive = \"awskms:///arn:aws:kms:us-east-1:111122223333:key/k\"\n";
    // What the booleans turn on is tested in the provider crates' scheme tests; here: they
    // are accepted, and only as booleans.
    PolicyConfig::from_toml(ACTIVE, "t").expect("valid");
    PolicyConfig::from_toml(&format!("[aws]\n[gcp]\n{ACTIVE}"), "t").expect("valid");
    PolicyConfig::from_toml(
        &format!(
            "[aws]\nallow_http = true\nmulti_region_replicas = true\n[gcp]\nallow_http = true\n{ACTIVE}"
        ),
        "t",
    )
    .expect("valid");
    for (section, field) in [
        ("aws", "allow_http"),
        ("aws", "multi_region_replicas"),
        ("gcp", "allow_http"),
    ] {
        let errors = errors_of(&format!("[{section}]\n{field} = \"yes\"\n{ACTIVE}"));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("policy.toml:2:") && e.contains("expected a boolean")),
            "{section}.{field}: {errors:#?}"
        );
    }
}

fn kek_error(result: Result<PolicyKeyrings, sealbox_policy::PolicyError>) -> String {
    match result {
        Err(e @ sealbox_policy::PolicyError::Kek { .. }) => e.to_string(),
        Err(other) => panic!("expected a KEK error, got {other}"),
        Ok(_) => panic!("expected a KEK error, got a policy"),
    }
}

/// Finding 1 through the policy file: a plain-HTTP AWS KMS endpoint (KEK URI `endpoint=`) or
/// Cloud KMS endpoint (`[gcp] endpoint`) on a non-loopback host is refused when the policy is
/// put in force, naming the endpoint and the opt-in, before any credential lookup or request;
/// with `allow_http = true` it is accepted. `0.0.0.0` is not loopback by the rule, yet Linux
/// delivers connections to it to the local host, so the opted-in policy really reaches the
/// Cloud KMS emulator.
#[tokio::test]
async fn plain_http_kms_endpoints_off_loopback_need_the_policy_opt_in() {
    use sealbox_testkit::gcpkms::GcpKmsEmulator;
    let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let aws = |allow: &str, endpoint: &str| {
        format!(
            "[aws]\nmax_attempts = 1\n{allow}\n[default]\nactive = \"awskms:///{arn}?region=us-east-1&endpoint={endpoint}\"\n"
        )
    };
    let refused = kek_error(
        PolicyKeyrings::build(
            PolicyConfig::from_toml(&aws("", "http://kms.example.com"), "aws").expect("valid"),
        )
        .await,
    );
    assert!(
        refused.contains("refusing plain-HTTP KMS endpoint `http://kms.example.com/`")
            && refused.contains("[aws] allow_http = true"),
        "{refused}"
    );
    // Opted in, the endpoint check passes and the provider goes on to `DescribeKey` (which
    // fails here: nothing listens there, and this machine may have no AWS credentials).
    let unreachable = format!("http://0.0.0.0:{}", sealbox_testkit::servers::free_port());
    let failed = kek_error(
        PolicyKeyrings::build(
            PolicyConfig::from_toml(&aws("allow_http = true", &unreachable), "aws").expect("valid"),
        )
        .await,
    );
    assert!(
        failed.contains("DescribeKey") && !failed.contains("refusing plain-HTTP"),
        "{failed}"
    );

    let (emu, sa) = GcpKmsEmulator::start_with_trusted_account().await;
    let key = emu.create_key("acme", "europe-west1", "sealbox", "default");
    let dir = tempfile::tempdir().expect("tempdir");
    let sa_file = dir.path().join("sa.json");
    std::fs::write(&sa_file, &sa.json).expect("sa file");
    let remote = emu.endpoint.replace("127.0.0.1", "0.0.0.0");
    let gcp = |allow: &str, credentials: bool| {
        let credentials = if credentials {
            format!("credentials_file = \"{}\"\n", sa_file.display())
        } else {
            String::new()
        };
        format!(
            "[gcp]\n{credentials}endpoint = \"{remote}\"\n{allow}\n[default]\nactive = \"gcpkms://{key}\"\n"
        )
    };
    for credentials in [false, true] {
        let refused = kek_error(
            PolicyKeyrings::build(
                PolicyConfig::from_toml(&gcp("", credentials), "gcp").expect("valid"),
            )
            .await,
        );
        assert!(
            refused.contains("refusing plain-HTTP Cloud KMS endpoint")
                && refused.contains(remote.as_str())
                && refused.contains("[gcp] allow_http = true"),
            "{refused}"
        );
    }
    assert!(emu.requests().is_empty(), "{:?}", emu.requests());
    let policy = PolicyKeyrings::build(
        PolicyConfig::from_toml(&gcp("allow_http = true", true), "gcp").expect("valid"),
    )
    .await
    .expect("opted in");
    let env = policy.seal("billing-eu", b"invoice").await.expect("seal");
    assert_eq!(
        policy.open("billing-eu", &env).await.expect("open"),
        b"invoice"
    );
}

/// `[storage]` and each policy's `external_storage`: 256 KiB by default once storage is
/// configured, `off`, `always` or a size per rule; refused without `[storage]`.
#[test]
fn external_storage_is_configured_per_namespace() {
    use sealbox_policy::ExternalStorage;
    const DEV: &str = "[local]\ndevelopment_key = true\n";
    let config = PolicyConfig::from_toml(
        &format!(
            "{DEV}[storage]\nurl = \"s3://payloads/prod\"\nmax_size = \"20MiB\"\n[default]\nactive = \"local:///dev\"\n\
             [[rule]]\nnamespace = \"pii-*\"\nactive = \"local:///dev\"\nexternal_storage = \"always\"\n\
             [[rule]]\nnamespace = \"small\"\nactive = \"local:///dev\"\nexternal_storage = \"off\"\n\
             [[rule]]\nnamespace = \"media\"\nactive = \"local:///dev\"\nexternal_storage = \"1MiB\"\n\
             [[rule]]\nnamespace = \"python\"\nactive = \"local:///dev\"\nexternal_storage = \"sdk\"\n"
        ),
        "t",
    )
    .expect("valid");
    let storage = config.storage.as_ref().expect("storage");
    assert_eq!(
        (storage.url.as_str(), storage.max_size),
        ("s3://payloads/prod", 20 * 1024 * 1024)
    );
    let of = |ns: &str| config.policy_for(ns).external_storage;
    assert_eq!(of("orders"), ExternalStorage::Threshold(256 * 1024));
    assert_eq!(of("pii-eu"), ExternalStorage::Always);
    assert_eq!(of("small"), ExternalStorage::Off);
    assert_eq!(of("media"), ExternalStorage::Threshold(1024 * 1024));
    assert_eq!(of("python"), ExternalStorage::Sdk);
    let none =
        PolicyConfig::from_toml(&format!("{DEV}[default]\nactive = \"local:///dev\"\n"), "t")
            .expect("valid");
    assert!(none.storage.is_none());
    assert_eq!(none.default.external_storage, ExternalStorage::Off);
    assert_error(
        &format!("{DEV}[default]\nactive = \"local:///dev\"\nexternal_storage = \"always\"\n"),
        5,
        "default.external_storage",
        "needs a [storage] table",
    );
    assert_error(
        &format!(
            "{DEV}[storage]\nurl = \"s3://b\"\noptions = {{ aws_secret_access_key = \"x\" }}\n[default]\nactive = \"local:///dev\"\n"
        ),
        5,
        "storage.options",
        "secrets do not belong in the policy file",
    );
    assert_error(
        &format!(
            "{DEV}[storage]\nurl = \"az://c\"\noptions = {{ azure_storage_account_key = \"x\" }}\n[default]\nactive = \"local:///dev\"\n"
        ),
        5,
        "storage.options",
        "secrets do not belong in the policy file",
    );
    let gcs = PolicyConfig::from_toml(
        &format!(
            "{DEV}[storage]\nurl = \"gs://payloads/prod\"\noptions = {{ google_application_credentials = \"/etc/sa.json\" }}\n[default]\nactive = \"local:///dev\"\n"
        ),
        "t",
    )
    .expect("gs:// with a credentials path");
    assert_eq!(gcs.storage.expect("storage").url, "gs://payloads/prod");
    let with_file = PolicyConfig::from_toml(
        &format!(
            "{DEV}[storage]\nurl = \"s3://b\"\noptions = {{ aws_region = \"eu-west-1\", aws_secret_access_key_file = \"/run/s3\" }}\n[default]\nactive = \"local:///dev\"\n"
        ),
        "t",
    )
    .expect("a secret by file");
    assert_eq!(
        with_file.storage.expect("storage").options["aws_secret_access_key_file"],
        "/run/s3"
    );
    assert_error(
        &format!("{DEV}[default]\nactive = \"local:///dev\"\nexternal_storage = \"sdk\"\n"),
        5,
        "default.external_storage",
        "needs a [storage] table",
    );
    assert_error(
        &format!("{DEV}[storage]\nurl = \"ftp://x\"\n[default]\nactive = \"local:///dev\"\n"),
        4,
        "storage.url",
        "not a store this build reads",
    );
    assert_error(
        &format!(
            "{DEV}[storage]\nurl = \"s3://b\"\n[default]\nactive = \"local:///dev\"\nexternal_storage = \"big\"\n"
        ),
        7,
        "default.external_storage",
        "is not a size",
    );
}
