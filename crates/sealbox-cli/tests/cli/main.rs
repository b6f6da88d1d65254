//! The `sealbox` binary end to end: against the local KEK and against a real OpenBao.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine;
use sealbox_testkit::servers::OpenBao;

mod rotate;

fn sealbox() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealbox"));
    cmd.env_remove("SEALBOX_CONFIG")
        .env_remove("SEALBOX_LOCAL_KEK")
        .env_remove("SEALBOX_LOCAL_KEK_FILE");
    cmd
}

fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn sealbox");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../keyring-config")
}

/// A policy with a local KEK read from `$TEST_KEK`, and the env value.
fn local_policy(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        "[default]\nactive = \"local:///test?env=TEST_KEK\"\n[[rule]]\nnamespace = \"payments-*\"\nactive = \"local:///test?env=TEST_KEK\"\n[rule.lease]\nmax_payloads = 1\n",
    )
    .expect("policy");
    (
        path,
        base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    )
}

#[test]
fn config_check_accepts_every_example_and_explains_the_policy() {
    for name in [
        "dev.toml",
        "aws.toml",
        "gcp.toml",
        "vault.toml",
        "multi-tenant.toml",
    ] {
        let mut cmd = sealbox();
        cmd.args(["config", "check"])
            .arg(examples().join(name))
            .args(["--namespace", "payments-eu"]);
        let out = run(cmd, b"");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("valid") && text.contains("namespace `payments-eu` ->"),
            "{name}: {text}"
        );
        assert!(
            text.contains("suite         0x0001 (AES-256-GCM/HKDF-SHA256/commit)"),
            "{name}: the envelope suite new payloads get is shown: {text}"
        );
    }
    let mut cmd = sealbox();
    cmd.args(["config", "check", "--json"])
        .arg(examples().join("multi-tenant.toml"))
        .args(["--namespace", "acme"]);
    let out = run(cmd, b"");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], true);
    assert_eq!(v["rules"][0]["namespace"], "acme");
    assert_eq!(v["namespaces"][0]["policy"], "rule `acme`");
    assert_eq!(v["namespaces"][0]["context"]["namespace"], "acme");
    assert_eq!(v["default"]["suite"], 1);
    assert_eq!(v["rules"][0]["suite"], 1);
}

#[test]
fn config_check_rejects_a_broken_file_with_exit_code_2_and_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[default]\nactive = \"local:///dev\"\n[default.lease]\nmax_payloads = 0\n",
    )
    .expect("write");
    let mut cmd = sealbox();
    cmd.args(["config", "check"]).arg(&path);
    let out = run(cmd, b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:4:") && err.contains("max_payloads"),
        "{err}"
    );
}

#[test]
fn seal_open_and_inspect_round_trip_through_pipes_and_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (policy, key) = local_policy(dir.path());
    let plaintext = b"{\"card\":\"4111 1111 1111 1111\"}";

    let mut seal = sealbox();
    seal.env("TEST_KEK", &key)
        .args(["seal", "--namespace", "payments-eu", "--config"])
        .arg(&policy);
    let sealed = run(seal, plaintext);
    assert!(
        sealed.status.success(),
        "{}",
        String::from_utf8_lossy(&sealed.stderr)
    );
    let envelope = sealed.stdout;
    assert!(
        !envelope.windows(4).any(|w| w == b"4111"),
        "plaintext visible in the envelope"
    );

    let mut inspect = sealbox();
    inspect.args(["inspect", "--json"]);
    let out = run(inspect, &envelope);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["kek"]["provider"], "local");
    assert_eq!(v["kek"]["uri"], "local:///test");
    assert_eq!(v["context"]["namespace"], "payments-eu");
    // Given the policy, inspect prints the KEK as the policy names it.
    let mut with_policy = sealbox();
    with_policy
        .args(["inspect", "--json", "--config"])
        .arg(&policy);
    let v: serde_json::Value =
        serde_json::from_slice(&run(with_policy, &envelope).stdout).expect("json");
    assert_eq!(v["kek"]["uri"], "local:///test?env=TEST_KEK");
    assert_eq!(v["plaintext_len"], plaintext.len());
    let mut human = sealbox();
    human.arg("inspect");
    let text = String::from_utf8(run(human, &envelope).stdout).expect("utf8");
    assert!(
        text.contains("context      namespace=payments-eu"),
        "{text}"
    );

    let env_file = dir.path().join("envelope.bin");
    std::fs::write(&env_file, &envelope).expect("write");
    let out_file = dir.path().join("plain.out");
    let mut open = sealbox();
    open.env("TEST_KEK", &key)
        .args(["open", "--namespace", "payments-eu", "--config"])
        .arg(&policy)
        .arg("--in")
        .arg(&env_file)
        .arg("--out")
        .arg(&out_file);
    let opened = run(open, b"");
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert_eq!(std::fs::read(&out_file).expect("out"), plaintext);
}

