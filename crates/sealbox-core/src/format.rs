//! The Sealbox envelope format, version 1. `docs/format.md` is the byte-by-byte
//! specification; this module is its reference implementation.
//!
//! ```text
//! A  magic "SBXE" | version u8 = 1 | suite u16                       (authenticated)
//! K  key_section_len u16 | provider | key_id | key_version | wrapped (rewrappable)
//! C  context | salt[32] | nonce[12] | commitment[32] | body_len u64  (authenticated)
//!    body: ciphertext | tag[16]
//! ```
//!
//! The AES-GCM associated data is `A || C`. The key section `K` is deliberately outside it,
//! so a rotation job can replace the wrapped key (rewrap) without touching the body; the key
//! commitment in `C` ensures that any replacement must unwrap to the very same data key.

use std::fmt;
use std::ops::Range;

use crate::context::{EncryptionContext, scan_prefix as scan_context};
use crate::error::FormatError;
use crate::key::{KekRef, WrappedKey, valid_key_id, valid_key_version, valid_provider_id};

/// The four magic bytes that open every envelope.
pub const MAGIC: [u8; 4] = *b"SBXE";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the per-payload HKDF salt.
pub const SALT_LEN: usize = 32;
/// Length of the AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Longest provider ID.
pub const MAX_PROVIDER_ID_LEN: usize = 32;
/// Longest KEK ID.
pub const MAX_KEY_ID_LEN: usize = 2048;
/// Longest KEK version.
pub const MAX_KEY_VERSION_LEN: usize = 255;
/// Longest wrapped data key.
pub const MAX_WRAPPED_KEY_LEN: usize = 8192;
/// Largest plaintext one v1 envelope holds: AES-GCM's limit of 2^36 - 32 bytes.
pub const MAX_PLAINTEXT_LEN: u64 = (1 << 36) - 32;
/// Length of the fixed prefix `A`.
pub const PREFIX_LEN: usize = 7;

/// Algorithm suites. A suite fixes the AEAD, the key derivation and the commitment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// `0x0001`: AES-256-GCM; payload key and commitment derived with HKDF-SHA256 from the
    /// lease data key and a 256-bit per-payload salt; 96-bit random nonce; 128-bit tag.
    Aes256GcmHkdfSha256Commit,
    /// `0x0002`: the same AEAD, nonce, tag and header as `0x0001`, with HKDF-Extract skipped
    /// (RFC 5869 §3.3: the data key is already a uniformly random 256-bit key): payload key
    /// and commitment are HKDF-SHA256-Expand of the data key with the salt in the info. The
    /// data key's HMAC state is computed once per key instead of once per payload, which
    /// makes a seal or an open ≈ 6 SHA-256 compressions cheaper. Read by every build since
    /// it was added; written only when configured ([`Suite::DEFAULT`] is `0x0001`).
    Aes256GcmHkdfExpandSha256Commit,
}

impl Suite {
    /// The suite new envelopes are written with unless configured otherwise.
    pub const DEFAULT: Suite = Suite::Aes256GcmHkdfSha256Commit;

    /// Every suite this build reads and can write, in ID order.
    pub const ALL: [Suite; 2] = [
        Suite::Aes256GcmHkdfSha256Commit,
        Suite::Aes256GcmHkdfExpandSha256Commit,
    ];

    /// The suite's ID as written in the header.
    pub fn id(self) -> u16 {
        match self {
            Suite::Aes256GcmHkdfSha256Commit => 0x0001,
            Suite::Aes256GcmHkdfExpandSha256Commit => 0x0002,
        }
    }

    /// The suite with this ID, if this build implements it.
    pub fn from_id(id: u16) -> Result<Self, FormatError> {
        match id {
            0x0001 => Ok(Suite::Aes256GcmHkdfSha256Commit),
            0x0002 => Ok(Suite::Aes256GcmHkdfExpandSha256Commit),
            other => Err(FormatError::UnsupportedSuite(other)),
        }
    }

    /// A short human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Aes256GcmHkdfSha256Commit => "AES-256-GCM/HKDF-SHA256/commit",
            Suite::Aes256GcmHkdfExpandSha256Commit => "AES-256-GCM/HKDF-SHA256-Expand/commit",
        }
    }
}

