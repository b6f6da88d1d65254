//! Stores: where envelopes live, and the conditional replace the rotation job relies on.
//!
//! A [`Store`] holds objects (envelopes, as opaque bytes) under string keys. The rotation job
//! [lists](Store::list) a store page by page, [reads](Store::read) each object with its
//! [`Version`], and writes the rewrapped envelope back with [`Store::replace`], which succeeds
//! only if the object is still at that version; anything else is a
//! [`StoreError::Conflict`] and nothing is written.
//!
//! Common rules, checked by one conformance suite against a real server for every store:
//!
//! - **Keys** are non-empty strings without NUL; each store adds its own rules (below). A key
//!   a store cannot hold is refused with [`StoreError::InvalidKey`], never a panic.
//! - **Listing** is in bytewise key order and stable under paging: calling
//!   [`list`](Store::list) again with the last key of each page visits every object present
//!   for the whole walk exactly once, even while other objects are added or removed.
//! - **Versions** change whenever the bytes change. A store may return the same version for
//!   identical bytes (S3 ETags and the PostgreSQL store do), so replacing an object with the
//!   bytes it already holds may leave its version unchanged.
//! - **Replace of a missing object** (never created, or deleted after it was read) is
//!   [`StoreError::NotFound`]; nothing is created. If the object changed, it is
//!   [`StoreError::Conflict`].
//! - **Durability**: `replace` and `create` return `Ok` only once the write is durable as far
//!   as the backend promises (fsync for files, an acknowledged PUT for S3, a committed
//!   statement for PostgreSQL).
//!
//! # File store (`file:///abs/dir` or a path)
//!
//! Keys are `/`-separated paths relative to the directory: no empty, `.` or `..` segments, no
//! leading or trailing `/`, no NUL, and not under the reserved `.sealbox-rotate/` directory.
//! Only regular files are objects: symbolic links, and directories reached through them, are
//! neither listed nor read or written. A file whose name is not UTF-8 cannot be named by a key
//! and makes listing fail with [`StoreError::Backend`] naming it, rather than being skipped.
//!
//! The version is the file's size, modification time (ns) and SHA-256. POSIX has no atomic
//! compare-and-rename, so `replace` writes the new bytes to a temporary file in
//! `.sealbox-rotate/` at the store's root, fsyncs it, checks the target's version (full hash),
//! then — holding the store's lock file `.sealbox-rotate/lock` — checks that the target is
//! still the same file (device, inode, size, mtime) and renames over it, then fsyncs the
//! directory. Writers that go through this crate (in this or another process) are therefore
//! serialized; **a writer that does not take the lock can still slip in between that last
//! check and the rename** — a window of one `lstat` and one `rename` system call — and its
//! write would then be lost. Replaced files keep their permission bits; created files get
//! mode `0600`. Temporary files are locked (`flock`) by their writer: opening the store
//! deletes those whose writer is gone (for example killed mid-replace), never a live one.
//! The store must sit on one file system (a mount point inside it makes renames fail).
//!
//! # Object stores (`memory://`, `s3://bucket/prefix`)
//!
//! Built on the `object_store` crate. Keys are object keys relative to the prefix: no empty,
//! `.` or `..` segments, no leading or trailing `/`, no ASCII control characters. The version
//! is the ETag (and the object version ID when the bucket is versioned); `replace` is a PUT
//! with `If-Match`, `create` a PUT with `If-None-Match: *`. Endpoints must be `https://`,
//! unless their host is loopback or plain HTTP is enabled explicitly (`aws_allow_http=true`
//! in the options or `AWS_ALLOW_HTTP=true` in the environment). Opening an S3 store makes no
//! request. A PUT whose response is lost and that the client retries may report a
//! [`StoreError::Conflict`] although it was applied; the next read shows the new bytes.
//!
//! # PostgreSQL (`postgres://user@host:port/db?table=T&column=C&key=K`)
//!
//! One row per object: `key` is a `text` (or `varchar`) column with a unique index (primary
//! key or `UNIQUE`), `column` is `bytea`; rows whose `column` is NULL are not objects. The
//! three identifiers must match `[A-Za-z_][A-Za-z0-9_]*` (the table may be `schema.table`);
//! they are quoted in SQL, so they are case-sensitive. Listing orders by `key COLLATE "C"`
//! (bytewise in a UTF-8 database); an index on `(key COLLATE "C")`, or a key column declared
//! `COLLATE "C"`, lets large tables page without sorting. The version is the hex SHA-256 of
//! the bytes; `replace` is `UPDATE … WHERE key = $1 AND sha256(column) = $2`. The password
//! comes from the URL, the `password` option or `PGPASSWORD`, and never appears in
//! [`Store::describe`], `Debug` output or errors. TLS is not supported yet: hosts must be
//! loopback or Unix sockets, or the URL must say `sslmode=disable` to accept plain text.

