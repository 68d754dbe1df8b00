"""A small closed-loop HTTP load generator: C clients, each submit -> long-poll -> repeat.

It runs on the same cores as the service it measures, so it has to be cheap: aiohttp (C HTTP
parser, one connection per simulated client). An httpx pool shared by all clients scans the
whole pool on every request and response, and cost several times the CPU per image, taken
from the service it was measuring. The benchmark reports the load generator's own CPU.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import numpy as np


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    def summary(self) -> dict[str, float]:
        latencies = np.array(self.latencies_ms or [float("nan")])
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "img_s": round(self.requests / self.seconds, 2),
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p95_ms": round(float(np.percentile(latencies, 95)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        }


def _form(image: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", image, filename="scan.jpg", content_type="image/jpeg")
    return form


async def _async_job(session: aiohttp.ClientSession, image: bytes) -> bool:
    async with session.post("/v1/jobs", data=_form(image)) as reply:
        if reply.status != 202:
            return False
        url = reply.headers["Location"]
        await reply.read()
    while True:
        async with session.get(url, params={"wait": "30"}) as reply:
            job = await reply.json()
        if job["status"] in ("succeeded", "failed"):
            return job["status"] == "succeeded"


async def _sync_job(session: aiohttp.ClientSession, image: bytes) -> bool:
    async with session.post("/predict", data=_form(image)) as reply:
        await reply.read()
        return reply.status == 200


async def _drive(base_url: str, images: list[bytes], concurrency: int, synchronous: bool):
    job = _sync_job if synchronous else _async_job
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for image in images:
        queue.put_nowait(image)
    latencies: list[float] = []
    errors = 0

    async def client_loop() -> None:
        nonlocal errors
        # Each simulated client keeps one keep-alive connection, as a real client would.
        connector = aiohttp.TCPConnector(limit=1)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:
            while not queue.empty():
                image = queue.get_nowait()
                started = time.perf_counter()
                ok = await job(session, image)
                latencies.append((time.perf_counter() - started) * 1000.0)
                errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return LoadResult(concurrency, len(images), seconds, latencies, errors)


def run_load(base_url: str, images: list[bytes], concurrency: int, synchronous: bool = False):
    return asyncio.run(_drive(base_url, images, concurrency, synchronous))
