"""Sending a job's DICOM results to the configured PACS: `pneumo dicom-delivery`.

A Celery worker of its own, on its own queue (`Settings.delivery_queue_name`), next to the
gateway rather than in the model workers: it needs highdicom and pynetdicom, not the model;
a slow or unreachable PACS then holds up only deliveries, never predictions; and it scales
and restarts on its own. The intake queues one delivery per job from the DICOM network when a
destination is set (`shared.queue.enqueue_delivery`: the job id only, as for predictions), in
the same step as the prediction, so a delivery exists for every such job and is never dropped: the
message is acknowledged late and comes back if this process dies.

A delivery waits for its job to finish (it looks again every `delivery_poll_s`), then builds
the SR and the Secondary Capture (`gateway.dicom_outputs`) and sends both by C-STORE
(`dicom_destination`) or STOW-RS (`dicomweb_destination`). A failed try is retried after
`delivery_backoff_s`, doubled each time, up to `delivery_attempts` tries. Every step is written
to the job (`Job.delivery`: state, attempts, last error) and counted for /metrics
(`pneumo_dicom_deliveries_total{outcome}`). Sending again what a PACS already holds is
harmless: the objects' UIDs are the job's own, so it keeps one copy.

Privacy: only the job id travels through the broker; errors name statuses and addresses,
never a value from the header; pynetdicom's records (which can quote elements) stay out of
the logs.
"""

from __future__ import annotations

import io
import logging
import threading
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import httpx
from celery import Celery, Task
from redis.exceptions import RedisError

from gateway.dicom_outputs import SOURCES, build
from shared.blobs import thread_objects
from shared.config import Settings, get_settings
from shared.dicom_results import DicomResults
from shared.errors import BlobStoreUnavailable, CorruptRecord, NoDicomResults, PictureExpired
from shared.queue import DELIVER_TASK, delivery_configured, enqueue_delivery, make_celery
from shared.schemas import Delivery, Job, JobStatus
from shared.store import SyncStore

log = logging.getLogger(__name__)

# C-STORE statuses that mean stored: success, and the warnings (coerced, elements discarded,
# dataset does not match the SOP class), which a PACS sends for instances it kept.
STORED = (0x0000, 0xB000, 0xB006, 0xB007)
FAILED_SOP_SEQUENCE = "00081198"
SWEEP_INTERVAL_S, SWEEP_MARGIN_S = (
    30.0,
    60.0,
)  # in a STOW-RS response: the instances it did not store


class DeliveryFailed(Exception):
    """One try failed; the message says why without any value from the objects."""


class Sender(Protocol):
    def send(self, results: DicomResults) -> None: ...


class CStoreSender:
    """C-STORE SCU to `AET@host:port`, one association per delivery."""

    def __init__(self, destination: str, calling_ae_title: str, timeout_s: float):
        self.called, _, address = destination.partition("@")
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.calling, self.timeout_s = calling_ae_title, timeout_s

    def send(self, results: DicomResults) -> None:
        from pydicom import dcmread
        from pydicom.uid import (
            ComprehensiveSRStorage,
            ExplicitVRLittleEndian,
            SecondaryCaptureImageStorage,
        )
        from pynetdicom import AE

        entity = AE(ae_title=self.calling)
        entity.acse_timeout = entity.dimse_timeout = entity.network_timeout = self.timeout_s
        entity.connection_timeout = self.timeout_s
        for sop_class in (SecondaryCaptureImageStorage, ComprehensiveSRStorage):
            entity.add_requested_context(sop_class, ExplicitVRLittleEndian)
        where = f"{self.called} at {self.host}:{self.port}"
        association = entity.associate(self.host, self.port, ae_title=self.called)
        if not association.is_established:
            raise DeliveryFailed(f"No association with {where} (refused, rejected or unreachable).")
        try:
            for data in (results.secondary_capture, results.structured_report):
                status = association.send_c_store(dcmread(io.BytesIO(data)))
                code = status.get("Status") if status else None
                if code is None:
                    raise DeliveryFailed(f"No C-STORE response from {where} (lost or timed out).")
                if int(code) not in STORED:
                    raise DeliveryFailed(f"{where} answered C-STORE with status 0x{code:04X}.")
        finally:
            association.release()