impl Default for Suite {
    fn default() -> Self {
        Suite::DEFAULT
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x} ({})", self.id(), self.name())
    }
}

/// An envelope's header: everything but the body. Readable without any key.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The format version (always 1 for this build).
    pub version: u8,
    /// The algorithm suite.
    pub suite: Suite,
    /// The KEK wrapping the data key and the wrapped data key.
    pub wrapped_key: WrappedKey,
    /// The encryption context the envelope was sealed under.
    pub context: EncryptionContext,
    /// The per-payload HKDF salt.
    pub salt: [u8; SALT_LEN],
    /// The AES-GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The key commitment.
    pub commitment: [u8; COMMITMENT_LEN],
    /// Length of ciphertext plus tag.
    pub body_len: u64,
}

impl EnvelopeHeader {
    /// The KEK reference.
    pub fn kek(&self) -> &KekRef {
        self.wrapped_key.kek()
    }

    /// Length of the plaintext this envelope holds.
    pub fn plaintext_len(&self) -> u64 {
        self.body_len.saturating_sub(TAG_LEN as u64)
    }

    /// Writes the header (`A || K || C`) to `out` and returns the associated data `A || C`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Vec<u8> {
        write_header(
            out,
            self.version,
            self.suite,
            &self.wrapped_key,
            &self.context,
            &self.salt,
            &self.nonce,
            &self.commitment,
            self.body_len,
        )
    }

    /// Length of the encoded header.
    pub fn encoded_len(&self) -> usize {
        header_len(&self.wrapped_key, &self.context)
    }
}

impl fmt::Debug for EnvelopeHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvelopeHeader")
            .field("version", &self.version)
            .field("suite", &self.suite)
            .field("kek", self.wrapped_key.kek())
            .field("wrapped_key_len", &self.wrapped_key.ciphertext().len())
            .field("context", &self.context)
            .field("body_len", &self.body_len)
            .finish_non_exhaustive()
    }
}

/// Length of a header with these variable parts.
pub(crate) fn header_len(wrapped: &WrappedKey, context: &EncryptionContext) -> usize {
    PREFIX_LEN
        + 2
        + key_section_len(wrapped)
        + context.encoded_len()
        + SALT_LEN
        + NONCE_LEN
        + COMMITMENT_LEN
        + 8
}

/// Writes a header from borrowed parts (no copies of the wrapped key or context) and returns
/// the associated data `A || C`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_header(
    out: &mut Vec<u8>,
    version: u8,
    suite: Suite,
    wrapped: &WrappedKey,
    context: &EncryptionContext,
    salt: &[u8; SALT_LEN],
    nonce: &[u8; NONCE_LEN],
    commitment: &[u8; COMMITMENT_LEN],
    body_len: u64,
) -> Vec<u8> {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(version);
    out.extend_from_slice(&suite.id().to_be_bytes());
    encode_key_section(wrapped, out);
    let c_start = out.len();
    context.encode_into(out);
    out.extend_from_slice(salt);
    out.extend_from_slice(nonce);
    out.extend_from_slice(commitment);
    out.extend_from_slice(&body_len.to_be_bytes());
    let mut aad = Vec::with_capacity(PREFIX_LEN + out.len() - c_start);
    aad.extend_from_slice(&out[start..start + PREFIX_LEN]);
    aad.extend_from_slice(&out[c_start..]);
    aad
}

fn key_section_len(w: &WrappedKey) -> usize {
    1 + w.kek().provider().len()
        + 2
        + w.kek().key_id().len()
        + 1
        + w.kek().key_version().map_or(0, str::len)
        + 2
        + w.ciphertext().len()
}

