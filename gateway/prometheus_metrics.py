"""Prometheus metrics, one registry per app so several apps (tests) never collide."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "pneumo_http_requests_total",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pneumo_http_request_seconds",
            "HTTP request latency by route.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.jobs_submitted = Counter(
            "pneumo_jobs_submitted_total", "Jobs accepted into the queue.", registry=self.registry
        )
        self.jobs_rejected = Counter(
            "pneumo_jobs_rejected_total",
            "Uploads refused, by error code.",
            ["code"],
            registry=self.registry,
        )
        self.client_requests = Counter(
            "pneumo_client_requests_total",
            "HTTP requests by API key name (`anonymous` with keys off, `unauthenticated` "
            "without a valid key) and status.",
            ["client", "status"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "pneumo_queue_depth",
            "Jobs waiting in the broker queue (unacknowledged excluded).",
            registry=self.registry,
        )
        self.live_workers = Gauge(
            "pneumo_live_workers", "Workers with a recent heartbeat.", registry=self.registry
        )
