"""Adaptive micro-batching on top of celery-batches.

Plain celery-batches flushes its buffer on a timer or every N messages, whether or not the
previous batch has finished. Under load that queues many small batches behind each other, and
with the solo pool the consumer cannot even fetch messages while a batch runs. Here, with a
threads pool, the consumer keeps fetching during a batch, and a new batch is formed only when
fewer than `batches_in_flight` are running: it then takes what was buffered, up to the batch
size, and the rest waits in the buffer for the batch after. Idle, a job waits at most one
flush interval; busy, batches grow by themselves to the batch size.

When a batch returns, the next one is formed at once from what was buffered meanwhile, not at
the next timer tick (up to `flush_interval` of idle model per batch). Acknowledgements cost
the model nothing: Celery schedules them on the consumer's event loop.

`batches_in_flight` (`PNEUMO_BATCHES_IN_FLIGHT`, one pool thread each) is 1 by default. At 2,
one batch reads and writes Redis while another is in the model (`ModelRuntime.predict` runs
one call at a time): that pays on a GPU, where the model is a fraction of a batch's time, and
not on a CPU, where the model already has every core (bench/RESULTS.md).

`AdaptiveBatches` overrides private methods of celery-batches: where the installed version is
not the one it was written for, the task is celery-batches' own `Batches`
(`worker.serving.overrides`).
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any

from celery.worker.request import Request
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task

from shared.config import Settings


class AdaptiveBatches(Batches):
    abstract = True
    batches_in_flight = 1
    _tref: Any  # celery-batches' periodic flush: a kombu timer entry, or None

    def __init__(self) -> None:
        super().__init__()
        self._in_flight = 0
        # The consumer's timer and a returning batch can both try to flush: one at a time.
        self._flush_lock = threading.Lock()

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Any:  # noqa: N802 (Celery's name)
        """celery-batches' strategy, its flush timer re-armed. Celery builds a task's strategy
        each time its consumer (re)connects, and a lost broker connection clears the event
        loop's timers (celery.worker.loops), this task's periodic flush among them, while
        celery-batches still holds the dead entry and never starts another: a worker back
        from a broker outage then flushed a partial batch only when enough messages followed,
        and a lone job waited for batch-mates for ever (the RabbitMQ restart fault test)."""
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None  # the next message starts the timer again
        return super().Strategy(task, app, consumer)

    def _do_flush(self) -> None:
        # A returning batch flushes again; the timer keeps ticking meanwhile.
        with self._flush_lock:
            while self._in_flight < self.batches_in_flight and not self._buffer.empty():
                super()._do_flush()

    def flush(self, requests: Collection[Request]) -> Any:
        """celery-batches' flush, plus the in-flight count lowered when the batch returns and
        the next batch formed at once. At most one batch per call: what was buffered beyond
        it goes back to the buffer for the next batch, instead of running now as a short tail
        call (on a CPU a small call costs more per image than a full one: fixed per-call costs
        are shared by fewer images)."""
        requests = list(requests)
        for request in requests[self.flush_every :]:
            self._buffer.put(request)
        requests = requests[: self.flush_every]
        acks_late = [request for request in requests if request.task.acks_late]
        acks_early = [request for request in requests if not request.task.acks_late]
        serializable = ([SimpleRequest.from_request(request) for request in requests],)
        self._in_flight += 1  # under _flush_lock: _do_flush calls this

        def on_accepted(pid: int, time_accepted: float) -> None:
            for request in acks_early:
                request.acknowledge()

        def on_return(result: object) -> None:
            # Acknowledged only now, after the batch wrote its results (or handed its jobs
            # back): a worker that dies before this leaves the messages to be redelivered.
            for request in acks_late:
                request.acknowledge()
            with self._flush_lock:
                self._in_flight -= 1
            self._do_flush()

        return self._pool.apply_async(
            apply_batches_task, (self, serializable, 0, None),
            accept_callback=on_accepted, callback=on_return,
        )  # fmt: skip


def batch_task_options(settings: Settings, adaptive: bool) -> dict[str, Any]:
    """`app.task` options for a batch task: `AdaptiveBatches` where its override runs, else
    celery-batches' own `Batches` (a batch every `flush_every` messages or on the timer)."""
    options: dict[str, Any] = {
        "flush_every": settings.batch_size,
        "flush_interval": settings.batch_wait_ms / 1000.0,
        "acks_late": True,
    }
    if not adaptive:
        return options | {"base": Batches}
    return options | {"base": AdaptiveBatches, "batches_in_flight": settings.batches_in_flight}
