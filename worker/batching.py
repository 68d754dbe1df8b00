"""Adaptive micro-batching on top of celery-batches.

Plain celery-batches flushes its buffer on a timer or every N messages, whether or not the
previous batch has finished. Under load that queues many small batches behind each other, and
with the solo pool the consumer cannot even fetch messages while a batch runs. Here, with a
one-thread pool, the consumer keeps fetching during a batch, and a new batch is formed only
when the model is free: it then takes everything buffered (up to the batch size per model
call). Idle, a job waits at most one flush interval; busy, batches grow by themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any

from celery.worker.request import Request
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task


class AdaptiveBatches(Batches):
    abstract = True

    def __init__(self) -> None:
        super().__init__()
        self._in_flight = threading.Event()

    def _do_flush(self) -> None:
        # The running batch's completion re-arms us; the timer keeps ticking meanwhile.
        if not self._in_flight.is_set():
            super()._do_flush()

    def flush(self, requests: Collection[Request]) -> Any:
        """celery-batches' flush, plus the in-flight flag cleared when the batch returns."""
        acks_late = [request for request in requests if request.task.acks_late]
        acks_early = [request for request in requests if not request.task.acks_late]
        serializable = ([SimpleRequest.from_request(request) for request in requests],)
        self._in_flight.set()

        def on_accepted(pid: int, time_accepted: float) -> None:
            for request in acks_early:
                request.acknowledge()

        def on_return(result: object) -> None:
            self._in_flight.clear()
            for request in acks_late:
                request.acknowledge()

        return self._pool.apply_async(
            apply_batches_task, (self, serializable, 0, None),
            accept_callback=on_accepted, callback=on_return,
        )  # fmt: skip
