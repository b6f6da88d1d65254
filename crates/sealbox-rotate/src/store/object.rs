//! Object stores through the `object_store` crate: `memory://` (`InMemory`) and `s3://`
//! (`AmazonS3`), and any other backend wrapped with [`super::from_object_store`].
//!
//! - Keys are object keys relative to the prefix; they must be valid `object_store` paths
//!   written in canonical form (no empty, `.` or `..` segments, no leading or trailing `/`,
//!   no ASCII control characters).
//! - The version is the ETag, followed by a space and the version ID when the backend reports
//!   one (ETags, as HTTP header values, hold no spaces).
//! - `replace` is `PutMode::Update` (S3: `If-Match`), `create` is `PutMode::Create` (S3:
//!   `If-None-Match: *`). A failed precondition is followed by a `HEAD` to tell
//!   [`StoreError::Conflict`] (the object changed) from [`StoreError::NotFound`] (it is gone).
//! - Listing uses `list_with_offset` under the prefix. For backends known to list in key
//!   order (S3, `InMemory`) a page stops at `limit` objects; for others the whole listing
//!   after the cursor is read and the `limit` smallest keys kept, so paging stays correct.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use sealbox_core::transport::redact_endpoint;

use sealbox_temporal::storage::S3Location;

use super::{
    Object, ObjectMeta, Store, StoreError, Version, check_common_key, error_chain, no_options,
    redact_url, scrub,
};

/// A [`Store`] over an `object_store` backend.
pub(crate) struct ObjectBackend {
    inner: Arc<dyn ObjectStore>,
    /// Keys are relative to this path (`None`: the whole store).
    prefix: Option<Path>,
    /// Whether the backend lists keys in bytewise order.
    ordered: bool,
    describe: String,
    /// Values scrubbed from error messages (S3 secret key and session token).
    secrets: Vec<String>,
}

impl std::fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the inner store: its configuration may hold credentials.
        f.debug_struct("ObjectBackend")
            .field("store", &self.describe)
            .finish_non_exhaustive()
    }
}

/// Wraps `inner` (listing order unknown, so every page reads the whole listing after the
/// cursor).
pub(crate) fn wrap(
    inner: Arc<dyn ObjectStore>,
    prefix: &str,
    describe: String,
    secrets: Vec<String>,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(ObjectBackend::new(
        inner, prefix, false, describe, secrets,
    )?))
}

/// `memory://`: a new, empty in-process store.
pub(crate) fn open_memory(
    url: &str,
    options: &[(&str, &str)],
) -> Result<Arc<dyn Store>, StoreError> {
    if !matches!(url, "memory://" | "memory:///") {
        return Err(StoreError::InvalidUrl(format!(
            "invalid memory store URL `{}`: expected exactly `memory://`",
            redact_url(url)
        )));
    }
    no_options("memory", options)?;
    Ok(Arc::new(ObjectBackend::new(
        Arc::new(InMemory::new()),
        "",
        true,
        "memory://".to_owned(),
        Vec::new(),
    )?))
}

/// `s3://bucket/prefix`: see [`sealbox_temporal::storage::open_s3`].
pub(crate) fn open_s3(url: &str, options: &[(&str, &str)]) -> Result<Arc<dyn Store>, StoreError> {
    let S3Location {
        store,
        bucket,
        prefix,
        endpoint,
        secrets,
        ordered,
    } = sealbox_temporal::storage::open_s3(url, options).map_err(StoreError::InvalidUrl)?;
    let mut describe = format!("s3://{bucket}");
    if !prefix.is_empty() {
        describe.push('/');
        describe.push_str(&prefix);
    }
    if let Some(endpoint) = &endpoint {
        describe.push_str(&format!(" (endpoint {})", redact_endpoint(endpoint)));
    }
    Ok(Arc::new(ObjectBackend::new(
        store, &prefix, ordered, describe, secrets,
    )?))
}

