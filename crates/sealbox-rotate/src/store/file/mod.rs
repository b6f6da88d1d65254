//! The file store: a directory tree of envelope files.
//!
//! - Keys are `/`-separated paths relative to the root (validated by [`check_key`]); only
//!   regular files are objects. Symbolic links are neither listed nor followed: a key whose
//!   file, or any directory on its way, is a link is refused with a backend error.
//! - Listing walks the tree depth-first, each directory's entries sorted by their key (a
//!   directory `d` counting as `d/`), which yields keys in bytewise order and lets a page
//!   stop as soon as it is full; subtrees that sort entirely before the cursor are skipped.
//! - The version is `size:mtime_s.mtime_ns:sha256`.
//!
//! # Replace, and the race window that remains
//!
//! POSIX has no atomic compare-and-rename. `replace`:
//!
//! 1. checks the target's current version (`lstat`, then a full SHA-256 if size and mtime
//!    match) — a mismatch is a conflict before anything is written;
//! 2. writes the new bytes to a temporary file in `.sealbox-rotate/` at the store's root
//!    (with the target's permission bits), fsyncs it;
//! 3. takes the store's lock (`flock` on `.sealbox-rotate/lock`), `lstat`s the target again
//!    and requires the same device, inode, size and mtime as the file it hashed in step 1,
//!    renames the temporary file over it and releases the lock;
//! 4. fsyncs the directory.
//!
//! Every writer that uses this crate takes the lock, so two rotation jobs (or tasks) never
//! both win. **A writer that does not take the lock** (another program) can still replace or
//! rewrite the target between the `lstat` of step 3 and the `rename`: its write is then lost.
//! That window is one `lstat` and one `rename` system call. A program that rewrites a file in
//! place without changing its size or its nanosecond mtime is not detected by step 3 (step 1
//! hashes the content, so only a rewrite inside steps 1–3 could be missed).
//!
//! `create` writes a temporary file the same way and links it into place with
//! `renameat2(RENAME_NOREPLACE)` (a hard link and unlink where that is unsupported), which
//! fails if the target exists: no window.
//!
//! # Leftover temporary files
//!
//! A writer holds an exclusive `flock` on its temporary file until it is renamed into place.
//! Opening the store deletes every file in `.sealbox-rotate/` (but the lock file) whose lock
//! it can take — the writer is gone, e.g. killed mid-replace, since the kernel releases the
//! locks of dead processes — and leaves the locked ones of live writers alone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::{Object, ObjectMeta, Store, StoreError, Version, check_common_key, no_options};

mod walk;
use walk::walk;

/// The store's own directory at its root: temporary files and the lock file.
const WORK_DIR: &str = ".sealbox-rotate";
/// The lock file in [`WORK_DIR`] that serializes the check-and-rename of `replace`.
const LOCK_FILE: &str = "lock";
/// How often `read` retries when the file is replaced between `lstat` and `open`.
const READ_ATTEMPTS: usize = 5;

/// A directory tree of envelope files.
#[derive(Clone)]
pub(crate) struct FileStore {
    /// Canonical (absolute, symlink-free) path of the store's directory.
    root: PathBuf,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("root", &self.root)
            .finish()
    }
}

/// Opens the store at `path` (which must be an existing directory) and sweeps leftover
/// temporary files.
pub(crate) async fn open(
    path: &Path,
    options: &[(&str, &str)],
) -> Result<Arc<dyn Store>, StoreError> {
    no_options("file", options)?;
    let path = path.to_owned();
    blocking(move || {
        let root = fs::canonicalize(&path).map_err(|e| {
            StoreError::InvalidUrl(format!(
                "file store directory `{}`: {e} (expected an existing directory, as \
                 `file:///absolute/dir` or a path)",
                path.display()
            ))
        })?;
        let meta = fs::metadata(&root).map_err(|e| io_error(None, "stat", &root, e))?;
        if !meta.is_dir() {
            return Err(StoreError::InvalidUrl(format!(
                "file store `{}` is not a directory (expected `file:///absolute/dir` or a \
                 path to a directory)",
                root.display()
            )));
        }
        sweep(&root)?;
        Ok(Arc::new(FileStore { root }) as Arc<dyn Store>)
    })
    .await
}

/// Runs blocking file-system work off the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::backend(None, format!("file store task failed: {e}")))?
}

