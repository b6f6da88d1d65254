#!/usr/bin/env python3
"""Independent second implementation of the Sealbox envelope format, version 1 (suites
0x0001 and 0x0002).

Written from docs/format.md alone (no Rust source consulted) to check tests/vectors/v1.json:
valid vectors open to their plaintext and re-seal byte for byte (local-KEK ones also unwrap);
invalid vectors fail with exactly the named error class; self-checks feed the parser every
truncation and some malformed fields, which must all be format errors.

Usage: verify.py [path/to/v1.json]     (needs the `cryptography` package)
"""
import base64, hashlib, hmac, json, os, re, struct, sys, unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# --- Error classes: the class *names* are the vector file's error names. ----------------
class SealboxError(Exception):
    pass

FormatError = type("format", (SealboxError,), {})                  # Opening step 1
ContextError = type("context", (SealboxError,), {})                # Opening step 2
CommitmentError = type("commitment", (SealboxError,), {})          # Opening step 4
AuthenticationError = type("authentication", (SealboxError,), {})  # Opening step 5

# --- Constants from the Layout and Algorithm suite sections. ------------------------------
MAGIC, VERSION = b"SBXE", 1
SUITES = (0x0001, 0x0002)
TAG_LEN, SALT_LEN, NONCE_LEN, COMMIT_LEN = 16, 32, 12, 32
BODY_MIN, BODY_MAX = 16, 2**36 - 16
CTX_MAX_PAIRS, CTX_KEY_MAX, CTX_VALUE_MAX, CTX_MAX_BYTES = 64, 256, 4096, 16384
PROVIDER_RE = re.compile(rb"[a-z0-9-]+")

# Bidirectional controls and zero-width characters: they print as nothing.
HIDDEN = {0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D,
          0x202E, 0x2060, 0x2066, 0x2067, 0x2068, 0x2069, 0xFEFF}

def check_text(raw: bytes, what: str) -> str:
    """Text fields: valid UTF-8, no Unicode category Cc characters, no bidi controls or
    zero-width characters."""
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise FormatError(f"{what}: invalid UTF-8 ({e.reason})") from None
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise FormatError(f"{what}: contains a control character")
    if any(ord(ch) in HIDDEN for ch in text):
        raise FormatError(f"{what}: contains a bidi-control or zero-width character")
    return text

class Reader:
    """Bounds-checked big-endian reader; running past the end is a format error."""
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0
    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise FormatError(f"truncated: {what} needs {n} bytes at offset {self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out
    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")
    def ranged(self, size: int, lo: int, hi: int, what: str) -> int:
        v = self.uint(size, what)
        if not lo <= v <= hi:
            raise FormatError(f"{what} = {v} outside {lo}..={hi} (offset {self.pos - size})")
        return v

# --- Canonical encryption context (field 13). ---------------------------------------------
def read_context(r: Reader) -> list:
    start = r.pos
    pairs, prev = [], None
    for i in range(r.ranged(2, 0, CTX_MAX_PAIRS, "pair_count")):
        kraw = r.take(r.ranged(2, 1, CTX_KEY_MAX, f"key_len[{i}]"), f"key[{i}]")
        key = check_text(kraw, f"context key[{i}]")
        value = check_text(r.take(r.ranged(2, 0, CTX_VALUE_MAX, f"value_len[{i}]"),
                                  f"value[{i}]"), f"context value[{i}]")
        if prev is not None and not prev < kraw:  # bytes compare = byte order
            raise FormatError(f"context key[{i}] not strictly after previous key")
        prev = kraw
        pairs.append((key, value))
    if r.pos - start > CTX_MAX_BYTES:
        raise FormatError(f"context encoding is {r.pos - start} bytes > {CTX_MAX_BYTES}")
    return pairs

def encode_context(pairs) -> bytes:
    """Canonical encoding of (key, value) pairs given in any order; the result must parse."""
    items = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in pairs)
    out = struct.pack(">H", len(items))
    for k, v in items:
        out += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    read_context(Reader(out))  # enforce ordering/duplicates/limits/text rules on our output
    return out

