"""The wire contract: the same models serialise the Redis job record and the HTTP responses."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

Label = Literal["NORMAL", "PNEUMONIA"]
EXPLANATION_METHODS = ("gradcam", "gradcam++", "hirescam")


def utc_now() -> datetime:
    return datetime.now(UTC)


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed)


class ModelInfo(BaseModel):
    name: str
    version: str
    sha256: str
    synthetic: bool


class Result(BaseModel):
    label: Label
    probability: float = Field(description="P(pneumonia), calibrated.")
    confidence: float = Field(description="P(returned label).")
    threshold: float = Field(description="P(pneumonia) at or above which the label is PNEUMONIA.")
    model: ModelInfo


class Explanation(BaseModel):
    method: str
    target: Label = Field(description="The class whose logit the map explains.")
    layer: str
    heatmap_url: str
    overlay_url: str


class JobError(BaseModel):
    code: str
    message: str


class Job(BaseModel):
    job_id: str
    status: JobStatus
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime
    method: str = "gradcam"
    attempts: int = 0
    result: Result | None = None
    explanation: Explanation | None = None
    error: JobError | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)


class SeedPrediction(BaseModel):
    """The original project's `POST /predict` response shape, kept for its clients."""

    prediction: Literal["Pneumonia", "Normal"]
    confidence: float
    gradcam_image: str
    job_id: str


class ErrorBody(BaseModel):
    error: JobError


class BatchCreated(BaseModel):
    batch_id: str
    job_ids: list[str] = Field(description="In the order the files were sent.")


class Batch(BatchCreated):
    counts: dict[str, int] = Field(
        description="Jobs per status; `expired` counts jobs deleted or past their TTL."
    )
    done: bool = Field(description="True once no job is queued or running.")


def job_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def batch_url(batch_id: str) -> str:
    return f"/v1/batches/{batch_id}"


def blob_url(job_id: str, name: str) -> str:
    return f"{job_url(job_id)}/{name}.png"