use std::fmt;
use std::sync::Arc;

mod file;
mod object;
mod postgres;

/// Opaque version token for conditional replace (S3: the ETag, and the version ID of a
/// versioned bucket; file: size + mtime + SHA-256; PostgreSQL: the SHA-256 of the column's
/// bytes). Only meaningful to the store that returned it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Version(pub String);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: String,
    /// Its size in bytes when it was listed.
    pub size: u64,
}

/// One read object.
#[derive(Clone, Debug)]
pub struct Object {
    /// The object's bytes.
    pub bytes: Vec<u8>,
    /// The version these bytes are, for [`Store::replace`].
    pub version: Version,
}

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object changed since it was read (or appeared/vanished): nothing was written.
    #[error("`{}` changed since it was read; nothing was written", .key.escape_debug())]
    Conflict {
        /// The object's key.
        key: String,
    },
    /// The object does not exist (for `replace`: it was deleted, or never created).
    #[error("`{}` does not exist", .key.escape_debug())]
    NotFound {
        /// The object's key.
        key: String,
    },
    /// The key cannot name an object in this store (see the [module docs](self) for each
    /// store's rules): nothing was read or written.
    #[error("invalid key `{}`: {reason}", .key.escape_debug())]
    InvalidKey {
        /// The refused key.
        key: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// Bad store URL/options: says what is wrong and the expected form.
    #[error("{0}")]
    InvalidUrl(String),
    /// The backend failed (I/O, network, SQL); message never contains credentials.
    #[error("{}", backend_message(.key.as_deref(), .message))]
    Backend {
        /// The object the operation was about, if any.
        key: Option<String>,
        /// What failed.
        message: String,
    },
}

fn backend_message(key: Option<&str>, message: &str) -> String {
    match key {
        Some(key) => format!("`{}`: {message}", key.escape_debug()),
        None => message.to_owned(),
    }
}

impl StoreError {
    pub(crate) fn backend(key: Option<&str>, message: impl Into<String>) -> Self {
        Self::Backend {
            key: key.map(str::to_owned),
            message: message.into(),
        }
    }

    pub(crate) fn invalid_key(key: &str, reason: impl Into<String>) -> Self {
        Self::InvalidKey {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn conflict(key: &str) -> Self {
        Self::Conflict {
            key: key.to_owned(),
        }
    }

    pub(crate) fn not_found(key: &str) -> Self {
        Self::NotFound {
            key: key.to_owned(),
        }
    }
}

/// A place that holds envelopes, with conditional replace. See the [module docs](self).
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The store's URL with credentials redacted (for reports).
    fn describe(&self) -> String;

    /// Up to `limit` objects whose keys sort strictly after `after` (bytewise), in bytewise
    /// key order. Stable: paging with the last key of each page visits every object present
    /// for the whole walk exactly once. An empty page means the walk is over.
    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<ObjectMeta>, StoreError>;

    /// The object's bytes and version; [`StoreError::NotFound`] if it does not exist.
    async fn read(&self, key: &str) -> Result<Object, StoreError>;

    /// Replaces `key` only if its current version is `expected`; returns the new version.
    /// [`StoreError::Conflict`] if it changed, [`StoreError::NotFound`] if it is gone (then
    /// nothing is created). Durable when it returns `Ok`.
    async fn replace(
        &self,
        key: &str,
        expected: &Version,
        bytes: Vec<u8>,
    ) -> Result<Version, StoreError>;

    /// Creates `key` only if absent ([`StoreError::Conflict`] if present). Used to seed stores
    /// and by tests. Durable when it returns `Ok`.
    async fn create(&self, key: &str, bytes: Vec<u8>) -> Result<Version, StoreError>;
}

/// The URL forms [`open_store`] accepts, for error messages.
const EXPECTED_FORMS: &str = "expected `file:///abs/dir` (or a plain path), `memory://`, \
     `s3://bucket[/prefix]`, or `postgres://user@host:port/db?table=T&column=C&key=K`";

/// Opens a store from a URL: `file:///abs/dir` or a plain path; `memory://` (a new, empty
/// in-process store); `s3://bucket/prefix` (configured from the `AWS_*` environment, as
/// `object_store`'s `AmazonS3Builder::from_env` reads it); `postgres://…` (also
/// `postgresql://`). See the [module docs](self).
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_store_with(url, &[]).await
}