# --- Envelope parser (Opening step 1). ----------------------------------------------------
def parse(data: bytes) -> dict:
    r = Reader(data)
    e = {}
    # A: prefix
    if r.take(4, "magic") != MAGIC:
        raise FormatError("bad magic")
    if (v := r.uint(1, "version")) != VERSION:
        raise FormatError(f"unsupported version {v}")
    if (s := r.uint(2, "suite")) not in SUITES:
        raise FormatError(f"unsupported suite 0x{s:04x}")
    e["suite"] = s
    e["A"] = data[:r.pos]
    # K: key section (fields 4-12); key_section_len must equal the actual length of 5-12
    ks_len = r.uint(2, "key_section_len")
    ks_start = r.pos
    provider = r.take(r.ranged(1, 1, 32, "provider_len"), "provider")
    if not PROVIDER_RE.fullmatch(provider):
        raise FormatError(f"provider {provider!r} not [a-z0-9-]+")
    e["provider"] = provider.decode("ascii")
    e["key_id"] = check_text(r.take(r.ranged(2, 1, 2048, "key_id_len"), "key_id"), "key_id")
    e["key_version"] = check_text(r.take(r.ranged(1, 0, 255, "key_version_len"),
                                         "key_version"), "key_version")
    e["wrapped_key"] = r.take(r.ranged(2, 1, 8192, "wrapped_len"), "wrapped_key")
    if r.pos - ks_start != ks_len:
        raise FormatError(f"key_section_len {ks_len} != actual {r.pos - ks_start}")
    # C: context, salt, nonce, commitment, body_len
    c_start = r.pos
    e["context"] = read_context(r)
    e["context_bytes"] = data[c_start:r.pos]
    e["salt"] = r.take(SALT_LEN, "salt")
    e["nonce"] = r.take(NONCE_LEN, "nonce")
    e["commitment"] = r.take(COMMIT_LEN, "commitment")
    body_len = r.ranged(8, BODY_MIN, BODY_MAX, "body_len")
    e["C"] = data[c_start:r.pos]
    # body: must end exactly after the tag
    rest = len(data) - r.pos
    if rest < body_len:
        raise FormatError(f"truncated: body_len {body_len}, only {rest} bytes left")
    if rest > body_len:
        raise FormatError(f"{rest - body_len} trailing bytes after the tag")
    e["ciphertext"], e["tag"] = data[r.pos:-TAG_LEN], data[-TAG_LEN:]
    return e

# --- Key schedules of suites 0x0001 and 0x0002: HKDF-SHA256 (RFC 5869) via HMAC. ---------
def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()

def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + t, i + 1
    return out[:length]

def derive(suite: int, data_key: bytes, salt: bytes):
    """Returns (payload_key, commitment)."""
    if len(data_key) != 32:
        raise ValueError("data key must be 32 bytes")
    suite_id = struct.pack(">H", suite)
    if suite == 0x0001:   # Extract with the salt, then Expand
        prk = hkdf_extract(salt, data_key)
        return (hkdf_expand(prk, b"sealbox/v1/payload-key" + suite_id, 32),
                hkdf_expand(prk, b"sealbox/v1/commitment" + suite_id, 32))
    if suite == 0x0002:   # no Extract: the data key is the PRK, the salt ends the info
        return (hkdf_expand(data_key, b"sealbox/s2/key" + suite_id + salt, 32),
                hkdf_expand(data_key, b"sealbox/s2/commit" + suite_id + salt, 32))
    raise ValueError(f"no key schedule for suite 0x{suite:04x}")

def open_envelope(data_key: bytes, envelope: bytes, expected_pairs) -> bytes:
    e = parse(envelope)                                     # 1. format
    try:                                                    # 2. context equality
        same = encode_context(expected_pairs) == e["context_bytes"]
    except (FormatError, UnicodeEncodeError):
        same = False  # an expected context with no canonical encoding matches nothing
    if not same:
        raise ContextError("stored context differs from the expected context")
    # 3. (KEK trust + unwrap) skipped: the data key is given.
    payload_key, commitment = derive(e["suite"], data_key, e["salt"])  # 4. commitment
    if not hmac.compare_digest(commitment, e["commitment"]):
        raise CommitmentError("commitment mismatch")
    try:                                                    # 5. AEAD, AAD = A || C
        return AESGCM(payload_key).decrypt(e["nonce"], e["ciphertext"] + e["tag"],
                                           e["A"] + e["C"])
    except InvalidTag:
        raise AuthenticationError("authentication failure") from None

def key_section(p: bytes, kid: bytes, kv: bytes, w: bytes) -> bytes:
    """Fields 4-12 (K), key_section_len included."""
    ks = (bytes([len(p)]) + p + struct.pack(">H", len(kid)) + kid + bytes([len(kv)]) + kv
          + struct.pack(">H", len(w)) + w)
    return struct.pack(">H", len(ks)) + ks