/// Writes `key_section_len u16` followed by the key section. Field lengths are bounded by
/// [`KekRef`] and [`WrappedKey`] constructors, so the casts cannot truncate.
fn encode_key_section(w: &WrappedKey, out: &mut Vec<u8>) {
    let kek = w.kek();
    out.extend_from_slice(&(key_section_len(w) as u16).to_be_bytes());
    out.push(kek.provider().len() as u8);
    out.extend_from_slice(kek.provider().as_bytes());
    out.extend_from_slice(&(kek.key_id().len() as u16).to_be_bytes());
    out.extend_from_slice(kek.key_id().as_bytes());
    let version = kek.key_version().unwrap_or("");
    out.push(version.len() as u8);
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(&(w.ciphertext().len() as u16).to_be_bytes());
    out.extend_from_slice(w.ciphertext());
}

/// A parsed envelope borrowing its body from the input.
#[derive(Debug)]
pub struct ParsedEnvelope<'a> {
    /// The header.
    pub header: EnvelopeHeader,
    /// The associated data `A || C` for the body's AEAD.
    pub aad: Vec<u8>,
    /// Ciphertext followed by the tag.
    pub body: &'a [u8],
    /// Byte range of the key section (including its length field) in the input.
    pub key_section: Range<usize>,
    /// Byte range, in the input, of the key section followed by the context: the bytes that
    /// name this envelope's wrapped key, its KEK and its context, exactly as
    /// [`encode_key_binding`] writes them for the parsed values. Equal bytes mean the same
    /// (wrapped key, context) pair, so the key-ring keys its unwrap cache by them without
    /// copying the header's parts.
    pub key_binding: Range<usize>,
}

/// The key section (with its length field) followed by the canonical context encoding: the
/// bytes an envelope carrying `wrapped` under `context` holds at
/// [`ParsedEnvelope::key_binding`].
pub fn encode_key_binding(wrapped: &WrappedKey, context: &EncryptionContext) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + key_section_len(wrapped) + context.encoded_len());
    encode_key_section(wrapped, &mut out);
    context.encode_into(&mut out);
    out
}

/// Parses a whole envelope. Rejects unknown versions and suites, every out-of-range length,
/// truncation, and trailing bytes, each with a typed [`FormatError`].
pub fn parse(bytes: &[u8]) -> Result<ParsedEnvelope<'_>, FormatError> {
    parse_view(bytes)?.to_parsed()
}

/// An envelope checked exactly as [`parse`] checks it, with every part borrowed from the
/// input: parsing it allocates nothing. The key-ring opens through it when the data key is
/// cached; [`EnvelopeView::to_parsed`] gives the owned form.
#[derive(Debug, Clone)]
pub struct EnvelopeView<'a> {
    bytes: &'a [u8],
    suite: Suite,
    provider: &'a str,
    key_id: &'a str,
    key_version: &'a str,
    wrapped: &'a [u8],
    key_section: Range<usize>,
    /// The context's canonical encoding.
    context: Range<usize>,
    /// The authenticated part `C` (context through body length).
    authenticated: Range<usize>,
    salt: &'a [u8; SALT_LEN],
    nonce: &'a [u8; NONCE_LEN],
    commitment: &'a [u8; COMMITMENT_LEN],
    body_len: u64,
}

