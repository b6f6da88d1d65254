//! `--shard I/N`: a stable split of a store's keys between N processes.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Shard `index` of `count`: the keys whose SHA-256 (first 8 bytes, big-endian) is
/// `index` modulo `count`. Stable across runs, machines and store kinds, so N processes with
/// `0/N` … `N-1/N` cover every key exactly once between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Every key (`0/1`).
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; `None` unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Self> {
        (index < count).then_some(Self { index, count })
    }

    /// Whether `key` belongs to this shard.
    pub fn contains(&self, key: &str) -> bool {
        if self.count == 1 {
            return true;
        }
        let digest = Sha256::digest(key.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) % u64::from(self.count) == u64::from(self.index)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a shard: write I/N with 0 <= I < N, e.g. 0/3");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (i, n) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        Shard::new(i, n).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_keys() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).expect("valid")).collect();
        for k in 0..1000 {
            let key = format!("obj/{k}");
            assert_eq!(shards.iter().filter(|s| s.contains(&key)).count(), 1);
        }
        // Not degenerate: each shard gets a fair share.
        for s in &shards {
            let n = (0..3000)
                .filter(|k| s.contains(&format!("obj/{k}")))
                .count();
            assert!((800..1200).contains(&n), "{s}: {n}");
        }
        assert_eq!(
            "1/3".parse::<Shard>().map(|s| s.to_string()),
            Ok("1/3".into())
        );
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
