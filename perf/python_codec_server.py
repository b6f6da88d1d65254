"""The Python peer of the performance harness (issue #16 section 3): an equivalent of Temporal's
sample encryption codec server, samples-python `encryption/codec_server.py` with
`encryption/codec.py`.

The harness machine cannot reach the sample's repository, so this is not a copy of it: it is
an equivalent written for the harness that behaves as the sample does, request for request:

- aiohttp application, `POST /encode` and `POST /decode` (and `OPTIONS /decode`), body and
  answer `temporal.api.common.v1.Payloads` in protobuf JSON, parsed with
  `google.protobuf.json_format.Parse` and printed with `json_format.MessageToJson`, using the
  protobuf classes `temporalio` ships;
- the sample's CORS step on every answer (a header lookup; it adds headers only for the one
  origin it knows);
- encode: each payload is serialized (`SerializeToString`, metadata and data) and encrypted
  with AES-256-GCM (`cryptography`'s `AESGCM`) under one fixed 32-byte key, a 12-byte nonce
  from `os.urandom` prepended, no associated data; the new payload's metadata is
  `encoding: binary/encrypted` and `encryption-key-id: test-key-id`;
- decode: payloads without `encoding: binary/encrypted` pass through; others must carry the
  key ID, are decrypted and parsed back into the original payload;
- no authentication, no namespace handling, no logging per request. The one deliberate
  difference from running the sample as shipped: the access log is off
  (`web.run_app(..., access_log=None)`), so the comparison does not charge Python for a log
  line Sealbox does not write (Sealbox writes its audit line; the harness reports it); and
  the request size limit is raised from aiohttp's default 1 MiB (which refuses a 1,000-payload
  body of 1 KiB payloads with 413) to 64 MiB, as Sealbox's `max_body` is 8 MiB.

Usage: python_codec_server.py PORT   (listens on 127.0.0.1:PORT)
"""

import os
import sys

from aiohttp import hdrs, web
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

KEY = b"test-key-test-key-test-key-test!"  # 32 bytes: AES-256
KEY_ID = "test-key-id"
NONCE_LEN = 12
CORS_ORIGIN = "http://localhost:8080"


class Codec:
    def __init__(self, key_id: str = KEY_ID, key: bytes = KEY) -> None:
        self.key_id = key_id
        self.aead = AESGCM(key)

    async def encode(self, payloads):
        out = []
        for p in payloads:
            nonce = os.urandom(NONCE_LEN)
            sealed = nonce + self.aead.encrypt(nonce, p.SerializeToString(), None)
            out.append(
                Payload(
                    metadata={
                        "encoding": b"binary/encrypted",
                        "encryption-key-id": self.key_id.encode(),
                    },
                    data=sealed,
                )
            )
        return out

    async def decode(self, payloads):
        out = []
        for p in payloads:
            if p.metadata.get("encoding", b"").decode() != "binary/encrypted":
                out.append(p)
                continue
            key_id = p.metadata.get("encryption-key-id", b"").decode()
            if key_id != self.key_id:
                raise ValueError(f"unknown key ID {key_id!r}; this server has {self.key_id!r}")
            plain = self.aead.decrypt(p.data[:NONCE_LEN], p.data[NONCE_LEN:], None)
            out.append(Payload.FromString(plain))
        return out


def cors(req: web.Request) -> web.Response:
    resp = web.Response()
    if req.headers.get(hdrs.ORIGIN) == CORS_ORIGIN:
        resp.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = CORS_ORIGIN
        resp.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = "POST"
        resp.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = "content-type,x-namespace"
    return resp


def build_app() -> web.Application:
    codec = Codec()

    def handler(fn):
        async def handle(req: web.Request) -> web.Response:
            assert req.content_type == "application/json"
            payloads = json_format.Parse(await req.read(), Payloads())
            result = Payloads(payloads=await fn(payloads.payloads))
            resp = cors(req)
            resp.content_type = "application/json"
            resp.text = json_format.MessageToJson(result)
            return resp

        return handle

    async def options(req: web.Request) -> web.Response:
        return cors(req)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes(
        [
            web.post("/encode", handler(codec.encode)),
            web.post("/decode", handler(codec.decode)),
            web.options("/decode", options),
        ]
    )
    return app


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python_codec_server.py PORT")
    port = int(sys.argv[1])
    web.run_app(build_app(), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
