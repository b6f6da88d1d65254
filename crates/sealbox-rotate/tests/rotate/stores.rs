//! The store conformance suite — the definition of "a store works" — and its runs per store
//! kind, each against a real backend: a temporary directory, `object_store`'s `InMemory`,
//! S3 on a moto server, and a PostgreSQL server. Each check is a plain async function over a
//! [`Harness`]; [`store_conformance!`] turns them into one test each.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sealbox_rotate::{Store, StoreError, Version};

/// A store kind's test setup: the store under test, and `behind`, which reaches the same
/// objects behind the store's back (and holds what serves them).
pub(crate) struct Harness<B: ?Sized> {
    /// The store under test (keys relative to its root or prefix).
    store: Arc<dyn Store>,
    behind: B,
}

/// What the suite needs from a store kind's backend, behind the store's back.
#[async_trait]
pub(crate) trait Behind: Send + Sync {
    /// Deletes `key`.
    async fn delete(&self, key: &str);
    /// Writes `key`, as another program would.
    async fn overwrite(&self, key: &str, bytes: &[u8]);
}

impl<B: Behind + ?Sized> Harness<B> {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }
    async fn delete(&self, key: &str) {
        self.behind.delete(key).await;
    }
    async fn overwrite(&self, key: &str, bytes: &[u8]) {
        self.behind.overwrite(key, bytes).await;
    }
}

/// Keys that sort differently bytewise than by any locale or by walking directories
/// naively (`a b` < `a-b` < `a.b` < `a/…` < `a0` < `ab`; upper case before lower case;
/// multi-byte UTF-8 last). No key is a prefix directory of another file key, so every store
/// kind can hold all of them.
const ODD_KEYS: &[&str] = &[
    "z",
    "a/b",
    "日本/語",
    "a.b",
    "B",
    "a b",
    "ü",
    "a/c/d",
    "0",
    "a-b",
    "~x",
    "Z/a",
    "a0",
    "ab",
    "b",
    "é/ç",
    "a/b.c",
    "sp ace/x y",
];

/// Deterministic bytes of length `len`.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) as u8).wrapping_add(seed))
        .collect()
}

fn is_conflict(r: &Result<Version, StoreError>, key: &str) -> bool {
    matches!(r, Err(StoreError::Conflict { key: k }) if k == key)
}

fn is_not_found<T>(r: &Result<T, StoreError>, key: &str) -> bool {
    matches!(r, Err(StoreError::NotFound { key: k }) if k == key)
}

/// Every key, paging with `limit`, checking each page's order and size.
async fn walk(store: &dyn Store, limit: usize) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10_000 {
        let page = store.list(after.as_deref(), limit).await.expect("list");
        assert!(
            page.len() <= limit,
            "page of {} > limit {limit}",
            page.len()
        );
        if page.is_empty() {
            return all;
        }
        for meta in &page {
            if let Some(a) = &after {
                assert!(meta.key > *a, "{} listed after cursor {a}", meta.key);
            }
            assert!(
                all.last().is_none_or(|(last, _)| *last < meta.key),
                "{} out of order",
                meta.key
            );
            all.push((meta.key.clone(), meta.size));
        }
        after = page.last().map(|m| m.key.clone());
    }
    panic!("listing did not end");
}

/// The keys of [`walk`], without their sizes.
async fn walk_keys(store: &dyn Store, limit: usize) -> Vec<String> {
    walk(store, limit)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// `key` reads back as `bytes` at `version`; `what` says which write is checked.
async fn assert_holds(s: &dyn Store, key: &str, bytes: &[u8], version: &Version, what: &str) {
    let o = s.read(key).await.expect("read");
    assert!(
        o.bytes == bytes,
        "{key}: {what}: came back different ({} bytes)",
        o.bytes.len()
    );
    assert_eq!(&o.version, version, "{key}: {what}: the version");
}

/// `bad` is refused as an invalid key by create and by read.
async fn assert_key_refused(s: &dyn Store, bad: &str) {
    let r = s.create(bad, b"x".to_vec()).await;
    assert!(
        matches!(r, Err(StoreError::InvalidKey { .. })),
        "{bad:?}: {r:?}"
    );
    let r = s.read(bad).await;
    assert!(
        matches!(r, Err(StoreError::InvalidKey { .. })),
        "{bad:?}: {r:?}"
    );
}

/// create → read returns the bytes and the same version, twice; a missing key is NotFound.
pub(crate) async fn round_trip(h: &Harness<dyn Behind>) {
    let s = h.store();
    let v = s
        .create("env/one", b"first envelope".to_vec())
        .await
        .expect("create");
    let what = "create and read disagree";
    assert_holds(&*s, "env/one", b"first envelope", &v, what).await;
    let again = s.read("env/one").await.expect("read again");
    assert_eq!(again.version, v, "version changed without a write");
    let r = s.read("env/missing").await;
    assert!(is_not_found(&r, "env/missing"), "{r:?}");
    assert!(!s.describe().is_empty());
}

/// create on an existing key is a Conflict and leaves the object alone.
pub(crate) async fn create_existing_conflicts(h: &Harness<dyn Behind>) {
    let s = h.store();
    let v = s.create("k", b"original".to_vec()).await.expect("create");
    let r = s.create("k", b"intruder".to_vec()).await;
    assert!(is_conflict(&r, "k"), "{r:?}");
    assert_holds(&*s, "k", b"original", &v, "after the refused create").await;
}

/// Paging with any limit visits every key once, in bytewise order, with its size.
pub(crate) async fn list_pages_in_bytewise_order(h: &Harness<dyn Behind>) {
    let s = h.store();
    for (i, key) in ODD_KEYS.iter().enumerate() {
        s.create(key, pattern(i * 3, 1)).await.expect(key);
    }
    let mut expected: Vec<(String, u64)> = ODD_KEYS
        .iter()
        .enumerate()
        .map(|(i, k)| ((*k).to_owned(), (i * 3) as u64))
        .collect();
    expected.sort();
    assert_ne!(
        expected.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ODD_KEYS,
        "the keys must be created out of order"
    );
    for limit in [1, 2, 3, 7, 1000] {
        assert_eq!(walk(&*s, limit).await, expected, "limit {limit}");
    }
    let last = &expected[expected.len() - 1].0;
    assert!(s.list(Some(last), 10).await.expect("list").is_empty());
    assert!(s.list(None, 0).await.expect("list").is_empty());
    // A cursor that is not a key resumes at the next key.
    let page = s.list(Some("a/b!"), 2).await.expect("list");
    let keys: Vec<&str> = page.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["a/b.c", "a/c/d"]);
}

