"""One settings object for every process, read from `PNEUMO_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Frozen so a value read at start-up cannot drift while the process runs."""

    model_config = SettingsConfigDict(env_prefix="PNEUMO_", frozen=True, extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = "pneumo"
    key_prefix: str = "pneumo"

    job_ttl_s: int = Field(86_400, gt=0, description="Every job key and blob expires after this.")
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)
    # 50 MP covers the largest radiographs (43x43 cm detectors at 0.1 mm are ~18 MP) with room
    # to spare, and stops decompression bombs long before they allocate gigabytes.
    max_pixels: int = Field(50_000_000, gt=0)
    min_side: int = Field(32, gt=0, description="Smaller images carry no diagnostic content.")
    predict_timeout_s: float = Field(30.0, gt=0)
    max_wait_s: float = Field(30.0, gt=0, description="Upper bound for ?wait= long polls.")
    max_queue_depth: int = Field(10_000, gt=0)
    # One POST /v1/batches: at most this many files and bytes (the request body limit there).
    max_batch_files: int = Field(64, gt=0)
    max_batch_bytes: int = Field(100 * 1024 * 1024, gt=0)

    model_dir: Path = REPO_ROOT / "models" / "demo"
    decision_threshold: float | None = Field(None, gt=0, lt=1)

    # Accelerator and CPU tuning for workers (see worker/serving/device.py).
    mixed_precision: bool = Field(False, description="bfloat16 compute on GPUs that have it.")
    xla: bool = Field(False, description="XLA-compile the TensorFlow predict-and-explain call.")
    intra_op_threads: int = Field(0, ge=0, description="0: one per visible core.")
    # Pillow releases the GIL while decoding, so a batch's uploads without a model input from
    # the gateway (shared.handoff) are decoded in parallel threads while the model waits.
    intake_threads: int = Field(0, ge=0, description="0: one per visible core.")
    inter_op_threads: int = Field(0, ge=0, description="0: two (one model call at a time).")

    batch_size: int = Field(16, gt=0)
    batch_wait_ms: int = Field(10, ge=0)
    # Batches a worker runs side by side, one pool thread each (worker.serving.batching): at 2, one
    # reads and writes Redis while the other is in the model. Model calls still take turns.
    batches_in_flight: int = Field(1, ge=1, le=4)
    heartbeat_s: float = Field(5.0, gt=0)
    # An unacknowledged job is handed to another worker after this long: keep it above the
    # slowest batch, or a healthy worker's job is delivered twice.
    visibility_timeout_s: int = Field(300, gt=0)
    # kombu records each delivered message in Redis and deletes the record on acknowledgement
    # (worker.serving.transport writes both once per fetch and once per batch, not per message), so
    # that a killed worker's prefetched messages come back after the visibility timeout. Off, the
    # pending-job sweeper (worker.serving.recovery) alone brings them back, after the same timeout
    # counted from when the job was queued. Off pays where one worker takes 1,000+ jobs a
    # second (a GPU: bench/RESULTS.md); a clean shutdown hands prefetched messages back either way.
    broker_ack_emulation: bool = Field(True)
    # The worker receives up to its prefetch limit per Redis round trip (worker.serving.transport,
    # BLMPOP: Redis 7.0 or later) instead of one message per round trip. "auto": where the
    # broker has BLMPOP; true: a worker whose broker lacks it refuses to start.
    broker_multi_pop: bool | Literal["auto"] = Field("auto")
    # A job started this many times without finishing (its worker died, or its batch could not
    # be written each time) ends failed with code `worker_lost` instead of circling for ever.
    max_deliveries: int = Field(3, gt=0)
    # Celery's time limits need a pool that can kill a child; ours (solo/threads) cannot, so the
    # worker enforces these per batch: past the soft limit the batch is handed back to the queue
    # at the next step boundary, past the hard limit the process exits. Both stay below the
    # visibility timeout, so an overrunning batch is never also running elsewhere.
    batch_soft_time_limit_s: float = Field(120.0, gt=0)
    batch_hard_time_limit_s: float = Field(180.0, gt=0)

    # NoDecode: the environment holds `k1,k2` (split below), not the JSON pydantic-settings expects.
    api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Submissions per client (API key, else address) per minute; 0 turns the limit off.
    rate_limit_per_minute: int = Field(0, ge=0)
    # Answer a client's repeated image (same bytes, method and live model) with its earlier
    # succeeded job instead of computing it again.
    dedupe_results: bool = False

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @model_validator(mode="after")
    def _time_limits_nest(self) -> Settings:
        soft, hard = self.batch_soft_time_limit_s, self.batch_hard_time_limit_s
        if not soft < hard < self.visibility_timeout_s:
            raise ValueError(
                f"Need batch_soft_time_limit_s ({soft}) < batch_hard_time_limit_s ({hard}) < "
                f"visibility_timeout_s ({self.visibility_timeout_s})."
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the environment once per process; tests build `Settings(...)` directly instead."""
    return Settings()
