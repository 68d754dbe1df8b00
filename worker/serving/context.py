"""Everything a worker process holds for its lifetime: settings, store, model runtime, heartbeat.

Created lazily, once per process and after any fork, so that importing worker code never loads
a model and a forked child never inherits a parent's accelerator context.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

from redis.exceptions import RedisError

from shared.blobs import thread_objects
from shared.config import Settings, get_settings
from shared.decode_budget import MEGABYTE, DecodeBudget
from shared.imaging import IntakeLimits
from shared.store import SyncStore
from worker.model.runtime import ModelRuntime
from worker.serving.device import configure_device
from worker.serving.recovery import start_sweeper
from worker.serving.time_limits import Watchdog

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    settings: Settings
    store: SyncStore
    runtime: ModelRuntime
    name: str
    limits: IntakeLimits
    intake: Executor
    watchdog: Watchdog = field(default_factory=Watchdog)
    _stop: threading.Event = field(default_factory=threading.Event)

    def publish_heartbeat(self) -> None:
        self.store.heartbeat(self.name, self.runtime.card.model_dump(mode="json"))

    def start_heartbeat(self) -> None:
        """Tell the gateway (readiness, /v1/models) that a loaded model is serving here.

        The first beat goes out at once; a failed beat (Redis restarting) is only logged, so
        the thread outlives any outage and the worker reappears as soon as Redis does.
        """

        def beat() -> None:
            while not self._stop.is_set():
                try:
                    self.publish_heartbeat()
                except (RedisError, OSError) as error:
                    log.warning("Heartbeat failed: %s", error)
                self._stop.wait(self.settings.heartbeat_s)

        threading.Thread(target=beat, name="heartbeat", daemon=True).start()

    def start_sweeper(self, enqueue: Callable[[str], None]) -> None:
        """Queue again accepted jobs whose messages were lost (see worker.serving.recovery)."""
        start_sweeper(self.store, enqueue, self.settings, self.name, self._stop)

    def stop(self) -> None:
        self._stop.set()
        try:
            self.store.forget_worker(self.name)
        except (RedisError, OSError) as error:
            log.warning("Could not deregister %s: %s", self.name, error)


def build_context(settings: Settings) -> WorkerContext:
    configure_device(settings)
    runtime = ModelRuntime.from_directory(
        settings.model_dir, settings.decision_threshold, max_batch=settings.batch_size,
        mixed_precision=settings.mixed_precision, jit_compile=settings.xla,
    )  # fmt: skip
    seconds = runtime.warm_up()
    log.info("Model warmed up in %.1f s for batches up to %d", seconds, settings.batch_size)
    return WorkerContext(
        settings=settings,
        store=SyncStore.from_url(
            settings.redis_url, settings.key_prefix, settings.job_ttl_s, thread_objects(settings)
        ),
        runtime=runtime,
        name=f"{socket.gethostname()}:{os.getpid()}",
        limits=IntakeLimits.from_settings(
            settings, DecodeBudget(settings.decode_memory_mb * MEGABYTE)
        ),
        intake=ThreadPoolExecutor(
            max_workers=settings.intake_threads or os.cpu_count() or 1,
            thread_name_prefix="intake",
        ),
    )


@lru_cache(maxsize=1)
def get_context() -> WorkerContext:
    return build_context(get_settings())