/// Objects added or removed between pages: those present for the whole walk are seen exactly
/// once, none twice, none that was removed before the walk reached it, and none that was
/// added behind the cursor.
pub(crate) async fn list_is_stable_under_changes(h: &Harness<dyn Behind>) {
    let s = h.store();
    let mut initial: Vec<String> = (0..24).map(|i| format!("d{}/k{i:02}", i % 3)).collect();
    for key in &initial {
        s.create(key, b"x".to_vec()).await.expect(key);
    }
    initial.sort();
    let mut removed_seen: BTreeSet<String> = BTreeSet::new();
    let mut removed_unseen: BTreeSet<String> = BTreeSet::new();
    let mut added_behind: BTreeSet<String> = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut after: Option<String> = None;
    for page_no in 1.. {
        assert!(page_no < 100, "listing did not end");
        let page = s.list(after.as_deref(), 4).await.expect("list");
        let Some(last) = page.last() else {
            break;
        };
        for m in &page {
            *seen.entry(m.key.clone()).or_default() += 1;
        }
        let cursor = last.key.clone();
        after = Some(cursor.clone());
        if page_no > 3 {
            continue;
        }
        // Remove one object already seen and the last one not reached yet; add one behind
        // the cursor and one ahead of it.
        let behind = seen
            .keys()
            .find(|k| initial.contains(*k) && !removed_seen.contains(*k))
            .cloned()
            .expect("a seen key");
        h.delete(&behind).await;
        removed_seen.insert(behind);
        let ahead = initial
            .iter()
            .rev()
            .find(|k| **k > cursor && !removed_unseen.contains(*k))
            .cloned()
            .expect("a key ahead");
        h.delete(&ahead).await;
        removed_unseen.insert(ahead);
        let new_behind = format!("a-new-{page_no}");
        s.create(&new_behind, b"y".to_vec()).await.expect("create");
        added_behind.insert(new_behind);
        let new_ahead = format!("{cursor}-new");
        s.create(&new_ahead, b"y".to_vec()).await.expect("create");
    }
    for (key, n) in &seen {
        assert_eq!(*n, 1, "{key} seen {n} times");
    }
    for key in &initial {
        if !removed_seen.contains(key) && !removed_unseen.contains(key) {
            assert!(
                seen.contains_key(key),
                "{key}, present throughout, never seen"
            );
        }
    }
    for key in removed_unseen.iter().chain(&added_behind) {
        assert!(
            !seen.contains_key(key),
            "{key} seen although it was not there when the walk passed"
        );
    }
    assert_eq!(removed_unseen.len(), 3);
}

/// replace with the current version writes the new bytes and returns a new version, which
/// a read confirms; the old version is then stale.
pub(crate) async fn replace_with_current_version(h: &Harness<dyn Behind>) {
    let s = h.store();
    let v1 = s.create("r", b"one".to_vec()).await.expect("create");
    let read = s.read("r").await.expect("read");
    let v2 = s
        .replace("r", &read.version, b"two".to_vec())
        .await
        .expect("replace");
    assert_ne!(v2, v1, "a replace with new bytes must change the version");
    assert_holds(&*s, "r", b"two", &v2, "replace and read disagree").await;
    let v3 = s
        .replace("r", &v2, b"three".to_vec())
        .await
        .expect("replace with the returned version");
    assert_eq!(s.read("r").await.expect("read").version, v3);
}

/// replace with a stale (or made-up) version is a Conflict and writes nothing.
pub(crate) async fn replace_with_stale_version_conflicts(h: &Harness<dyn Behind>) {
    let s = h.store();
    let v1 = s.create("s", b"one".to_vec()).await.expect("create");
    let v2 = s.replace("s", &v1, b"two".to_vec()).await.expect("replace");
    let r = s.replace("s", &v1, b"lost update".to_vec()).await;
    assert!(is_conflict(&r, "s"), "{r:?}");
    let r = s
        .replace("s", &Version("not-a-version".into()), b"junk".to_vec())
        .await;
    assert!(is_conflict(&r, "s"), "{r:?}");
    assert_holds(&*s, "s", b"two", &v2, "after the refused replaces").await;
}

/// A write by someone else after the read makes the replace a Conflict; their bytes stay.
pub(crate) async fn foreign_write_conflicts(h: &Harness<dyn Behind>) {
    let s = h.store();
    s.create("f", b"original bytes".to_vec())
        .await
        .expect("create");
    let read = s.read("f").await.expect("read");
    h.overwrite("f", b"written by someone else").await;
    let r = s.replace("f", &read.version, b"rotated".to_vec()).await;
    assert!(is_conflict(&r, "f"), "{r:?}");
    assert_eq!(
        s.read("f").await.expect("read").bytes,
        b"written by someone else"
    );
}

