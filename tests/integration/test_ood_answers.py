"""The out-of-distribution answer over HTTP, from a real worker serving a model with a gate
(`gated_stack`): the job JSON, `/predict` and `/metrics`. The page and `pneumo` show the same
answer in test_web.py and test_cli.py.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.schemas import OUT_OF_DISTRIBUTION_MESSAGE, JobError, JobStatus
from shared.store import SyncStore, Write, new_job, parse_job

pytestmark = pytest.mark.slow
WAIT_S = 60


def submit_and_wait(client: httpx.Client, image: bytes) -> dict:
    submitted = client.post("/v1/jobs", files={"file": ("film.png", image, "image/png")})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    job = client.get(f"/v1/jobs/{job_id}", params={"wait": WAIT_S}, timeout=WAIT_S + 10).json()
    assert job["status"] == "succeeded", job
    return job


def results_total(client: httpx.Client) -> dict[str, float]:
    reply = client.get("/metrics")
    assert reply.status_code == 200
    for family in text_string_to_metric_families(reply.text):
        if family.name == "pneumo_results":
            return {
                sample.labels["assessment"]: sample.value
                for sample in family.samples
                if sample.name == "pneumo_results_total"
            }
    raise AssertionError("/metrics has no pneumo_results_total")


def test_results_say_whether_the_image_resembles_the_training_data(gated_stack) -> None:
    with httpx.Client(base_url=gated_stack.gateway.url) as client:
        typical = submit_and_wait(client, gated_stack.model.typical_film)["result"]
        foreign = submit_and_wait(client, gated_stack.model.noise_field)["result"]
    assert typical["assessment"] == "in_distribution" and typical["ood"]["flagged"] is False
    assert typical["ood"]["score"] <= typical["ood"]["threshold"]
    assert foreign["assessment"] == "out_of_distribution" and foreign["ood"]["flagged"] is True
    assert foreign["ood"]["score"] > foreign["ood"]["threshold"]
    assert foreign["ood"]["threshold"] == pytest.approx(gated_stack.model.threshold)
    # Kept for the record, not hidden.
    assert foreign["label"] in ("NORMAL", "PNEUMONIA") and 0 <= foreign["probability"] <= 1


def test_predict_leads_with_the_warning_when_flagged(gated_stack) -> None:
    with httpx.Client(base_url=gated_stack.gateway.url, timeout=WAIT_S + 10) as client:
        flagged = client.post("/predict", files={"file": ("a.png", gated_stack.model.noise_field)})
        typical = client.post("/predict", files={"file": ("b.png", gated_stack.model.typical_film)})
    assert flagged.status_code == 200 and typical.status_code == 200
    assert next(iter(flagged.json())) == "message"  # the JSON leads with it
    assert flagged.json()["message"] == OUT_OF_DISTRIBUTION_MESSAGE
    assert flagged.json()["assessment"] == "out_of_distribution"
    assert flagged.json()["prediction"] in ("Pneumonia", "Normal")
    assert typical.json()["message"] is None
    assert typical.json()["assessment"] == "in_distribution"


def test_metrics_count_results_by_assessment_as_workers_finish_them(gated_stack) -> None:
    """Counted where the result is written, so jobs no client reads are counted too."""
    with httpx.Client(base_url=gated_stack.gateway.url) as client:
        before = results_total(client)
        assert set(before) == {"in_distribution", "out_of_distribution", "not_assessed"}
        submit_and_wait(client, gated_stack.model.typical_film)
        submit_and_wait(client, gated_stack.model.noise_field)
        submit_and_wait(client, gated_stack.model.noise_field)
        after = results_total(client)
    assert after["in_distribution"] - before["in_distribution"] == 1
    assert after["out_of_distribution"] - before["out_of_distribution"] == 2
    assert after["not_assessed"] == before["not_assessed"]


def test_a_repeated_final_write_is_not_counted_again(gated_stack) -> None:
    """A redelivered job finished twice: the store refuses the second final write, and its
    count with it."""
    with httpx.Client(base_url=gated_stack.gateway.url) as client:
        job = submit_and_wait(client, gated_stack.model.noise_field)
        before = results_total(client)
        client_redis = gated_stack.redis.client()
        store = SyncStore(client_redis, "pneumo", ttl_s=600)
        stored = parse_job(job["job_id"], client_redis.get(f"pneumo:job:{job['job_id']}"))
        assert stored is not None
        assert store.write_unless_final([Write(stored), Write(stored)]) == [False, False]
        assert results_total(client) == before


def test_failed_jobs_are_not_results(gated_stack) -> None:
    """A job that fails carries no result and no assessment: nothing is counted."""
    with httpx.Client(base_url=gated_stack.gateway.url) as client:
        before = results_total(client)
        store = SyncStore(gated_stack.redis.client(), "pneumo", ttl_s=600)
        job = new_job(str(uuid.uuid4()), 600)
        store.save([job], pending=True)
        failed = job.model_copy(
            update={"status": JobStatus.failed, "error": JobError(code="x", message="y")}
        )
        assert store.write_unless_final([Write(failed)]) == [True]
        assert results_total(client) == before