/// Refuses keys that do not name a file inside the store.
fn check_key(key: &str) -> Result<(), StoreError> {
    check_common_key(key)?;
    if key.starts_with('/') {
        return Err(StoreError::invalid_key(
            key,
            "file store keys are relative paths (no leading `/`)",
        ));
    }
    if key.ends_with('/') {
        return Err(StoreError::invalid_key(
            key,
            "file store keys name files (no trailing `/`)",
        ));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(StoreError::invalid_key(key, "empty path segment (`//`)")),
            "." | ".." => {
                return Err(StoreError::invalid_key(
                    key,
                    "`.` and `..` segments are not allowed",
                ));
            }
            _ => {}
        }
    }
    if key.split('/').next() == Some(WORK_DIR) {
        return Err(StoreError::invalid_key(
            key,
            "`.sealbox-rotate/` is reserved for the store's temporary files",
        ));
    }
    Ok(())
}

fn io_error(key: Option<&str>, op: &str, path: &Path, e: io::Error) -> StoreError {
    StoreError::backend(key, format!("{op} {}: {e}", path.display()))
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// What identifies one state of a file, from `lstat`/`fstat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }

    /// `size:mtime_s.mtime_ns:` — the version's prefix, without the hash.
    fn version_prefix(&self) -> String {
        format!("{}:{}.{:09}:", self.size, self.mtime, self.mtime_nsec)
    }

    fn version(&self, sha256: &[u8]) -> Version {
        Version(format!("{}{}", self.version_prefix(), hex::encode(sha256)))
    }
}

/// Reads `file` to its end, returning the SHA-256 of what was read (and the bytes if `keep`).
fn hash_reader(file: &mut File, keep: bool, capacity: u64) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut hasher = Sha256::new();
    let mut kept = Vec::new();
    if keep {
        kept.reserve(usize::try_from(capacity).unwrap_or(0));
        file.read_to_end(&mut kept)?;
        hasher.update(&kept);
    } else {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok((kept, hasher.finalize().to_vec()))
}

/// The current content of an object's file.
struct Current {
    /// The bytes (empty unless asked for).
    bytes: Vec<u8>,
    /// The file's state after the bytes were read.
    stamp: Stamp,
    /// SHA-256 of the bytes read.
    sha256: Vec<u8>,
}

impl Current {
    fn version(&self) -> Version {
        self.stamp.version(&self.sha256)
    }
}