/// Of N concurrent replaces of the same version, exactly one wins; the others conflict and
/// the object holds the winner's bytes.
pub(crate) async fn concurrent_replaces_one_wins(h: &Harness<dyn Behind>) {
    const N: usize = 8;
    let s = h.store();
    s.create("c", b"start".to_vec()).await.expect("create");
    for round in 0..3 {
        let base = s.read("c").await.expect("read").version;
        let barrier = Arc::new(tokio::sync::Barrier::new(N));
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let (s, base, barrier) = (Arc::clone(&s), base.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    let bytes = format!("round {round} writer {i}").into_bytes();
                    barrier.wait().await;
                    (i, s.replace("c", &base, bytes).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (i, result) = task.await.expect("task");
            match result {
                Ok(v) => winners.push((i, v)),
                Err(StoreError::Conflict { key }) => assert_eq!(key, "c"),
                Err(e) => panic!("writer {i}: {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} writers won",
            winners.len()
        );
        let (i, v) = &winners[0];
        let winner = format!("round {round} writer {i}").into_bytes();
        assert_holds(&*s, "c", &winner, v, "the winner").await;
    }
}

/// replace of a deleted or never-created key is NotFound and creates nothing.
pub(crate) async fn replace_missing_is_not_found(h: &Harness<dyn Behind>) {
    let s = h.store();
    let v = s
        .create("gone", b"soon gone".to_vec())
        .await
        .expect("create");
    h.delete("gone").await;
    let r = s.replace("gone", &v, b"resurrected".to_vec()).await;
    assert!(is_not_found(&r, "gone"), "{r:?}");
    assert!(is_not_found(&s.read("gone").await, "gone"));
    let r = s.replace("never", &v, b"created?".to_vec()).await;
    assert!(is_not_found(&r, "never"), "{r:?}");
    assert!(is_not_found(&s.read("never").await, "never"));
    assert!(
        s.list(None, 100).await.expect("list").is_empty(),
        "a replace created an object"
    );
}

/// A few MiB round trip through create, read, replace and list.
pub(crate) async fn large_object(h: &Harness<dyn Behind>) {
    let s = h.store();
    let big = pattern(5 * 1024 * 1024 + 7, 3);
    let v = s.create("big", big.clone()).await.expect("create");
    assert_holds(&*s, "big", &big, &v, "5 MiB object").await;
    let other = pattern(3 * 1024 * 1024, 9);
    let v2 = s.replace("big", &v, other.clone()).await.expect("replace");
    assert_holds(&*s, "big", &other, &v2, "replaced 3 MiB object").await;
    let listed = s.list(None, 10).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, other.len() as u64);
}

/// An empty object is an object: created, listed with size 0, read, replaced both ways.
pub(crate) async fn empty_object(h: &Harness<dyn Behind>) {
    let s = h.store();
    let v = s.create("empty", Vec::new()).await.expect("create");
    assert_holds(&*s, "empty", b"", &v, "created empty").await;
    let listed = s.list(None, 10).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].key.as_str(), listed[0].size), ("empty", 0));
    let v2 = s
        .replace("empty", &v, b"x".to_vec())
        .await
        .expect("replace");
    let v3 = s
        .replace("empty", &v2, Vec::new())
        .await
        .expect("replace back");
    assert_holds(&*s, "empty", b"", &v3, "replaced back to empty").await;
}

/// Keys no store can hold (empty, NUL) are refused by every operation, without a panic.
pub(crate) async fn invalid_keys_refused(h: &Harness<dyn Behind>) {
    let s = h.store();
    let v = s.create("ok", b"ok".to_vec()).await.expect("create");
    for bad in ["", "a\0b"] {
        assert_key_refused(&*s, bad).await;
        let r = s.replace(bad, &v, b"x".to_vec()).await;
        assert!(
            matches!(r, Err(StoreError::InvalidKey { .. })),
            "{bad:?}: {r:?}"
        );
    }
    let listed = s.list(None, 10).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
}

/// Behind an object store kind's store (over the prefix `envelopes/` of a bucket): a second
/// client (`raw`) on the same bucket, and what serves it (`server`).
pub(crate) struct ObjectBehind<O, S = ()> {
    server: S,
    raw: O,
}

/// Where the store over an [`ObjectBehind`] keeps `key`.
fn object_path(key: &str) -> Path {
    Path::parse(format!("envelopes/{key}")).expect("path")
}

#[async_trait]
impl<O: ObjectStore, S: Send + Sync> Behind for ObjectBehind<O, S> {
    async fn delete(&self, key: &str) {
        self.raw.delete(&object_path(key)).await.expect("delete");
    }
    async fn overwrite(&self, key: &str, bytes: &[u8]) {
        self.raw
            .put(&object_path(key), PutPayload::from(bytes.to_vec()))
            .await
            .expect("put");
    }
}

/// With objects at `outside` (paths beside the prefix, or the prefix itself) and `k` created
/// in the store, the store lists `k` alone.
async fn assert_prefix_isolates<O: ObjectStore, S>(
    h: &Harness<ObjectBehind<O, S>>,
    outside: &[&str],
) {
    for outside in outside {
        h.behind
            .raw
            .put(
                &Path::parse(*outside).expect("path"),
                PutPayload::from(b"o".to_vec()),
            )
            .await
            .expect("put");
    }
    h.store.create("k", b"in".to_vec()).await.expect("create");
    assert_eq!(walk_keys(&*h.store, 2).await, ["k"]);
}

/// One test per check for the store kind built by `$make` (an async fn returning a
/// [`Harness`] of a [`Behind`]).
macro_rules! store_conformance {
    ($make:path) => {
        store_conformance!(@tests $make;
            round_trip,
            create_existing_conflicts,
            list_pages_in_bytewise_order,
            list_is_stable_under_changes,
            replace_with_current_version,
            replace_with_stale_version_conflicts,
            foreign_write_conflicts,
            concurrent_replaces_one_wins,
            replace_missing_is_not_found,
            large_object,
            empty_object,
            invalid_keys_refused,
        );
    };
    (@tests $make:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let harness = $make().await;
                $crate::stores::$check(&harness).await;
            }
        )*
    };
}

/// The file store, on a temporary directory.
mod file {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    use sealbox_rotate::{open_store, open_store_with};

    use super::*;

    pub(crate) struct FileBehind {
        /// Holds `store/` (the store's root) and whatever a test puts beside it.
        dir: tempfile::TempDir,
        root: PathBuf,
    }

    async fn make() -> Harness<FileBehind> {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("store");
        std::fs::create_dir(&root).expect("mkdir");
        let store = open_store(root.to_str().expect("UTF-8 path"))
            .await
            .expect("open");
        let behind = FileBehind { dir, root };
        Harness { store, behind }
    }

    #[async_trait]
    impl Behind for FileBehind {
        async fn delete(&self, key: &str) {
            std::fs::remove_file(self.root.join(key)).expect("delete");
        }
        async fn overwrite(&self, key: &str, bytes: &[u8]) {
            std::fs::write(self.root.join(key), bytes).expect("overwrite in place");
        }
    }

