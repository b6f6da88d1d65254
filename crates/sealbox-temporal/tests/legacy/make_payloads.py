"""Writes payloads in the two legacy Temporal encryption formats, independently of Sealbox.

Uses Temporal's own protobuf classes (the `temporalio` Python SDK), the `cryptography`
package and boto3 (against moto's KMS), exactly as the formats are written by:

* Temporal's encryption samples (samples-python `encryption/codec.py`, samples-go
  `encryption/`): metadata encoding=binary/encrypted, encryption-key-id=<id>;
  data = nonce(12) || AES-256-GCM(key, nonce, serialized Payload, no AAD) (ciphertext||tag).
* Temporal Proxy (`pkg/codec/encryptor.go`, `pkg/crypto/dek.go`): the same, plus
  encryption-dek = base64(KMS Encrypt(DEK)) with no encryption context, and
  encryption-key-id = the KEK URI (`awskms:///ARN?region=R`).

Usage: make_payloads.py SAMPLES_KEY_B64 MOTO_ENDPOINT > out.json
Prints JSON: {"samples": [...], "proxy": [...], "kek_uri": ..., "key_arn": ...}; each item has
"outer" (base64 of the serialized encrypted Payload) and the inner payload's "encoding" and
"data" (text) for the caller to compare against.
"""

import base64
import json
import os
import sys

import boto3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload


def seal(key: bytes, inner: Payload) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, inner.SerializeToString(), None)


def item(outer: Payload, inner: Payload) -> dict:
    return {
        "outer": base64.b64encode(outer.SerializeToString()).decode(),
        "encoding": inner.metadata["encoding"].decode(),
        "data": inner.data.decode(),
    }


def main() -> None:
    samples_key = base64.b64decode(sys.argv[1])
    endpoint = sys.argv[2]
    inners = [
        Payload(metadata={"encoding": b"json/plain"}, data=b'"legacy secret one"'),
        Payload(
            metadata={"encoding": b"json/plain", "messageType": b"x"},
            data=b'{"card":"4111-legacy"}',
        ),
    ]
    samples = []
    for inner in inners:
        outer = Payload(
            metadata={"encoding": b"binary/encrypted", "encryption-key-id": b"test-key-id"},
            data=seal(samples_key, inner),
        )
        samples.append(item(outer, inner))

    kms = boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    arn = kms.create_key(Description="temporal-proxy legacy KEK")["KeyMetadata"]["Arn"]
    kek_uri = f"awskms:///{arn}?region=us-east-1"
    dek = os.urandom(32)  # one DEK for several payloads, as Proxy does per namespace
    wrapped = kms.encrypt(KeyId=arn, Plaintext=dek)["CiphertextBlob"]
    proxy = []
    for inner in inners:
        outer = Payload(
            metadata={
                "encoding": b"binary/encrypted",
                "encryption-key-id": kek_uri.encode(),
                "encryption-dek": base64.b64encode(wrapped),
            },
            data=seal(dek, inner),
        )
        proxy.append(item(outer, inner))
    print(json.dumps({"samples": samples, "proxy": proxy, "kek_uri": kek_uri, "key_arn": arn}))


if __name__ == "__main__":
    main()
