//! Storage drivers: where stored payloads go, shaped like Temporal's `StorageDriver`
//! (store payloads, get claims; retrieve payloads from claims), and the `object_store`
//! driver compatible with Temporal's official `aws.s3driver`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::Payload;

/// The official S3 driver's name; objects Sealbox writes to S3 carry it, so other SDKs'
/// drivers read them.
pub const S3_DRIVER: &str = "aws.s3driver";
/// The official GCS driver's name (same claims and keys as [`S3_DRIVER`]).
pub const GCS_DRIVER: &str = "gcp.gcsdriver";
/// The driver name of an Azure Blob Storage store (Temporal has no official Azure driver:
/// Sealbox only).
pub const AZURE_DRIVER: &str = "sealbox.azuredriver";
/// The driver name of a local-directory store (Sealbox only).
pub const FILE_DRIVER: &str = "sealbox.filedriver";
/// Default cap on one stored payload, as Temporal's drivers: 50 MiB.
pub const DEFAULT_MAX_SIZE: usize = 50 * 1024 * 1024;

/// Who stores or retrieves: the namespace (keys are written under it, and a key naming a
/// namespace must name this one to be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageContext {
    /// The Temporal namespace.
    pub namespace: String,
}

/// A driver's claim: what it needs to retrieve one payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageClaim {
    /// The claim's data (for `aws.s3driver`: `bucket`, `key`, `hash_algorithm`, `hash_value`).
    pub claim_data: BTreeMap<String, String>,
}

/// Why a payload could not be stored or retrieved. Names the reference (bucket and key),
/// never payload data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// No object under the claim's key.
    #[error("external storage: no object at `{key}`")]
    NotFound {
        /// The object key.
        key: String,
    },
    /// The object's SHA-256 is not the claim's: it was changed after it was stored.
    #[error("external storage: object `{key}` does not match its claim's SHA-256 (tampered?)")]
    HashMismatch {
        /// The object key.
        key: String,
    },
    /// The object (or the payload to store) is over the size cap.
    #[error("external storage: `{key}` is {size} bytes, over the {limit}-byte cap")]
    TooLarge {
        /// The object key.
        key: String,
        /// Its size.
        size: u64,
        /// The cap.
        limit: usize,
    },
    /// The claim names a bucket this driver does not serve.
    #[error("external storage: bucket `{bucket}` is not the configured bucket")]
    ForeignBucket {
        /// The claim's bucket.
        bucket: String,
    },
    /// The key was written for another namespace.
    #[error("external storage: object `{key}` belongs to another namespace than `{namespace}`")]
    WrongNamespace {
        /// The object key.
        key: String,
        /// The caller's namespace.
        namespace: String,
    },
    /// The claim or reference is malformed, or names another driver.
    #[error("external storage: {0}")]
    Invalid(String),
    /// The store failed.
    #[error("external storage: {0}")]
    Backend(String),
}

/// Stores payloads outside Temporal and retrieves them by claim.
#[async_trait]
pub trait StorageDriver: Send + Sync + fmt::Debug {
    /// The name written into references.
    fn name(&self) -> &str;

    /// Stores `payloads` (already encoded by the codec); one claim per payload, in order.
    async fn store(
        &self,
        context: &StorageContext,
        payloads: &[Payload],
    ) -> Result<Vec<StorageClaim>, StorageError>;

    /// Retrieves the payloads of `claims`, in order, each checked against its claim.
    async fn retrieve(
        &self,
        context: &StorageContext,
        claims: &[StorageClaim],
    ) -> Result<Vec<Payload>, StorageError>;
}

/// A driver over an `object_store` bucket (S3, a local directory, memory), with the claims
/// and object keys of Temporal's official S3 driver: objects are content-addressed
/// (`v0/ns/<namespace>/d/sha256/<hex>`), stored only if absent, and verified against the
/// claim's SHA-256 before they are parsed.
pub struct ObjectStoreDriver {
    name: String,
    bucket: String,
    /// Keys are written and read under this prefix (`""` or `"a/b/"`).
    prefix: String,
    store: Arc<dyn ObjectStore>,
    max_size: usize,
    /// Secrets of the store's configuration, scrubbed from error messages.
    secrets: Vec<String>,
}