    store_conformance!(make);

    /// A child process killed when dropped (also when the test panics).
    struct KillOnDrop(std::process::Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn names(dir: &std::path::Path) -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
            .collect()
    }

    /// A writer killed mid-replace leaves a temporary file; the next open deletes it. A live
    /// writer's temporary file (locked, here by `flock(1)` in another process) is kept until
    /// that process dies. `.sealbox-rotate/` is never listed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leftover_temporary_files_are_swept_at_open() {
        let h = make().await;
        let v = h.store.create("a", b"a".to_vec()).await.expect("create");
        h.store
            .replace("a", &v, b"b".to_vec())
            .await
            .expect("replace");
        let work = h.behind.root.join(".sealbox-rotate");
        assert_eq!(names(&work), BTreeSet::from(["lock".to_owned()]));
        std::fs::write(work.join("tmp-dead"), b"half an envelope").expect("plant");
        let live = work.join("tmp-live");
        std::fs::write(&live, b"in flight").expect("plant");
        // One process holding the lock (a shell that locks fd 9 with flock(1), then becomes
        // `sleep` keeping fd 9): killing it releases the lock, as a killed writer's would.
        let mut writer = KillOnDrop(
            Command::new("sh")
                .args(["-c", "exec 9<\"$0\" && flock -x 9 && exec sleep 600"])
                .arg(&live)
                .stdin(Stdio::null())
                .spawn()
                .expect("sh and flock(1) (util-linux)"),
        );
        // Wait until the other process holds the lock (condition, not a delay).
        let probe = std::fs::File::open(&live).expect("open");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match probe.try_lock() {
                Err(std::fs::TryLockError::WouldBlock) => break,
                Ok(()) => probe.unlock().expect("unlock"),
                Err(std::fs::TryLockError::Error(e)) => panic!("try_lock: {e}"),
            }
            if let Ok(Some(status)) = writer.0.try_wait() {
                panic!("the locking process exited ({status}): is flock(1) (util-linux) there?");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "flock(1) never took the lock"
            );
            // Polling a condition (the other process holds the lock), not a delay.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }

