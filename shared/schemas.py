"""The wire contract: the same models serialise the Redis job record and the HTTP responses."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.json_schema import SkipJsonSchema

Label = Literal["NORMAL", "PNEUMONIA"]
# not_assessed: the model that answered carries no OOD gate (an artifact made before it).
Assessment = Literal["in_distribution", "out_of_distribution", "not_assessed"]
OUT_OF_DISTRIBUTION_MESSAGE = (
    "This image does not resemble the model's training data — no reliable answer"
)
EXPLANATION_METHODS = ("gradcam", "gradcam++", "eigengradcam")
RECORD = "record"  # the serialisation context under which a job dumps its owner


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


class OodResult(BaseModel):
    score: float = Field(description="How unlike the training data the image is (higher: less).")
    threshold: float = Field(description="Scores above this are flagged.")
    flagged: bool = Field(description="True: the image is out of distribution.")


class Result(BaseModel):
    assessment: Assessment = Field(
        "not_assessed",
        description="out_of_distribution: the image does not resemble the training data and "
        "the label must not be relied on (kept for the record); not_assessed: the model has "
        "no out-of-distribution gate.",
    )
    label: Label
    probability: float = Field(description="P(pneumonia), calibrated.")
    confidence: float = Field(description="P(returned label).")
    threshold: float = Field(description="P(pneumonia) at or above which the label is PNEUMONIA.")
    ood: OodResult | None = Field(None, description="The out-of-distribution score; null when "
                                  "the model has no gate.")  # fmt: skip
    model: ModelInfo

    @property
    def reliable(self) -> bool:
        return self.assessment != "out_of_distribution"


class Explanation(BaseModel):
    method: str
    target: Label = Field(description="The class whose logit the map explains.")
    layer: str
    heatmap_url: str
    overlay_url: str


class JobError(BaseModel):
    code: str
    message: str


DeliveryState = Literal["pending", "delivered", "failed", "skipped"]


class Delivery(BaseModel):
    """Where sending the job's DICOM results to the configured PACS stands
    (`gateway.dicom_delivery`); set only for jobs from the DICOM network while a destination is
    configured."""

    state: DeliveryState = Field(
        description="pending: waiting for the job or for the next try; delivered: the PACS "
        "took both objects; failed: every try failed, nothing more will be tried; skipped: the "
        "job failed, so there is nothing to send."
    )
    attempts: int = Field(0, description="Tries made so far.")
    last_error: str | None = Field(None, description="Why the last try failed.")


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
    delivery: Delivery | None = None
    # The digest of the API key that made the job (gateway.security), kept in the record and
    # never sent: other keys are told the job does not exist. None when keys are off.
    owner: SkipJsonSchema[str | None] = None

    # No return annotation, on purpose: with one, pydantic documents the annotation (an
    # untyped dict) in place of Job's fields in the API's schema.
    @model_serializer(mode="wrap")
    def _owner_only_in_the_record(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ):
        data = handler(self)
        if not (info.context or {}).get(RECORD) and isinstance(data, dict):
            data.pop("owner", None)
        return data

    def record_json(self) -> str:
        """The job as the store keeps it, owner included; every other dump leaves it out."""
        return self.model_dump_json(context={RECORD: True})


class SeedPrediction(BaseModel):
    """The original project's `POST /predict` response shape, kept for its clients, with the
    out-of-distribution warning leading when the image is not like the training data."""

    message: str | None = Field(
        None, description="Set, and to be shown before the prediction, when out of distribution."
    )
    assessment: Assessment = "not_assessed"
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
