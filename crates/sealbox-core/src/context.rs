//! The encryption context: non-secret key/value pairs bound to an envelope.
//!
//! The context is authenticated as AES-GCM associated data, passed to the KMS as its
//! encryption context / AAD where the KMS supports one, and stored in the clear in the
//! envelope header (so rotation tooling can rewrap without being told it). It must
//! therefore never hold secrets. For Temporal the context holds the namespace.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{ContextError, FormatError};
use crate::format::Reader;

/// Most pairs a context may hold.
pub const MAX_CONTEXT_PAIRS: usize = 64;
/// Longest key, in bytes.
pub const MAX_CONTEXT_KEY_LEN: usize = 256;
/// Longest value, in bytes.
pub const MAX_CONTEXT_VALUE_LEN: usize = 4096;
/// Longest canonical encoding of a whole context, in bytes.
pub const MAX_CONTEXT_ENCODED_LEN: usize = 16 * 1024;

/// A set of UTF-8 key/value pairs, kept sorted by key so its encoding is canonical.
///
/// ```
/// use sealbox_core::EncryptionContext;
/// let ctx = EncryptionContext::new().with("namespace", "payments")?;
/// assert_eq!(ctx.get("namespace"), Some("payments"));
/// # Ok::<(), sealbox_core::ContextError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EncryptionContext {
    pairs: BTreeMap<String, String>,
}

