"""A small closed-loop HTTP load generator: C clients, each submit -> long-poll -> repeat.

It runs on the same cores as the service it measures, so it has to be cheap: aiohttp (C HTTP
parser, one connection per simulated client). An httpx pool shared by all clients scans the
whole pool on every request and response, and cost several times the CPU per image, taken
from the service it was measuring. The benchmark reports the load generator's own CPU.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
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


def run_load_in_processes(base_url: str, images: list[bytes], count: int, concurrency: int,
                          clients_per_process: int = 64) -> tuple[LoadResult, float]:  # fmt: skip
    """The same closed loop from enough processes that the load generator is not what bounds
    a host's many gateways: `concurrency` clients, at most `clients_per_process` in each, all
    starting at one moment. Returns the merged result and the generators' CPU seconds (with
    one process, this one's: idle threads of its own, a model runtime's, cost next to none).

    Processes are spawned, not forked: the caller may hold an accelerator runtime's threads."""
    processes = load_processes(concurrency, count, clients_per_process)
    if processes == 1:  # in this process: no spawn to wait for
        part = _load_part(base_url, images, count, concurrency, start_at=0.0)
        single = LoadResult(concurrency, count, part["ended"] - part["started"],
                            part["latencies_ms"], part["errors"])  # fmt: skip
        return single, part["cpu_s"]
    start_at = time.time() + 1.0 + 0.5 * processes  # after every spawn has imported
    shares = [(count * (index + 1)) // processes - (count * index) // processes
              for index in range(processes)]  # fmt: skip
    clients = [(concurrency * (index + 1)) // processes - (concurrency * index) // processes
               for index in range(processes)]  # fmt: skip
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        parts = list(pool.map(_load_part, [base_url] * processes, [images] * processes, shares,
                              clients, [start_at] * processes))  # fmt: skip
    latencies = [latency for part in parts for latency in part["latencies_ms"]]
    seconds = max(part["ended"] for part in parts) - min(part["started"] for part in parts)
    merged = LoadResult(concurrency, count, seconds, latencies,
                        sum(part["errors"] for part in parts))  # fmt: skip
    return merged, sum(part["cpu_s"] for part in parts)


def load_processes(concurrency: int, count: int, clients_per_process: int) -> int:
    return max(1, min(-(-concurrency // clients_per_process), concurrency, count))


def _load_part(base_url: str, images: list[bytes], count: int, concurrency: int,
               start_at: float) -> dict:  # fmt: skip
    """One process's share of the load, begun at `start_at` (epoch seconds)."""
    time.sleep(max(0.0, start_at - time.time()))
    cpu_started, started = time.process_time(), time.time()
    cycled = [images[index % len(images)] for index in range(count)]
    result = run_load(base_url, cycled, concurrency)
    return {"latencies_ms": result.latencies_ms, "errors": result.errors, "started": started,
            "ended": time.time(), "cpu_s": time.process_time() - cpu_started}  # fmt: skip
