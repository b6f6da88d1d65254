//! # sealbox-local — a local KEK for development and tests. Not for production.
//!
//! The KEK is a 256-bit key held in this process, loaded from an environment variable, a
//! key file, or (the embedded default) a development key generated on first use into
//! `.sealbox/dev.kek` with owner-only permissions. There is no access control, no audit
//! log and no separation between the key and the data: every construction logs a warning.
//!
//! Data keys are wrapped with AES-256-GCM under the KEK, with the encryption context bound
//! as associated data (see `docs/format.md`, "Local KEK wrapping"). A local KEK may hold
//! several versions (one per line of its key file, the last being primary), so rotation can
//! be exercised without a KMS.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::Mac;
use sealbox_core::{
    DataKey, EncryptionContext, KekRef, KeyDescription, KeyProvider, ProviderError,
    ProviderErrorKind, WrappedKey,
};
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

mod scheme;
pub use scheme::{LocalScheme, LocalSource};

/// The provider ID written into envelopes.
pub const PROVIDER_ID: &str = "local";
/// Environment variable holding base64 KEK(s), read by [`LocalKek::dev_default`].
pub const ENV_KEY: &str = "SEALBOX_LOCAL_KEK";
/// Environment variable naming a key file, read by [`LocalKek::dev_default`].
pub const ENV_KEY_FILE: &str = "SEALBOX_LOCAL_KEK_FILE";
/// Where [`LocalKek::dev_default`] keeps the generated development key (relative to the
/// working directory; ignored by git).
pub const DEFAULT_DEV_KEK_PATH: &str = ".sealbox/dev.kek";
/// The key ID [`LocalKek::dev_default`] uses.
pub const DEFAULT_KEY_ID: &str = "dev";
/// Associated-data label of local wrapping.
pub const WRAP_LABEL: &[u8] = b"sealbox/local-wrap/v1";
/// HMAC label of the key version (a key check value).
pub const VERSION_LABEL: &[u8] = b"sealbox/local-kek-version/v1";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Length of a locally wrapped data key: nonce, encrypted key, tag.
pub const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

struct KekVersion {
    version: String,
    key: SecretBox<[u8; KEY_LEN]>,
}

impl KekVersion {
    fn new(key: SecretBox<[u8; KEY_LEN]>) -> Self {
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(key.expose_secret())
                .expect("HMAC accepts any key length");
        mac.update(VERSION_LABEL);
        let tag = mac.finalize().into_bytes();
        Self {
            version: hex::encode(&tag[..8]),
            key,
        }
    }
}

/// A local key-encryption key. See the crate documentation.
pub struct LocalKek {
    key_id: String,
    versions: RwLock<Vec<KekVersion>>,
    origin: String,
}

impl std::fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKek")
            .field("key_id", &self.key_id)
            .field("versions", &self.versions())
            .field("origin", &self.origin)
            .finish()
    }
}

fn misconfigured(key_id: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(
        PROVIDER_ID,
        key_id,
        ProviderErrorKind::Misconfigured,
        message,
    )
}

fn random_key(key_id: &str) -> Result<SecretBox<[u8; KEY_LEN]>, ProviderError> {
    let mut failed = false;
    let key =
        SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| failed = getrandom::fill(k).is_err());
    if failed {
        return Err(misconfigured(
            key_id,
            "the operating system random number generator failed",
        ));
    }
    Ok(key)
}

impl LocalKek {
    fn with_versions(
        key_id: &str,
        versions: Vec<KekVersion>,
        origin: String,
    ) -> Result<Self, ProviderError> {
        KekRef::new(PROVIDER_ID, key_id).map_err(|e| misconfigured(key_id, e.to_string()))?;
        if versions.is_empty() {
            return Err(misconfigured(key_id, format!("{origin} holds no key")));
        }
        tracing::warn!(
            key_id,
            origin = %origin,
            "LOCAL KEK IN USE: the key-encryption key is held in this process ({origin}), with no \
             KMS access control, audit log or key isolation. For development and tests only; \
             never use the local provider in production."
        );
        Ok(Self {
            key_id: key_id.to_owned(),
            versions: RwLock::new(versions),
            origin,
        })
    }

    /// A random KEK that lives only in memory (tests).
    pub fn generate(key_id: &str) -> Result<Self, ProviderError> {
        let version = KekVersion::new(random_key(key_id)?);
        Self::with_versions(key_id, vec![version], "a random in-memory key".into())
    }