impl EncryptionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder form of [`EncryptionContext::insert`].
    pub fn with(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, ContextError> {
        self.insert(key, value)?;
        Ok(self)
    }

    /// Adds or replaces a pair, returning the old value. Refuses empty keys, control
    /// characters, and anything over the size limits.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Option<String>, ContextError> {
        let key = key.into();
        let value = value.into();
        validate_pair(&key, &value)?;
        if !self.pairs.contains_key(&key) && self.pairs.len() >= MAX_CONTEXT_PAIRS {
            return Err(ContextError::TooManyPairs {
                max: MAX_CONTEXT_PAIRS,
            });
        }
        let old = self.pairs.get(&key).cloned();
        let new_len = self.encoded_len() + key.len() + value.len() + 4
            - old.as_ref().map_or(0, |v| key.len() + v.len() + 4);
        if new_len > MAX_CONTEXT_ENCODED_LEN {
            return Err(ContextError::TooLarge {
                len: new_len,
                max: MAX_CONTEXT_ENCODED_LEN,
            });
        }
        Ok(self.pairs.insert(key, value))
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the context has no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Length of [`EncryptionContext::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        2 + self
            .pairs
            .iter()
            .map(|(k, v)| 4 + k.len() + v.len())
            .sum::<usize>()
    }

    /// The canonical encoding (see `docs/format.md`): `u16` pair count, then for each pair
    /// in ascending byte order of keys `u16` key length, key, `u16` value length, value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Lengths are bounded by `insert`, so the casts cannot truncate.
        out.extend_from_slice(&(self.pairs.len() as u16).to_be_bytes());
        for (k, v) in &self.pairs {
            out.extend_from_slice(&(k.len() as u16).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }

    /// Parses a canonical encoding from the front of `bytes`, returning the context and the
    /// number of bytes consumed. Non-canonical encodings (unsorted or duplicate keys) are refused.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Self, usize), FormatError> {
        let mut pairs = BTreeMap::new();
        let used = scan_prefix(bytes, |k, v| {
            pairs.insert(k.to_owned(), v.to_owned());
        })?;
        Ok((Self { pairs }, used))
    }

    /// Whether `encoding` is exactly this context's canonical encoding (no allocation). Two
    /// contexts are equal exactly when their canonical encodings are.
    pub fn matches_encoding(&self, encoding: &[u8]) -> bool {
        /// Takes `u16 len || bytes` off the front of `rest` if that is what it holds.
        fn field(rest: &mut &[u8], bytes: &[u8]) -> bool {
            let n = 2 + bytes.len();
            let ok = rest.len() >= n
                && rest[..2] == (bytes.len() as u16).to_be_bytes()
                && &rest[2..n] == bytes;
            if ok {
                *rest = &rest[n..];
            }
            ok
        }
        let Some((count, mut rest)) = encoding.split_first_chunk::<2>() else {
            return false;
        };
        if *count != (self.pairs.len() as u16).to_be_bytes() {
            return false;
        }
        self.pairs
            .iter()
            .all(|(k, v)| field(&mut rest, k.as_bytes()) && field(&mut rest, v.as_bytes()))
            && rest.is_empty()
    }

    /// Names the keys whose presence or value differs between `self` and `other`
    /// (values are not printed).
    pub fn describe_difference(&self, other: &Self) -> String {
        let mut diffs = Vec::new();
        for (k, v) in &self.pairs {
            match other.pairs.get(k) {
                None => diffs.push(format!("`{}` missing from the other", k.escape_debug())),
                Some(o) if o != v => diffs.push(format!("`{}` differs", k.escape_debug())),
                Some(_) => {}
            }
        }
        for k in other.pairs.keys() {
            if !self.pairs.contains_key(k) {
                diffs.push(format!("`{}` unexpected", k.escape_debug()));
            }
        }
        diffs.join(", ")
    }
}

/// Checks a canonical context encoding at the front of `bytes` (every rule of
/// [`EncryptionContext::decode_prefix`]), calls `pair` for each pair in order, and returns
/// the number of bytes it takes.
pub(crate) fn scan_prefix(
    bytes: &[u8],
    mut pair: impl FnMut(&str, &str),
) -> Result<usize, FormatError> {
    let mut r = Reader::new(bytes);
    let count = r.u16("context pair count")? as usize;
    Reader::check_len("context pair count", count, 0, MAX_CONTEXT_PAIRS)?;
    let mut last: Option<&[u8]> = None;
    for _ in 0..count {
        let klen = r.u16("context key length")? as usize;
        let kb = r.take_checked("context key", klen, 1, MAX_CONTEXT_KEY_LEN)?;
        let vlen = r.u16("context value length")? as usize;
        let vb = r.take_checked("context value", vlen, 0, MAX_CONTEXT_VALUE_LEN)?;
        if let Some(prev) = last
            && prev >= kb
        {
            return Err(FormatError::InvalidField {
                field: "encryption context",
                reason: "keys are not in strictly ascending byte order (duplicate or unsorted)",
            });
        }
        last = Some(kb);
        let k = std::str::from_utf8(kb).map_err(|_| FormatError::InvalidUtf8 {
            field: "context key",
        })?;
        let v = std::str::from_utf8(vb).map_err(|_| FormatError::InvalidUtf8 {
            field: "context value",
        })?;
        if has_control(k) || has_control(v) {
            return Err(FormatError::InvalidField {
                field: "encryption context",
                reason: "contains a control character",
            });
        }
        pair(k, v);
    }
    let used = r.position();
    // At least the 2-byte pair count was read.
    Reader::check_len("encryption context", used, 2, MAX_CONTEXT_ENCODED_LEN)?;
    Ok(used)
}

fn has_control(s: &str) -> bool {
    s.chars().any(crate::key::is_hidden_char)
}

fn validate_pair(key: &str, value: &str) -> Result<(), ContextError> {
    if key.is_empty() {
        return Err(ContextError::EmptyKey);
    }
    if key.len() > MAX_CONTEXT_KEY_LEN {
        return Err(ContextError::KeyTooLong {
            len: key.len(),
            max: MAX_CONTEXT_KEY_LEN,
        });
    }
    if value.len() > MAX_CONTEXT_VALUE_LEN {
        return Err(ContextError::ValueTooLong {
            key: key.escape_debug().to_string(),
            len: value.len(),
            max: MAX_CONTEXT_VALUE_LEN,
        });
    }
    if has_control(key) || has_control(value) {
        return Err(ContextError::ControlCharacter {
            key: key.escape_debug().to_string(),
        });
    }
    Ok(())
}

impl fmt::Debug for EncryptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.pairs.iter()).finish()
    }
}

impl fmt::Display for EncryptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in &self.pairs {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={}", k.escape_debug(), v.escape_debug())?;
        }
        Ok(())
    }
}

impl<K: Into<String>, V: Into<String>> TryFrom<Vec<(K, V)>> for EncryptionContext {
    type Error = ContextError;
    fn try_from(pairs: Vec<(K, V)>) -> Result<Self, ContextError> {
        let mut ctx = Self::new();
        for (k, v) in pairs {
            ctx.insert(k, v)?;
        }
        Ok(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_pairs((k1, v1): (&str, &str), (k2, v2): (&str, &str)) -> EncryptionContext {
        EncryptionContext::new()
            .with(k1, v1)
            .and_then(|c| c.with(k2, v2))
            .expect("valid")
    }

    #[test]
    fn canonical_encoding_round_trips_and_sorts() {
        let ctx = two_pairs(("b", "2"), ("a", "1"));
        let enc = ctx.encode();
        assert_eq!(enc, [0, 2, 0, 1, b'a', 0, 1, b'1', 0, 1, b'b', 0, 1, b'2']);
        let (back, used) = EncryptionContext::decode_prefix(&enc).expect("decodes");
        assert_eq!(used, enc.len());
        assert_eq!(back, ctx);
    }

    #[test]
    fn matches_encoding_is_equality_of_encodings() {
        let ctx = two_pairs(("namespace", "payments"), ("tier", "gold"));
        let enc = ctx.encode();
        assert!(ctx.matches_encoding(&enc));
        assert!(EncryptionContext::new().matches_encoding(&[0, 0]));
        assert!(!EncryptionContext::new().matches_encoding(&[]));
        assert!(!ctx.matches_encoding(&enc[..enc.len() - 1]), "truncated");
        let mut longer = enc.clone();
        longer.push(0);
        assert!(!ctx.matches_encoding(&longer), "trailing byte");
        for i in 0..enc.len() {
            let mut changed = enc.clone();
            changed[i] ^= 0x20;
            assert!(!ctx.matches_encoding(&changed), "byte {i} changed");
        }
        let other = ctx.clone().with("tier", "gol").expect("valid");
        assert!(!ctx.matches_encoding(&other.encode()));
        assert!(!other.matches_encoding(&enc));
    }

    #[test]
    fn unsorted_and_duplicate_keys_are_refused() {
        let unsorted = [0, 2, 0, 1, b'b', 0, 0, 0, 1, b'a', 0, 0];
        assert!(matches!(
            EncryptionContext::decode_prefix(&unsorted),
            Err(FormatError::InvalidField { .. })
        ));
        let dup = [0, 2, 0, 1, b'a', 0, 0, 0, 1, b'a', 0, 0];
        assert!(EncryptionContext::decode_prefix(&dup).is_err());
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(
            EncryptionContext::new().with("", "x"),
            Err(ContextError::EmptyKey)
        );
        let long = "k".repeat(MAX_CONTEXT_KEY_LEN + 1);
        assert!(matches!(
            EncryptionContext::new().with(long, "x"),
            Err(ContextError::KeyTooLong { .. })
        ));
        assert!(matches!(
            EncryptionContext::new().with("a", "\u{7}"),
            Err(ContextError::ControlCharacter { .. })
        ));
        // Bidi overrides and zero-width characters would make two different contexts print
        // alike (a namespace that reads as another tenant's): refused like control characters.
        for hidden in [
            "pay\u{202E}stnemy",
            "pay\u{200B}ments",
            "\u{2066}x",
            "a\u{FEFF}",
        ] {
            assert!(
                matches!(
                    EncryptionContext::new().with("namespace", hidden),
                    Err(ContextError::ControlCharacter { .. })
                ),
                "{hidden:?}"
            );
            assert!(
                EncryptionContext::new().with(hidden, "v").is_err(),
                "{hidden:?}"
            );
        }
        let mut ctx = EncryptionContext::new();
        for i in 0..MAX_CONTEXT_PAIRS {
            ctx.insert(format!("k{i}"), "v").expect("within limit");
        }
        assert!(matches!(
            ctx.insert("one-more", "v"),
            Err(ContextError::TooManyPairs { .. })
        ));
        let mut big = EncryptionContext::new();
        let value = "v".repeat(MAX_CONTEXT_VALUE_LEN);
        let mut refused = false;
        for i in 0..8 {
            if let Err(e) = big.insert(format!("k{i}"), value.clone()) {
                assert!(matches!(e, ContextError::TooLarge { .. }));
                refused = true;
                break;
            }
        }
        assert!(
            refused,
            "a context over {MAX_CONTEXT_ENCODED_LEN} bytes must be refused"
        );
    }

    #[test]
    fn difference_names_keys_not_values() {
        let a = EncryptionContext::new()
            .with("namespace", "secret-a")
            .expect("valid");
        let b = EncryptionContext::new()
            .with("namespace", "secret-b")
            .expect("valid");
        let d = a.describe_difference(&b);
        assert!(d.contains("namespace"));
        assert!(!d.contains("secret-a") && !d.contains("secret-b"));
    }
}
