//! The rotation job over real stores: rewrap and reencrypt move every envelope to its
//! namespace's active KEK, verified, conditional, resumable and sharded; inventory and check
//! count and gate through the providers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use base64::Engine;
use sealbox_core::inspect;
use sealbox_policy::{PolicyConfig, PolicyKeyrings};
use sealbox_rotate::{
    Mode, Object, ObjectMeta, Report, Retire, RunError, RunOptions, Shard, Store, StoreError,
    Version, check, external_storage_object, inventory, open_store, run,
};

/// Key files for `local:///old` and `local:///new` in a temp dir.
pub(crate) struct Keys {
    _dir: tempfile::TempDir,
    pub(crate) old: String,
    pub(crate) new: String,
}

pub(crate) fn keys() -> Keys {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut paths = Vec::new();
    for (name, byte) in [("old.kek", 1u8), ("new.kek", 2u8)] {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            base64::engine::general_purpose::STANDARD.encode([byte; 32]),
        )
        .expect("write key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        paths.push(format!("local:///{}?file={}", &name[..3], path.display()));
    }
    Keys {
        old: paths[0].clone(),
        new: paths[1].clone(),
        _dir: dir,
    }
}

pub(crate) async fn policy(active: &str, decrypt_only: &[&str], lease: u64) -> PolicyKeyrings {
    let list: Vec<String> = decrypt_only.iter().map(|k| format!("\"{k}\"")).collect();
    let text = format!(
        "[default]\nactive = \"{active}\"\ndecrypt_only = [{}]\n[default.lease]\nmax_payloads = {lease}\n",
        list.join(", ")
    );
    PolicyKeyrings::build(PolicyConfig::from_toml(&text, "policy.toml").expect("valid"))
        .await
        .expect("build")
}

/// A rotation from `local:///old` to `local:///new`: `before` has the old KEK active, `after`
/// the new one with the old one decrypt-only.
struct Rotation {
    k: Keys,
    before: PolicyKeyrings,
    after: PolicyKeyrings,
}

/// A [`Rotation`] whose policies lease a data key for `lease` payloads, with `n` envelopes
/// [`seed`]ed into `store` under `before`.
async fn seeded(store: &dyn Store, n: usize, lease: u64) -> Rotation {
    let k = keys();
    let before = policy(&k.old, &[], lease).await;
    seed(store, &before, n).await;
    let after = policy(&k.new, &[&k.old], lease).await;
    Rotation { k, before, after }
}

/// One run of `mode` with the default options over `store` under `policy`; it must finish.
async fn run_mode(policy: &PolicyKeyrings, store: &dyn Store, mode: Mode) -> Report {
    run(policy, store, &RunOptions::new(mode))
        .await
        .expect("run")
}

fn plaintext(i: usize) -> Vec<u8> {
    format!("payload {i} {}", "x".repeat(i % 50)).into_bytes()
}

/// `n` envelopes over three namespaces, sealed by `policy`, keys `obj/NNNNN`.
pub(crate) async fn seed(store: &dyn Store, policy: &PolicyKeyrings, n: usize) {
    for i in 0..n {
        let ns = format!("tenant-{}", i % 3);
        let env = policy.seal(&ns, &plaintext(i)).await.expect("seal");
        store.create(&key(i), env).await.expect("create");
    }
}

fn key(i: usize) -> String {
    format!("obj/{i:05}")
}

/// Every object opens to its plaintext under `policy` and names `kek_id`.
pub(crate) async fn assert_all_on(
    store: &dyn Store,
    policy: &PolicyKeyrings,
    n: usize,
    kek_id: &str,
) {
    for i in 0..n {
        let bytes = store.read(&key(i)).await.expect("read").bytes;
        let header = inspect(&bytes).expect("envelope");
        assert_eq!(header.kek().key_id(), kek_id, "{}", key(i));
        let ns = header
            .context
            .get("namespace")
            .expect("namespace")
            .to_owned();
        assert_eq!(
            policy.open(&ns, &bytes).await.expect("opens"),
            plaintext(i),
            "{}",
            key(i)
        );
    }
}

fn name(kek: &sealbox_core::KekRef) -> String {
    format!("{}:{}", kek.provider(), kek.key_id())
}