        let store = open_store(h.behind.root.to_str().expect("UTF-8"))
            .await
            .expect("open");
        assert_eq!(
            names(&work),
            BTreeSet::from(["lock".to_owned(), "tmp-live".to_owned()]),
            "the dead writer's file must go, the live one's stay"
        );
        let keys: Vec<String> = store
            .list(None, 100)
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["a"]);

        writer.0.kill().expect("SIGKILL the writer");
        writer.0.wait().expect("wait");
        drop(probe);
        open_store(h.behind.root.to_str().expect("UTF-8"))
            .await
            .expect("open");
        assert_eq!(names(&work), BTreeSet::from(["lock".to_owned()]));
        assert_eq!(h.store.read("a").await.expect("read").bytes, b"b");
    }

    /// Keys that would leave the store, or reach its own directory, are refused by every
    /// operation; nothing is written outside the store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_outside_the_store_are_refused() {
        let h = make().await;
        let v = h
            .store
            .create("inside", b"in".to_vec())
            .await
            .expect("create");
        let absolute = format!("{}/escaped", h.behind.dir.path().display());
        for bad in [
            "../escaped",
            "a/../../escaped",
            absolute.as_str(),
            "a//b",
            "a/",
            ".",
            "..",
            "./a",
            "a/./b",
            ".sealbox-rotate/lock",
            ".sealbox-rotate/tmp-x",
            ".sealbox-rotate",
            "a\0b",
            "",
        ] {
            assert_key_refused(&*h.store, bad).await;
            let r = h.store.replace(bad, &v, b"x".to_vec()).await;
            assert!(
                matches!(r, Err(StoreError::InvalidKey { ref reason, .. }) if !reason.is_empty()),
                "{bad:?}: {r:?}"
            );
        }
        assert_eq!(
            names(h.behind.dir.path()),
            BTreeSet::from(["store".to_owned()])
        );
        assert_eq!(
            names(&h.behind.root),
            BTreeSet::from(["inside".to_owned(), ".sealbox-rotate".to_owned()])
        );
        assert_eq!(h.store.list(None, 10).await.expect("list").len(), 1);
    }

    /// Symbolic links are not objects: not listed, and neither they nor directories reached
    /// through them are read or written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn symbolic_links_are_not_followed() {
        let h = make().await;
        let outside = h.behind.dir.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("secret"), b"not an envelope").expect("write");
        std::os::unix::fs::symlink(outside.join("secret"), h.behind.root.join("link"))
            .expect("symlink");
        std::os::unix::fs::symlink(&outside, h.behind.root.join("ldir")).expect("symlink");
        let v = h.store.create("real", b"r".to_vec()).await.expect("create");

        assert_eq!(walk_keys(&*h.store, 10).await, ["real"]);
        for key in ["link", "ldir/secret"] {
            let r = h.store.read(key).await;
            assert!(
                matches!(&r, Err(StoreError::Backend { message, .. }) if message.contains("symbolic link")),
                "{key}: {r:?}"
            );
            let r = h.store.replace(key, &v, b"overwritten".to_vec()).await;
            assert!(matches!(r, Err(StoreError::Backend { .. })), "{key}: {r:?}");
        }
        let r = h.store.create("ldir/new", b"x".to_vec()).await;
        assert!(matches!(r, Err(StoreError::Backend { .. })), "{r:?}");
        assert_eq!(names(&outside), BTreeSet::from(["secret".to_owned()]));
        assert_eq!(
            std::fs::read(outside.join("secret")).expect("read"),
            b"not an envelope"
        );
    }

    /// A directory is not an object: reading or replacing it is NotFound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn directories_are_not_objects() {
        let h = make().await;
        let v = h.store.create("d/x", b"x".to_vec()).await.expect("create");
        assert!(is_not_found(&h.store.read("d").await, "d"));
        let r = h.store.replace("d", &v, b"y".to_vec()).await;
        assert!(is_not_found(&r, "d"), "{r:?}");
        let r = h.store.create("d", b"y".to_vec()).await;
        assert!(is_conflict(&r, "d"), "{r:?}");
        assert!(h.behind.root.join("d/x").is_file());
    }

    /// Created files are private (0600); a replace keeps the file's permission bits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn permissions_are_private_on_create_and_kept_on_replace() {
        let h = make().await;
        let mode = |key: &str| {
            std::fs::metadata(h.behind.root.join(key))
                .expect("stat")
                .permissions()
                .mode()
                & 0o7777
        };
        h.store
            .create("dir/p", b"p".to_vec())
            .await
            .expect("create");
        assert_eq!(mode("dir/p"), 0o600);
        std::fs::set_permissions(
            h.behind.root.join("dir/p"),
            std::fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        let v = h.store.read("dir/p").await.expect("read").version;
        h.store
            .replace("dir/p", &v, b"q".to_vec())
            .await
            .expect("replace");
        assert_eq!(mode("dir/p"), 0o640);
    }

    /// The version covers the content: a same-size rewrite that restores the mtime is still
    /// a conflict.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn same_size_rewrite_with_restored_mtime_conflicts() {
        let h = make().await;
        let path = h.behind.root.join("m");
        h.store
            .create("m", b"12345".to_vec())
            .await
            .expect("create");
        let before = h.store.read("m").await.expect("read").version;
        let mtime = std::fs::metadata(&path)
            .expect("stat")
            .modified()
            .expect("mtime");
        std::fs::write(&path, b"54321").expect("rewrite");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(mtime))
            .expect("restore mtime");
        let after = h.store.read("m").await.expect("read").version;
        assert_ne!(after, before);
        let r = h.store.replace("m", &before, b"rotated".to_vec()).await;
        assert!(is_conflict(&r, "m"), "{r:?}");
        assert_eq!(std::fs::read(&path).expect("read"), b"54321");
    }

    /// Two store instances on one directory (as two jobs would be) never both win.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_instances_on_one_directory_never_both_win() {
        let h = make().await;
        let other = open_store(&format!("file://{}", h.behind.root.display()))
            .await
            .expect("open again");
        h.store.create("c", b"0".to_vec()).await.expect("create");
        for round in 0..5 {
            let base = other.read("c").await.expect("read").version;
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let s = if i % 2 == 0 {
                        h.store()
                    } else {
                        Arc::clone(&other)
                    };
                    let base = base.clone();
                    tokio::spawn(async move { s.replace("c", &base, vec![round, i]).await })
                })
                .collect();
            let mut wins = 0;
            for t in tasks {
                match t.await.expect("task") {
                    Ok(_) => wins += 1,
                    Err(StoreError::Conflict { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(wins, 1, "round {round}");
        }
    }

    /// Bad locations and options are refused with the expected forms; `file://` URLs
    /// (percent-encoded) work.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn urls_and_options_are_checked() {
        let h = make().await;
        let spaced = h.behind.dir.path().join("with space");
        std::fs::create_dir(&spaced).expect("mkdir");
        let url = format!("file://{}", spaced.display()).replace(' ', "%20");
        let s = open_store(&url).await.expect("file:// URL");
        s.create("x", b"x".to_vec()).await.expect("create");
        assert!(spaced.join("x").is_file());
        assert!(s.describe().starts_with("file:///"), "{}", s.describe());

        let missing = h.behind.dir.path().join("missing");
        let file = h.behind.root.join("inside");
        std::fs::write(&file, b"x").expect("write");
        for bad in [
            missing.display().to_string(),
            file.display().to_string(),
            format!("file://otherhost{}", h.behind.root.display()),
            format!("file://{}?x=1", h.behind.root.display()),
            "ftp://example.invalid/x".to_owned(),
        ] {
            let r = open_store(&bad).await;
            assert!(
                matches!(&r, Err(StoreError::InvalidUrl(m)) if m.contains("expected")),
                "{bad}: {r:?}"
            );
        }
        let r = open_store_with(
            h.behind.root.to_str().expect("UTF-8"),
            &[("aws_region", "x")],
        )
        .await;
        assert!(
            matches!(&r, Err(StoreError::InvalidUrl(m)) if m.contains("no options")),
            "{r:?}"
        );
    }
}

/// `object_store`'s `InMemory` behind a prefix, wrapped with `from_object_store` (listing
/// order unknown: every page reads the whole listing), plus `memory://` (ordered).
mod memory {
    use futures::StreamExt;
    use object_store::memory::InMemory;
    use sealbox_rotate::{from_object_store, open_store, open_store_with};

    use super::*;

    async fn make() -> Harness<ObjectBehind<Arc<InMemory>>> {
        let raw = Arc::new(InMemory::new());
        let store = from_object_store(
            Arc::clone(&raw) as Arc<dyn ObjectStore>,
            "envelopes",
            "memory://test",
        )
        .expect("wrap");
        let behind = ObjectBehind { server: (), raw };
        Harness { store, behind }
    }

    store_conformance!(make);

    /// `memory://` opens a new, empty store each time, whose pages stop early (ordered
    /// listing) and still visit every key once in order; other forms are refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_url_opens_a_fresh_store() {
        let s = open_store("memory://").await.expect("open");
        assert_eq!(s.describe(), "memory://");
        for key in ODD_KEYS {
            s.create(key, key.as_bytes().to_vec()).await.expect(key);
        }
        let mut expected: Vec<String> = ODD_KEYS.iter().map(|k| (*k).to_owned()).collect();
        expected.sort();
        for limit in [1, 3, 100] {
            assert_eq!(walk_keys(&*s, limit).await, expected, "limit {limit}");
        }
        let fresh = open_store("memory://").await.expect("open");
        assert!(fresh.list(None, 10).await.expect("list").is_empty());
        for bad in ["memory://x", "memory:///y"] {
            let r = open_store(bad).await;
            assert!(matches!(r, Err(StoreError::InvalidUrl(_))), "{bad}: {r:?}");
        }
        let r = open_store_with("memory://", &[("aws_region", "x")]).await;
        assert!(matches!(r, Err(StoreError::InvalidUrl(_))), "{r:?}");
    }

    /// Object keys must be canonical paths; refused ones never reach the backend.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_must_be_canonical_object_paths() {
        let h = make().await;
        for bad in ["/a", "a/", "a//b", "a/../b", "..", ".", "a\nb", "a\u{7f}b"] {
            assert_key_refused(&*h.store, bad).await;
        }
        let all = h.behind.raw.list(None).collect::<Vec<_>>().await;
        assert!(all.is_empty(), "{all:?}");
    }

    /// Keys are relative to the prefix: siblings of the prefix and the prefix object itself
    /// are not listed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_prefix_isolates_the_store() {
        let h = make().await;
        let outside = [
            "envelopes-2/k",
            "envelopesk",
            "envelopes",
            "other/envelopes/k",
        ];
        assert_prefix_isolates(&h, &outside).await;
        let raw = h
            .behind
            .raw
            .get(&object_path("k"))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&raw[..], b"in");
    }
}