    /// A KEK from base64 text: one 32-byte key per line (or comma-separated); blank lines
    /// and lines starting with `#` are ignored; the last key is the primary version.
    pub fn from_base64(key_id: &str, text: &str) -> Result<Self, ProviderError> {
        Self::parse(key_id, text, "base64 key text".into())
    }

    fn parse(key_id: &str, text: &str, origin: String) -> Result<Self, ProviderError> {
        let mut versions = Vec::new();
        for (i, item) in text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let bytes = Zeroizing::new(B64.decode(item).map_err(|_| {
                misconfigured(
                    key_id,
                    format!("key #{} in {origin} is not valid base64", i + 1),
                )
            })?);
            if bytes.len() != KEY_LEN {
                return Err(misconfigured(
                    key_id,
                    format!(
                        "key #{} in {origin} is {} bytes; a KEK must be {KEY_LEN}",
                        i + 1,
                        bytes.len()
                    ),
                ));
            }
            let key = SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| k.copy_from_slice(&bytes));
            versions.push(KekVersion::new(key));
        }
        Self::with_versions(key_id, versions, origin)
    }

    /// A KEK from the environment variable `var` (base64, as in [`LocalKek::from_base64`]).
    pub fn from_env(key_id: &str, var: &str) -> Result<Self, ProviderError> {
        let text = Zeroizing::new(std::env::var(var).map_err(|_| {
            misconfigured(key_id, format!("environment variable {var} is not set"))
        })?);
        Self::parse(key_id, &text, format!("environment variable {var}"))
    }

    /// A KEK from a key file (base64, as in [`LocalKek::from_base64`]). On Unix the file must
    /// not be accessible to group or others.
    pub fn from_file(key_id: &str, path: impl AsRef<Path>) -> Result<Self, ProviderError> {
        let path = path.as_ref();
        check_permissions(key_id, path)?;
        let text =
            Zeroizing::new(fs::read_to_string(path).map_err(|e| read_error(key_id, path, &e))?);
        Self::parse(key_id, &text, format!("key file {}", path.display()))
    }

    /// The embedded default: `$SEALBOX_LOCAL_KEK` if set, else the file named by
    /// `$SEALBOX_LOCAL_KEK_FILE`, else a development key at [`DEFAULT_DEV_KEK_PATH`],
    /// generated on first use. Key ID [`DEFAULT_KEY_ID`].
    pub fn dev_default() -> Result<Self, ProviderError> {
        if std::env::var_os(ENV_KEY).is_some() {
            return Self::from_env(DEFAULT_KEY_ID, ENV_KEY);
        }
        if let Some(file) = std::env::var_os(ENV_KEY_FILE) {
            return Self::from_file(DEFAULT_KEY_ID, PathBuf::from(file));
        }
        Self::dev_default_at(DEFAULT_DEV_KEK_PATH)
    }

    /// Loads the development key at `path`, creating it first (directory `0700`, file `0600`)
    /// if it does not exist. Safe against concurrent first use: the file appears atomically
    /// with its content, and a process that loses the race reads the winner's key.
    pub fn dev_default_at(path: impl AsRef<Path>) -> Result<Self, ProviderError> {
        let path = path.as_ref();
        if !path.exists() {
            create_key_file(DEFAULT_KEY_ID, path)?;
        }
        Self::from_file(DEFAULT_KEY_ID, path)
    }

    /// Adds a new random version and makes it primary (in memory only). Returns its version.
    pub fn rotate(&self) -> Result<String, ProviderError> {
        let version = KekVersion::new(random_key(&self.key_id)?);
        let id = version.version.clone();
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(version);
        Ok(id)
    }

    /// The versions this KEK holds, oldest first; the last is primary.
    pub fn versions(&self) -> Vec<String> {
        self.versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|v| v.version.clone())
            .collect()
    }

    fn primary_ref(&self) -> Result<KekRef, ProviderError> {
        let versions = self.versions.read().unwrap_or_else(|p| p.into_inner());
        let primary = versions
            .last()
            .ok_or_else(|| misconfigured(&self.key_id, "no key version"))?;
        KekRef::new(PROVIDER_ID, &self.key_id)
            .and_then(|r| r.with_version(&primary.version))
            .map_err(|e| misconfigured(&self.key_id, e.to_string()))
    }

    fn err(&self, kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError::new(PROVIDER_ID, &self.key_id, kind, message)
    }
}

