"""`pneumo dicom-listener`: a DICOM Storage SCP (pynetdicom) in front of the gateway's intake.

C-ECHO is answered; a C-STORE of a CR or DX image becomes a job through the HTTP upload's
intake (`gateway.dicom_intake.take_instance`), and success is answered only once the job is
stored and its id queued. Every other Storage SOP class is negotiated, so the sender hears
a per-instance "SOP Class Not Supported" (0x0122) rather than an association it cannot use.
Calling AE titles outside `PNEUMO_DICOM_ALLOWED_AETS` are rejected at association.

pynetdicom runs each association in a thread of its own; the intake is asyncio (the gateway's
store and decode budget), so one event loop runs in a thread beside them and each C-STORE
waits on its coroutine there. Nothing the dataset says is logged: pynetdicom's own records
(which can dump datasets at debug level) are held at WARNING.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from celery import Celery
from pydicom.dataset import Dataset
from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from redis.exceptions import RedisError

from gateway.dicom_intake import Refused, Status, take_instance
from gateway.queue_depth import QueueDepth
from gateway.rate_limit import RateLimiter
from gateway.security import owner_of
from gateway.serving import ServingPreprocessing
from gateway.submission import Intake
from shared.config import Settings
from shared.decode_budget import MEGABYTE, AsyncDecodeBudget
from shared.dicom import can_decode
from shared.errors import StoreUnavailable
from shared.queue import make_celery
from shared.schemas import Job
from shared.store import AsyncStore

log = logging.getLogger(__name__)
T = TypeVar("T")
# ErrorComment is LO: 64 characters at most.
ERROR_COMMENT_CHARS = 64
# How long a sender waits for our answer to one C-STORE at most, decode budget wait included;
# then 0xA700.
STORE_ANSWER_TIMEOUT_S = 120.0
# How long a stopping listener waits for open associations (compose gives it 30 s).
SHUTDOWN_GRACE_S = 25.0


def accepted_transfer_syntaxes() -> list[str]:
    """Every transfer syntax this service decodes (`shared.dicom.can_decode`): a sender with
    anything else is told at negotiation, before it sends a byte of pixels."""
    return [str(syntax) for syntax in AllTransferSyntaxes if can_decode(syntax)]


class DicomListener:
    """One Storage SCP process: its AE, the intake's store and queue, and the loop they use."""

    def __init__(self, settings: Settings, ae_title: str):
        self.settings = settings
        self.ae = self._application_entity(ae_title, settings.dicom_allowed_aets)
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self.loop.run_forever, name="dicom-intake-loop", daemon=True
        )
        self.celery: Celery = make_celery(settings, "pneumo-dicom-listener")
        self.store: AsyncStore | None = None
        self.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
        self.serving = ServingPreprocessing(settings.heartbeat_s)
        self.decode_budget = AsyncDecodeBudget(settings.decode_memory_mb * MEGABYTE)
        self.queue_depth = QueueDepth(settings, self.celery)  # read as the gateway reads it
        self.owner = listener_owner(settings)

    @staticmethod
    def _application_entity(ae_title: str, allowed: tuple[str, ...]) -> AE:
        ae = AE(ae_title=ae_title)
        syntaxes = accepted_transfer_syntaxes()
        for context in AllStoragePresentationContexts:
            assert context.abstract_syntax is not None
            ae.add_supported_context(context.abstract_syntax, syntaxes)
        ae.add_supported_context(Verification)
        if allowed:
            ae.require_calling_aet = list(allowed)
        else:
            log.warning(
                "PNEUMO_DICOM_ALLOWED_AETS is empty: associations from any calling AE title "
                "are accepted. List the PACS and modalities that may send."
            )
        return ae

    def serve(self, host: str, port: int) -> None:
        """Listen until SIGTERM or Ctrl-C (blocks); then take no new association, let those
        open finish (up to `SHUTDOWN_GRACE_S`) and exit."""
        from gateway.app import open_store  # the gateway's store, pool and memory watermark

        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        self._loop_thread.start()
        self.store = self._run(self._open_store(open_store))
        handlers: list[Any] = [(evt.EVT_C_STORE, self.on_store), (evt.EVT_C_ECHO, self.on_echo)]
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        server = self.ae.start_server((host, port), block=False, evt_handlers=handlers)
        assert server is not None  # block=False always gives the server
        log.info("DICOM listener %s on %s:%d", self.ae.ae_title, host, port)
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            drain(server, SHUTDOWN_GRACE_S)
            self._run(self.store.aclose())
            self.queue_depth.close()
            self.loop.call_soon_threadsafe(self.loop.stop)

    async def _open_store(self, open_store: Callable[[Settings], AsyncStore]) -> AsyncStore:
        """Made inside the loop that uses it: redis-py's asyncio clients belong to one."""
        return open_store(self.settings)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def on_echo(self, event: Event) -> int:
        return 0x0000

    def on_store(self, event: Event) -> int | Dataset:
        calling = event.assoc.requestor.ae_title
        negotiated = str(event.request.AffectedSOPClassUID)
        data = event.encoded_dataset(include_meta=True)
        try:
            job = self._run(self._take(data, calling, negotiated))
        except Refused as refusal:
            log.info("C-STORE from %s refused: 0x%04X %s", calling, refusal.status, refusal.comment)
            return refusal_status(refusal)
        log.info("C-STORE from %s queued as job %s", calling, job.job_id)
        return 0x0000

    async def _intake(self, calling: str) -> Intake:
        """The HTTP routes' `Intake`, with the calling AE title as the rate-limit scope."""
        assert self.store is not None
        return Intake(
            self.store, self.celery, self.settings, client_scope=f"dicom:{calling}",
            preprocessing=await self.serving.current(self.store),
            rate_limiter=self.rate_limiter, decode_budget=self.decode_budget,
            queue_depth=self.queue_depth, owner=self.owner,
        )  # fmt: skip

    async def _take(self, data: bytes, calling: str, negotiated: str) -> Job:
        try:
            async with asyncio.timeout(STORE_ANSWER_TIMEOUT_S):
                return await take_instance(data, await self._intake(calling), negotiated)
        except RedisError:  # reading the workers' preprocessing; the intake maps its own
            unavailable = StoreUnavailable("The job store is unavailable.")
            raise Refused.from_error(unavailable) from None
        except TimeoutError:
            # A backstop: the decode budget and the Redis pool time out well before. The job
            # may still land if its publish was under way; the sender's retry then makes a
            # second one, as with any C-STORE answered late.
            raise Refused(
                Status.OUT_OF_RESOURCES, "timeout", "The instance was not queued in time."
            ) from None


def drain(server: Any, grace_s: float) -> None:
    """Wait for the associations still open to end: a C-STORE in progress is answered."""
    deadline = time.monotonic() + grace_s
    log.info("Stopping: %d association(s) still open", len(open_associations(server)))
    while open_associations(server) and time.monotonic() < deadline:
        time.sleep(0.1)


def open_associations(server: Any) -> list:
    # A released association's thread can linger in pynetdicom's list until its network
    # timeout; only established ones still have a C-STORE to answer.
    return [assoc for assoc in server.active_associations if assoc.is_established]


def listener_owner(settings: Settings) -> str | None:
    """The owner its jobs record: with API keys on, `dicom_api_key_name`'s key, else none."""
    if not settings.dicom_api_key_name:
        return None
    return owner_of(settings.named_api_keys[settings.dicom_api_key_name])


def refusal_status(refusal: Refused) -> Dataset:
    """The C-STORE response's status, with our error code and message as its comment."""
    status = Dataset()
    status.Status = int(refusal.status)
    status.ErrorComment = refusal.comment[:ERROR_COMMENT_CHARS]
    return status
