"""Prometheus metrics, one registry per app so several apps (tests) never collide."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.schemas import Assessment


class StoredResultCounts(Collector):
    """`pneumo_results_total{assessment}`: results finished by any worker, counted in the
    store by each job's final write (`shared.store.scripts`), not by this gateway, which sees
    only the results clients read. Every gateway reports the same totals: aggregate across
    gateways with max(), not sum(). Set `counts` from the store before each scrape."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "pneumo_results",
            "Results finished, by assessment: out_of_distribution (the image does not resemble "
            "the training data), in_distribution, not_assessed (a model without a gate).",
            labels=["assessment"],
        )
        for assessment in get_args(Assessment):
            family.add_metric([assessment], self.counts.get(assessment, 0))
        yield family


class StoredDeliveryCounts(Collector):
    """`pneumo_dicom_deliveries_total{outcome}`: DICOM result deliveries by outcome, counted in
    the store by the delivery process (`gateway.dicom_delivery`); like the result counts, the
    same totals from every gateway. `failed` rising means results that will not arrive."""

    OUTCOMES = ("delivered", "retried", "failed", "skipped")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "pneumo_dicom_deliveries",
            "DICOM result deliveries to the PACS, by outcome: delivered, retried (a try failed, "
            "another follows), failed (given up), skipped (the job failed: nothing to send).",
            labels=["outcome"],
        )
        for outcome in self.OUTCOMES:
            family.add_metric([outcome], self.counts.get(outcome, 0))
        yield family


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
        self.results = StoredResultCounts()
        self.registry.register(self.results)
        self.deliveries = StoredDeliveryCounts()
        self.registry.register(self.deliveries)