def seal(suite, data_key, plaintext, pairs, provider, key_id, key_version, wrapped_key, salt,
         nonce):
    """Sealing steps 2-3 with caller-supplied salt and nonce (step 1 is the CSPRNG draw)."""
    payload_key, commitment = derive(suite, data_key, salt)
    a = MAGIC + bytes([VERSION]) + struct.pack(">H", suite)
    k = key_section(provider.encode(), key_id.encode(), key_version.encode(), wrapped_key)
    c = (encode_context(pairs) + salt + nonce + commitment
         + struct.pack(">Q", len(plaintext) + TAG_LEN))
    envelope = a + k + c + AESGCM(payload_key).encrypt(nonce, plaintext, a + c)
    parse(envelope)  # what we write must satisfy our own parser (ranges etc.)
    return envelope

# --- Local KEK provider. -------------------------------------------------------------------
def local_kek_version(kek: bytes) -> str:
    return hmac.new(kek, b"sealbox/local-kek-version/v1", hashlib.sha256).digest()[:8].hex()

def local_unwrap(kek: bytes, key_id: str, key_version: str, pairs, wrapped: bytes) -> bytes:
    if len(wrapped) != 12 + 32 + 16:
        raise ValueError(f"local wrapped key is {len(wrapped)} bytes, expected 60")
    kid, kv = key_id.encode(), key_version.encode()
    aad = (b"sealbox/local-wrap/v1" + struct.pack(">H", len(kid)) + kid
           + bytes([len(kv)]) + kv + encode_context(pairs))
    return AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], aad)

# --- Vector checks. --------------------------------------------------------------------------
def expect(cond: bool, msg: str):
    if not cond:
        raise AssertionError(msg)

def check_valid(v: dict, local_kek: dict):
    h = bytes.fromhex
    dk, env, pt = h(v["data_key_hex"]), h(v["envelope_hex"]), h(v["plaintext_hex"])
    pairs = [tuple(p) for p in v["context"]]
    expect(open_envelope(dk, env, pairs) == pt, "open() did not yield plaintext_hex")
    suite = v["suite"]
    payload_key, commitment = derive(suite, dk, h(v["salt_hex"]))
    expect(payload_key.hex() == v["payload_key_hex"], "payload_key_hex differs")
    expect(commitment.hex() == v["commitment_hex"], "commitment_hex differs")
    e = parse(env)
    expect(e["suite"] == suite, f"header suite 0x{e['suite']:04x} != vector suite {suite}")
    kek = v["kek"]
    want_kv = kek["key_version"] or ""  # null in JSON <=> key_version_len 0
    expect(e["provider"] == kek["provider"], f"provider {e['provider']!r} != {kek['provider']!r}")
    expect(e["key_id"] == kek["key_id"], f"key_id {e['key_id']!r} != {kek['key_id']!r}")
    expect(e["key_version"] == want_kv, f"key_version {e['key_version']!r} != {want_kv!r}")
    expect(e["wrapped_key"].hex() == v["wrapped_key_hex"], "wrapped_key differs")
    expect(e["salt"].hex() == v["salt_hex"] and e["nonce"].hex() == v["nonce_hex"],
           "salt/nonce in header differ from salt_hex/nonce_hex")
    expect(e["commitment"].hex() == v["commitment_hex"], "stored commitment differs")
    expect(e["context_bytes"] == encode_context(pairs), "stored context differs")
    resealed = seal(suite, dk, pt, pairs, kek["provider"], kek["key_id"], want_kv,
                    h(v["wrapped_key_hex"]), h(v["salt_hex"]), h(v["nonce_hex"]))
    if resealed != env:
        i = next((i for i, (x, y) in enumerate(zip(resealed, env)) if x != y),
                 min(len(resealed), len(env)))
        raise AssertionError(f"seal() differs from envelope_hex first at offset {i} "
                             f"(lengths {len(resealed)} vs {len(env)})")
    if v["local_kek_wrapped"]:
        kek_bytes = base64.b64decode(local_kek["key_base64"], validate=True)
        expect(len(kek_bytes) == 32, "local KEK is not 32 bytes")
        ver = local_kek_version(kek_bytes)
        expect(ver == local_kek["version"], f"KEK version {ver} != local_kek.version")
        expect(ver == e["key_version"], f"KEK version {ver} != envelope key_version")
        expect(e["provider"] == "local" and e["key_id"] == local_kek["key_id"],
               "envelope does not name the local KEK")
        unwrapped = local_unwrap(kek_bytes, e["key_id"], e["key_version"], pairs,
                                 e["wrapped_key"])  # InvalidTag here is reported as FAIL
        expect(unwrapped == dk, "local unwrap does not yield data_key_hex")

