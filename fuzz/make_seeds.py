#!/usr/bin/env python3
"""Regenerates fuzz/seeds/<target>/ from the repository's fixtures.

    python3 fuzz/make_seeds.py

- envelope:      every envelope in tests/vectors/v1.json (valid and invalid), raw bytes.
- policy:        keyring-config/*.toml, the ```toml blocks of docs/configuration.md, and the
                 policy strings of crates/sealbox-policy/tests/policy.rs.
- payloads_json: Payloads JSON bodies as Temporal's clients send them (canonical and the
                 protobuf-JSON variants the decoder accepts).
- legacy:        inputs in the legacy target's layout (see fuzz_targets/legacy.rs).
- zstd:          a selector byte and a zstd frame (made with the `zstd` CLI).

Needs only the standard library, plus the `zstd` CLI for the zstd seeds and the
`cryptography` package for two stored-format legacy seeds (skipped when missing).
Deterministic: file names are content hashes, so rerunning changes nothing.
"""

import base64
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def write(target, data, label):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    name = f"{label}-{hashlib.sha1(data).hexdigest()[:12]}"
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- protobuf encoding of temporal.api.common.v1.Payload ------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(field, data):
    return varint(field << 3 | 2) + varint(len(data)) + data


def payload(metadata, data=b"", external=()):
    out = b""
    for k, v in metadata.items():
        out += ld(1, ld(1, k.encode()) + ld(2, v))
    if data:
        out += ld(2, data)
    for size in external:
        out += ld(3, varint(1 << 3 | 0) + varint(size))
    return out


JSON_PLAIN = payload({"encoding": b"json/plain"}, b'"hello, sealbox"')
PROTO_REF = payload(
    {
        "encoding": b"json/protobuf",
        "messageType": b"temporal.api.sdk.v1.ExternalStorageReference",
    },
    b'{"uri":"s3://b/k"}',
    external=[123],
)


def envelope():
    vectors = json.load(open(os.path.join(ROOT, "tests/vectors/v1.json")))
    for v in vectors["valid"] + vectors["invalid"]:
        write("envelope", bytes.fromhex(v["envelope_hex"]), v["name"])


def rust_unescape(s):
    return re.sub(
        r"\\(n|t|\"|\\|\n\s*)",
        lambda m: {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(m.group(1), ""),
        s,
    )


def policy():
    for path in sorted(glob.glob(os.path.join(ROOT, "keyring-config/*.toml"))):
        write("policy", open(path, "rb").read(), "example-" + os.path.basename(path)[:-5])
    doc = open(os.path.join(ROOT, "docs/configuration.md")).read()
    for i, block in enumerate(re.findall(r"```toml\n(.*?)```", doc, re.S)):
        write("policy", block, f"doc{i}")
    tests = open(os.path.join(ROOT, "crates/sealbox-policy/tests/policy.rs")).read()
    dev = "[local]\ndevelopment_key = true\n"
    seen = 0
    for lit in re.findall(r'"((?:[^"\\]|\\.|\\\n)*)"', tests, re.S):
        text = rust_unescape(lit)
        if "active" not in text and "[default" not in text:
            continue
        # format! strings: fill the placeholders the tests use.
        text = (
            text.replace("{DEV}", dev)
            .replace("{a}", "/etc/sealbox/a.kek")
            .replace("{b}", "/etc/sealbox/b.kek")
            .replace("{ACTIVE}", '[default]\nactive = "local:///k?env=K"\n')
            .replace("{{", "{")
            .replace("}}", "}")
        )
        if re.search(r"\{[a-z_]*\}", text):
            continue  # a placeholder we do not fill
        write("policy", text, "test")
        seen += 1
        if seen >= 24:
            break


def payloads_json():
    b64 = lambda b: base64.b64encode(b).decode()
    bodies = {
        "canonical": {
            "payloads": [
                {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b'"hello"')},
                {"metadata": {"encoding": b64(b"binary/null")}},
            ]
        },
        "sealed": {
            "payloads": [
                {
                    "metadata": {
                        "encoding": b64(b"binary/encrypted"),
                        "encryption-key-id": b64(b"local:dev#56ed8aeb0f066315"),
                        "sealbox-format": b64(b"sealbox-envelope/1"),
                    },
                    "data": b64(b"SBXE\x01\x00\x01" + bytes(range(40))),
                }
            ]
        },
        "external": {
            "payloads": [
                {
                    "metadata": {
                        "encoding": b64(b"json/protobuf"),
                        "messageType": b64(b"temporal.api.sdk.v1.ExternalStorageReference"),
                    },
                    "data": b64(b'{"uri":"s3://b/k"}'),
                    "externalPayloads": [{"sizeBytes": "123"}, {}],
                }
            ]
        },
        "empty": {"payloads": []},
        "null": {"payloads": None},
    }
    for label, body in bodies.items():
        write("payloads_json", json.dumps(body, separators=(",", ":")), label)
    # The protobuf-JSON variants the decoder accepts: snake_case, URL-safe and unpadded
    # base64, int64 as a number, null fields.
    write(
        "payloads_json",
        '{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg","k":null},"data":"-_-_",'
        '"external_payloads":[{"size_bytes":42},{"sizeBytes":1e3},{"size_bytes":null}]},{}]}',
        "variants",
    )
    write("payloads_json", '{"payloads":[{"data":"not base64!"}]}', "bad-base64")