/// Same as [`open_store`], with explicit backend options overriding the environment.
///
/// - `s3://`: `object_store`'s S3 configuration keys (`aws_endpoint`, `aws_region`,
///   `aws_allow_http`, `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`, …;
///   keys are case-insensitive). The bucket comes from the URL, and conditional put stays on.
/// - `postgres://`: `password` (overrides the URL's and `PGPASSWORD`).
/// - `file://`, `memory://`: none.
///
/// Unknown options are refused with [`StoreError::InvalidUrl`].
pub async fn open_store_with(
    url: &str,
    options: &[(&str, &str)],
) -> Result<Arc<dyn Store>, StoreError> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        None => file::open(std::path::Path::new(url), options).await,
        Some("file") => {
            let parsed = url::Url::parse(url).map_err(|e| {
                StoreError::InvalidUrl(format!("invalid store URL `{}`: {e}", redact_url(url)))
            })?;
            if !matches!(parsed.host_str(), None | Some("") | Some("localhost"))
                || parsed.query().is_some()
                || parsed.fragment().is_some()
            {
                return Err(StoreError::InvalidUrl(format!(
                    "invalid file store URL `{}`: expected `file:///absolute/dir` (no host, \
                     query or fragment)",
                    redact_url(url)
                )));
            }
            let path = parsed.to_file_path().map_err(|()| {
                StoreError::InvalidUrl(format!(
                    "invalid file store URL `{}`: expected `file:///absolute/dir`",
                    redact_url(url)
                ))
            })?;
            file::open(&path, options).await
        }
        Some("memory") => object::open_memory(url, options),
        Some("s3") => object::open_s3(url, options),
        Some("postgres" | "postgresql") => postgres::open(url, options).await,
        Some(other) => Err(StoreError::InvalidUrl(format!(
            "unsupported store URL scheme `{}` in `{}`: {EXPECTED_FORMS}",
            other.escape_debug(),
            redact_url(url)
        ))),
    }
}

/// Wraps any [`object_store::ObjectStore`] as a [`Store`] whose keys are relative to
/// `prefix` (`""` for the whole store); `describe` is what [`Store::describe`] returns.
/// [`open_store`] uses it for `memory://` and `s3://`; it also serves other `object_store`
/// backends, and tests that need to reach the objects behind the store's back.
pub fn from_object_store(
    inner: Arc<dyn object_store::ObjectStore>,
    prefix: &str,
    describe: &str,
) -> Result<Arc<dyn Store>, StoreError> {
    object::wrap(inner, prefix, describe.to_owned(), Vec::new())
}

/// Refuses an empty key or one with NUL (no store can hold those).
pub(crate) fn check_common_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::invalid_key(key, "keys must not be empty"));
    }
    if key.contains('\0') {
        return Err(StoreError::invalid_key(key, "keys must not contain NUL"));
    }
    Ok(())
}

/// Refuses any option (for stores that take none).
pub(crate) fn no_options(kind: &str, options: &[(&str, &str)]) -> Result<(), StoreError> {
    match options.first() {
        None => Ok(()),
        Some((name, _)) => Err(StoreError::InvalidUrl(format!(
            "{kind} stores take no options (got `{}`)",
            name.escape_debug()
        ))),
    }
}

/// `url` for messages: the password (in the user info or a query parameter such as
/// `password=`) replaced by `***`. An unparsable URL keeps only its scheme and host part
/// after any user info.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            if parsed.query().is_some() {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if sealbox_core::transport::names_a_secret(&k) {
                            "***".to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => {
            // Unparsable: drop any user info (it may hold a password) and the query.
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let rest = rest.split(['?', '#']).next().unwrap_or("");
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let shown = if scheme.is_empty() {
                rest.to_owned()
            } else {
                format!("{scheme}://{rest}")
            };
            shown.escape_debug().to_string()
        }
    }
}

pub(crate) use sealbox_core::error::error_chain;

/// `message` with every non-empty secret replaced by `***` (the storage module's).
pub(crate) fn scrub(message: String, secrets: &[String]) -> String {
    sealbox_temporal::storage::scrub(&message, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_passwords_everywhere() {
        for (url, secret) in [
            ("postgres://u:hunter2@h:5432/db?table=t", "hunter2"),
            ("postgres://u@h/db?password=hunter2&table=t", "hunter2"),
            ("postgres://u:hunter2@h:notaport/db", "hunter2"),
            ("s3://b/p?aws_secret_access_key=hunter2", "hunter2"),
        ] {
            let r = redact_url(url);
            assert!(!r.contains(secret), "{url} -> {r}");
            assert!(r.contains('h') || r.contains('b'), "{r}");
        }
        assert_eq!(
            redact_url("postgres://u@h/db?table=t"),
            "postgres://u@h/db?table=t"
        );
    }

    #[test]
    fn scrub_replaces_secrets() {
        assert_eq!(
            scrub("a hunter2 b".into(), &["hunter2".into(), String::new()]),
            "a *** b"
        );
    }
}
