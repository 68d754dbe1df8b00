"""Job records: a new one, one read back (the one parser both stores use), one written back."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from pydantic import ValidationError

from shared.errors import CorruptRecord
from shared.schemas import Job, JobStatus, utc_now
from shared.store.keys import Keys

log = logging.getLogger(__name__)

# What a batch read gives for each job: its record, the failure to read it, or None if gone.
# Batch reads hand back the failure rather than raise it, so one bad record cannot fail the
# jobs beside it.
Loaded = Job | CorruptRecord | None


def new_job(job_id: str, ttl_s: int, method: str = "gradcam") -> Job:
    created = utc_now()
    return Job(
        job_id=job_id,
        status=JobStatus.queued,
        created_at=created,
        expires_at=created + timedelta(seconds=ttl_s),
        method=method,
    )


def ttl_left(job: Job) -> int:
    """Seconds until the job expires: every key written later still expires with the job."""
    return max(1, int((job.expires_at - utc_now()).total_seconds()))


def parse_job(job_id: str, record: bytes | str | None) -> Job | None:
    """The stored record, None if there is none; `CorruptRecord` if this version cannot read it.

    The gateway answers that error as it is; a worker fails the job with it (not "gone", which
    left the job queued for ever as far as its client could tell)."""
    if record is None:
        return None
    try:
        return Job.model_validate_json(record)
    except ValidationError as error:
        log.error("Job %s has an unreadable record: %s", job_id, error.errors()[0]["msg"])
        raise CorruptRecord(
            f"The stored record of job {job_id} cannot be read (damaged, or written by an "
            "incompatible version of the service); submit the image again."
        ) from error


def load_job(job_id: str, record: bytes | str | None) -> Loaded:
    """`parse_job` for batch reads: the failure in place of the job, not raised."""
    try:
        return parse_job(job_id, record)
    except CorruptRecord as error:
        return error


def parse_batch(listed: bytes | str) -> tuple[list[str], str | None]:
    """A batch's job ids and owner, as `AsyncStore.save_batch` stored them (a bare list of ids,
    as versions before owners wrote it, has no owner)."""
    try:
        stored = json.loads(listed)
    except ValueError:
        stored = None
    if isinstance(stored, list):
        stored = {"job_ids": stored, "owner": None}
    job_ids = stored.get("job_ids") if isinstance(stored, dict) else None
    owner = stored.get("owner") if isinstance(stored, dict) else None
    valid_ids = isinstance(job_ids, list) and all(isinstance(each, str) for each in job_ids)
    if not (isinstance(job_ids, list) and valid_ids and isinstance(owner, str | None)):
        raise CorruptRecord("A stored batch cannot be read; submit its images again.")
    return job_ids, owner


@dataclass
class Write:
    """One job's record (and blobs) for `SyncStore.write_unless_final`."""

    job: Job
    blobs: dict[str, bytes] = field(default_factory=dict)

    def key_names(self, keys: Keys) -> list[str]:
        job_id = self.job.job_id
        names = [keys.job(job_id), keys.finals(job_id), keys.pending, keys.blob(job_id, "upload")]
        return [*names, keys.result_counts, *(keys.blob(job_id, name) for name in self.blobs)]

    def values(self, keys: Keys) -> list[str | bytes | int]:
        stage = "final" if self.job.status.is_final else "claim"
        assessment = self.job.result.assessment if self.job.result else ""
        head: list[str | bytes | int] = [self.job.record_json(), ttl_left(self.job)]
        tail: list[str | bytes | int] = [keys.finished_channel, assessment, *self.blobs.values()]
        return [*head, stage, self.job.job_id, *tail]
