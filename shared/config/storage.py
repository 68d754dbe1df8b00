"""Where jobs live and travel: Redis (records, blobs by default, the broker by default), another
broker, and S3-protocol object storage for blobs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class StorageSettings(BaseModel):
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
