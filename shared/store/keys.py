"""Names of every key the store writes, and of the channel it announces finished jobs on."""

from __future__ import annotations

from dataclasses import dataclass

# upload: as sent (a DICOM without its tags), kept only until the job is final; input and
# cam: `shared.handoff`; display: the film's pixels for pictures (`shared.display`), and
# placement: where the input came from on it (`shared.geometry`), both kept until the job
# expires; heatmap and overlay: PNGs, drawn by the gateway on first request; dicom_header: the
# source instance's tags, for jobs from the DICOM network only (`shared.dicom_header`), kept
# until the job expires.
BLOB_NAMES = (
    "upload", "input", "cam", "display", "placement", "heatmap", "overlay", "dicom_header",
)  # fmt: skip


@dataclass(frozen=True)
class Lookup:
    """A way to find a job again: a client's Idempotency-Key, or its upload's content, as a
    digest that already includes the client's scope (`gateway.idempotency`)."""

    kind: str  # the key's middle part
    digest: str

    @classmethod
    def idempotency_key(cls, digest: str) -> Lookup:
        return cls("idem", digest)

    @classmethod
    def content(cls, digest: str) -> Lookup:
        return cls("dedupe", digest)


class Keys:
    def __init__(self, prefix: str):
        self.prefix = prefix

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def blob(self, job_id: str, name: str) -> str:
        return f"{self.prefix}:blob:{job_id}:{name}"

    def finals(self, job_id: str) -> str:
        return f"{self.prefix}:finals:{job_id}"

    def refs(self, job_id: str) -> str:
        return f"{self.prefix}:refs:{job_id}"

    def all_for_job(self, job_id: str) -> list[str]:
        blobs = [self.blob(job_id, name) for name in BLOB_NAMES]
        return [self.job(job_id), *blobs, self.finals(job_id), self.refs(job_id)]

    def lookup(self, lookup: Lookup) -> str:
        return f"{self.prefix}:{lookup.kind}:{lookup.digest}"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    def rate(self, client: str, window: int) -> str:
        return f"{self.prefix}:rate:{client}:{window}"

    @property
    def pending(self) -> str:
        return f"{self.prefix}:pending"

    @property
    def sweep_turn(self) -> str:
        return f"{self.prefix}:sweep-turn"

    @property
    def blob_expiry(self) -> str:
        """With blobs in object storage: job id -> when its objects expire (`SyncStore.reap`)."""
        return f"{self.prefix}:blob-expiry"

    @property
    def result_counts(self) -> str:
        return f"{self.prefix}:results"

    @property
    def deliveries(self) -> str:
        return f"{self.prefix}:deliveries"

    @property
    def deliveries_pending(self) -> str:
        return f"{self.prefix}:deliveries-pending"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def finished_channel(self) -> str:
        return f"{self.prefix}:finished"
