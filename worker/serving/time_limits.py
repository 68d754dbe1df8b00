"""Per-batch time limits that work in any pool, because Celery's only work in prefork.

Celery enforces `task_soft_time_limit`/`task_time_limit` by signalling or killing a pool child;
the solo and threads pools this worker runs have no child to kill, so the limits are ours:

* soft: `Deadline.check` between the steps of a batch raises `BatchTimeLimitExceeded`; the
  task hands the batch back to the queue and the jobs' delivery count bounds the retries;
* hard: `Watchdog` ends the whole process when a batch is still running past it (stuck in a C
  call that no exception can interrupt). Its messages were never acknowledged, so another
  worker gets them after the visibility timeout; the process supervisor starts a new worker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)
# EX_SOFTWARE from sysexits.h: the supervisor sees a crash, not a clean stop, and restarts us.
HARD_LIMIT_EXIT_CODE = 70


class BatchTimeLimitExceeded(Exception):
    """The batch ran past its soft limit; its jobs go back to the queue."""


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic() value

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    @classmethod
    def never(cls) -> Deadline:
        return cls(float("inf"))

    def check(self, step: str) -> None:
        if time.monotonic() > self.at:
            raise BatchTimeLimitExceeded(f"Soft time limit reached before {step}.")


class Watchdog:
    """Ends the process if a guarded block outlives its hard limit."""

    def __init__(self, poll_s: float = 0.5):
        self.poll_s = poll_s
        self._deadlines: dict[object, float] = {}  # guarded block -> its deadline
        self._started = False
        self._lock = threading.Lock()

    @contextmanager
    def guard(self, hard_limit_s: float) -> Iterator[None]:
        self._start_once()
        token = object()  # one per guarded block: batches in flight side by side each get one
        with self._lock:
            self._deadlines[token] = time.monotonic() + hard_limit_s
        try:
            yield
        finally:
            with self._lock:
                del self._deadlines[token]

    def _start_once(self) -> None:
        with self._lock:
            if not self._started:
                threading.Thread(target=self._watch, name="batch-watchdog", daemon=True).start()
                self._started = True

    def _watch(self) -> None:
        while True:
            time.sleep(self.poll_s)
            with self._lock:
                deadline = min(self._deadlines.values(), default=None)
            if deadline is not None and time.monotonic() > deadline:
                log.critical("A batch overran its hard time limit; ending the worker process.")
                logging.shutdown()
                os._exit(HARD_LIMIT_EXIT_CODE)
