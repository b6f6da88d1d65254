//! `sealbox rotate check --retire KEK_URI [--version V]`: is a store proven free of a KEK?
//!
//! KEKs are matched through their provider, never by string: the URI is resolved (the
//! policy's connected provider when the policy names it, else a provider connected with the
//! policy's settings for that scheme, else — for the match-only forms a header displays,
//! such as `vault:///transit/keys/k` — the scheme's key ID), and each header's KEK is
//! matched by `owns()`. A URI that cannot be resolved is an error, never a "free".

use std::sync::Arc;

use futures::StreamExt;
use sealbox_core::{KekRef, KeyProvider};
use sealbox_policy::{PolicyKeyrings, connect, parse_kek, schemes};
use serde::Serialize;

use crate::classify::{Item, classify};
use crate::shard::Shard;
use crate::store::{Store, StoreError};
use crate::walk::{PAGE_SIZE, Pages};

/// At most this many example objects are listed.
const EXAMPLES: usize = 10;

/// How a KEK to retire is recognised in headers.
pub enum Retire {
    /// By a connected provider's `owns()` (aliases, ARNs, Multi-Region keys resolved as for
    /// decryption).
    Provider(Arc<dyn KeyProvider>),
    /// By provider ID and key ID (the match-only forms).
    KeyId {
        /// Provider ID.
        provider: String,
        /// Key ID.
        key_id: String,
    },
}

/// Why `--retire` could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Not a KEK URI this build parses (a usage error).
    #[error("--retire: {0}")]
    Invalid(String),
    /// A valid URI whose provider could not be reached or asked.
    #[error("--retire {uri}: cannot resolve the KEK: {message}")]
    Unresolved {
        /// The URI.
        uri: String,
        /// Why.
        message: String,
    },
}

impl Retire {
    /// Resolves `uri` through `policy` (see the module documentation).
    pub async fn resolve(uri: &str, policy: &PolicyKeyrings) -> Result<Self, ResolveError> {
        let kek = parse_kek(uri).map_err(ResolveError::Invalid)?;
        if let Some((_, provider)) = policy.providers().iter().find(|(u, _)| *u == kek) {
            return Ok(Retire::Provider(provider.clone()));
        }
        let scheme = schemes()
            .iter()
            .find(|s| s.uri_schemes().contains(&kek.scheme()))
            .ok_or_else(|| ResolveError::Invalid(format!("no scheme for `{uri}`")))?;
        if scheme.connectable(&kek).is_ok() {
            return connect(&kek, policy.config())
                .await
                .map(Retire::Provider)
                .map_err(|e| ResolveError::Unresolved {
                    uri: uri.to_owned(),
                    message: e.to_string(),
                });
        }
        let key_id = scheme
            .key_id(&kek)
            .ok_or_else(|| ResolveError::Unresolved {
                uri: uri.to_owned(),
                message: "the URI alone does not name a key ID".into(),
            })?;
        Ok(Retire::KeyId {
            provider: kek.provider_id().to_owned(),
            key_id,
        })
    }

    /// Whether the header's KEK is this one (version ignored).
    pub fn matches(&self, kek: &KekRef) -> bool {
        match self {
            Retire::Provider(p) => p.owns(kek),
            Retire::KeyId { provider, key_id } => {
                kek.provider() == provider && kek.key_id() == key_id
            }
        }
    }
}

/// The answer of `check`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Objects scanned.
    pub scanned: u64,
    /// Objects that still need the KEK (and version).
    pub in_use: u64,
    /// Of `in_use`, external-storage objects (they retire with workflow retention).
    pub external_in_use: u64,
    /// Up to 10 of them.
    pub examples: Vec<String>,
    /// Objects that look like envelopes but do not parse: they might need the KEK.
    pub damaged: u64,
    /// Objects that could not be read.
    pub unreadable: u64,
    /// Whether the scan saw every object (the store was listed to the end, nothing damaged
    /// or unreadable).
    pub complete: bool,
}

impl CheckReport {
    /// `0` proven free, `1` still in use, `3` incomplete scan (never `0` then).
    pub fn exit_code(&self) -> u8 {
        if self.in_use > 0 {
            1
        } else if !self.complete {
            3
        } else {
            0
        }
    }
}

/// Scans the whole store for envelopes whose KEK `retire` matches (and `version`, if given).
pub async fn check(
    store: &dyn Store,
    retire: &Retire,
    version: Option<&str>,
    concurrency: usize,
) -> CheckReport {
    let mut out = CheckReport {
        complete: true,
        ..CheckReport::default()
    };
    let mut pages = Pages::new(store, Shard::ALL, None, PAGE_SIZE);
    while let Some(page) = pages.next().await {
        let Ok(page) = page else {
            out.complete = false;
            break;
        };
        let read: Vec<_> = futures::stream::iter(page.objects)
            .map(|meta| async move { (store.read(&meta.key).await, meta.key) })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (object, key) in read {
            let object = match object {
                Ok(o) => o,
                Err(StoreError::NotFound { .. }) => continue,
                Err(_) => {
                    out.unreadable += 1;
                    out.complete = false;
                    continue;
                }
            };
            out.scanned += 1;
            let (header, external) = match classify(&object.bytes) {
                Item::Envelope(h) => (h, false),
                Item::External(h) => (h, true),
                Item::NotEnvelope => continue,
                Item::Damaged(_) => {
                    out.damaged += 1;
                    out.complete = false;
                    continue;
                }
            };
            let kek = header.kek();
            let hit = retire.matches(kek) && version.is_none_or(|v| kek.key_version() == Some(v));
            if hit {
                out.in_use += 1;
                out.external_in_use += u64::from(external);
                if out.examples.len() < EXAMPLES {
                    out.examples.push(key);
                }
            }
        }
    }
    out.examples.sort();
    out
}