/// S3 on a moto server: the store opened from an `s3://` URL with explicit options, and a
/// second client behind its back.
mod s3 {
    use object_store::aws::{AmazonS3, AmazonS3Builder};
    use sealbox_rotate::open_store_with;
    use sealbox_testkit::servers::Moto;

    use super::*;

    const BUCKET: &str = "sealbox-rotate-test";
    const KEY_ID: &str = "AKIDSEALBOXTEST";
    const SECRET: &str = "dummy-secret-Zq8wX2vK";

    fn options(endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", endpoint.to_owned()),
            ("aws_region", "us-east-1".to_owned()),
            ("aws_access_key_id", KEY_ID.to_owned()),
            ("aws_secret_access_key", SECRET.to_owned()),
        ]
    }

    async fn open(url: &str, options: &[(&str, String)]) -> Result<Arc<dyn Store>, StoreError> {
        let borrowed: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
        open_store_with(url, &borrowed).await
    }

    async fn create_bucket(endpoint: &str, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .expect("create bucket");
        assert!(
            response.status().is_success(),
            "create bucket: {response:?}"
        );
    }

    async fn make() -> Harness<ObjectBehind<AmazonS3, Moto>> {
        let moto = Moto::start();
        create_bucket(&moto.endpoint, BUCKET).await;
        let store = open(
            &format!("s3://{BUCKET}/envelopes"),
            &options(&moto.endpoint),
        )
        .await
        .expect("open");
        let raw = AmazonS3Builder::new()
            .with_endpoint(&moto.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(SECRET)
            .build()
            .expect("raw client");
        let behind = ObjectBehind { server: moto, raw };
        Harness { store, behind }
    }

    store_conformance!(make);

    /// Plain HTTP only to loopback hosts or with the explicit opt-in; no request is made at
    /// open (the refused hosts are never contacted).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_http_only_on_loopback_or_by_opt_in() {
        let url = format!("s3://{BUCKET}/p");
        for endpoint in ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9"] {
            open(&url, &options(endpoint)).await.expect(endpoint);
        }
        open(&url, &options("https://s3.example.invalid"))
            .await
            .expect("https");

        let remote = "http://s3.example.invalid:9000";
        let r = open(&url, &options(remote)).await;
        assert!(
            matches!(&r, Err(StoreError::InvalidUrl(m))
                if m.contains("plain-HTTP") && m.contains("aws_allow_http=true") && !m.contains(SECRET)),
            "{r:?}"
        );
        for opt_in in ["aws_allow_http", "AWS_ALLOW_HTTP"] {
            let mut opts = options(remote);
            opts.push((opt_in, "true".to_owned()));
            open(&url, &opts).await.expect(opt_in);
        }
        let mut opts = options(remote);
        opts.push(("aws_allow_http", "false".to_owned()));
        assert!(matches!(
            open(&url, &opts).await,
            Err(StoreError::InvalidUrl(_))
        ));

        // The S3-specific endpoint wins over the generic one, so it is the one checked.
        let mut opts = options("http://127.0.0.1:9");
        opts.push(("aws_endpoint_url_s3", remote.to_owned()));
        assert!(matches!(
            open(&url, &opts).await,
            Err(StoreError::InvalidUrl(_))
        ));

        let r = open(
            &url,
            &options("https://user:pw-in-endpoint@s3.example.invalid"),
        )
        .await;
        assert!(
            matches!(&r, Err(StoreError::InvalidUrl(m)) if !m.contains("pw-in-endpoint")),
            "{r:?}"
        );
    }

    /// Malformed URLs and options are refused, saying what is expected; credentials in a
    /// URL are never echoed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn urls_and_options_are_checked() {
        let opts = options("http://127.0.0.1:9");
        for bad in [
            "s3://",
            "s3:///prefix",
            "s3://bucket:9000/p",
            "s3://bucket/p?versionId=1",
            "s3://user:url-secret@bucket/p",
            "s3://bucket/a//b",
        ] {
            let r = open(bad, &opts).await;
            assert!(
                matches!(&r, Err(StoreError::InvalidUrl(m)) if !m.contains("url-secret")),
                "{bad}: {r:?}"
            );
        }
        for (name, value, says) in [
            ("aws_endpointt", "x", "unknown option"),
            ("aws_bucket", "other", "bucket"),
            ("aws_conditional_put", "disabled", "conditional put"),
        ] {
            let mut o = opts.clone();
            o.push((name, value.to_owned()));
            let r = open(&format!("s3://{BUCKET}"), &o).await;
            assert!(
                matches!(&r, Err(StoreError::InvalidUrl(m)) if m.contains(says)),
                "{name}: {r:?}"
            );
        }
    }

    /// describe() names the bucket, prefix and endpoint; neither it, Debug nor errors show
    /// the secret key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn credentials_never_shown() {
        let h = make().await;
        let d = h.store.describe();
        assert!(
            d.contains(&format!("s3://{BUCKET}/envelopes"))
                && d.contains(&h.behind.server.endpoint),
            "{d}"
        );
        let debug = format!("{:?}", h.store);
        for shown in [&d, &debug] {
            assert!(
                !shown.contains(SECRET) && !shown.contains(KEY_ID),
                "{shown}"
            );
        }
        let missing = open("s3://no-such-bucket/p", &options(&h.behind.server.endpoint))
            .await
            .expect("open makes no request");
        let e = missing.list(None, 10).await.expect_err("no bucket");
        let shown = format!("{e} {e:?}");
        assert!(matches!(e, StoreError::Backend { .. }), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
    }

    /// Keys are relative to the prefix; objects beside it are not the store's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_prefix_isolates_the_store() {
        let h = make().await;
        let outside = ["envelopes-2/k", "envelopesk", "other/envelopes/k"];
        assert_prefix_isolates(&h, &outside).await;
        let whole = open(
            &format!("s3://{BUCKET}"),
            &options(&h.behind.server.endpoint),
        )
        .await
        .expect("open the whole bucket");
        assert_eq!(
            walk_keys(&*whole, 3).await,
            [
                "envelopes-2/k",
                "envelopes/k",
                "envelopesk",
                "other/envelopes/k"
            ]
        );
    }

    /// In a versioned bucket the version carries the version ID too; conditional replace
    /// works the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn versioned_bucket() {
        let h = make().await;
        let response = reqwest::Client::new()
            .put(format!("{}/{BUCKET}?versioning", h.behind.server.endpoint))
            .body(
                "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <Status>Enabled</Status></VersioningConfiguration>",
            )
            .send()
            .await
            .expect("enable versioning");
        assert!(response.status().is_success(), "{response:?}");
        let v1 = h.store.create("v", b"one".to_vec()).await.expect("create");
        assert!(v1.0.contains(' '), "no version ID in {v1}");
        let read = h.store.read("v").await.expect("read");
        assert_eq!(read.version, v1);
        let v2 = h
            .store
            .replace("v", &v1, b"two".to_vec())
            .await
            .expect("replace");
        assert_ne!(v2, v1);
        let r = h.store.replace("v", &v1, b"stale".to_vec()).await;
        assert!(is_conflict(&r, "v"), "{r:?}");
        assert_holds(&*h.store, "v", b"two", &v2, "versioned replace").await;
    }
}

