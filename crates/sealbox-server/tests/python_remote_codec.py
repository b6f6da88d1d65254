"""A Temporal Python SDK worker and client whose payload codec is the Sealbox codec server.

The codec (remote_codec.py) is what a Python team writes to use a remote codec: it posts
Payloads in protobuf JSON to POST {endpoint}/encode and /decode with X-Namespace and
Authorization headers.

Usage: python_remote_codec.py TEMPORAL_ADDRESS CODEC_ENDPOINT NAMESPACE AUTHORIZATION SECRET WORKFLOW_ID
Prints {"result": ...} on success.
"""

import asyncio
import dataclasses
import json
import sys
from datetime import timedelta

import temporalio.converter
from remote_codec import RemoteCodec
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker


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