/// Checks a whole envelope as [`parse`] does (same rules, same errors) without copying any
/// part of it.
pub fn parse_view(bytes: &[u8]) -> Result<EnvelopeView<'_>, FormatError> {
    let mut r = Reader::new(bytes);
    let magic = r.take("magic", 4)?;
    if magic != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = r.u8("format version")?;
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let suite = Suite::from_id(r.u16("suite")?)?;

    let ks_start = r.position();
    let declared = r.u16("key section length")? as usize;
    let ks_body_start = r.position();
    let provider = r.len_prefixed("provider ID", LengthPrefix::U8, 1, MAX_PROVIDER_ID_LEN)?;
    let provider = utf8("provider ID", provider)?;
    let key_id = r.len_prefixed("key ID", LengthPrefix::U16, 1, MAX_KEY_ID_LEN)?;
    let key_id = utf8("key ID", key_id)?;
    let version_bytes = r.len_prefixed("key version", LengthPrefix::U8, 0, MAX_KEY_VERSION_LEN)?;
    let key_version = utf8("key version", version_bytes)?;
    let wrapped = r.len_prefixed("wrapped key", LengthPrefix::U16, 1, MAX_WRAPPED_KEY_LEN)?;
    if r.position() - ks_body_start != declared {
        return Err(FormatError::InvalidField {
            field: "key section length",
            reason: "does not match the lengths of the fields it contains",
        });
    }
    let ks_end = r.position();
    if !valid_provider_id(provider) || !valid_key_id(key_id) {
        return Err(FormatError::InvalidField {
            field: "KEK reference",
            reason: "provider ID must be [a-z0-9-] and key ID free of control characters",
        });
    }
    if !key_version.is_empty() && !valid_key_version(key_version) {
        return Err(FormatError::InvalidField {
            field: "key version",
            reason: "contains a control character",
        });
    }

    let c_start = r.position();
    let used = scan_context(r.rest(), |_, _| {})?;
    r.skip(used);
    let context_end = r.position();
    let salt = r.array_ref::<SALT_LEN>("salt")?;
    let nonce = r.array_ref::<NONCE_LEN>("nonce")?;
    let commitment = r.array_ref::<COMMITMENT_LEN>("commitment")?;
    let body_len = r.u64("body length")?;
    let max_body = MAX_PLAINTEXT_LEN + TAG_LEN as u64;
    if !(TAG_LEN as u64..=max_body).contains(&body_len) {
        return Err(FormatError::InvalidLength {
            field: "body length",
            len: body_len,
            min: TAG_LEN as u64,
            max: max_body,
        });
    }
    let c_end = r.position();
    let available = r.rest().len() as u64;
    if available < body_len {
        return Err(FormatError::Truncated {
            field: "body",
            needed: body_len,
            available,
        });
    }
    if available > body_len {
        return Err(FormatError::TrailingBytes {
            count: available - body_len,
        });
    }
    Ok(EnvelopeView {
        bytes,
        suite,
        provider,
        key_id,
        key_version,
        wrapped,
        key_section: ks_start..ks_end,
        context: c_start..context_end,
        authenticated: c_start..c_end,
        salt,
        nonce,
        commitment,
        body_len,
    })
}

impl<'a> EnvelopeView<'a> {
    /// The algorithm suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The KEK's provider ID and key ID.
    pub fn kek_ids(&self) -> (&'a str, &'a str) {
        (self.provider, self.key_id)
    }

    /// The context's canonical encoding (compare it with
    /// [`EncryptionContext::matches_encoding`]).
    pub fn context_encoding(&self) -> &'a [u8] {
        &self.bytes[self.context.clone()]
    }

    /// The key section followed by the context: see [`ParsedEnvelope::key_binding`].
    pub fn key_binding(&self) -> &'a [u8] {
        &self.bytes[self.key_section.start..self.context.end]
    }

    /// The per-payload HKDF salt.
    pub fn salt(&self) -> &'a [u8; SALT_LEN] {
        self.salt
    }

    /// The AES-GCM nonce.
    pub fn nonce(&self) -> &'a [u8; NONCE_LEN] {
        self.nonce
    }

    /// The key commitment.
    pub fn commitment(&self) -> &'a [u8; COMMITMENT_LEN] {
        self.commitment
    }

    /// Ciphertext followed by the tag.
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[self.bytes.len() - self.body_len as usize..]
    }

    /// The associated data `A || C` for the body's AEAD.
    pub fn aad(&self) -> Vec<u8> {
        let c = &self.bytes[self.authenticated.clone()];
        let mut aad = Vec::with_capacity(PREFIX_LEN + c.len());
        aad.extend_from_slice(&self.bytes[..PREFIX_LEN]);
        aad.extend_from_slice(c);
        aad
    }

    /// The owned form, as [`parse`] returns it.
    pub fn to_parsed(&self) -> Result<ParsedEnvelope<'a>, FormatError> {
        let mut kek =
            KekRef::new(self.provider, self.key_id).map_err(|_| FormatError::InvalidField {
                field: "KEK reference",
                reason: "provider ID must be [a-z0-9-] and key ID free of control characters",
            })?;
        if !self.key_version.is_empty() {
            kek = kek
                .with_version(self.key_version)
                .map_err(|_| FormatError::InvalidField {
                    field: "key version",
                    reason: "contains a control character",
                })?;
        }
        let wrapped_key = WrappedKey::new(kek, self.wrapped.to_vec()).map_err(|_| {
            FormatError::InvalidLength {
                field: "wrapped key",
                len: self.wrapped.len() as u64,
                min: 1,
                max: MAX_WRAPPED_KEY_LEN as u64,
            }
        })?;
        let (context, _) = EncryptionContext::decode_prefix(self.context_encoding())?;
        Ok(ParsedEnvelope {
            header: EnvelopeHeader {
                version: FORMAT_VERSION,
                suite: self.suite,
                wrapped_key,
                context,
                salt: *self.salt,
                nonce: *self.nonce,
                commitment: *self.commitment,
                body_len: self.body_len,
            },
            aad: self.aad(),
            body: self.body(),
            key_section: self.key_section.clone(),
            key_binding: self.key_section.start..self.context.end,
        })
    }
}

