"""A small closed-loop HTTP load generator: C clients, each submit -> long-poll -> repeat."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
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


async def _async_job(client: httpx.AsyncClient, image: bytes) -> bool:
    reply = await client.post("/v1/jobs", files={"file": ("scan.jpg", image, "image/jpeg")})
    if reply.status_code != 202:
        return False
    url = reply.headers["Location"]
    while True:
        job = (await client.get(url, params={"wait": 30})).json()
        if job["status"] in ("succeeded", "failed"):
            return job["status"] == "succeeded"


async def _sync_job(client: httpx.AsyncClient, image: bytes) -> bool:
    reply = await client.post("/predict", files={"file": ("scan.jpg", image, "image/jpeg")})
    return reply.status_code == 200


async def _drive(base_url: str, images: list[bytes], concurrency: int, synchronous: bool):
    job = _sync_job if synchronous else _async_job
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for image in images:
        queue.put_nowait(image)
    latencies: list[float] = []
    errors = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            image = queue.get_nowait()
            started = time.perf_counter()
            ok = await job(client, image)
            latencies.append((time.perf_counter() - started) * 1000.0)
            errors += not ok

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return LoadResult(concurrency, len(images), seconds, latencies, errors)


def run_load(base_url: str, images: list[bytes], concurrency: int, synchronous: bool = False):
    return asyncio.run(_drive(base_url, images, concurrency, synchronous))