#[tokio::test]
async fn rewrap_moves_every_envelope_to_the_active_kek_on_a_file_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(&format!("file://{}", dir.path().display()))
        .await
        .expect("store");
    let Rotation { k, before, after } = seeded(store.as_ref(), 300, 10).await;
    store
        .create("notes/readme.txt", b"not an envelope".to_vec())
        .await
        .expect("create");
    let external = external_storage_object(&before.seal("tenant-0", b"big").await.expect("seal"));
    store
        .create("ext/blob", external.clone())
        .await
        .expect("create");

    // A dry run changes nothing and says what would change.
    let mut dry = RunOptions::new(Mode::Rewrap);
    dry.dry_run = true;
    let report = run(&after, store.as_ref(), &dry).await.expect("dry run");
    assert_eq!((report.would_change, report.changed), (300, 0));
    assert_all_on(store.as_ref(), &before, 300, "old").await;

    let report = run_mode(&after, store.as_ref(), Mode::Rewrap).await;
    assert_eq!(report.scanned, 302);
    assert_eq!(report.changed, 300);
    assert_eq!((report.not_envelopes, report.external_objects), (1, 1));
    assert!(
        report.failed.is_empty() && report.conflicts.is_empty(),
        "{report:?}"
    );
    // The old KEK is no longer needed for any envelope: a policy without it opens them all.
    let only_new = policy(&k.new, &[], 10).await;
    assert_all_on(store.as_ref(), &only_new, 300, "new").await;
    // External-storage objects and other files are untouched.
    assert_eq!(store.read("ext/blob").await.expect("read").bytes, external);
    assert_eq!(
        store.read("notes/readme.txt").await.expect("read").bytes,
        b"not an envelope"
    );
    // Idempotent: a second run skips everything.
    let again = run(&after, store.as_ref(), &RunOptions::new(Mode::Rewrap))
        .await
        .expect("rerun");
    assert_eq!((again.changed, again.skipped), (0, 300));
}

#[tokio::test]
async fn rewrap_makes_three_kms_calls_per_distinct_data_key() {
    let k = keys();
    let store = open_store("memory://").await.expect("store");
    // 10,000 envelopes, one namespace, 100 payloads per lease: 100 distinct data keys.
    let before = policy(&k.old, &[], 100).await;
    for i in 0..10_000 {
        let env = before.seal("tenant-0", &plaintext(i)).await.expect("seal");
        store.create(&key(i), env).await.expect("create");
    }
    assert_eq!(before.keyrings()[0].stats().generate_calls, 100);
    let after = policy(&k.new, &[&k.old], 100).await;
    let report = run_mode(&after, store.as_ref(), Mode::Rewrap).await;
    assert_eq!(report.changed, 10_000);
    let stats = after.keyrings()[0].stats();
    // Per distinct data key: unwrap the old wrapped key (also opens the old envelope for
    // the plaintext check), wrap it with the new KEK, unwrap the new one to verify.
    assert_eq!(
        (
            stats.unwrap_calls,
            stats.wrap_calls,
            stats.rewrap_calls,
            stats.generate_calls
        ),
        (200, 100, 0, 0)
    );
    assert!(report.kms_calls <= 300, "{}", report.kms_calls);
    let headers: std::collections::HashSet<Vec<u8>> = futures_keys(store.as_ref(), 10_000)
        .await
        .into_iter()
        .collect();
    assert_eq!(headers.len(), 100, "the 100 shared data keys stay shared");
}

async fn futures_keys(store: &dyn Store, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..n {
        let bytes = store.read(&key(i)).await.expect("read").bytes;
        out.push(
            inspect(&bytes)
                .expect("env")
                .wrapped_key
                .ciphertext()
                .to_vec(),
        );
    }
    out
}

/// A store with injected faults: another writer replaces `race`'s object right after the job
/// reads it (once), and listing fails once `pages` pages have been listed, as a crash would
/// stop a run.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn Store>,
    race: Option<(String, Vec<u8>)>,
    raced: AtomicBool,
    pages: AtomicUsize,
}

impl Faulty {
    fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            race: None,
            raced: AtomicBool::new(false),
            pages: AtomicUsize::new(usize::MAX),
        }
    }
}

#[async_trait]
impl Store for Faulty {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<ObjectMeta>, StoreError> {
        if self.pages.fetch_sub(1, Ordering::SeqCst) == 0 {
            return Err(StoreError::Backend {
                key: None,
                message: "injected crash".into(),
            });
        }
        self.inner.list(after, limit).await
    }
    async fn read(&self, key: &str) -> Result<Object, StoreError> {
        let object = self.inner.read(key).await?;
        if let Some((victim, replacement)) = &self.race
            && key == victim
            && !self.raced.swap(true, Ordering::SeqCst)
        {
            self.inner
                .replace(key, &object.version, replacement.clone())
                .await?;
        }
        Ok(object)
    }
    async fn replace(
        &self,
        key: &str,
        expected: &Version,
        bytes: Vec<u8>,
    ) -> Result<Version, StoreError> {
        self.inner.replace(key, expected, bytes).await
    }
    async fn create(&self, key: &str, bytes: Vec<u8>) -> Result<Version, StoreError> {
        self.inner.create(key, bytes).await
    }
}

#[tokio::test]
async fn a_concurrent_writer_is_never_overwritten() {
    let inner = open_store("memory://").await.expect("store");
    let Rotation { before, after, .. } = seeded(inner.as_ref(), 50, 10).await;
    // The writer stores a new envelope under the old KEK after the job has read obj/00007.
    let writers = before
        .seal("tenant-1", b"the writer's data")
        .await
        .expect("seal");
    let store = Faulty {
        race: Some((key(7), writers.clone())),
        ..Faulty::new(inner.clone())
    };
    let report = run_mode(&after, &store, Mode::Rewrap).await;
    assert_eq!(report.conflicts, vec![key(7)]);
    assert_eq!(report.changed, 49);
    assert_eq!(inner.read(&key(7)).await.expect("read").bytes, writers);
    // A second run picks it up.
    let again = run_mode(&after, inner.as_ref(), Mode::Rewrap).await;
    assert_eq!((again.changed, again.conflicts.len()), (1, 0));
}