#[test]
fn a_failed_open_writes_nothing_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (policy, key) = local_policy(dir.path());
    let mut seal = sealbox();
    seal.env("TEST_KEK", &key)
        .args(["seal", "--namespace", "tenant-a", "--config"])
        .arg(&policy);
    let envelope = run(seal, b"tenant a's secret").stdout;

    // Another namespace: refused, nothing on stdout.
    let mut open = sealbox();
    open.env("TEST_KEK", &key)
        .args(["open", "--namespace", "tenant-b", "--config"])
        .arg(&policy);
    let out = run(open, &envelope);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tenant-b") && err.contains("namespace"),
        "{err}"
    );

    // A tampered envelope with --out: the existing output file is left untouched.
    let out_file = dir.path().join("existing.txt");
    std::fs::write(&out_file, b"keep me").expect("write");
    let mut tampered = envelope.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let mut open = sealbox();
    open.env("TEST_KEK", &key)
        .args(["open", "--namespace", "tenant-a", "--config"])
        .arg(&policy)
        .arg("--out")
        .arg(&out_file);
    let out = run(open, &tampered);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(&out_file).expect("read"), b"keep me");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tampered"));
}

#[test]
fn keys_test_reports_each_kek() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (policy, key) = local_policy(dir.path());
    let mut ok = sealbox();
    ok.env("TEST_KEK", &key)
        .args(["keys", "test", "--json", "--config"])
        .arg(&policy);
    let out = run(ok, b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["failed"], 0);
    assert_eq!(
        v["keks"].as_array().map(Vec::len),
        Some(1),
        "one distinct KEK"
    );
    assert_eq!(v["keks"][0]["ok"], true);

    let mut missing = sealbox();
    missing.args(["keys", "test", "--config"]).arg(&policy);
    let out = run(missing, b"");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL") && text.contains("TEST_KEK is not set"),
        "{text}"
    );
}

