"""Which S3 client the blob store uses, measured on its workload: many small objects PUT and
GET concurrently (a worker writes a batch's maps and inputs in one round; gateways read a
job's pictures), against a local SeaweedFS (`bench.object_store`).

    python -m bench.s3_clients [--objects 512] [--concurrency 32]

obstore is a project dependency; aiobotocore and boto3 are not, and are measured only where
they are installed (`pip install aiobotocore boto3` in a scratch environment). For each client
and object size: objects per second for PUT and GET, and the client's CPU milliseconds per
object (what it costs a gateway or worker on a small machine), best of `--repeats`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.object_store import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, SeaweedServer

# A job's blobs: the explanation map (~1 KB), the model input (~16 KB at 128 px), the display
# copy (~80 KB) and an upload (~330 KB).
SIZES = {"map_1k": 1_024, "input_16k": 16_400, "display_80k": 81_000, "upload_330k": 330_000}


def measure(round_trip: Callable[[list[str], bytes, str], None], keys: list[str],
            data: bytes, repeats: int) -> dict[str, float]:  # fmt: skip
    best: dict[str, float] = {}
    for _ in range(repeats):
        for operation in ("put", "get"):
            wall, cpu = time.perf_counter(), time.process_time()
            round_trip(keys, data, operation)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rate = len(keys) / wall
            if rate > best.get(f"{operation}_per_s", 0):
                best[f"{operation}_per_s"] = round(rate, 1)
                best[f"{operation}_cpu_ms_per_object"] = round(cpu * 1000 / len(keys), 3)
    return best


def gather_limited(calls: Sequence[Callable[[], Awaitable[object]]], concurrency: int) -> None:
    async def run_all() -> None:
        limit = asyncio.Semaphore(concurrency)

        async def one(call: Callable[[], Awaitable[object]]) -> None:
            async with limit:
                await call()

        await asyncio.gather(*(one(call) for call in calls))

    asyncio.run(run_all())


def obstore_client(endpoint: str, bucket: str, concurrency: int):
    import obstore
    from obstore.store import S3Store

    options: Any = {"allow_http": True, "pool_max_idle_per_host": str(concurrency)}
    store = S3Store(bucket, endpoint=endpoint, region=REGION, access_key_id=ACCESS_KEY_ID,
                    secret_access_key=SECRET_ACCESS_KEY, client_options=options)  # fmt: skip

    def round_trip(keys: list[str], data: bytes, operation: str) -> None:
        async def get(key: str) -> bytes:
            return bytes(await (await obstore.get_async(store, key)).bytes_async())

        calls = [
            (lambda key=key: obstore.put_async(store, key, data)) if operation == "put"
            else (lambda key=key: get(key))
            for key in keys
        ]  # fmt: skip
        gather_limited(calls, concurrency)

    return round_trip


def aiobotocore_client(endpoint: str, bucket: str, concurrency: int):
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    def round_trip(keys: list[str], data: bytes, operation: str) -> None:
        async def run_all() -> None:
            config = AioConfig(max_pool_connections=concurrency)
            async with get_session().create_client(
                "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY_ID,
                aws_secret_access_key=SECRET_ACCESS_KEY, config=config,
            ) as client:  # fmt: skip
                limit = asyncio.Semaphore(concurrency)

                async def one(key: str) -> None:
                    async with limit:
                        if operation == "put":
                            await client.put_object(Bucket=bucket, Key=key, Body=data)
                        else:
                            reply = await client.get_object(Bucket=bucket, Key=key)
                            async with reply["Body"] as body:
                                await body.read()

                await asyncio.gather(*(one(key) for key in keys))

        asyncio.run(run_all())

    return round_trip


def boto3_client(endpoint: str, bucket: str, concurrency: int):
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY, config=Config(max_pool_connections=concurrency),
    )  # fmt: skip
    threads = ThreadPoolExecutor(concurrency)

    def round_trip(keys: list[str], data: bytes, operation: str) -> None:
        def one(key: str) -> None:
            if operation == "put":
                client.put_object(Bucket=bucket, Key=key, Body=data)
            else:
                client.get_object(Bucket=bucket, Key=key)["Body"].read()

        list(threads.map(one, keys))

    return round_trip


CLIENTS = {"obstore": obstore_client, "aiobotocore": aiobotocore_client, "boto3": boto3_client}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    installed = [name for name in CLIENTS if importlib.util.find_spec(name) is not None]
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as directory, SeaweedServer(Path(directory)) as server:
        for client_name in installed:
            round_trip = CLIENTS[client_name](server.endpoint_url, server.bucket,
                                              arguments.concurrency)  # fmt: skip
            results[client_name] = {}
            for size_name, size in SIZES.items():
                keys = [f"bench/{client_name}/{size_name}/{index}" for index in
                        range(arguments.objects)]  # fmt: skip
                results[client_name][size_name] = measure(
                    round_trip, keys, os.urandom(size), arguments.repeats
                )
    print(json.dumps({"objects": arguments.objects, "concurrency": arguments.concurrency,
                      "cpus": os.cpu_count(), "results": results}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
