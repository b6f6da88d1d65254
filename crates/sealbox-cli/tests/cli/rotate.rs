//! `sealbox rotate …` end to end: the exact command lines, exit codes and JSON documents,
//! and crash safety under SIGKILL.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use sealbox_core::inspect;
use sealbox_policy::{PolicyConfig, PolicyKeyrings};
use sealbox_rotate::{Store, open_store};

use super::{run, sealbox};

/// `before.toml` (active local:///old), `after.toml` (active local:///new, old decrypt-only)
/// and `new-only.toml` in `dir`.
fn policies(dir: &Path) -> [std::path::PathBuf; 3] {
    use std::os::unix::fs::PermissionsExt;
    let mut uris = Vec::new();
    for (name, byte) in [("old", 1u8), ("new", 2u8)] {
        let path = dir.join(format!("{name}.kek"));
        std::fs::write(
            &path,
            base64::engine::general_purpose::STANDARD.encode([byte; 32]),
        )
        .expect("key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        uris.push(format!("local:///{name}?file={}", path.display()));
    }
    let write = |file: &str, active: &str, decrypt_only: &str| {
        let path = dir.join(file);
        std::fs::write(
            &path,
            format!(
                "[default]\nactive = \"{active}\"\ndecrypt_only = [{decrypt_only}]\n[default.lease]\nmax_payloads = 16\n"
            ),
        )
        .expect("policy");
        path
    };
    [
        write("before.toml", &uris[0], ""),
        write("after.toml", &uris[1], &format!("\"{}\"", uris[0])),
        write("new-only.toml", &uris[1], ""),
    ]
}

async fn load(path: &Path) -> PolicyKeyrings {
    PolicyKeyrings::build(PolicyConfig::from_file(path).expect("valid"))
        .await
        .expect("build")
}

fn plaintext(i: usize) -> Vec<u8> {
    format!("record {i}: {}", "z".repeat(i % 97)).into_bytes()
}

async fn seed(store: &dyn Store, policy: &PolicyKeyrings, n: usize) {
    for i in 0..n {
        let env = policy
            .seal(&format!("tenant-{}", i % 5), &plaintext(i))
            .await
            .expect("seal");
        store
            .create(&format!("{:02}/obj-{i:05}", i % 7), env)
            .await
            .expect("create");
    }
}

async fn assert_all_new(store: &dyn Store, policy: &PolicyKeyrings, n: usize) {
    for i in 0..n {
        let key = format!("{:02}/obj-{i:05}", i % 7);
        let bytes = store.read(&key).await.expect("read").bytes;
        let header = inspect(&bytes).expect("envelope");
        assert_eq!(header.kek().key_id(), "new", "{key}");
        let ns = header.context.get("namespace").expect("ns").to_owned();
        assert_eq!(
            policy.open(&ns, &bytes).await.expect("opens"),
            plaintext(i),
            "{key}"
        );
    }
}

fn json(cmd: Command) -> (Option<i32>, serde_json::Value) {
    let out = run(cmd, b"");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

fn rotate(args: &[&str], config: &Path, store: &str) -> Command {
    let mut cmd = sealbox();
    cmd.arg("rotate")
        .args(args)
        .arg("--config")
        .arg(config)
        .args(["--store", store]);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn inventory_rewrap_and_check_through_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [before, after, _] = policies(dir.path());
    let data = dir.path().join("data");
    let url = format!("file://{}", data.display());
    std::fs::create_dir(&data).expect("mkdir");
    let store = open_store(&url).await.expect("store");
    seed(store.as_ref(), &load(&before).await, 100).await;
    store
        .create("zz-notes.txt", b"hello".to_vec())
        .await
        .expect("create");

    let (code, inv) = json(rotate(&["inventory", "--json"], &after, &url));
    assert_eq!(code, Some(0));
    assert_eq!(inv["total"], 101);
    assert_eq!(inv["not_envelopes"], 1);
    assert_eq!(inv["damaged"], 0);
    let by_kek = inv["by_kek"].as_array().expect("array");
    assert_eq!(by_kek.len(), 1, "{inv}");
    assert!(
        by_kek[0]["kek"]
            .as_str()
            .expect("kek")
            .starts_with("local:///old?file=")
    );
    assert_eq!(
        (
            &by_kek[0]["provider"],
            &by_kek[0]["key_id"],
            by_kek[0]["count"].as_u64()
        ),
        (
            &serde_json::json!("local"),
            &serde_json::json!("old"),
            Some(100)
        )
    );

    // check: still in use → 1, with examples.
    let (code, v) = json(rotate(
        &["check", "--retire", "local:///old", "--json"],
        &after,
        &url,
    ));
    assert_eq!((code, v["in_use"].as_u64()), (Some(1), Some(100)), "{v}");
    assert_eq!(v["examples"].as_array().map(Vec::len), Some(10));

    // A dry run changes nothing.
    let (code, v) = json(rotate(&["rewrap", "--dry-run", "--json"], &after, &url));
    assert_eq!(
        (code, v["would_change"].as_u64()),
        (Some(0), Some(100)),
        "{v}"
    );
    assert!(v.get("rewrapped").is_none());

    let (code, v) = json(rotate(
        &["rewrap", "--json", "--kms-rate", "1000"],
        &after,
        &url,
    ));
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(
        (
            v["scanned"].as_u64(),
            v["rewrapped"].as_u64(),
            v["skipped"].as_u64()
        ),
        (Some(101), Some(100), Some(0))
    );
    assert_eq!(v["failed"], serde_json::json!([]));
    assert!(v["kms_calls"].as_u64().is_some_and(|n| n > 0));

    // Now free: 0. Unknown provider: 2. Unresolvable (a key file that is gone): 3.
    let (code, v) = json(rotate(
        &["check", "--retire", "local:///old", "--json"],
        &after,
        &url,
    ));
    assert_eq!((code, v["in_use"].as_u64()), (Some(0), Some(0)), "{v}");
    let out = run(
        rotate(&["check", "--retire", "kms://nope"], &after, &url),
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    let gone = format!(
        "local:///gone?file={}",
        dir.path().join("gone.kek").display()
    );
    let out = run(rotate(&["check", "--retire", &gone], &after, &url), b"");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A damaged envelope: the scan is incomplete, never "free".
    std::fs::write(data.join("broken"), b"SBXE\x01\x02").expect("write");
    let out = run(
        rotate(&["check", "--retire", "local:///old"], &after, &url),
        b"",
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT proven free"));
    // And rewrap reports it as failed (exit 1), leaving it untouched.
    let (code, v) = json(rotate(&["rewrap", "--json"], &after, &url));
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["failed"][0]["object"], "broken");
    assert_eq!(
        std::fs::read(data.join("broken")).expect("read"),
        b"SBXE\x01\x02"
    );
}

/// A tiny deterministic PRNG (xorshift64*), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Kills `sealbox rotate` with SIGKILL at random moments until at least `kills` kills have
/// landed mid-run, then lets it finish; returns the kills that landed. `cmd(true)` is the
/// throttled command the kills hit, `cmd(false)` the final run.
fn kill_until_done(mut cmd: impl FnMut(bool) -> Command, kills: usize, seed: u64) -> usize {
    let mut rng = Rng(seed);
    let mut landed = 0;
    for _ in 0..400 {
        if landed >= kills {
            break;
        }
        let mut child = cmd(true)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(20 + rng.below(200)));
        if child.try_wait().expect("wait").is_none() {
            child.kill().expect("SIGKILL");
            landed += 1;
        }
        let _ = child.wait();
    }
    let out = run(cmd(false), b"");
    assert!(
        out.status.success(),
        "the final run failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    landed
}

/// Seeds `n` envelopes into the store at `url`, reencrypts it under SIGKILLs at 20+ random
/// moments (resuming from one checkpoint), and checks every object: original plaintext,
/// the new KEK, nothing extra in the store. `env` is given to the `sealbox` processes.
async fn survives_sigkills(
    store: Arc<dyn Store>,
    url: &str,
    env: &[(&str, String)],
    n: usize,
    seed_value: u64,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let [before, after, new_only] = policies(dir.path());
    seed(store.as_ref(), &load(&before).await, n).await;
    let checkpoint = dir.path().join("rotation.json");
    let landed = kill_until_done(
        |throttled| {
            // While the kills land, at most 5 KMS calls a second (a burst of 5 per process):
            // each run gets a few pages done before the next kill, so 20 kills at random
            // moments 20–220 ms apart land before the work is done, however fast or loaded
            // the machine (the kills, not the rate, are what is tested). The final run is not
            // throttled.
            let mut cmd = rotate(&["reencrypt", "--json"], &after, url);
            if throttled {
                cmd.args(["--kms-rate", "5"]);
            }
            cmd.arg("--checkpoint").arg(&checkpoint);
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd
        },
        20,
        seed_value,
    );
    assert!(landed >= 20, "only {landed} kills landed mid-run");
    eprintln!("{landed} kills landed mid-run");
    assert_all_new(store.as_ref(), &load(&new_only).await, n).await;
    let mut listed = 0;
    let mut after_key: Option<String> = None;
    loop {
        let page = store.list(after_key.as_deref(), 500).await.expect("list");
        let Some(last) = page.last() else { break };
        after_key = Some(last.key.clone());
        listed += page.len();
    }
    assert_eq!(listed, n, "objects in the store after the killed runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_store_rotation_survives_sigkill_at_twenty_random_points() {
    const N: usize = 2000;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    let store = open_store(&url).await.expect("store");
    survives_sigkills(store, &url, &[], N, 0x5eed_0001).await;
    // Nothing of the killed runs is left: no temporary files (the store's lock file aside).
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join(".sealbox-rotate"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name())
                .filter(|name| name != "lock")
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_rotation_survives_sigkill_at_twenty_random_points() {
    let pg = sealbox_testkit::postgres::Postgres::start();
    pg.psql(
        "postgres",
        "CREATE TABLE envelopes (name text PRIMARY KEY, body bytea)",
    );
    let url = format!(
        "{}?table=envelopes&column=body&key=name",
        pg.url("postgres")
    );
    let store = open_store(&url).await.expect("store");
    survives_sigkills(store, &url, &[], 2000, 0x5eed_0002).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_rotation_survives_sigkill_at_twenty_random_points() {
    let moto = sealbox_testkit::servers::Moto::start();
    moto.create_bucket("rotation");
    let env = [
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ];
    let url = "s3://rotation/envelopes";
    let options: Vec<(&str, &str)> = vec![
        ("aws_endpoint", moto.endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_region", "us-east-1"),
        ("aws_access_key_id", "testing"),
        ("aws_secret_access_key", "testing"),
    ];
    let store = sealbox_rotate::open_store_with(url, &options)
        .await
        .expect("store");
    survives_sigkills(store, url, &env, 500, 0x5eed_0003).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_openbao_key_version_is_retired_with_check_as_the_gate() {
    use sealbox_testkit::servers::OpenBao;
    let bao = OpenBao::start_with_transit_keys(&["orders"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("vault.toml");
    let policy = bao.token_policy(dir.path(), "orders") + "[default.lease]\nmax_payloads = 10\n";
    std::fs::write(&config, policy).expect("policy");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let url = format!("file://{}", data.display());
    let store = open_store(&url).await.expect("store");
    seed(store.as_ref(), &load(&config).await, 40).await;
    // `rotate check --retire RETIRE --version 1`: its exit code and standard output.
    let check_version_1 = |retire: &str| {
        let check = ["check", "--retire", retire, "--version", "1"];
        let out = run(rotate(&check, &config, &url), b"");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), stdout)
    };

    // Rotate the Transit key: new envelopes get version 2, the store still holds version 1.
    bao.rotate("transit", "orders");
    let policy = load(&config).await;
    for i in 40..50 {
        let env = policy.seal("tenant-0", &plaintext(i)).await.expect("seal");
        store
            .create(&format!("v2/obj-{i:05}"), env)
            .await
            .expect("create");
    }
    let (code, inv) = json(rotate(&["inventory", "--json"], &config, &url));
    assert_eq!(code, Some(0));
    let versions: Vec<(String, u64)> = inv["by_kek"]
        .as_array()
        .expect("array")
        .iter()
        .map(|k| {
            (
                k["version"].as_str().unwrap_or("-").to_owned(),
                k["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [("1".to_owned(), 40), ("2".to_owned(), 10)],
        "{inv}"
    );
    assert!(
        inv["by_kek"][0]["kek"]
            .as_str()
            .expect("kek")
            .starts_with("vault+http://")
    );

    // The policy's URI and the host-less form a header displays both resolve to the key.
    for retire in [
        format!(
            "vault+http://{}/transit/keys/orders",
            bao.addr.trim_start_matches("http://")
        ),
        "vault:///transit/keys/orders".to_owned(),
    ] {
        let (code, stdout) = check_version_1(&retire);
        assert_eq!(code, Some(1), "{retire}: {stdout}");
    }
    let (code, v) = json(rotate(&["rewrap", "--json"], &config, &url));
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(
        (v["rewrapped"].as_u64(), v["skipped"].as_u64()),
        (Some(40), Some(10))
    );
    let (code, stdout) = check_version_1("vault:///transit/keys/orders");
    assert_eq!(code, Some(0), "{stdout}");

    // The gate passed: raise min_decryption_version; everything still opens.
    bao.cli(&[
        "write",
        "transit/keys/orders/config",
        "min_decryption_version=2",
    ]);
    let fresh = load(&config).await;
    for i in 0..40 {
        let key = format!("{:02}/obj-{i:05}", i % 7);
        let bytes = store.read(&key).await.expect("read").bytes;
        assert_eq!(inspect(&bytes).expect("env").kek().key_version(), Some("2"));
        let ns = format!("tenant-{}", i % 5);
        assert_eq!(fresh.open(&ns, &bytes).await.expect("opens"), plaintext(i));
    }
}

/// How many of the `n` seeded objects name the new KEK.
async fn count_new(store: &dyn Store, n: usize) -> usize {
    let mut done = 0;
    for i in 0..n {
        let key = format!("{:02}/obj-{i:05}", i % 7);
        if let Ok(o) = store.read(&key).await
            && inspect(&o.bytes).is_ok_and(|h| h.kek().key_id() == "new")
        {
            done += 1;
        }
    }
    done
}

/// The rotation as a Temporal workflow on the dev server: 2,000 objects in 4 shards run by
/// worker A; once they are under way, worker B starts and A is killed (SIGKILL). A's shard
/// activities stop heartbeating, are retried on B from their last heartbeat, and the workflow
/// completes with every object re-encrypted under the new KEK; an inventory workflow on B
/// then counts them all on the new KEK. Its own payloads are sealed.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_workflow_survives_a_killed_worker() {
    const N: usize = 2000;
    let temporal = sealbox_testkit::servers::TemporalDev::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let [before, after, new_only] = policies(dir.path());
    let store_dir = dir.path().join("envelopes");
    std::fs::create_dir_all(&store_dir).expect("store dir");
    let url = format!("file://{}", store_dir.display());
    let store = open_store(&url).await.expect("store");
    seed(store.as_ref(), &load(&before).await, N).await;
    let queue = "rotate-e2e";
    let worker = |name: &str| {
        let log =
            std::fs::File::create(dir.path().join(format!("worker-{name}.log"))).expect("log");
        let mut cmd = sealbox();
        cmd.args(["worker", "rotate", "--config"])
            .arg(&after)
            .args(["--temporal", &temporal.address, "--task-queue", queue])
            .stdout(Stdio::null())
            .stderr(log);
        cmd.spawn().expect("start a rotation worker")
    };
    // `COMMAND --json` as a workflow on the rotation workers, over `shards` shards.
    let as_workflow = |command: &'static str, shards: &'static str| {
        let address = temporal.address.as_str();
        vec![
            command,
            "--json",
            "--temporal",
            address,
            "--task-queue",
            queue,
            "--shards",
            shards,
        ]
    };
    let mut a = worker("a");
    let mut reencrypt = as_workflow("reencrypt", "4");
    reencrypt.extend(["--shards-per-run", "2", "--heartbeat-timeout", "3s"]);
    reencrypt.extend(["--kms-rate", "5"]);
    let mut starter = rotate(&reencrypt, &after, &url);
    let starter = starter
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the rotation workflow");

    // Wait until worker A is under way (bounded: a hang guard, not a timing assertion).
    let mut waited = 0;
    loop {
        let done = count_new(store.as_ref(), N).await;
        assert!(done < N, "the run finished before worker A could be killed");
        if done > 0 {
            break;
        }
        waited += 1;
        // Five minutes: worker A must start, connect and take its first task on busy cores.
        assert!(waited < 3000, "worker A made no progress: see worker-a.log");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut b = worker("b");
    a.kill().expect("SIGKILL worker A");
    a.wait().expect("reap worker A");

    let out = tokio::task::spawn_blocking(move || starter.wait_with_output())
        .await
        .expect("join")
        .expect("the starter finishes");
    // The inventory as a workflow on worker B: every object, all on the new KEK.
    let (code, inventory) = json(rotate(&as_workflow("inventory", "3"), &after, &url));
    let _ = b.kill();
    let _ = b.wait();
    assert_eq!(code, Some(0), "{inventory}");
    assert_eq!(inventory["total"], N, "{inventory}");
    let by_kek = inventory["by_kek"].as_array().expect("by_kek");
    assert_eq!(by_kek.len(), 1, "{inventory}");
    assert_eq!(by_kek[0]["key_id"], "new");
    assert_eq!(by_kek[0]["count"], N);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    assert!(
        report["reencrypted"].as_u64().unwrap_or(0) >= N as u64,
        "every object re-encrypted at least once: {report}"
    );
    assert_all_new(store.as_ref(), &load(&new_only).await, N).await;

    // Two shards per run: the second run continued the first as new. A's activities (in the
    // first run) were retried on B: attempts above 1. The workflow's own payloads are
    // sealed: the store's path is not in either history.
    let id = report["workflow_id"].as_str().expect("workflow id");
    let show = |run: Option<&str>| {
        let mut args = vec![
            "workflow",
            "show",
            "--namespace",
            "default",
            "--workflow-id",
            id,
            "--output",
            "json",
        ];
        if let Some(run) = run {
            args.extend(["--run-id", run]);
        }
        temporal.cli(&args)
    };
    let last = show(None);
    let last_history: serde_json::Value = serde_json::from_str(&last).expect("history JSON");
    let first_run = last_history["events"][0]["workflowExecutionStartedEventAttributes"]
        ["continuedExecutionRunId"]
        .as_str()
        .filter(|r| !r.is_empty())
        .expect("the last run continued an earlier one as new")
        .to_owned();
    let raw = show(Some(&first_run));
    assert!(
        !last.contains(&store_dir.display().to_string()),
        "plaintext request in history"
    );
    let history: serde_json::Value = serde_json::from_str(&raw).expect("history JSON");
    let retried = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| {
            e["activityTaskStartedEventAttributes"]["attempt"]
                .as_u64()
                .is_some_and(|a| a >= 2)
        })
        .count();
    assert!(retried >= 1, "no shard activity was retried after the kill");
    assert!(
        !raw.contains(&store_dir.display().to_string()),
        "plaintext request in history"
    );
    assert!(raw.contains("YmluYXJ5L2VuY3J5cHRlZA=="), "sealed payloads");
}