#[tokio::test]
async fn shards_cover_every_object_exactly_once() {
    let store = open_store("memory://").await.expect("store");
    let Rotation { after, .. } = seeded(store.as_ref(), 200, 10).await;
    let mut total = 0;
    for i in 0..3 {
        let mut options = RunOptions::new(Mode::Rewrap);
        options.shard = Shard::new(i, 3).expect("shard");
        let report = run(&after, store.as_ref(), &options).await.expect("run");
        // Each shard sees only its own keys: none of them was done by an earlier shard.
        assert_eq!(report.skipped, 0, "shard {i}");
        assert!(report.changed > 30, "shard {i}: {}", report.changed);
        total += report.changed;
    }
    assert_eq!(total, 200);
    assert_all_on(store.as_ref(), &after, 200, "new").await;
}

#[tokio::test]
async fn reencrypt_gives_fresh_data_keys_and_the_same_plaintexts() {
    let store = open_store("memory://").await.expect("store");
    let Rotation { after, .. } = seeded(store.as_ref(), 60, 1000).await;
    let old_keys = futures_keys(store.as_ref(), 60).await;
    let report = run_mode(&after, store.as_ref(), Mode::Reencrypt).await;
    assert_eq!(report.changed, 60);
    let new_keys = futures_keys(store.as_ref(), 60).await;
    assert!(new_keys.iter().all(|k| !old_keys.contains(k)));
    assert_all_on(store.as_ref(), &after, 60, "new").await;
}

#[tokio::test]
async fn a_checkpointed_run_resumes_after_its_last_page() {
    let inner = open_store("memory://").await.expect("store");
    let Rotation { after, .. } = seeded(inner.as_ref(), 100, 10).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = RunOptions::new(Mode::Rewrap);
    options.checkpoint = Some(dir.path().join("run.json"));
    options.page_size = 10;
    let crashing = Faulty {
        pages: AtomicUsize::new(4),
        ..Faulty::new(inner.clone())
    };
    let err = run(&after, &crashing, &options).await.expect_err("crashes");
    assert!(matches!(err, RunError::Store(_)), "{err}");
    // Resume: the 40 done are not scanned again; the counts add up over both runs.
    let report = run(&after, inner.as_ref(), &options).await.expect("resume");
    assert_eq!(
        (report.scanned, report.changed, report.skipped),
        (100, 100, 0)
    );
    assert_all_on(inner.as_ref(), &after, 100, "new").await;
    // A finished checkpoint answers with its report; another run's checkpoint is refused.
    assert_eq!(
        run(&after, inner.as_ref(), &options).await.expect("done"),
        report
    );
    let mut other = options.clone();
    other.mode = Mode::Reencrypt;
    let err = run(&after, inner.as_ref(), &other)
        .await
        .expect_err("other run");
    assert!(err.to_string().contains("belongs to another run"), "{err}");
}

#[tokio::test]
async fn inventory_and_check_gate_retirement() {
    let store = open_store("memory://").await.expect("store");
    let Rotation { k, after, .. } = seeded(store.as_ref(), 40, 10).await;
    store
        .create("junk", b"junk".to_vec())
        .await
        .expect("create");

    let inv = inventory(store.as_ref(), Shard::ALL, 4, &name)
        .await
        .expect("inventory");
    assert_eq!((inv.total, inv.not_envelopes, inv.damaged), (41, 1, 0));
    assert_eq!(inv.by_kek.len(), 1);
    assert_eq!(
        (inv.by_kek[0].kek.as_str(), inv.by_kek[0].count),
        ("local:old", 40)
    );

    // Through the provider: the policy's URI, and the host-less form a header displays.
    for uri in [k.old.as_str(), "local:///old"] {
        let retire = Retire::resolve(uri, &after).await.expect("resolves");
        let report = check(store.as_ref(), &retire, None, 4).await;
        assert_eq!((report.exit_code(), report.in_use), (1, 40), "{uri}");
        assert_eq!(report.examples.len(), 10);
    }
    run_mode(&after, store.as_ref(), Mode::Rewrap).await;
    let retire = Retire::resolve(&k.old, &after).await.expect("resolves");
    assert_eq!(check(store.as_ref(), &retire, None, 4).await.exit_code(), 0);
    // A damaged envelope makes the scan incomplete: never a "free".
    store
        .create("broken", b"SBXE\x01\x00".to_vec())
        .await
        .expect("create");
    let report = check(store.as_ref(), &retire, None, 4).await;
    assert_eq!((report.exit_code(), report.damaged), (3, 1));
    // Unparsable URIs are usage errors.
    assert!(Retire::resolve("nope://x", &after).await.is_err());
}