#[test]
fn the_cli_works_against_openbao() {
    let bao = OpenBao::start();
    bao.enable_transit("transit");
    bao.create_key("transit", "cli-kek", true);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("vault.toml");
    std::fs::write(
        &policy,
        format!(
            "[vault]\nauth = \"token\"\ntoken_env = \"TEST_VAULT_TOKEN\"\n[default]\nactive = \"vault+http://{}/transit/keys/cli-kek\"\n",
            bao.addr.trim_start_matches("http://")
        ),
    )
    .expect("policy");
    let with_token = |args: &[&str]| {
        let mut cmd = sealbox();
        cmd.env("TEST_VAULT_TOKEN", &bao.root_token)
            .args(args)
            .arg("--config")
            .arg(&policy);
        cmd
    };
    let out = run(with_token(&["keys", "test"]), b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok    vault+http://"));

    let sealed = run(with_token(&["seal", "--namespace", "orders"]), b"order 42");
    assert!(
        sealed.status.success(),
        "{}",
        String::from_utf8_lossy(&sealed.stderr)
    );
    let mut inspect = sealbox();
    inspect.arg("inspect");
    let text = String::from_utf8(run(inspect, &sealed.stdout).stdout).expect("utf8");
    assert!(
        text.contains("vault-transit key `transit/keys/cli-kek`")
            && text.contains("key version  1")
            && text.contains("kek uri      vault:///transit/keys/cli-kek\n"),
        "{text}"
    );
    // With the policy, the URI it names, host included.
    let mut inspect = sealbox();
    inspect.args(["inspect", "--config"]).arg(&policy);
    let text = String::from_utf8(run(inspect, &sealed.stdout).stdout).expect("utf8");
    assert!(
        text.contains(&format!(
            "kek uri      {}/transit/keys/cli-kek\n",
            bao.addr.replace("http://", "vault+http://")
        )),
        "{text}"
    );
    let opened = run(
        with_token(&["open", "--namespace", "orders"]),
        &sealed.stdout,
    );
    assert_eq!(opened.stdout, b"order 42");
}

/// Hostile input to the CLI, as a table: each case exits with its code (1: the operation
/// failed, 2: usage or configuration) and names what is wrong on stderr; none panics
/// (exit 101), none writes anything on stdout, and none prints the KEK or the plaintext.
#[test]
fn hostile_cli_inputs_fail_clearly_and_leak_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (policy, key) = local_policy(dir.path());
    let secret = b"cli secret 4111-1111";
    let mut seal = sealbox();
    seal.env("TEST_KEK", &key)
        .args(["seal", "--namespace", "tenant-a", "--config"])
        .arg(&policy);
    let envelope = run(seal, secret).stdout;
    assert!(envelope.len() > 100);
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let inline_secret = file(
        "inline.toml",
        "[vault]\nauth = \"token\"\ntoken = \"s.hunter2\"\n[default]\nactive = \"vault://127.0.0.1:1/transit/keys/k\"\n",
    );
    let bad_toml = file("bad.toml", "[default\nactive = ");
    let no_default = file("nodefault.toml", "version = 1\n");
    let huge_key_id = file(
        "huge.toml",
        &format!("[default]\nactive = \"local:///{}\"\n", "k".repeat(5000)),
    );
    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).expect("write");
    let binary = binary.display().to_string();
    let policy = policy.display().to_string();
    let truncated = envelope[..envelope.len() / 2].to_vec();
    let mut extended = envelope.clone();
    extended.push(0);
    let mut reversioned = envelope.clone();
    reversioned[4] = 9;
    let garbage = vec![0x41u8; 1 << 20];

    type Case<'a> = (&'a str, Vec<&'a str>, Vec<u8>, i32, &'a str);
    let open = |ns: &'static str| vec!["open", "--namespace", ns, "--config", policy.as_str()];
    let cases: Vec<Case> = vec![
        (
            "unknown subcommand",
            vec!["explode"],
            vec![],
            2,
            "unrecognized subcommand",
        ),
        (
            "seal without a namespace",
            vec!["seal", "--config", &policy],
            vec![],
            2,
            "--namespace",
        ),
        (
            "missing config file",
            vec!["config", "check", "/nonexistent/p.toml"],
            vec![],
            2,
            "/nonexistent/p.toml",
        ),
        (
            "config that is not TOML",
            vec!["config", "check", &bad_toml],
            vec![],
            2,
            "bad.toml:",
        ),
        (
            "config that is not UTF-8",
            vec!["config", "check", &binary],
            vec![],
            2,
            "binary.toml",
        ),
        (
            "config without [default]",
            vec!["config", "check", &no_default],
            vec![],
            2,
            "default",
        ),
        (
            "an inline secret in the config",
            vec!["config", "check", &inline_secret],
            vec![],
            2,
            "token",
        ),
        (
            "a 5000-character key name",
            vec!["config", "check", &huge_key_id],
            vec![],
            2,
            "huge.toml:",
        ),
        (
            "open an empty input",
            open("tenant-a"),
            vec![],
            1,
            "envelope",
        ),
        (
            "open a truncated envelope",
            open("tenant-a"),
            truncated,
            1,
            "truncated",
        ),
        (
            "open an extended envelope",
            open("tenant-a"),
            extended,
            1,
            "unexpected bytes after the end",
        ),
        (
            "open a re-versioned envelope",
            open("tenant-a"),
            reversioned.clone(),
            1,
            "version",
        ),
        (
            "open 1 MiB of garbage",
            open("tenant-a"),
            garbage.clone(),
            1,
            "envelope",
        ),
        (
            "open as another tenant",
            open("tenant-b"),
            envelope.clone(),
            1,
            "namespace",
        ),
        ("inspect garbage", vec!["inspect"], garbage, 1, "envelope"),
        (
            "inspect a re-versioned envelope",
            vec!["inspect"],
            reversioned,
            1,
            "version",
        ),
        (
            "seal with a namespace holding a control character",
            vec!["seal", "--namespace", "a\u{7}b", "--config", &policy],
            secret.to_vec(),
            1,
            "namespace",
        ),
        (
            "open --in a missing file",
            vec![
                "open",
                "--namespace",
                "tenant-a",
                "--config",
                &policy,
                "--in",
                "/nonexistent/env",
            ],
            vec![],
            1,
            "/nonexistent/env",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, args, stdin, code, says) in &cases {
        let mut cmd = sealbox();
        cmd.env("TEST_KEK", &key).args(args);
        let out = run(cmd, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        let leaked = [key.as_bytes(), &secret[..], b"hunter2"]
            .iter()
            .any(|s| out.stderr.windows(s.len()).any(|w| w == *s));
        if out.status.code() != Some(*code)
            || !err.to_lowercase().contains(&says.to_lowercase())
            || !out.stdout.is_empty()
            || err.contains("panicked")
            || leaked
        {
            wrong.push(format!(
                "{name}: expected exit {code} naming `{says}`, got {:?}, stdout {} bytes, leaked {leaked}: {err}",
                out.status.code(),
                out.stdout.len()
            ));
        }
    }
    sealbox_testkit::assert_no_wrong_cases(&wrong, cases.len());
}
