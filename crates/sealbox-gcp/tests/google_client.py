"""Drives the Cloud KMS emulator with Google's own Python client (google-cloud-kms, REST
transport). If Google's client and the emulator disagree, the emulator is wrong.

Usage: google_client.py HOST:PORT BEARER_TOKEN
Prints one line per check and ends with `N passed, M failed`; exits 0 only if none failed.
"""
import sys

import google.auth.exceptions
import google_crc32c
from google.api_core import exceptions
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports.rest import (
    KeyManagementServiceRestTransport,
)
from google.oauth2.credentials import Credentials

host, token = sys.argv[1], sys.argv[2]
transport = KeyManagementServiceRestTransport(host=host, url_scheme="http", credentials=Credentials(token=token))
client = kms_v1.KeyManagementServiceClient(transport=transport)
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))


def crc(b):
    return int(google_crc32c.value(b))


def expect_error(name, exc_type, fn):
    try:
        fn()
        check(name, False, "no error")
    except exc_type as e:
        check(name, True)
        return e
    except Exception as e:  # noqa: BLE001 - report the unexpected type
        check(name, False, f"{type(e).__name__}: {e}")


ring = client.create_key_ring(
    request={"parent": "projects/sealbox/locations/global", "key_ring_id": "ring", "key_ring": {}}
)
check("create key ring", ring.name == "projects/sealbox/locations/global/keyRings/ring", ring.name)
key = client.create_crypto_key(
    request={
        "parent": ring.name,
        "crypto_key_id": "kek",
        "crypto_key": {"purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT},
    }
)
check("create crypto key", key.name == ring.name + "/cryptoKeys/kek", key.name)
check("key has an enabled primary version 1", key.primary.name.endswith("/cryptoKeyVersions/1")
      and key.primary.state == kms_v1.CryptoKeyVersion.CryptoKeyVersionState.ENABLED, str(key.primary))

pt, aad = b"a 256-bit data key would go here", b"namespace=payments"
enc = client.encrypt(request={
    "name": key.name, "plaintext": pt, "additional_authenticated_data": aad,
    "plaintext_crc32c": crc(pt), "additional_authenticated_data_crc32c": crc(aad),
})
check("encrypt names the version used", enc.name == key.name + "/cryptoKeyVersions/1", enc.name)
check("encrypt verified plaintext CRC32C", enc.verified_plaintext_crc32c)
check("encrypt verified AAD CRC32C", enc.verified_additional_authenticated_data_crc32c)
check("ciphertext CRC32C matches", enc.ciphertext_crc32c == crc(enc.ciphertext))
dec = client.decrypt(request={
    "name": key.name, "ciphertext": enc.ciphertext, "additional_authenticated_data": aad,
    "ciphertext_crc32c": crc(enc.ciphertext), "additional_authenticated_data_crc32c": crc(aad),
})
check("decrypt returns the plaintext", dec.plaintext == pt)
check("decrypt plaintext CRC32C matches", dec.plaintext_crc32c == crc(pt))
check("decrypt says it used the primary", dec.used_primary)

# Over REST, Google's client raises by HTTP status: Cloud KMS answers INVALID_ARGUMENT and
# FAILED_PRECONDITION with HTTP 400, so both surface as BadRequest; the message tells them apart.
expect_error("wrong AAD is refused", exceptions.BadRequest, lambda: client.decrypt(
    request={"name": key.name, "ciphertext": enc.ciphertext, "additional_authenticated_data": b"namespace=other"}))
expect_error("a wrong plaintext CRC32C is refused", exceptions.BadRequest, lambda: client.encrypt(
    request={"name": key.name, "plaintext": pt, "plaintext_crc32c": crc(pt) ^ 1}))
expect_error("a wrong ciphertext CRC32C is refused", exceptions.BadRequest, lambda: client.decrypt(
    request={"name": key.name, "ciphertext": enc.ciphertext, "additional_authenticated_data": aad,
             "ciphertext_crc32c": crc(enc.ciphertext) ^ 1}))
expect_error("an unknown key is NOT_FOUND", exceptions.NotFound, lambda: client.encrypt(
    request={"name": ring.name + "/cryptoKeys/absent", "plaintext": pt}))

v2 = client.create_crypto_key_version(request={"parent": key.name, "crypto_key_version": {}})
check("create version 2", v2.name == key.name + "/cryptoKeyVersions/2", v2.name)
key = client.update_crypto_key_primary_version(request={"name": key.name, "crypto_key_version_id": "2"})
check("rotate: primary is version 2", key.primary.name == v2.name, key.primary.name)
enc2 = client.encrypt(request={"name": key.name, "plaintext": pt, "additional_authenticated_data": aad})
check("new data uses version 2", enc2.name == v2.name, enc2.name)
explicit = client.encrypt(request={"name": key.name + "/cryptoKeyVersions/1", "plaintext": pt})
check("encrypt with an explicit version uses it", explicit.name == key.name + "/cryptoKeyVersions/1", explicit.name)
old = client.decrypt(request={"name": key.name, "ciphertext": enc.ciphertext, "additional_authenticated_data": aad})
check("the old ciphertext still decrypts after rotation", old.plaintext == pt)
check("... and not with the primary", not old.used_primary)

v1 = client.update_crypto_key_version(request={
    "crypto_key_version": {"name": key.name + "/cryptoKeyVersions/1",
                           "state": kms_v1.CryptoKeyVersion.CryptoKeyVersionState.DISABLED},
    "update_mask": {"paths": ["state"]},
})
check("disable version 1", v1.state == kms_v1.CryptoKeyVersion.CryptoKeyVersionState.DISABLED, str(v1.state))
err = expect_error("a disabled version refuses to decrypt", exceptions.BadRequest, lambda: client.decrypt(
    request={"name": key.name, "ciphertext": enc.ciphertext, "additional_authenticated_data": aad}))
check("... saying the version is not enabled", err is not None and "not enabled" in err.message, str(err))
got = client.get_crypto_key(request={"name": key.name})
check("get crypto key", got.primary.name == v2.name, got.primary.name)

bad = kms_v1.KeyManagementServiceClient(transport=KeyManagementServiceRestTransport(
    host=host, url_scheme="http", credentials=Credentials(token="not-a-token")))
# A 401 makes the client try to refresh its credentials, which a bare token cannot do.
expect_error("an unknown bearer token is refused with 401", google.auth.exceptions.RefreshError,
             lambda: bad.get_crypto_key(request={"name": key.name}))

failed = results.count(False)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