/// PostgreSQL: a table whose key column has an ICU collation (so only `COLLATE "C"` in the
/// store's queries makes the order bytewise), and a second connection behind its back.
mod postgres {
    use sealbox_rotate::{open_store, open_store_with};
    use sealbox_testkit::postgres::Postgres;
    use tokio_postgres::{Client, NoTls};

    use super::*;

    const TABLE: &str = "CREATE TABLE envelopes (\
         name text COLLATE \"und-x-icu\" PRIMARY KEY, body bytea, note text)";

    pub(crate) struct PgBehind {
        pg: Postgres,
        client: Client,
    }

    fn store_url(pg: &Postgres) -> String {
        format!(
            "{}?table=envelopes&column=body&key=name",
            pg.url("postgres")
        )
    }

    async fn connect(pg: &Postgres) -> Client {
        let (client, connection) = tokio_postgres::connect(&pg.url("postgres"), NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
    }

    async fn make() -> Harness<PgBehind> {
        let pg = Postgres::start();
        pg.psql("postgres", TABLE);
        let store = open_store(&store_url(&pg)).await.expect("open");
        let client = connect(&pg).await;
        let behind = PgBehind { pg, client };
        Harness { store, behind }
    }

    #[async_trait]
    impl Behind for PgBehind {
        async fn delete(&self, key: &str) {
            let n = self
                .client
                .execute("DELETE FROM envelopes WHERE name = $1", &[&key])
                .await
                .expect("delete");
            assert_eq!(n, 1);
        }
        async fn overwrite(&self, key: &str, bytes: &[u8]) {
            let n = self
                .client
                .execute(
                    "UPDATE envelopes SET body = $2 WHERE name = $1",
                    &[&key, &bytes],
                )
                .await
                .expect("update");
            assert_eq!(n, 1);
        }
    }

    store_conformance!(make);

    /// Table, column and key must be plain identifiers, and all three are required; the
    /// URL is refused before any connection (the port here is closed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identifiers_are_checked_before_connecting() {
        let base = "postgres://sealbox@127.0.0.1:1/db";
        for (query, names) in [
            ("table=t;drop&column=c&key=k", "table"),
            ("table=1t&column=c&key=k", "table"),
            ("table=a.b.c&column=c&key=k", "table"),
            ("table=t%22x&column=c&key=k", "table"),
            ("table=t&column=s.c&key=k", "column"),
            ("table=t&column=c&key=k-1", "key"),
            ("table=t&column=c&key=", "key"),
            ("table=t&column=c", "required"),
            ("column=c&key=k", "required"),
        ] {
            let r = open_store(&format!("{base}?{query}")).await;
            assert!(
                matches!(&r, Err(StoreError::InvalidUrl(m)) if m.contains(names)),
                "{query}: {r:?}"
            );
        }
        let r = open_store_with(
            &format!("{base}?table=t&column=c&key=k"),
            &[("aws_region", "x")],
        )
        .await;
        assert!(matches!(r, Err(StoreError::InvalidUrl(_))), "{r:?}");
    }