impl FileStore {
    /// The path of `key`'s file, after checking the key and that every directory on the way
    /// is a real directory (not a symbolic link). `Ok(None)` if a directory is missing.
    fn object_path(&self, key: &str) -> Result<Option<PathBuf>, StoreError> {
        check_key(key)?;
        let mut path = self.root.clone();
        let mut segments = key.split('/').peekable();
        while let Some(segment) = segments.next() {
            path.push(segment);
            if segments.peek().is_none() {
                break;
            }
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => return Err(not_regular(key, &path, &m)),
                Ok(_) => return Ok(None),
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(io_error(Some(key), "stat", &path, e)),
            }
        }
        Ok(Some(path))
    }

    /// The object's current bytes (if `keep`), state and hash; `None` if it does not exist.
    fn current(&self, key: &str, path: &Path, keep: bool) -> Result<Option<Current>, StoreError> {
        for _ in 0..READ_ATTEMPTS {
            let before = match fs::symlink_metadata(path) {
                Ok(m) => m,
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(io_error(Some(key), "stat", path, e)),
            };
            if before.is_dir() {
                return Ok(None); // a directory is not an object
            }
            if !before.file_type().is_file() {
                return Err(not_regular(key, path, &before));
            }
            // Opened by path, so compared with the `lstat` above: a link swapped in meanwhile
            // is a different inode, and is looked at again.
            let mut file = match File::open(path) {
                Ok(f) => f,
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(io_error(Some(key), "open", path, e)),
            };
            let opened = file
                .metadata()
                .map_err(|e| io_error(Some(key), "stat", path, e))?;
            if (opened.dev(), opened.ino()) != (before.dev(), before.ino()) {
                continue; // replaced between lstat and open: look again
            }
            let (bytes, sha256) = hash_reader(&mut file, keep, opened.size())
                .map_err(|e| io_error(Some(key), "read", path, e))?;
            let after = file
                .metadata()
                .map_err(|e| io_error(Some(key), "stat", path, e))?;
            return Ok(Some(Current {
                bytes,
                stamp: Stamp::of(&after),
                sha256,
            }));
        }
        Err(StoreError::backend(
            Some(key),
            format!(
                "{} was replaced {READ_ATTEMPTS} times while being opened",
                path.display()
            ),
        ))
    }

    /// `.sealbox-rotate/`, created if missing; refused if it is not a real directory.
    fn work_dir(&self) -> Result<PathBuf, StoreError> {
        let dir = self.root.join(WORK_DIR);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => return Ok(dir),
            Ok(_) => {
                return Err(StoreError::backend(
                    None,
                    format!("{} is not a directory", dir.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(None, "stat", &dir, e)),
        }
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => sync_dir(&self.root, None)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(None, "create directory", &dir, e)),
        }
        Ok(dir)
    }

    /// A new temporary file in `.sealbox-rotate/`, holding `bytes` (fsynced) and locked by
    /// this writer until it is dropped or renamed into place. Returns it with its version.
    fn write_temp(
        &self,
        key: &str,
        bytes: &[u8],
        mode: Option<u32>,
    ) -> Result<(NamedTempFile, Version), StoreError> {
        let dir = self.work_dir()?;
        let temp = locked_temp(&dir).map_err(|e| io_error(Some(key), "create in", &dir, e))?;
        let path = temp.path().to_owned();
        let fail = |op: &str, e: io::Error| io_error(Some(key), op, &path, e);
        let file = temp.as_file();
        if let Some(mode) = mode {
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| fail("chmod", e))?;
        }
        (&*file).write_all(bytes).map_err(|e| fail("write", e))?;
        file.sync_all().map_err(|e| fail("fsync", e))?;
        let meta = file.metadata().map_err(|e| fail("stat", e))?;
        let version = Stamp::of(&meta).version(&Sha256::digest(bytes));
        Ok((temp, version))
    }

    /// Takes the store's lock (blocking until other writers release it).
    fn lock(&self) -> Result<File, StoreError> {
        let path = self.work_dir()?.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error(None, "open", &path, e))?;
        file.lock().map_err(|e| io_error(None, "lock", &path, e))?;
        Ok(file)
    }

    fn read_sync(&self, key: &str) -> Result<Object, StoreError> {
        let path = self
            .object_path(key)?
            .ok_or_else(|| StoreError::not_found(key))?;
        let current = self
            .current(key, &path, true)?
            .ok_or_else(|| StoreError::not_found(key))?;
        let version = current.version();
        Ok(Object {
            bytes: current.bytes,
            version,
        })
    }

    fn replace_sync(
        &self,
        key: &str,
        expected: &Version,
        bytes: &[u8],
    ) -> Result<Version, StoreError> {
        let path = self
            .object_path(key)?
            .ok_or_else(|| StoreError::not_found(key))?;
        // 1. The current version, cheaply refused when size or mtime already differ.
        let before = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if is_missing(&e) => return Err(StoreError::not_found(key)),
            Err(e) => return Err(io_error(Some(key), "stat", &path, e)),
        };
        if before.is_dir() {
            return Err(StoreError::not_found(key));
        }
        if !before.file_type().is_file() {
            return Err(not_regular(key, &path, &before));
        }
        if !expected.0.starts_with(&Stamp::of(&before).version_prefix()) {
            return Err(StoreError::conflict(key));
        }
        let current = self
            .current(key, &path, false)?
            .ok_or_else(|| StoreError::not_found(key))?;
        if current.version() != *expected {
            return Err(StoreError::conflict(key));
        }
        // 2. The new bytes, durable in a temporary file, with the target's permissions.
        let (temp, version) = self.write_temp(key, bytes, Some(before.mode() & 0o7777))?;
        // 3. Under the lock: still the file that was hashed? Then rename over it.
        {
            let _lock = self.lock()?;
            match fs::symlink_metadata(&path) {
                Ok(m) if Stamp::of(&m) == current.stamp => {}
                Ok(_) => return Err(StoreError::conflict(key)),
                Err(e) if is_missing(&e) => return Err(StoreError::not_found(key)),
                Err(e) => return Err(io_error(Some(key), "stat", &path, e)),
            }
            temp.persist(&path)
                .map_err(|e| io_error(Some(key), "rename onto", &path, e.error))?;
        }
        // 4. The rename itself, durable.
        sync_dir(parent_of(&path), Some(key))?;
        Ok(version)
    }

    fn create_sync(&self, key: &str, bytes: &[u8]) -> Result<Version, StoreError> {
        check_key(key)?;
        // Directories on the way: created if missing (and made durable), never links.
        let mut dir = self.root.clone();
        let segments: Vec<&str> = key.split('/').collect();
        let (name, parents) = segments
            .split_last()
            .ok_or_else(|| StoreError::invalid_key(key, "keys must not be empty"))?;
        for segment in parents {
            let parent = dir.clone();
            dir.push(segment);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => continue,
                Ok(m) if m.file_type().is_symlink() => return Err(not_regular(key, &dir, &m)),
                Ok(_) => {
                    return Err(StoreError::backend(
                        Some(key),
                        format!("{} exists and is not a directory", dir.display()),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(Some(key), "stat", &dir, e)),
            }
            match fs::create_dir(&dir) {
                Ok(()) => sync_dir(&parent, Some(key))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // Created concurrently: fine if it is a real directory.
                    let m = fs::symlink_metadata(&dir)
                        .map_err(|e| io_error(Some(key), "stat", &dir, e))?;
                    if !m.is_dir() {
                        return Err(StoreError::backend(
                            Some(key),
                            format!("{} exists and is not a directory", dir.display()),
                        ));
                    }
                }
                Err(e) => return Err(io_error(Some(key), "create directory", &dir, e)),
            }
        }
        let path = dir.join(name);
        let (temp, version) = self.write_temp(key, bytes, None)?;
        match temp.persist_noclobber(&path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::conflict(key));
            }
            Err(e) => return Err(io_error(Some(key), "link into place", &path, e.error)),
        }
        sync_dir(&dir, Some(key))?;
        Ok(version)
    }

    fn list_sync(&self, after: Option<&str>, limit: usize) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut out = Vec::with_capacity(limit.min(1024));
        if limit > 0 {
            walk(&self.root, "", after, limit, &mut out)?;
        }
        Ok(out)
    }
}