def legacy():
    nonce = bytes(range(12))
    # Sealed by the target (bit 2): samples, Proxy (base64 DEK / raw DEK), two payloads.
    write("legacy", b"\x04" + nonce + JSON_PLAIN, "samples-sealed")
    write("legacy", b"\x84" + nonce + PROTO_REF, "samples-sealed-twice")
    write("legacy", b"\x05" + bytes([5]) + b"dek-1" + nonce + JSON_PLAIN, "proxy-sealed")
    dek = base64.b64encode(b"wrapped-dek")
    write("legacy", b"\x25" + bytes([len(dek)]) + dek + nonce + JSON_PLAIN, "proxy-sealed-rawdek")
    write("legacy", b"\x04" + nonce + b"\x0a\xff\x01", "samples-sealed-malformed")
    # Stored as is: too short, a refused KMS key, unknown key IDs, pass-through, raw metadata,
    # a future Sealbox format.
    write("legacy", b"\x00" + b"short", "samples-short")
    write("legacy", b"\x01" + b"\x01\xff" + bytes(40), "proxy-kms-refuses")
    write("legacy", b"\x02" + b"\x05other" + bytes(40), "foreign-samples")
    write("legacy", b"\x0a" + b"\x05qroxy" + b"\x03abc" + bytes(40), "foreign-proxy-passthrough")
    meta = [(b"encoding", b"binary/encrypted"), (b"encryption-key-id", b"test-key-id")]
    raw = bytes([len(meta)]) + b"".join(bytes([len(k)]) + k + bytes([len(v)]) + v for k, v in meta)
    write("legacy", b"\x03" + raw + bytes(40), "raw-metadata")
    write("legacy", b"\x13" + b"\x01\x08encoding\x0ajson/plain" + b"plain", "raw-plain-optional")
    write("legacy", b"\x40" + b"\x12sealbox-envelope/2" + bytes(40), "future-format")
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        print("cryptography not installed: skipping stored-format legacy seeds", file=sys.stderr)
        return
    # Stored format (nonce ‖ ciphertext ‖ tag) made independently: the samples key, and a
    # Proxy data key as the target's stub KMS derives it.
    stored = nonce + AESGCM(bytes([0x42] * 32)).encrypt(nonce, JSON_PLAIN, None)
    write("legacy", b"\x00" + stored, "samples-stored")
    proxy_key = hashlib.sha256(b"fuzz-proxy-kek" + b"dek-1").digest()
    stored = nonce + AESGCM(proxy_key).encrypt(nonce, PROTO_REF, None)
    write("legacy", b"\x01" + bytes([5]) + b"dek-1" + stored, "proxy-stored")


def zstd():
    if not shutil.which("zstd"):
        print("zstd CLI not found: skipping zstd seeds", file=sys.stderr)
        return

    def z(data, *flags):
        return subprocess.run(
            ["zstd", "-q", "-c", *flags], input=data, stdout=subprocess.PIPE, check=True
        ).stdout

    write("zstd", b"\x00" + z(JSON_PLAIN, "-1"), "payload")
    write("zstd", b"\x04" + z(PROTO_REF, "-19", "--no-check"), "payload-nocheck-roundtrip")
    write("zstd", b"\x02" + z(JSON_PLAIN, "-3") + z(PROTO_REF, "-3"), "two-frames-twice")
    write("zstd", b"\x01" + z(JSON_PLAIN, "-1"), "unmarked")
    write("zstd", b"\x00" + z(b"", "-1"), "empty")
    big = payload({"encoding": b"binary/plain"}, b"\x00" * (2 << 20))
    write("zstd", b"\x00" + z(big, "-19"), "bomb-2MiB")
    write("zstd", b"\x00" + z(b"\x0a\xff\xff" * 100, "-1"), "not-a-payload")
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"skip"
    write("zstd", b"\x00" + skippable + z(JSON_PLAIN, "-1"), "skippable")


if __name__ == "__main__":
    shutil.rmtree(SEEDS, ignore_errors=True)
    envelope()
    policy()
    payloads_json()
    legacy()
    zstd()
    for t in sorted(os.listdir(SEEDS)):
        print(t, len(os.listdir(os.path.join(SEEDS, t))))