/// The associated data of local wrapping (see `docs/format.md`).
fn wrap_aad(key_id: &str, version: &str, context: &EncryptionContext) -> Vec<u8> {
    let mut aad = Vec::with_capacity(
        WRAP_LABEL.len() + 3 + key_id.len() + version.len() + context.encoded_len(),
    );
    aad.extend_from_slice(WRAP_LABEL);
    aad.extend_from_slice(&(key_id.len() as u16).to_be_bytes());
    aad.extend_from_slice(key_id.as_bytes());
    aad.push(version.len() as u8);
    aad.extend_from_slice(version.as_bytes());
    context.encode_into(&mut aad);
    aad
}

#[async_trait]
impl KeyProvider for LocalKek {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    async fn wrap(
        &self,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, ProviderError> {
        let kek_ref = self.primary_ref()?;
        let version = kek_ref.key_version().unwrap_or_default().to_owned();
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| {
            self.err(
                ProviderErrorKind::Misconfigured,
                "the OS random number generator failed",
            )
        })?;
        let versions = self.versions.read().unwrap_or_else(|p| p.into_inner());
        let kek = versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| self.err(ProviderErrorKind::NotFound, "primary version vanished"))?;
        // The buffer holds the plaintext key until it is encrypted in place; nothing can fail
        // between here and the encryption but the encryption itself, which zeroizes it.
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(data_key.expose_secret());
        let tag = {
            Aes256Gcm::new(&(*kek.key.expose_secret()).into()).encrypt_inout_detached(
                &Nonce::from(nonce),
                &wrap_aad(&self.key_id, &version, context),
                (&mut out[NONCE_LEN..]).into(),
            )
        };
        match tag {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                WrappedKey::new(kek_ref, out)
                    .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
            }
            Err(_) => {
                zeroize::Zeroize::zeroize(&mut out);
                Err(self.err(ProviderErrorKind::Protocol, "AES-GCM wrap failed"))
            }
        }
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        if !self.owns(wrapped.kek()) {
            return Err(self.err(
                ProviderErrorKind::NotFound,
                format!(
                    "wrapped key belongs to {}, not to this local KEK",
                    wrapped.kek()
                ),
            ));
        }
        let Some(version) = wrapped.kek().key_version() else {
            return Err(self.err(
                ProviderErrorKind::InvalidWrappedKey,
                "wrapped key names no KEK version",
            ));
        };
        let ct = wrapped.ciphertext();
        if ct.len() != WRAPPED_LEN {
            return Err(self.err(
                ProviderErrorKind::InvalidWrappedKey,
                format!(
                    "a locally wrapped key is {WRAPPED_LEN} bytes, got {}",
                    ct.len()
                ),
            ));
        }
        let versions = self.versions.read().unwrap_or_else(|p| p.into_inner());
        let kek = versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| {
                self.err(
                    ProviderErrorKind::NotFound,
                    format!("KEK version `{}` is not loaded", version.escape_debug()),
                )
            })?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&ct[..NONCE_LEN]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&ct[NONCE_LEN + KEY_LEN..]);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&ct[NONCE_LEN..NONCE_LEN + KEY_LEN]);
        Aes256Gcm::new(&(*kek.key.expose_secret()).into())
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                &wrap_aad(&self.key_id, version, context),
                key.as_mut_slice().into(),
                &Tag::from(tag),
            )
            .map_err(|_| {
                self.err(
                    ProviderErrorKind::InvalidWrappedKey,
                    "authentication failed: wrong KEK, wrong encryption context, or a corrupted wrapped key",
                )
            })?;
        DataKey::try_from_slice(key.as_slice())
            .map_err(|e| self.err(ProviderErrorKind::Protocol, e.to_string()))
    }

    async fn describe(&self) -> Result<KeyDescription, ProviderError> {
        Ok(KeyDescription::new(
            self.primary_ref()?,
            self.versions(),
            self.native_rewrap(),
            true,
        ))
    }
}

/// A key file that cannot be read: `NotFound` when it does not exist.
fn read_error(key_id: &str, path: &Path, e: &std::io::Error) -> ProviderError {
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        ProviderErrorKind::NotFound
    } else {
        ProviderErrorKind::Misconfigured
    };
    ProviderError::new(
        PROVIDER_ID,
        key_id,
        kind,
        format!("cannot read key file {}: {e}", path.display()),
    )
}

