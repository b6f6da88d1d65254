"""The payload codec a Python team writes to use the Sealbox codec server remotely.

It posts Payloads in protobuf JSON to POST {endpoint}/encode and /decode with X-Namespace and
Authorization headers (shared by the Python end-to-end scripts beside it).
"""

import asyncio
import urllib.request
from typing import List, Sequence

import temporalio.converter
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads


class RemoteCodec(temporalio.converter.PayloadCodec):
    def __init__(self, endpoint: str, namespace: str, authorization: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.namespace = namespace
        self.authorization = authorization

    def _post(self, op: str, payloads: List[Payload]) -> List[Payload]:
        body = json_format.MessageToJson(Payloads(payloads=payloads)).encode()
        req = urllib.request.Request(
            f"{self.endpoint}/{op}",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Namespace": self.namespace,
                "Authorization": self.authorization,
            },
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            out = json_format.Parse(resp.read(), Payloads())
        return list(out.payloads)

    async def encode(self, payloads: Sequence[Payload]) -> List[Payload]:
        return await asyncio.to_thread(self._post, "encode", list(payloads))

    async def decode(self, payloads: Sequence[Payload]) -> List[Payload]:
        return await asyncio.to_thread(self._post, "decode", list(payloads))
