"""A Temporal Python SDK worker and client whose payload codec is the Sealbox codec server.

The codec is what a Python team writes to use a remote codec: it posts Payloads in protobuf
JSON to POST {endpoint}/encode and /decode with X-Namespace and Authorization headers.

Usage: python_remote_codec.py TEMPORAL_ADDRESS CODEC_ENDPOINT NAMESPACE AUTHORIZATION SECRET WORKFLOW_ID
Prints {"result": ...} on success.
"""

import asyncio
import dataclasses
import json
import sys
import urllib.request
from datetime import timedelta
from typing import List, Sequence

import temporalio.converter
from google.protobuf import json_format
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker


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
        with urllib.request.urlopen(req, timeout=30) as resp:
            out = json_format.Parse(resp.read(), Payloads())
        return list(out.payloads)

    async def encode(self, payloads: Sequence[Payload]) -> List[Payload]:
        return await asyncio.to_thread(self._post, "encode", list(payloads))

    async def decode(self, payloads: Sequence[Payload]) -> List[Payload]:
        return await asyncio.to_thread(self._post, "decode", list(payloads))


@activity.defn
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@workflow.defn
class Greeting:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            greet, name, start_to_close_timeout=timedelta(seconds=10)
        )


async def main() -> None:
    address, endpoint, namespace, authorization, secret, workflow_id = sys.argv[1:]
    converter = dataclasses.replace(
        temporalio.converter.default(),
        payload_codec=RemoteCodec(endpoint, namespace, authorization),
    )
    client = await Client.connect(address, namespace=namespace, data_converter=converter)
    async with Worker(
        client,
        task_queue="sealbox-python",
        workflows=[Greeting],
        activities=[greet],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        result = await client.execute_workflow(
            Greeting.run, secret, id=workflow_id, task_queue="sealbox-python"
        )
    print(json.dumps({"result": result}))


if __name__ == "__main__":
    asyncio.run(main())