def check_invalid(v: dict):
    try:
        open_envelope(bytes.fromhex(v["data_key_hex"]), bytes.fromhex(v["envelope_hex"]),
                      [tuple(p) for p in v["context"]])
    except SealboxError as err:
        got = type(err).__name__
        expect(got == v["error"], f"expected {v['error']}, got {got} ({err})")
        return
    raise AssertionError(f"opened successfully, expected {v['error']}")

def expect_format_error(data: bytes, label: str):
    """The parser must reject `data` with a format error; anything else propagates as FAIL."""
    try:
        parse(data)
    except FormatError:
        return
    raise AssertionError(f"parser accepted {label}")

def check_truncations(env: bytes):
    """Every proper prefix of a valid envelope must be a format error, nothing else."""
    for n in range(len(env)):
        expect_format_error(env[:n], f"a {n}-byte prefix")

def check_malformed(v: dict):
    """Splice hand-made fields into a valid envelope; the parser must reject each."""
    env = bytes.fromhex(v["envelope_hex"])
    e = parse(env)
    ks_end = len(e["A"]) + 2 + int.from_bytes(env[7:9], "big")
    head, tail = env[:ks_end], env[ks_end + len(e["context_bytes"]):]
    u16 = lambda n: struct.pack(">H", n)
    pair = lambda k, val: u16(len(k)) + k + u16(len(val)) + val
    good = u16(2) + pair(b"a", b"x") + pair(b"b", b"\xc3\xbc")
    parse(head + good + tail)  # control: the splice itself is sound
    bad_contexts = {
        "duplicate key": u16(2) + pair(b"a", b"") + pair(b"a", b""),
        "descending keys": u16(2) + pair(b"b", b"") + pair(b"a", b""),
        "empty key": u16(1) + pair(b"", b"x"),
        "control char in value": u16(1) + pair(b"a", b"x\ny"),
        "C1 control char in key": u16(1) + pair(b"\xc2\x85", b""),
        "bidi override in value": u16(1) + pair(b"a", "x\u202ey".encode()),
        "zero-width space in key": u16(1) + pair("a\u200b".encode(), b""),
        "invalid UTF-8 in value": u16(1) + pair(b"a", b"\xff"),
        "pair_count 65": u16(65) + b"".join(pair(b"k%02d" % i, b"") for i in range(65)),
        "value_len 4097": u16(1) + pair(b"a", b"v" * 4097),
    }
    bad_keysections = {
        "uppercase provider": (b"Local", b"k", b"", b"w"),
        "empty provider": (b"", b"k", b"", b"w"),
        "empty key_id": (b"local", b"", b"", b"w"),
        "empty wrapped_key": (b"local", b"k", b"", b""),
        "control char in key_id": (b"local", b"k\x00", b"", b"w"),
        "bidi isolate in key_id": (b"local", "k\u2066".encode(), b"", b"w"),
    }
    parse(e["A"] + key_section(b"local", b"k", b"", b"w") + env[ks_end:])  # control
    for name, ctx in bad_contexts.items():
        expect_format_error(head + ctx + tail, name)
    for name, fields in bad_keysections.items():
        expect_format_error(e["A"] + key_section(*fields) + env[ks_end:], name)

def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "v1.json")
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)
    tests = [(v["name"], lambda v=v: check_valid(v, vectors["local_kek"]))
             for v in vectors["valid"]]
    tests += [(v["name"], lambda v=v: check_invalid(v)) for v in vectors["invalid"]]
    for suite in SUITES:  # the parser's self-checks on one envelope of each suite
        first = next(v for v in vectors["valid"] if v["suite"] == suite)
        tests.append((f"selfcheck_truncations_{first['name']}",
                      lambda first=first: check_truncations(bytes.fromhex(first["envelope_hex"]))))
        tests.append((f"selfcheck_malformed_fields_{first['name']}",
                      lambda first=first: check_malformed(first)))
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
        except Exception as err:  # any unexpected exception is a failure, reported
            failed += 1
            print(f"FAIL {name}: {type(err).__name__}: {err}")
        else:
            passed += 1
            print(f"ok {name}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1

if __name__ == "__main__":
    sys.exit(main())