/// Reads an envelope's header without any key (for inspection and inventory).
pub fn inspect(bytes: &[u8]) -> Result<EnvelopeHeader, FormatError> {
    parse(bytes).map(|p| p.header)
}

/// Returns a copy of `envelope` whose key section names `new` instead of the old wrapped
/// key. Nothing else changes, so the body stays valid — *if* `new` unwraps to the same data
/// key. Callers must verify that (the key-ring's `rewrap` checks the key commitment) before
/// replacing anything stored.
pub fn replace_wrapped_key(envelope: &[u8], new: &WrappedKey) -> Result<Vec<u8>, FormatError> {
    let parsed = parse(envelope)?;
    let range = parsed.key_section;
    let mut out = Vec::with_capacity(envelope.len() - range.len() + key_section_len(new) + 2);
    out.extend_from_slice(&envelope[..range.start]);
    encode_key_section(new, &mut out);
    out.extend_from_slice(&envelope[range.end..]);
    Ok(out)
}

fn utf8<'a>(field: &'static str, bytes: &'a [u8]) -> Result<&'a str, FormatError> {
    std::str::from_utf8(bytes).map_err(|_| FormatError::InvalidUtf8 { field })
}

/// A bounds-checked big-endian reader; every short read is a [`FormatError::Truncated`].
/// The width of a field's length prefix.
#[derive(Debug, Clone, Copy)]
enum LengthPrefix {
    U8,
    U16,
}

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    fn skip(&mut self, n: usize) {
        self.pos += n;
    }

    pub(crate) fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], FormatError> {
        let available = self.bytes.len() - self.pos;
        if available < n {
            return Err(FormatError::Truncated {
                field,
                needed: n as u64,
                available: available as u64,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array_ref<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<&'a [u8; N], FormatError> {
        Ok(self
            .take(field, N)?
            .try_into()
            .expect("take returns N bytes"))
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Refuses a length of `field` outside `min..=max`.
    pub(crate) fn check_len(
        field: &'static str,
        len: usize,
        min: usize,
        max: usize,
    ) -> Result<(), FormatError> {
        if len < min || len > max {
            return Err(FormatError::InvalidLength {
                field,
                len: len as u64,
                min: min as u64,
                max: max as u64,
            });
        }
        Ok(())
    }

    /// The next `len` bytes, `field`, whose length must be in `min..=max`.
    pub(crate) fn take_checked(
        &mut self,
        field: &'static str,
        len: usize,
        min: usize,
        max: usize,
    ) -> Result<&'a [u8], FormatError> {
        Self::check_len(field, len, min, max)?;
        self.take(field, len)
    }

    /// A field stored as its length (`prefix` wide, in `min..=max`) and that many bytes.
    fn len_prefixed(
        &mut self,
        field: &'static str,
        prefix: LengthPrefix,
        min: usize,
        max: usize,
    ) -> Result<&'a [u8], FormatError> {
        let len = match prefix {
            LengthPrefix::U8 => usize::from(self.u8(field)?),
            LengthPrefix::U16 => usize::from(self.u16(field)?),
        };
        self.take_checked(field, len, min, max)
    }
}