    /// No TLS yet: plain text only to loopback (refused hosts are never contacted), and
    /// `sslmode=require` is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_text_only_to_loopback() {
        let q = "table=t&column=c&key=k";
        let r = open_store(&format!("postgres://u:pw-remote@db.example.invalid/x?{q}")).await;
        assert!(
            matches!(&r, Err(StoreError::InvalidUrl(m))
                if m.contains("sslmode=disable") && !m.contains("pw-remote")),
            "{r:?}"
        );
        let r = open_store(&format!("postgres://u@127.0.0.1:1/x?{q}&sslmode=require")).await;
        assert!(
            matches!(&r, Err(StoreError::InvalidUrl(m)) if m.contains("TLS is not supported")),
            "{r:?}"
        );
    }

    /// The password — in the URL, as `?password=` or as an option — is in neither
    /// describe(), Debug output nor errors.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_never_shown() {
        let pg = Postgres::start();
        pg.psql("postgres", TABLE);
        let q = "table=envelopes&column=body&key=name";
        let port = pg.port;
        let in_url = format!("postgres://sealbox:pw-in-url@127.0.0.1:{port}/postgres?{q}");
        let in_query =
            format!("postgres://sealbox@127.0.0.1:{port}/postgres?password=pw-in-query&{q}");
        let plain = format!("postgres://sealbox@127.0.0.1:{port}/postgres?{q}");
        let stores = [
            open_store(&in_url)
                .await
                .expect("trust accepts any password"),
            open_store(&in_query).await.expect("open"),
            open_store_with(&plain, &[("password", "pw-option")])
                .await
                .expect("open"),
        ];
        for s in &stores {
            let shown = format!("{} {s:?}", s.describe());
            assert!(!shown.contains("pw-"), "{shown}");
            assert!(
                shown.contains("sealbox@127.0.0.1") && shown.contains("table=envelopes"),
                "{shown}"
            );
            s.create("k", b"v".to_vec())
                .await
                .map(drop)
                .or_else(|e| match e {
                    StoreError::Conflict { .. } => Ok(()),
                    e => Err(e),
                })
                .expect("works");
        }

        let closed = sealbox_testkit::servers::free_port();
        let failures = [
            open_store(&format!("postgres://sealbox:pw-closed@127.0.0.1:{closed}/postgres?{q}")).await,
            open_store(&format!("postgres://sealbox:pw-nodb@127.0.0.1:{port}/nosuchdb?{q}")).await,
            open_store(&format!("postgres://sealbox:pw-notable@127.0.0.1:{port}/postgres?table=nosuch&column=body&key=name")).await,
            open_store(&format!("postgres://sealbox:pw-badport@127.0.0.1:notaport/postgres?{q}")).await,
            open_store_with(&format!("postgres://sealbox@127.0.0.1:{closed}/postgres?{q}"), &[("password", "pw-opt-closed")]).await,
        ];
        for (i, r) in failures.into_iter().enumerate() {
            let e = r.expect_err("must fail");
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("pw-"), "{i}: {shown}");
            let says = ["connect", "nosuchdb", "nosuch", "port", "connect"][i];
            assert!(shown.contains(says), "{i}: {shown}");
        }
    }

    /// The table must exist, `key` be text with a unique index, `column` be bytea; each
    /// mismatch is refused at open with what is wrong.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_table_is_checked_at_open() {
        let pg = Postgres::start();
        pg.psql(
            "postgres",
            "CREATE TABLE nounique (name text, body bytea); \
             CREATE TABLE partial (name text, body bytea); \
             CREATE UNIQUE INDEX ON partial (name) WHERE body IS NOT NULL; \
             CREATE TABLE wide (name text, other text, body bytea, UNIQUE (name, other)); \
             CREATE TABLE texty (name text PRIMARY KEY, body text); \
             CREATE TABLE intkey (id int PRIMARY KEY, body bytea);",
        );
        let db = pg.url("postgres");
        for (query, says) in [
            ("table=missing&column=body&key=name", "does not exist"),
            ("table=nounique&column=body&key=name", "unique index"),
            ("table=partial&column=body&key=name", "unique index"),
            ("table=wide&column=body&key=name", "unique index"),
            ("table=texty&column=body&key=name", "bytea"),
            ("table=intkey&column=body&key=id", "text"),
            ("table=texty&column=nosuch&key=name", "no column `nosuch`"),
        ] {
            let r = open_store(&format!("{db}?{query}")).await;
            assert!(
                matches!(&r, Err(StoreError::Backend { message, .. }) if message.contains(says)),
                "{query}: {r:?}"
            );
        }
    }

    /// Schema-qualified, mixed-case identifiers are quoted exactly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schema_qualified_mixed_case_table() {
        let pg = Postgres::start();
        pg.psql(
            "postgres",
            "CREATE SCHEMA vault; \
             CREATE TABLE vault.\"Envelopes\" (\"Key\" varchar(200) PRIMARY KEY, \"Body\" bytea)",
        );
        let s = open_store(&format!(
            "{}?table=vault.Envelopes&column=Body&key=Key",
            pg.url("postgres")
        ))
        .await
        .expect("open");
        let v = s.create("a/b", b"x".to_vec()).await.expect("create");
        s.replace("a/b", &v, b"y".to_vec()).await.expect("replace");
        let count = pg.psql(
            "postgres",
            "SELECT count(*) FROM vault.\"Envelopes\" WHERE \"Body\" = 'y'",
        );
        assert_eq!(count.trim(), "1");
        let listed = s.list(None, 10).await.expect("list");
        assert_eq!(
            listed,
            [sealbox_rotate::ObjectMeta {
                key: "a/b".into(),
                size: 1
            }]
        );
    }

    /// A row whose envelope column is NULL is not an object.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_with_null_are_not_objects() {
        let h = make().await;
        h.behind
            .client
            .execute(
                "INSERT INTO envelopes (name, body) VALUES ('nothing', NULL)",
                &[],
            )
            .await
            .expect("insert");
        let v = h.store.create("real", b"r".to_vec()).await.expect("create");
        assert_eq!(walk_keys(&*h.store, 5).await, ["real"]);
        assert!(is_not_found(&h.store.read("nothing").await, "nothing"));
        let r = h.store.replace("nothing", &v, b"x".to_vec()).await;
        assert!(is_not_found(&r, "nothing"), "{r:?}");
        let r = h.store.create("nothing", b"x".to_vec()).await;
        assert!(is_conflict(&r, "nothing"), "{r:?}");
    }

    /// After the server drops the store's connection, at most one call fails and the store
    /// reconnects.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconnects_after_the_connection_drops() {
        let h = make().await;
        let v = h.store.create("k", b"1".to_vec()).await.expect("create");
        let killed: bool = h
            .behind
            .client
            .query_one(
                "SELECT bool_and(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = 'sealbox-rotate'",
                &[],
            )
            .await
            .expect("terminate")
            .get(0);
        assert!(killed);
        let first = h.store.read("k").await;
        let o = match first {
            Ok(o) => o,
            Err(StoreError::Backend { .. }) => h.store.read("k").await.expect("reconnected"),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(o.version, v);
        let _ = &h.behind.pg;
    }
}