class StowSender:
    """STOW-RS: both objects in one `multipart/related` POST to `{base}/studies`."""

    def __init__(self, base_url: str, timeout_s: float):
        self.url, self.timeout_s = base_url.rstrip("/") + "/studies", timeout_s
        # What errors (the job's last_error, logs) name: never the URL's credentials.
        self.shown = str(httpx.URL(self.url).copy_with(username=None, password=None))

    def send(self, results: DicomResults) -> None:
        boundary = uuid.uuid4().hex
        parts = (results.secondary_capture, results.structured_report)
        opening = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body = b"".join(opening + part + b"\r\n" for part in parts) + f"--{boundary}--".encode()
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        try:
            response = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout_s)
        except httpx.HTTPError as error:
            raise DeliveryFailed(
                f"STOW-RS to {self.shown} failed ({type(error).__name__})."
            ) from None
        refused = response.status_code == 202 and FAILED_SOP_SEQUENCE in _json(response)
        if response.status_code not in (200, 202) or refused:
            raise DeliveryFailed(
                f"STOW-RS to {self.shown} answered HTTP {response.status_code}"
                + (" with failed instances." if refused else ".")
            )


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _as_failure(error: Exception) -> DeliveryFailed:
    """Any failure to send is one failed try: the network library's own too (by type only: its
    message could quote what it was sending)."""
    if isinstance(error, DeliveryFailed):
        return error
    return DeliveryFailed(f"Sending failed ({type(error).__name__}).")


def sender_for(settings: Settings) -> Sender:
    if settings.dicom_destination:
        return CStoreSender(
            settings.dicom_destination, settings.delivery_ae_title, settings.delivery_timeout_s
        )
    return StowSender(settings.dicomweb_destination, settings.delivery_timeout_s)


@dataclass
class Deliverer:
    """One look at one job's delivery (`step`): the plain logic the task wraps."""

    store: SyncStore
    settings: Settings
    sender: Sender

    def step(self, job_id: str) -> float | None:
        """Seconds until the next look at this job, or None when its delivery is settled."""
        (loaded,) = self.store.load_jobs([job_id])
        if loaded is None:  # deleted or expired: nothing to send, nowhere to say so
            self.store.forget_delivery(job_id)
            return None
        if isinstance(loaded, CorruptRecord):
            log.error("Job %s: record unreadable, its DICOM results are not sent", job_id)
            self.store.forget_delivery(job_id)
            return None
        job, delivery = loaded, loaded.delivery or Delivery(state="pending")
        if delivery.state != "pending":  # a repeated message after the outcome was written
            self.store.forget_delivery(job_id)
            return None
        if not job.status.is_final:
            self.store.touch_delivery(job_id)
            return self.settings.delivery_poll_s
        if job.status is JobStatus.failed:
            self._write(job_id, Delivery(state="skipped", attempts=delivery.attempts), "skipped")
            return None
        return self._try(job_id, job, delivery.attempts + 1)

    def _try(self, job_id: str, job: Job, attempts: int) -> float | None:
        try:
            sources = self.store.blobs(job_id, SOURCES)
        except BlobStoreUnavailable as error:  # the object store away: a failed try, retried
            return self._failed_try(job_id, attempts, DeliveryFailed(error.message))
        try:
            results = build(job, sources)
        except (NoDicomResults, PictureExpired) as error:  # no try will do
            self._give_up(job_id, attempts, error.message)
            return None
        except Exception as error:  # a header the builders cannot take; never its values
            reason = f"The DICOM results could not be built ({type(error).__name__})."
            self._give_up(job_id, attempts, reason)
            return None
        try:
            self.sender.send(results)
        except Exception as error:
            return self._failed_try(job_id, attempts, _as_failure(error))
        self._write(job_id, Delivery(state="delivered", attempts=attempts), "delivered")
        log.info("Job %s: DICOM results delivered (try %d)", job_id, attempts)
        return None

    def _failed_try(self, job_id: str, attempts: int, error: DeliveryFailed) -> float | None:
        if attempts >= self.settings.delivery_attempts:
            self._give_up(job_id, attempts, str(error))
            return None
        self._write(job_id, Delivery(state="pending", attempts=attempts,
                                     last_error=str(error)), "retried")  # fmt: skip
        log.warning("Job %s: DICOM results not delivered (try %d): %s", job_id, attempts,
                    error)  # fmt: skip
        return self.backoff_s(attempts)

    def backoff_s(self, attempts: int) -> float:
        """The wait after failed try number `attempts`: doubling, capped, and short of the
        broker's visibility timeout (a message held longer would be handed out twice)."""
        wait = self.settings.delivery_backoff_s * 2 ** (attempts - 1)
        return min(wait, self.settings.delivery_backoff_max_s,
                   self.settings.visibility_timeout_s / 2)  # fmt: skip

    def sweep(self, app: Celery) -> list[str]:
        """Queue again every pending delivery nobody has looked at for longer than the longest
        wait between two looks (plus a try's timeout and a margin): its message was lost (a
        task that died, a retry that could not be published while Redis was away). A second
        message for a delivery that was only late is harmless: a settled one ignores it."""
        longest_wait_s = max(self.backoff_s(self.settings.delivery_attempts),
                             self.settings.delivery_poll_s)  # fmt: skip
        stale_s = longest_wait_s + 2 * self.settings.delivery_timeout_s + SWEEP_MARGIN_S
        job_ids = self.store.stale_deliveries(stale_s)
        for job_id in job_ids:
            self.store.touch_delivery(job_id)
            enqueue_delivery(app, self.settings, job_id)
        if job_ids:
            log.warning("%d DICOM deliveries queued again: their messages were lost", len(job_ids))
        return job_ids

    def _give_up(self, job_id: str, attempts: int, reason: str) -> None:
        self._write(job_id, Delivery(state="failed", attempts=attempts, last_error=reason),
                    "failed")  # fmt: skip
        log.error("Job %s: DICOM results not delivered, given up after %d tries: %s", job_id,
                  attempts, reason)  # fmt: skip

    def _write(self, job_id: str, delivery: Delivery, outcome: str) -> None:
        self.store.update_delivery(job_id, delivery, outcome)


