//! `sealbox rotate inventory`: what a store holds, per KEK and version.

use std::collections::BTreeMap;

use futures::StreamExt;
use sealbox_core::KekRef;
use serde::Serialize;

use crate::classify::{Item, classify};
use crate::shard::Shard;
use crate::store::{Store, StoreError};
use crate::walk::{PAGE_SIZE, Pages};

/// The objects of one KEK version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KekCount {
    /// The policy's URI for the KEK when it names it, else `provider:key_id`.
    pub kek: String,
    /// The provider ID.
    pub provider: String,
    /// The key ID.
    pub key_id: String,
    /// The KEK version the envelopes name, where the KMS reports one.
    pub version: Option<String>,
    /// Objects (envelopes and external-storage objects).
    pub count: u64,
    /// Their total size.
    pub bytes: u64,
    /// Of `count`, external-storage objects (never rewritten).
    pub external: u64,
}

/// What a store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Inventory {
    /// Objects scanned (in the shard).
    pub total: u64,
    /// Per KEK and version, sorted by KEK then version.
    pub by_kek: Vec<KekCount>,
    /// Objects that are not envelopes (never touched).
    pub not_envelopes: u64,
    /// Objects that look like envelopes but do not parse.
    pub damaged: u64,
    /// External-storage objects (also counted in `by_kek`).
    pub external_objects: u64,
}

impl Inventory {
    /// Adds `other`'s counts (another shard's) to these, `by_kek` merged per KEK and version.
    pub fn merge(&mut self, other: Inventory) {
        self.total += other.total;
        self.not_envelopes += other.not_envelopes;
        self.damaged += other.damaged;
        self.external_objects += other.external_objects;
        for k in other.by_kek {
            match self.by_kek.iter_mut().find(|m| {
                (&m.provider, &m.key_id, &m.version) == (&k.provider, &k.key_id, &k.version)
            }) {
                Some(m) => {
                    m.count += k.count;
                    m.bytes += k.bytes;
                    m.external += k.external;
                }
                None => self.by_kek.push(k),
            }
        }
        self.by_kek.sort_by(|a, b| {
            (&a.provider, &a.key_id, &a.version).cmp(&(&b.provider, &b.key_id, &b.version))
        });
    }
}

/// Scans `store` (the keys of `shard`), reading every object's header. `name` gives a KEK's
/// display name (the policy's URI where it names the KEK).
pub async fn inventory(
    store: &dyn Store,
    shard: Shard,
    concurrency: usize,
    name: &(dyn Fn(&KekRef) -> String + Sync),
) -> Result<Inventory, StoreError> {
    let mut out = Inventory::default();
    let mut groups: BTreeMap<(String, String, Option<String>), KekCount> = BTreeMap::new();
    let mut pages = Pages::new(store, shard, None, PAGE_SIZE);
    while let Some(page) = pages.next().await {
        let page = page?;
        let read: Vec<_> = futures::stream::iter(page.objects)
            .map(|meta| async move { store.read(&meta.key).await })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for object in read {
            let object = match object {
                Ok(o) => o,
                // Deleted since it was listed: not in the store any more.
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            out.total += 1;
            let (header, external) = match classify(&object.bytes) {
                Item::Envelope(h) => (h, false),
                Item::External(h) => (h, true),
                Item::NotEnvelope => {
                    out.not_envelopes += 1;
                    continue;
                }
                Item::Damaged(_) => {
                    out.damaged += 1;
                    continue;
                }
            };
            out.external_objects += u64::from(external);
            let kek = header.kek();
            let group = groups
                .entry((
                    kek.provider().to_owned(),
                    kek.key_id().to_owned(),
                    kek.key_version().map(str::to_owned),
                ))
                .or_insert_with(|| KekCount {
                    kek: name(kek),
                    provider: kek.provider().to_owned(),
                    key_id: kek.key_id().to_owned(),
                    version: kek.key_version().map(str::to_owned),
                    count: 0,
                    bytes: 0,
                    external: 0,
                });
            group.count += 1;
            group.bytes += object.bytes.len() as u64;
            group.external += u64::from(external);
        }
    }
    out.by_kek = groups.into_values().collect();
    Ok(out)
}