impl fmt::Debug for ObjectStoreDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreDriver")
            .field("name", &self.name)
            .field("bucket", &self.bucket)
            .field("max_size", &self.max_size)
            .finish()
    }
}

/// Percent-encodes a key segment as Temporal's drivers do: every UTF-8 byte outside
/// `A–Z a–z 0–9 ! - _ . * ' ( )`; an empty segment is `null`.
pub fn key_segment(s: &str) -> String {
    if s.is_empty() {
        return "null".into();
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!-_.*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An object in a driver's store (see [`ObjectStoreDriver::list_objects`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its key as the store lists it (give it back to [`ObjectStoreDriver::delete_object`]).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was written.
    pub last_modified: std::time::SystemTime,
}

/// The namespace a key names (`[prefix]v0/ns/<namespace>/…`, percent-decoded; `null` is the
/// empty namespace), if it names one. `prefix` is the driver's (`""` or `"a/b/"`).
pub fn key_namespace(prefix: &str, key: &str) -> Option<String> {
    let segment = key
        .strip_prefix(prefix)?
        .strip_prefix("v0/ns/")?
        .split('/')
        .next()?;
    if segment == "null" {
        return Some(String::new());
    }
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// A key with each segment percent-decoded: the same object whether a store lists its key
/// verbatim (S3) or as a file name (a local directory turns `run%3A1` into `run:1`).
pub fn canonical_key(key: &str) -> String {
    key.split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The object path of `key` exactly as written: its segments are already percent-encoded
/// (by [`key_segment`] here, by the official drivers elsewhere), so they are not encoded again.
fn object_path(key: &str) -> Result<ObjectPath, StorageError> {
    ObjectPath::parse(key)
        .map_err(|e| StorageError::Invalid(format!("`{key}` is not an object key: {e}")))
}

fn claim_get<'a>(claim: &'a StorageClaim, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| claim.claim_data.get(*n))
        .map(String::as_str)
}

impl ObjectStoreDriver {
    /// A driver named `name` over `store`, which holds bucket `bucket` (the name claims
    /// carry). Objects are capped at [`DEFAULT_MAX_SIZE`].
    pub fn new(
        name: impl Into<String>,
        bucket: impl Into<String>,
        store: Arc<dyn ObjectStore>,
    ) -> Self {
        Self {
            name: name.into(),
            bucket: bucket.into(),
            prefix: String::new(),
            store,
            max_size: DEFAULT_MAX_SIZE,
            secrets: Vec::new(),
        }
    }

    /// A backend error naming what failed, its chain scrubbed of the store's secrets.
    fn backend(&self, what: &str, e: &object_store::Error) -> StorageError {
        StorageError::Backend(super::scrub(
            &format!("{what}: {}", sealbox_core::error::error_chain(e)),
            &self.secrets,
        ))
    }

    /// Opens the store of a `[storage] url`: `s3://BUCKET[/PREFIX]` (as `aws.s3driver`;
    /// credentials, region and endpoint from the `AWS_*` environment; see [`super::open_s3`]),
    /// `file:///DIR` (created if missing) or `memory://`.
    pub fn open(url: &str, max_size: usize) -> Result<Self, StorageError> {
        Self::open_with(url, &[], max_size)
    }

    /// [`ObjectStoreDriver::open`] with object_store configuration keys for an `s3://`,
    /// `gs://` or `az://` store (`aws_endpoint`, `aws_region`, `google_service_account`,
    /// `azure_storage_account_name`, …), applied over the environment's.
    pub fn open_with(
        url: &str,
        options: &[(&str, &str)],
        max_size: usize,
    ) -> Result<Self, StorageError> {
        let cloud = ["s3://", "gs://", "az://"];
        if !options.is_empty() && !cloud.iter().any(|c| url.starts_with(c)) {
            return Err(StorageError::Invalid(
                "store options apply to s3://, gs:// and az:// stores only".into(),
            ));
        }
        let driver = if url.starts_with("s3://") {
            let s3 = super::open_s3(url, options).map_err(StorageError::Invalid)?;
            let mut d = Self::new(S3_DRIVER, s3.bucket, s3.store).prefix(&s3.prefix);
            d.secrets = s3.secrets;
            d
        } else if url.starts_with("gs://") || url.starts_with("az://") {
            let (name, opened) = if url.starts_with("gs://") {
                (GCS_DRIVER, super::cloud::open_gcs(url, options))
            } else {
                (AZURE_DRIVER, super::cloud::open_azure(url, options))
            };
            let c = opened.map_err(StorageError::Invalid)?;
            let mut d = Self::new(name, c.bucket, c.store).prefix(&c.prefix);
            d.secrets = c.secrets;
            d
        } else if let Some(dir) = url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(StorageError::Invalid(format!(
                    "`{url}`: expected file:///ABSOLUTE/DIR"
                )));
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| StorageError::Backend(format!("create {dir}: {e}")))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| StorageError::Backend(format!("open {dir}: {e}")))?;
            Self::new(FILE_DRIVER, "local", Arc::new(fs))
        } else if url == "memory://" {
            Self::new(
                FILE_DRIVER,
                "memory",
                Arc::new(object_store::memory::InMemory::new()),
            )
        } else {
            return Err(StorageError::Invalid(format!(
                "`{}` is not a store this build reads (s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX], \
                 az://CONTAINER[/PREFIX], file:///DIR, memory://)",
                sealbox_core::transport::redact_endpoint(url)
            )));
        };
        Ok(driver.max_size(max_size))
    }

    /// Writes and reads keys under `prefix` (`"a/b"`: keys `a/b/v0/…`); a claim whose key is
    /// outside it is refused. Temporal's official drivers write at the bucket's root, so a
    /// store shared with them has no prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        self.prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        self
    }

    /// Sets the cap on one stored payload.
    #[must_use]
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// The cap on one stored payload.
    pub fn size_cap(&self) -> usize {
        self.max_size
    }

    /// The bucket its claims name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix its keys are under (`""` or `"a/b/"`).
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// Every object under `[prefix]v0/`, in the store's listing order.
    pub async fn list_objects(&self) -> Result<Vec<StoredObject>, StorageError> {
        use futures::TryStreamExt;
        let root = object_path(&format!("{}v0", self.prefix))?;
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&root))
            .try_collect()
            .await
            .map_err(|e| self.backend("list the store", &e))?;
        Ok(metas
            .into_iter()
            .map(|m| StoredObject {
                key: m.location.to_string(),
                size: m.size,
                last_modified: m.last_modified.into(),
            })
            .collect())
    }

    /// Deletes the object at `key` (as [`ObjectStoreDriver::list_objects`] gave it).
    pub async fn delete_object(&self, key: &str) -> Result<(), StorageError> {
        self.store
            .delete(&object_path(key)?)
            .await
            .map_err(|e| self.backend(&format!("delete `{key}`"), &e))
    }

    /// The object key of a payload whose protobuf bytes hash to `hex`.
    fn key_for(&self, namespace: &str, hex: &str) -> String {
        format!(
            "{}v0/ns/{}/d/sha256/{hex}",
            self.prefix,
            key_segment(namespace)
        )
    }

    /// Checks a claim against this driver and the caller: the bucket, a `v0/` key, the
    /// namespace segment when the key has one, the hash's form.
    fn check_claim<'a>(
        &self,
        context: &StorageContext,
        claim: &'a StorageClaim,
    ) -> Result<(&'a str, [u8; 32]), StorageError> {
        let bucket = claim_get(claim, &["bucket"])
            .ok_or_else(|| StorageError::Invalid("the claim names no bucket".into()))?;
        if bucket != self.bucket {
            return Err(StorageError::ForeignBucket {
                bucket: bucket.to_owned(),
            });
        }
        let key = claim_get(claim, &["key"])
            .ok_or_else(|| StorageError::Invalid("the claim names no key".into()))?;
        // Keys are read under this driver's prefix only (the official drivers write at the
        // bucket's root: configure no prefix to read theirs).
        let relative = key.strip_prefix(self.prefix.as_str()).unwrap_or("");
        if !relative.starts_with("v0/")
            || key
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(StorageError::Invalid(format!(
                "`{key}` is not a {}v0/… object key",
                self.prefix
            )));
        }
        if let Some(rest) = relative.strip_prefix("v0/ns/") {
            let ns = rest.split('/').next().unwrap_or_default();
            if ns != key_segment(&context.namespace) {
                return Err(StorageError::WrongNamespace {
                    key: key.to_owned(),
                    namespace: context.namespace.clone(),
                });
            }
        }
        let algorithm = claim_get(claim, &["hash_algorithm", "hashAlgorithm"]).unwrap_or("");
        if algorithm != "sha256" {
            return Err(StorageError::Invalid(format!(
                "`{key}`: hash algorithm `{algorithm}` (only sha256 is read)"
            )));
        }
        let hex_value = claim_get(claim, &["hash_value", "hashValue"]).unwrap_or("");
        let mut hash = [0u8; 32];
        if hex_value.len() != 64
            || !hex_value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            || hex::decode_to_slice(hex_value, &mut hash).is_err()
        {
            return Err(StorageError::Invalid(format!(
                "`{key}`: the claim's hash is not 64 lowercase hex digits"
            )));
        }
        Ok((key, hash))
    }

    async fn store_one(
        &self,
        context: &StorageContext,
        payload: &Payload,
    ) -> Result<StorageClaim, StorageError> {
        let bytes = payload.encode_to_vec();
        let hex = hex::encode(Sha256::digest(&bytes));
        let key = self.key_for(&context.namespace, &hex);
        if bytes.len() > self.max_size {
            return Err(StorageError::TooLarge {
                key,
                size: bytes.len() as u64,
                limit: self.max_size,
            });
        }
        let path = object_path(&key)?;
        match self.store.head(&path).await {
            Ok(_) => {} // content-addressed: the same bytes are there already
            Err(object_store::Error::NotFound { .. }) => {
                let options = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                match self
                    .store
                    .put_opts(&path, PutPayload::from(bytes), options)
                    .await
                {
                    Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(self.backend(&format!("store `{key}`"), &e)),
                }
            }
            Err(e) => return Err(self.backend(&format!("look up `{key}`"), &e)),
        }
        let mut claim_data = BTreeMap::new();
        claim_data.insert("bucket".into(), self.bucket.clone());
        claim_data.insert("key".into(), key);
        claim_data.insert("hash_algorithm".into(), "sha256".into());
        claim_data.insert("hash_value".into(), hex);
        Ok(StorageClaim { claim_data })
    }

    async fn retrieve_one(
        &self,
        context: &StorageContext,
        claim: &StorageClaim,
    ) -> Result<Payload, StorageError> {
        let (key, hash) = self.check_claim(context, claim)?;
        let path = object_path(key)?;
        let got = self.store.get(&path).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound {
                key: key.to_owned(),
            },
            e => self.backend(&format!("read `{key}`"), &e),
        })?;
        if got.meta.size > self.max_size as u64 {
            return Err(StorageError::TooLarge {
                key: key.to_owned(),
                size: got.meta.size,
                limit: self.max_size,
            });
        }
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.backend(&format!("read `{key}`"), &e))?;
        if bytes.len() > self.max_size {
            return Err(StorageError::TooLarge {
                key: key.to_owned(),
                size: bytes.len() as u64,
                limit: self.max_size,
            });
        }
        if Sha256::digest(&bytes).as_slice() != hash {
            return Err(StorageError::HashMismatch {
                key: key.to_owned(),
            });
        }
        Payload::decode(bytes.as_ref())
            .map_err(|e| StorageError::Invalid(format!("`{key}` is not a protobuf Payload: {e}")))
    }
}

#[async_trait]
impl StorageDriver for ObjectStoreDriver {
    fn name(&self) -> &str {
        &self.name
    }

    async fn store(
        &self,
        context: &StorageContext,
        payloads: &[Payload],
    ) -> Result<Vec<StorageClaim>, StorageError> {
        let mut claims = Vec::with_capacity(payloads.len());
        for p in payloads {
            claims.push(self.store_one(context, p).await?);
        }
        Ok(claims)
    }

    async fn retrieve(
        &self,
        context: &StorageContext,
        claims: &[StorageClaim],
    ) -> Result<Vec<Payload>, StorageError> {
        let mut out = Vec::with_capacity(claims.len());
        for c in claims {
            out.push(self.retrieve_one(context, c).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_segments_are_encoded_as_temporals_drivers_do() {
        assert_eq!(key_segment("payments-eu_1.x"), "payments-eu_1.x");
        assert_eq!(key_segment(""), "null");
        assert_eq!(key_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(key_segment("é"), "%C3%A9");
        assert_eq!(key_segment("!*'()"), "!*'()");
    }
}
