//! What a rewrite run did.

use serde::{Deserialize, Serialize};

/// One object the run could not rewrite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The object's key.
    pub object: String,
    /// Why (never key material or plaintext).
    pub error: String,
}

/// What a rewrite run did (counts accumulate across resumed runs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Objects read (in the shard).
    pub scanned: u64,
    /// Objects rewritten and stored.
    pub changed: u64,
    /// Dry run: objects that would have been rewritten.
    pub would_change: u64,
    /// Envelopes already as wanted (rewrap: on the active KEK's current version).
    pub skipped: u64,
    /// Objects that are not envelopes (never touched).
    pub not_envelopes: u64,
    /// External-storage objects (never rewritten: their hash is in workflow history).
    pub external_objects: u64,
    /// Objects a concurrent writer changed (or deleted) after they were read: left as the
    /// writer left them.
    pub conflicts: Vec<String>,
    /// Objects that could not be rewritten; each is left untouched.
    pub failed: Vec<Failure>,
    /// KMS calls this run made.
    pub kms_calls: u64,
}

impl Report {
    /// The report as one JSON document, the changed count named after the mode
    /// (`rewrapped` or `reencrypted`).
    pub fn to_json(&self, changed_name: &str, dry_run: bool) -> serde_json::Value {
        let mut v = serde_json::json!({
            "scanned": self.scanned,
            "skipped": self.skipped,
            "not_envelopes": self.not_envelopes,
            "external_objects": self.external_objects,
            "conflicts": self.conflicts,
            "failed": self.failed,
            "kms_calls": self.kms_calls,
        });
        if dry_run {
            v["would_change"] = self.would_change.into();
        } else {
            v[changed_name] = self.changed.into();
        }
        v
    }
}
