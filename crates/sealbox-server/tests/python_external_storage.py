"""Temporal's external storage between the Python SDK's official S3 driver and Sealbox.

A Temporal Python SDK worker and client whose data converter has
- a payload codec that is the Sealbox codec server (remote_codec.py: POST {endpoint}/encode
  and /decode with X-Namespace and Authorization), and
- the SDK's own `ExternalStorage` with `temporalio.contrib.aws.s3driver.S3StorageDriver`, over
  an `S3StorageDriverClient` built on boto3 (the SDK's aioboto3 client is not installed),
  pointed at the S3 endpoint in AWS_ENDPOINT_URL (moto in the tests).

The codec runs first, then storage, on the way out; retrieval first, then the codec, on the
way in. Whether the codec server stores (its namespace policy has a threshold: Sealbox writes
the object and the SDK's driver reads it) or only seals (`external_storage = "sdk"`: the SDK's
driver writes the object and Sealbox reads it) depends on the namespace.

Usage: python_external_storage.py TEMPORAL_ADDRESS CODEC_ENDPOINT NAMESPACE AUTHORIZATION
       BUCKET WORKFLOW_ID SIZE
Runs one workflow whose input is SIZE bytes of text and which returns its length and SHA-256;
prints {"run_id", "length", "sha256", "input_sha256"} on success.
"""

import asyncio
import dataclasses
import hashlib
import json
import sys
from datetime import timedelta

import boto3
import botocore.exceptions
import temporalio.converter
from remote_codec import RemoteCodec
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient
from temporalio.converter import ExternalStorage
from temporalio.worker import UnsandboxedWorkflowRunner, Worker


class Boto3Client(S3StorageDriverClient):
    """The SDK's client interface over boto3 (blocking calls moved off the event loop)."""

    def __init__(self) -> None:
        # Endpoint, region and credentials from the AWS_* environment.
        self.s3 = boto3.client("s3")

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        await asyncio.to_thread(self.s3.put_object, Bucket=bucket, Key=key, Body=data)

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        def head() -> bool:
            try:
                self.s3.head_object(Bucket=bucket, Key=key)
                return True
            except botocore.exceptions.ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise

        return await asyncio.to_thread(head)

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        def get() -> bytes:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

        return await asyncio.to_thread(get)


@activity.defn
async def measure(text: str) -> str:
    return json.dumps(
        {"length": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    )


@workflow.defn
class Measure:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(
            measure, text, start_to_close_timeout=timedelta(seconds=60)
        )


def big_text(size: int) -> str:
    unit = "Sealbox external storage SECRET-CARD-4111 "
    return (unit * (size // len(unit) + 1))[:size]


async def main() -> None:
    address, endpoint, namespace, authorization, bucket, workflow_id, size = sys.argv[1:]
    converter = dataclasses.replace(
        temporalio.converter.default(),
        payload_codec=RemoteCodec(endpoint, namespace, authorization),
        external_storage=ExternalStorage(
            drivers=[S3StorageDriver(client=Boto3Client(), bucket=bucket)]
        ),
    )
    client = await Client.connect(address, namespace=namespace, data_converter=converter)
    text = big_text(int(size))
    queue = f"sealbox-extstore-{namespace}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[Measure],
        activities=[measure],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await client.start_workflow(
            Measure.run, text, id=workflow_id, task_queue=queue
        )
        result = json.loads(await handle.result())
    result["run_id"] = handle.first_execution_run_id
    result["input_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