def create_delivery_app(settings: Settings, sender: Sender | None = None) -> Celery:
    """The delivery process's app, its one task registered."""
    app = make_celery(settings, "pneumo-delivery")
    app.conf.task_default_queue = settings.delivery_queue_name
    store = SyncStore.from_url(
        settings.redis_url, settings.key_prefix, settings.job_ttl_s, thread_objects(settings)
    )
    deliverer = Deliverer(store, settings, sender or sender_for(settings))

    @app.task(name=DELIVER_TASK, bind=True, max_retries=None)
    def deliver(task: Task, job_id: str) -> None:
        try:
            wait_s = deliverer.step(job_id)
        except RedisError as error:  # the records' Redis away: look again later, not never
            log.warning("Job %s: delivery postponed, Redis unavailable (%s)", job_id,
                        type(error).__name__)  # fmt: skip
            wait_s = settings.delivery_backoff_s
        if wait_s is not None:
            raise task.retry(countdown=wait_s)

    return app


@lru_cache(maxsize=1)
def delivery_app() -> Celery:
    return create_delivery_app(get_settings())


def __getattr__(name: str) -> Celery:
    # `celery -A gateway.dicom_delivery inspect ping` (the container's healthcheck) looks up
    # `app` here: built on that first look-up, so importing this module reads no environment.
    if name == "app":
        return delivery_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(settings: Settings, concurrency: int, log_level: str) -> None:
    if not delivery_configured(settings):
        raise SystemExit("Set PNEUMO_DICOM_DESTINATION or PNEUMO_DICOMWEB_DESTINATION first.")
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its DEBUG quotes elements
    app = create_delivery_app(settings)
    sweeper = threading.Thread(target=_sweep_forever, args=(app, settings), daemon=True)
    sweeper.start()
    app.worker_main([
        "worker", "-Q", settings.delivery_queue_name, "--pool", "threads", "-c", str(concurrency),
        "-n", "delivery@%h", "--without-gossip", "--without-mingle", "--loglevel", log_level,
    ])  # fmt: skip


def _sweep_forever(app: Celery, settings: Settings) -> None:
    """`Deliverer.sweep` every `SWEEP_INTERVAL_S`, for the process's lifetime."""
    store = SyncStore.from_url(settings.redis_url, settings.key_prefix, settings.job_ttl_s)
    deliverer, stop = Deliverer(store, settings, sender_for(settings)), threading.Event()
    while not stop.wait(SWEEP_INTERVAL_S):
        try:
            deliverer.sweep(app)
        except RedisError as error:
            log.warning("Delivery sweep skipped, Redis unavailable (%s)", type(error).__name__)