#[cfg(unix)]
fn check_permissions(key_id: &str, path: &Path) -> Result<(), ProviderError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|e| read_error(key_id, path, &e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(misconfigured(
            key_id,
            format!(
                "key file {} is accessible to group or others (mode {mode:03o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_key_id: &str, _path: &Path) -> Result<(), ProviderError> {
    Ok(())
}

fn create_key_file(key_id: &str, path: &Path) -> Result<(), ProviderError> {
    let io_err = |what: &str, e: std::io::Error| {
        misconfigured(key_id, format!("cannot {what} {}: {e}", path.display()))
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| io_err("create the directory of", e))?;

    let key = random_key(key_id)?;
    let mut text = Zeroizing::new(String::from(
        "# Sealbox development KEK (local provider). NOT FOR PRODUCTION.\n\
         # One base64 key per line; the last line is the primary version.\n",
    ));
    text.push_str(&B64.encode(key.expose_secret()));
    text.push('\n');

    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix)
        .map_err(|_| misconfigured(key_id, "the OS random number generator failed"))?;
    let tmp = dir.join(format!(
        ".dev.kek.tmp-{}-{}",
        std::process::id(),
        hex::encode(suffix)
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = write {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write a new key next to", e));
    }
    // Publish atomically without ever replacing an existing key: a hard link fails if the
    // target exists, in which case another process won the race and its key is used.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::warn!(path = %path.display(), "generated a new local development KEK");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("create", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(ns: &str) -> EncryptionContext {
        EncryptionContext::new()
            .with("namespace", ns)
            .expect("valid")
    }

    #[tokio::test]
    async fn wrap_unwrap_round_trip_and_context_binding() {
        let kek = LocalKek::generate("t").expect("kek");
        let key = DataKey::generate().expect("rng");
        let wrapped = kek.wrap(&key, &ctx("a")).await.expect("wrap");
        assert_eq!(wrapped.ciphertext().len(), WRAPPED_LEN);
        let back = kek.unwrap(&wrapped, &ctx("a")).await.expect("unwrap");
        assert_eq!(back.expose_secret(), key.expose_secret());
        let err = kek
            .unwrap(&wrapped, &ctx("b"))
            .await
            .expect_err("other context");
        assert_eq!(err.kind(), ProviderErrorKind::InvalidWrappedKey);
    }

    #[tokio::test]
    async fn rotation_keeps_old_versions_readable() {
        let kek = LocalKek::generate("t").expect("kek");
        let key = DataKey::generate().expect("rng");
        let old = kek.wrap(&key, &ctx("a")).await.expect("wrap");
        let v2 = kek.rotate().expect("rotate");
        assert_eq!(kek.versions().len(), 2);
        let rewrapped = kek.rewrap(&old, &ctx("a")).await.expect("rewrap");
        assert_eq!(rewrapped.kek().key_version(), Some(v2.as_str()));
        assert_ne!(old.kek().key_version(), rewrapped.kek().key_version());
        for w in [&old, &rewrapped] {
            let k = kek.unwrap(w, &ctx("a")).await.expect("unwrap");
            assert_eq!(k.expose_secret(), key.expose_secret());
        }
    }

    #[test]
    fn dev_key_is_created_owner_only_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/dev.kek");
        let a = LocalKek::dev_default_at(&path).expect("create");
        let b = LocalKek::dev_default_at(&path).expect("reload");
        assert_eq!(
            a.versions(),
            b.versions(),
            "the second load must read the same key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dmode = fs::metadata(path.parent().expect("dir"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(dmode, 0o700);
        }
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.contains("NOT FOR PRODUCTION"));
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        fs::write(&path, B64.encode([1u8; 32])).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = LocalKek::from_file("k", &path).expect_err("must refuse 0644");
        assert_eq!(err.kind(), ProviderErrorKind::Misconfigured);
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(LocalKek::from_file("k", &path).is_ok());
    }

    #[test]
    fn bad_key_text_names_the_problem_without_echoing_it() {
        let err = LocalKek::from_base64("k", "not-base64!!").expect_err("bad");
        assert!(err.to_string().contains("not valid base64"));
        assert!(!err.to_string().contains("not-base64!!"));
        let short = B64.encode([1u8; 16]);
        let err = LocalKek::from_base64("k", &short).expect_err("short");
        assert!(err.to_string().contains("16 bytes"));
        assert!(LocalKek::from_base64("k", "# only a comment\n").is_err());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = [0x5au8; 32];
        let kek = LocalKek::from_base64("k", &B64.encode(key)).expect("kek");
        let dbg = format!("{kek:?}");
        assert!(
            !dbg.contains(&B64.encode(key)) && !dbg.contains(&hex::encode(key)),
            "{dbg}"
        );
        assert!(!dbg.contains("90, 90"), "{dbg}");
    }
}
