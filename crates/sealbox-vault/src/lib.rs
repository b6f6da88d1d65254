//! # sealbox-vault — Vault / OpenBao Transit as a Sealbox KEK
//!
//! A [`VaultTransit`] wraps data keys with one Transit key. How the encryption context is
//! bound depends on the key, which is read at connect time:
//!
//! - **Derived keys (`derived=true`, recommended).** The context (its canonical encoding,
//!   base64) is Transit's key-derivation `context`: data keys come from
//!   `datakey/plaintext/:name`, unwrap is `decrypt`, and **rewrap is Transit's `rewrap`**, all
//!   with that context, so plaintext keys never leave Vault on rewrap.
//! - **Non-derived AEAD keys** (`aes256-gcm96`, …). The context is sent as
//!   `associated_data` to `encrypt` and `decrypt`. Transit's `datakey` and `rewrap` endpoints
//!   do not accept associated data (a rewrap of such a ciphertext fails authentication), so
//!   data keys are generated locally and sealed with `encrypt`, and rewrap falls back to
//!   `decrypt` + `encrypt` inside this process (the plaintext key is zeroized afterwards).
//!
//! The wrapped key stored in envelopes is Transit's ciphertext string (`vault:vN:…`); the key
//! version `N` is recorded in the envelope header so rotation tooling can find old versions,
//! and is cross-checked against the ciphertext on unwrap.
//!
//! ## Associated-data self-test
//!
//! For a non-derived key the context's only protection is Transit's enforcement of
//! `associated_data`, so [`VaultTransit::connect`] checks it: it encrypts a random probe with
//! associated data A and decrypts it with B (which must fail) and with A (which must return the
//! probe). A server that decrypts under B ignores associated data, and connecting is refused
//! (`Misconfigured`). A token that may not encrypt or decrypt with the key cannot run the check;
//! it is skipped with a warning, so writer-only and reader-only tokens keep working.
//!
//! ## Tokens: renewal and re-login
//!
//! A background task (on the Tokio runtime that ran `connect`) keeps the token alive:
//!
//! - a **renewable token** (the configured one — its TTL is read with `lookup-self` — or one
//!   from a login) is renewed with `renew-self` at about **two thirds of its TTL**;
//! - when renewal cannot help (the token is not renewable, or a renewal came back shorter than
//!   the token's TTL because it reached its maximum TTL), **AppRole and Kubernetes** sessions
//!   log in again at two thirds of the remaining TTL; a static token is left to expire (logged);
//! - a call answered **403** makes the provider check its token (`lookup-self`): if the token
//!   is no longer valid (expired, revoked) and the session can log in, it logs in again —
//!   concurrent calls share one login — and **retries the call once**; a token that is valid
//!   but lacks the capability gives `PermissionDenied` without a login.
//!
//! Kubernetes logins read the service-account JWT file afresh every time (the kubelet rotates
//! projected tokens). Failures are logged (`tracing::warn!`, never with the token) and retried
//! with an exponential backoff (1 s … 30 s); [`VaultTransit::session_stats`] counts logins,
//! renewals and failures. The token is swapped atomically (the calls' client lives behind an
//! `ArcSwap`), and the task holds only a weak reference to the session and is aborted when the
//! provider is dropped.
//!
//! ## TLS
//!
//! Certificates are always verified (`VAULT_SKIP_VERIFY` is ignored). With `ca_cert` (or, when
//! it is not set, `VAULT_CACERT` / `BAO_CACERT`) **only that CA is trusted**: the system roots
//! are not consulted, so a certificate from any public CA is refused. Without it the system
//! roots are used. `VAULT_CLIENT_CERT` + `VAULT_CLIENT_KEY` give a TLS client certificate.
//! Addresses are parsed as URLs and must be `http(s)://host[:port]` with a port 1–65535;
//! anything else is a `Misconfigured` error naming the address, never a panic.
//!
//! ## Secret handling
//!
//! Tokens and AppRole secret IDs are `SecretString`s in the configuration. `vaultrs` needs the
//! session token as a plain `String` in its request middleware; this crate keeps exactly one
//! such copy per token and zeroizes it when the token is replaced or the provider dropped.
//! Login and renewal responses are zeroized after use; the HTTP layer's buffers (tokens in
//! headers, base64 data keys in bodies) are outside this crate's control.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod provider;
mod scheme;
mod session;

pub use config::{ContextBinding, VaultAuth, VaultTransitConfig};
pub use provider::VaultTransit;
pub use scheme::VaultScheme;
pub use session::SessionStats;

/// The provider ID written into envelopes.
pub const PROVIDER_ID: &str = "vault-transit";