impl ObjectBackend {
    fn new(
        inner: Arc<dyn ObjectStore>,
        prefix: &str,
        ordered: bool,
        describe: String,
        secrets: Vec<String>,
    ) -> Result<Self, StoreError> {
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            None
        } else {
            let path = Path::parse(prefix).map_err(|e| {
                StoreError::InvalidUrl(format!("invalid prefix `{}`: {e}", prefix.escape_debug()))
            })?;
            Some(path)
        };
        Ok(Self {
            inner,
            prefix,
            ordered,
            describe,
            secrets,
        })
    }

    /// The object path of a valid key.
    fn path(&self, key: &str) -> Result<Path, StoreError> {
        check_common_key(key)?;
        let parsed = Path::parse(key).map_err(|e| StoreError::invalid_key(key, e.to_string()))?;
        if parsed.as_ref() != key {
            return Err(StoreError::invalid_key(
                key,
                "object keys have no leading or trailing `/`",
            ));
        }
        match &self.prefix {
            None => Ok(parsed),
            Some(prefix) => Path::parse(format!("{prefix}/{key}"))
                .map_err(|e| StoreError::invalid_key(key, e.to_string())),
        }
    }

    /// The key of a listed path (`None` if it is not under the prefix).
    fn key_of(&self, location: &Path) -> Option<String> {
        let full = location.as_ref();
        match &self.prefix {
            None => Some(full.to_owned()),
            Some(prefix) => full
                .strip_prefix(prefix.as_ref())
                .and_then(|rest| rest.strip_prefix('/'))
                .filter(|key| !key.is_empty())
                .map(str::to_owned),
        }
    }

    fn backend(&self, key: Option<&str>, e: &object_store::Error) -> StoreError {
        StoreError::backend(key, scrub(error_chain(e), &self.secrets))
    }

    /// Maps a read or write error of `key`.
    fn error(&self, key: &str, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::not_found(key),
            object_store::Error::Precondition { .. }
            | object_store::Error::AlreadyExists { .. } => StoreError::conflict(key),
            other => self.backend(Some(key), &other),
        }
    }

    fn version(
        &self,
        key: &str,
        e_tag: Option<String>,
        version: Option<String>,
    ) -> Result<Version, StoreError> {
        let e_tag = e_tag.filter(|e| !e.is_empty()).ok_or_else(|| {
            StoreError::backend(
                Some(key),
                format!(
                    "{} returned no ETag, which conditional replace needs",
                    self.describe
                ),
            )
        })?;
        Ok(Version(match version {
            Some(v) => format!("{e_tag} {v}"),
            None => e_tag,
        }))
    }

    /// After a failed precondition (nothing was written): gone, or changed?
    async fn conflict_or_gone(&self, key: &str, path: &Path) -> StoreError {
        match self.inner.head(path).await {
            Ok(_) => StoreError::conflict(key),
            Err(object_store::Error::NotFound { .. }) => StoreError::not_found(key),
            Err(e) => self.backend(Some(key), &e),
        }
    }
}

#[async_trait::async_trait]
impl Store for ObjectBackend {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<ObjectMeta>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // A cursor that is not a valid key cannot be sent as an offset: filter locally.
        let offset = after.and_then(|a| self.path(a).ok());
        let mut stream = match &offset {
            Some(offset) => self.inner.list_with_offset(self.prefix.as_ref(), offset),
            None => self.inner.list(self.prefix.as_ref()),
        };
        let mut page: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|e| self.backend(None, &e))?;
            let Some(key) = self.key_of(&meta.location) else {
                continue;
            };
            if after.is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            page.insert(key, meta.size);
            if page.len() > limit {
                page.pop_last();
            }
            // In key order, nothing after a full page can belong to it.
            if self.ordered && page.len() == limit {
                break;
            }
        }
        Ok(page
            .into_iter()
            .map(|(key, size)| ObjectMeta { key, size })
            .collect())
    }

    async fn read(&self, key: &str) -> Result<Object, StoreError> {
        let path = self.path(key)?;
        let result = self
            .inner
            .get(&path)
            .await
            .map_err(|e| self.error(key, e))?;
        let (e_tag, version) = (result.meta.e_tag.clone(), result.meta.version.clone());
        let bytes = result.bytes().await.map_err(|e| self.error(key, e))?;
        Ok(Object {
            bytes: Vec::from(bytes),
            version: self.version(key, e_tag, version)?,
        })
    }

    async fn replace(
        &self,
        key: &str,
        expected: &Version,
        bytes: Vec<u8>,
    ) -> Result<Version, StoreError> {
        let path = self.path(key)?;
        let (e_tag, version) = match expected.0.split_once(' ') {
            Some((e_tag, version)) => (e_tag.to_owned(), Some(version.to_owned())),
            None => (expected.0.clone(), None),
        };
        if e_tag.is_empty() {
            return Err(self.conflict_or_gone(key, &path).await);
        }
        let mode = PutMode::Update(UpdateVersion {
            e_tag: Some(e_tag),
            version,
        });
        match self
            .inner
            .put_opts(&path, PutPayload::from(bytes), PutOptions::from(mode))
            .await
        {
            Ok(put) => self.version(key, put.e_tag, put.version),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::NotFound { .. },
            ) => Err(self.conflict_or_gone(key, &path).await),
            Err(e) => Err(self.backend(Some(key), &e)),
        }
    }

    async fn create(&self, key: &str, bytes: Vec<u8>) -> Result<Version, StoreError> {
        let path = self.path(key)?;
        let put = self
            .inner
            .put_opts(
                &path,
                PutPayload::from(bytes),
                PutOptions::from(PutMode::Create),
            )
            .await
            .map_err(|e| self.error(key, e))?;
        self.version(key, put.e_tag, put.version)
    }
}
