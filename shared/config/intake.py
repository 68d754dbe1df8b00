"""What the gateway accepts, and how long it waits: upload and decode limits, the display copy,
HTTP timeouts, long polls and the queue's length."""

from __future__ import annotations

from pydantic import BaseModel, Field


class IntakeSettings(BaseModel):
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
        "original), at the film's own aspect ratio and never larger than the film. A JPEG that "
        "a DCT-domain draft (1/2, 1/4, 1/8) brings to between three quarters of this and all "
        "of it keeps the draft's size, skipping a full decode and a resample.",
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
