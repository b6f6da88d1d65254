//! # sealbox-testkit (dev-dependency only)
//!
//! - [`servers`]: real KMS servers (OpenBao; moto later) started on free loopback ports and
//!   stopped when their guard drops, even when the test panics.
//! - [`postgres`]: a real PostgreSQL server (Debian's) in a temporary cluster on a free
//!   loopback port, for the rotation job's PostgreSQL store.
//! - [`conformance`]: the provider conformance suite every `KeyProvider` runs.
//! - [`fixtures`]: the usual context, deterministic test bytes, a counting provider.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod conformance;
pub mod faults;
pub mod fixtures;
pub mod gcpkms;
mod openbao_file;
pub mod postgres;
mod process;
pub mod servers;

/// Writes a secret file (a key or token) readable only by its owner (mode 0600 on Unix), as
/// the local KEK provider and the token loaders require; panics on failure.
pub fn write_secret_file(path: &std::path::Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    }
}

/// Fails the test when any case of a table-driven test went wrong, listing every one
/// (`wrong`, a line each) out of the `total` run, so that one run shows all the failures.
#[track_caller]
pub fn assert_no_wrong_cases(wrong: &[String], total: usize) {
    assert!(
        wrong.is_empty(),
        "{} of {total} cases:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
