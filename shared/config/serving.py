"""The workers: which model, on what hardware, in what batches, and how a lost or stuck batch
is recovered."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServingSettings(BaseModel):
    model_dir: Path = Field(
        REPO_ROOT / "models" / "demo",
        description="The artifact directory (`model.keras` + `model.json`) workers load.",
    )
    decision_threshold: float | None = Field(
        None, gt=0, lt=1, description="Overrides the operating point `model.json` records."
    )
    # Accelerator and CPU tuning for workers (see worker/serving/device.py).
    mixed_precision: bool = Field(False, description="bfloat16 compute on GPUs that have it.")
    xla: bool = Field(False, description="XLA-compile the TensorFlow predict-and-explain call.")
    intra_op_threads: int = Field(0, ge=0, description="0: one per visible core.")
    intake_threads: int = Field(
        0,
        ge=0,
        description="Threads decoding a batch's uploads that came without a model input from "
        "the gateway (shared.handoff); Pillow releases the GIL while decoding, so they decode in "
        "parallel while the model waits. 0: one per visible core.",
    )
    inter_op_threads: int = Field(0, ge=0, description="0: two (one model call at a time).")
    batch_size: int = Field(16, gt=0, description="Most jobs in one model call.")
    batch_wait_ms: int = Field(
        10, ge=0, description="Most an idle worker waits for batch-mates before a model call."
    )
    batches_in_flight: int = Field(
        1,
        ge=1,
        le=4,
        description="Batches a worker runs side by side, one pool thread each "
        "(worker.serving.batching): at 2, one reads and writes Redis while the other is in the "
        "model. Model calls still take turns.",
    )
    heartbeat_s: float = Field(
        5.0, gt=0, description="How often a worker announces itself and its model card."
    )
    visibility_timeout_s: int = Field(
        300,
        gt=0,
        description="An unacknowledged job is handed to another worker after this long: keep "
        "it above the slowest batch, or a healthy worker's job is delivered twice.",
    )
    broker_ack_emulation: bool = Field(
        True,
        description="kombu records each delivered message in Redis and deletes the record on "
        "acknowledgement (worker.serving.transport writes both once per fetch and once per "
        "batch, not per message), so that a killed worker's prefetched messages come back after "
        "the visibility timeout. Off, the pending-job sweeper (worker.serving.recovery) alone "
        "brings them back, after the same timeout counted from when the job was queued. Off "
        "pays where the broker, not the model, bounds a worker (a GPU: bench/RESULTS.md); a "
        "clean shutdown hands prefetched messages back either way.",
    )
    broker_multi_pop: bool | Literal["auto"] = Field(
        "auto",
        description="The worker receives up to its prefetch limit per Redis round trip "
        "(worker.serving.transport, BLMPOP: Redis 7.0 or later) instead of one message per "
        "round trip. `auto`: where the broker has BLMPOP; true: a worker whose broker lacks it "
        "refuses to start; false: one message per round trip (BRPOP).",
    )
    library_overrides: Literal["auto", "require", "off"] = Field(
        "auto",
        description="The worker's transport and batching override private methods of kombu and "
        "celery-batches, each written for the version pyproject.toml pins "
        "(worker.serving.overrides). `auto`: each runs where its library is that version; "
        "elsewhere the worker logs a warning and runs the library's own code, slower per job "
        "(one message per round trip, one transaction per acknowledgement, batches on a timer). "
        "`require`: a worker with another version refuses to start. `off`: always the "
        "libraries' own code.",
    )
    max_deliveries: int = Field(
        3,
        gt=0,
        description="A job started this many times without finishing (its worker died, or its "
        "batch could not be written each time) ends failed with code `worker_lost` instead of "
        "circling for ever.",
    )
    # Celery's time limits need a pool that can kill a child; ours (solo/threads) cannot, so the
    # worker enforces these per batch. Both stay below the visibility timeout, so an overrunning
    # batch is never also running elsewhere.
    batch_soft_time_limit_s: float = Field(
        120.0,
        gt=0,
        description="Past it, a batch is handed back to the queue at its next step boundary.",
    )
    batch_hard_time_limit_s: float = Field(
        180.0, gt=0, description="Past it, the worker process exits (a batch stuck in C code)."
    )

    @model_validator(mode="after")
    def _time_limits_nest(self) -> ServingSettings:
        soft, hard = self.batch_soft_time_limit_s, self.batch_hard_time_limit_s
        if not soft < hard < self.visibility_timeout_s:
            raise ValueError(
                f"Need batch_soft_time_limit_s ({soft}) < batch_hard_time_limit_s ({hard}) < "
                f"visibility_timeout_s ({self.visibility_timeout_s})."
            )
        return self
