"""One settings object for every process, read from `PNEUMO_*` environment variables."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
# What a key's name may be: it lands in logs and metric labels.
KEY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
# Where results go by C-STORE: AE title (1-16 characters, no backslash) @ host : port.
DICOM_DESTINATION = re.compile(r"[ -\[\]-~]{1,16}@[A-Za-z0-9.:\[\]_-]+:[0-9]{1,5}")
# DICOM PS3.5 AE: up to 16 characters of the default repertoire, no backslash or control codes.
AE_TITLE = re.compile(r"[ -\[\]-~]{1,16}")


class Settings(BaseSettings):
    """Frozen so a value read at start-up cannot drift while the process runs."""

    model_config = SettingsConfigDict(env_prefix="PNEUMO_", frozen=True, extra="ignore")

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis: the job records and the blobs, and the broker unless `broker_url` "
        "names another.",
    )
    broker_url: str | None = Field(
        None,
        description="The Celery broker, if not `redis_url`: `amqp://user:password@host:5672/vhost` "
        "for RabbitMQ (a quorum queue, publisher confirms, the broker's own acknowledgements; "
        "docs/scaling.md), or another `redis://` URL. Job records stay in `redis_url`.",
    )
    broker_depth_sample_ms: int = Field(
        500,
        gt=0,
        description="With a broker other than `redis_url`, the gateway asks it how many jobs wait "
        "(for `max_queue_depth` and /metrics) at most this often, however many submissions arrive.",
    )
    queue_name: str = Field(
        "pneumo", description="The Celery queue of job ids (a Redis list, or a RabbitMQ queue)."
    )
    key_prefix: str = Field("pneumo", description="Prefix of every Redis key the service writes.")
    redis_pool_size: int = Field(
        100,
        gt=0,
        description="Redis connections one gateway process opens at most for requests. A burst "
        "needing more waits for a free one (up to `redis_pool_wait_s`) rather than failing.",
    )
    redis_pool_wait_s: float = Field(
        5.0,
        gt=0,
        description="How long a gateway request waits for a free Redis connection before it "
        "gets 503 `store_unavailable`.",
    )
    store_memory_watermark: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Above this fraction of Redis's `maxmemory` the gateway refuses new jobs "
        "(503 `store_full`), keeping the rest for workers to finish the accepted ones; 1 turns "
        "the check off. No `maxmemory` set: never refused.",
    )
    store_memory_sample_ms: int = Field(
        250,
        gt=0,
        description="The gateway reads Redis's memory use (`INFO memory`) at most this often, "
        "however many submissions arrive.",
    )

    job_ttl_s: int = Field(86_400, gt=0, description="Every job key and blob expires after this.")
    blob_store: Literal["redis", "s3"] = Field(
        "redis",
        description="Where uploads, model inputs, maps and pictures live: `redis` beside the job "
        "records, or `s3`, objects in an S3-protocol store (`s3_*`; records stay in Redis). "
        "Credentials: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or the SDKs' default chain.",
    )
    s3_endpoint_url: str = Field(
        "",
        description="The S3 API's URL (`http://seaweedfs:8333`); empty: AWS's endpoint for "
        "`s3_region`.",
    )
    s3_bucket: str = Field("pneumo", description="The bucket holding the blobs (must exist).")
    s3_region: str = Field("us-east-1", description="The bucket's region (signs requests).")
    s3_prefix: str = Field(
        "pneumo", description="Objects are `{s3_prefix}/{job id}/{blob name}` in the bucket."
    )
    s3_presign: bool = Field(
        False,
        description="With `blob_store=s3`: `overlay.png` and `heatmap.png` answer 307 to a "
        "presigned URL of the kept picture (anyone holding it may fetch it until it expires) "
        "instead of passing the bytes through the gateway.",
    )
    s3_public_endpoint_url: str = Field(
        "",
        description="The S3 endpoint clients reach, which presigned URLs are signed for (say "
        "`https://objects.example.org`); empty: `s3_endpoint_url`.",
    )
    s3_presign_expiry_s: int = Field(
        300, gt=0, le=604_800, description="How long a presigned picture URL is valid."
    )
    s3_timeout_s: float = Field(
        10.0,
        gt=0,
        description="One S3 request's limit, retries included; past it a submission gets 503 "
        "`blob_store_unavailable` and a worker hands its batch back.",
    )
    max_upload_bytes: int = Field(
        20 * 1024 * 1024, gt=0, description="Larger uploads are refused (413 `upload_too_large`)."
    )
    max_pixels: int = Field(
        50_000_000,
        gt=0,
        description="Images declaring more pixels are refused (413 `too_many_pixels`). 50 MP "
        "covers the largest radiographs (43x43 cm detectors at 0.1 mm are ~18 MP) with room to "
        "spare, and stops decompression bombs long before they allocate gigabytes.",
    )
    min_side: int = Field(32, gt=0, description="Smaller images carry no diagnostic content.")
    decode_memory_mb: int = Field(
        512,
        gt=0,
        description="Memory one process (a gateway, a worker) lets its image decodes hold at "
        "once, each counted from its header before decoding (`shared.decode_budget`); sized "
        "for a 1 GB gateway container. Uploads beyond it wait up to `decode_wait_s` (the "
        "worker's decodes wait their turn); one that alone needs more gets 413.",
    )
    decode_wait_s: float = Field(
        10.0,
        ge=0,
        description="How long an upload waits for decode memory before 503 `decode_busy` with "
        "Retry-After.",
    )
    display_max_side: int = Field(
        1024,
        ge=64,
        le=4096,
        description="Long side of the film copy kept for pictures (overlay, heatmap, the page's "
        "original), at the film's own aspect ratio and never larger than the film.",
    )
    predict_timeout_s: float = Field(
        30.0, gt=0, description="How long `POST /predict` waits before answering 504 `timeout`."
    )
    max_wait_s: float = Field(30.0, gt=0, description="Upper bound for ?wait= long polls.")
    max_queue_depth: int = Field(
        10_000, gt=0, description="With more jobs waiting, submissions get 503 `queue_full`."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request's line and headers must arrive within this many seconds of their "
        "first byte (or of the connection opening): slower clients get 408 and the connection is "
        "closed (`gateway.http_protocol`).",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request body must arrive within this many seconds, plus one more for "
        "every `body_min_rate` bytes received (Apache mod_reqtimeout's rule): slower clients "
        "get 408 `request_timeout` and the connection is closed.",
    )
    body_min_rate: int = Field(
        16 * 1024,
        gt=0,
        description="Bytes per second that extend `body_timeout_s`: a client sending at least "
        "this fast is never cut off, one trickling a few bytes a second is.",
    )
    max_batch_files: int = Field(64, gt=0, description="Most files in one `POST /v1/batches`.")
    max_batch_bytes: int = Field(
        100 * 1024 * 1024,
        gt=0,
        description="Most bytes in one `POST /v1/batches` (the request body limit there).",
    )

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

    # NoDecode: the environment holds `k1,k2` (split below), not the JSON pydantic-settings expects.
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated keys accepted in `X-API-Key` or `Authorization: Bearer`, "
        "each `name:key` or a plain `key`; empty: no key is asked for. With keys, each job "
        "belongs to the key that made it: other keys get 404 for it. Logs and metrics show the "
        "name (a plain key is named `key-` and a few hex digits of its digest), never the key.",
    )
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated addresses or networks (`10.0.0.0/8`) of reverse proxies "
        "whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed; empty: none are, so a "
        "client cannot pick its own rate-limit and idempotency scope.",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated origins browsers may call from; empty: CORS off."
    )
    dicom_allowed_aets: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated calling AE titles `pneumo dicom-listener` accepts "
        "associations from; others are rejected at association (calling AE title not "
        "recognised). Empty: any caller is accepted, and the listener warns so at start-up.",
    )
    dicom_api_key_name: str = Field(
        "",
        description="With API keys on, the name of the key (in `api_keys`) that owns the jobs "
        "`pneumo dicom-listener` makes, so that key can poll them and fetch their results over "
        "HTTP. Empty: no key sees them (their results still go to the PACS).",
    )
    rate_limit_per_minute: int = Field(
        0,
        ge=0,
        description="Submissions per client (API key, else address) per minute, 429 beyond; "
        "0 turns the limit off.",
    )
    dedupe_results: bool = Field(
        False,
        description="Answer a client's repeated image (same bytes, method and live model) with "
        "its earlier succeeded job instead of computing it again.",
    )
    dicom_destination: str = Field(
        "",
        description="Where DICOM results (SR + Secondary Capture) of jobs from the DICOM network "
        "are sent by C-STORE: `AET@host:port` of the PACS. Empty: not by DIMSE. Set at most one "
        "of this and `dicomweb_destination`; `pneumo dicom-delivery` sends.",
    )
    dicomweb_destination: str = Field(
        "",
        description="Where those results are sent by STOW-RS instead: the DICOMweb base URL "
        "(they are POSTed to `{url}/studies`). Empty: not by DICOMweb.",
    )
    delivery_ae_title: str = Field(
        "PNEUMO", description="The calling AE title DICOM results are sent from."
    )
    delivery_queue_name: str = Field(
        "pneumo-delivery", description="The Celery queue of job ids whose results to send."
    )
    delivery_attempts: int = Field(
        6, ge=1, description="Tries to send a job's results before its delivery is `failed`."
    )
    delivery_backoff_s: float = Field(
        2.0,
        gt=0,
        description="Wait before the second try; doubled for each further one, up to "
        "`delivery_backoff_max_s`.",
    )
    delivery_backoff_max_s: float = Field(
        300.0, gt=0, description="The longest wait between two tries."
    )
    delivery_timeout_s: float = Field(
        30.0, gt=0, description="Network timeout of one try (association, C-STORE, HTTP)."
    )
    delivery_poll_s: float = Field(
        0.5,
        gt=0,
        description="How often a delivery looks again whether its job has finished; sets the "
        "least delay from result to PACS.",
    )

    @field_validator(
        "api_keys", "cors_origins", "trusted_proxies", "dicom_allowed_aets", mode="before"
    )
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("api_keys")
    @classmethod
    def _names_are_unique(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        names = [name for name, _ in (split_named_key(entry) for entry in entries)]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"API key names must be unique; repeated: {', '.join(repeated)}")
        return entries

    @field_validator("dicom_allowed_aets")
    @classmethod
    def _ae_titles_are_valid(cls, titles: tuple[str, ...]) -> tuple[str, ...]:
        for title in titles:
            if not AE_TITLE.fullmatch(title):
                raise ValueError(
                    f"AE title {title!r} is not 1-16 printable ASCII characters without a "
                    "backslash."
                )
        return titles

    @property
    def named_api_keys(self) -> dict[str, str]:
        """name -> key, in the order configured."""
        return dict(split_named_key(entry) for entry in self.api_keys)

    @field_validator("dicom_destination")
    @classmethod
    def _destination_is_aet_at_host_port(cls, value: str) -> str:
        if value and not DICOM_DESTINATION.fullmatch(value):
            raise ValueError(f"dicom_destination {value!r} is not AET@host:port.")
        return value

    @model_validator(mode="after")
    def _one_destination(self) -> Settings:
        if self.dicom_destination and self.dicomweb_destination:
            raise ValueError("Set dicom_destination or dicomweb_destination, not both.")
        return self

    @model_validator(mode="after")
    def _dicom_key_is_configured(self) -> Settings:
        if self.dicom_api_key_name and self.dicom_api_key_name not in self.named_api_keys:
            raise ValueError(
                f"dicom_api_key_name {self.dicom_api_key_name!r} names no key in api_keys."
            )
        return self

    @model_validator(mode="after")
    def _time_limits_nest(self) -> Settings:
        soft, hard = self.batch_soft_time_limit_s, self.batch_hard_time_limit_s
        if not soft < hard < self.visibility_timeout_s:
            raise ValueError(
                f"Need batch_soft_time_limit_s ({soft}) < batch_hard_time_limit_s ({hard}) < "
                f"visibility_timeout_s ({self.visibility_timeout_s})."
            )
        return self


def split_named_key(entry: str) -> tuple[str, str]:
    """`name:key` -> (name, key); a plain key (or one whose text before a colon is no name)
    is named from its digest, so logs can tell keys apart without showing one."""
    name, colon, key = entry.partition(":")
    if colon and KEY_NAME.fullmatch(name):
        if not key:
            raise ValueError(f"The API key named {name!r} is empty.")
        return name, key
    return f"key-{hashlib.sha256(entry.encode()).hexdigest()[:8]}", entry


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the environment once per process; tests build `Settings(...)` directly instead."""
    return Settings()