/// A new file in `dir`, locked by this process (retrying if a concurrent sweep deleted it
/// before the lock was taken).
fn locked_temp(dir: &Path) -> io::Result<NamedTempFile> {
    for _ in 0..5 {
        let temp = tempfile::Builder::new().prefix("tmp-").tempfile_in(dir)?;
        match temp.as_file().try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let ours = temp.as_file().metadata()?;
        match fs::symlink_metadata(temp.path()) {
            Ok(m) if (m.dev(), m.ino()) == (ours.dev(), ours.ino()) => return Ok(temp),
            _ => continue,
        }
    }
    Err(io::Error::other(
        "temporary files kept vanishing (another process sweeping the store?)",
    ))
}

/// Deletes the files in `.sealbox-rotate/` whose writer is gone (see the module docs).
fn sweep(root: &Path) -> Result<(), StoreError> {
    let dir = root.join(WORK_DIR);
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(StoreError::backend(
                None,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(None, "stat", &dir, e)),
    }
    let entries = fs::read_dir(&dir).map_err(|e| io_error(None, "list", &dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(None, "list", &dir, e))?;
        if entry.file_name() == LOCK_FILE {
            continue;
        }
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        // Removed below only if the path still names the file locked here.
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(None, "open", &path, e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue, // a live writer's
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(None, "lock", &path, e)),
        }
        let ours = file
            .metadata()
            .map_err(|e| io_error(None, "stat", &path, e))?;
        let still_there = fs::symlink_metadata(&path)
            .is_ok_and(|m| (m.dev(), m.ino()) == (ours.dev(), ours.ino()));
        if still_there {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(None, "remove", &path, e)),
            }
        }
    }
    Ok(())
}

/// `key`'s path, or a directory on its way, is not what it must be: a symbolic link, or not a
/// regular file.
fn not_regular(key: &str, path: &Path, meta: &fs::Metadata) -> StoreError {
    let what = if meta.file_type().is_symlink() {
        "a symbolic link; the file store does not follow links"
    } else {
        "not a regular file"
    };
    StoreError::backend(Some(key), format!("{} is {what}", path.display()))
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

/// Makes a directory's entries (a rename or a new name in it) durable.
fn sync_dir(dir: &Path, key: Option<&str>) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(key, "fsync directory", dir, e))
}

#[async_trait::async_trait]
impl Store for FileStore {
    fn describe(&self) -> String {
        url::Url::from_directory_path(&self.root)
            .map(|u| u.to_string())
            .unwrap_or_else(|()| self.root.display().to_string())
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<ObjectMeta>, StoreError> {
        let store = self.clone();
        let after = after.map(str::to_owned);
        blocking(move || store.list_sync(after.as_deref(), limit)).await
    }

    async fn read(&self, key: &str) -> Result<Object, StoreError> {
        let store = self.clone();
        let key = key.to_owned();
        blocking(move || store.read_sync(&key)).await
    }

    async fn replace(
        &self,
        key: &str,
        expected: &Version,
        bytes: Vec<u8>,
    ) -> Result<Version, StoreError> {
        let store = self.clone();
        let key = key.to_owned();
        let expected = expected.clone();
        blocking(move || store.replace_sync(&key, &expected, &bytes)).await
    }

    async fn create(&self, key: &str, bytes: Vec<u8>) -> Result<Version, StoreError> {
        let store = self.clone();
        let key = key.to_owned();
        blocking(move || store.create_sync(&key, &bytes)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for ok in [
            "a",
            "a/b",
            "a b/c.d",
            "ü/日本",
            ".hidden",
            "a/.sealbox-rotate",
        ] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            ".",
            "..",
            "a/../b",
            "a/./b",
            "a\0b",
            ".sealbox-rotate",
            ".sealbox-rotate/tmp-1",
        ] {
            assert!(
                matches!(check_key(bad), Err(StoreError::InvalidKey { .. })),
                "{bad:?}"
            );
        }
    }
}
