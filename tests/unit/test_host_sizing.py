"""The host sizing rule (`bench.sizing`, deploy/README.md) and the host benchmark's reading of
what bounds a run, on known answers."""

from __future__ import annotations

import pytest
import yaml

from bench.host import HostPlan, host_plan_sizing, run_bounds
from bench.processes import REPO_ROOT
from bench.sizing import GPU_WORKER_SETTINGS, HostSizing, host_sizing


@pytest.mark.parametrize(
    ("cores", "gpus", "gateways", "workers_per_gpu", "fraction"),
    [
        (16, 1, 9, 3, 0.3),  # the H100 host: 3 workers x 2 cores, Redis 1, 9 gateways
        (8, 1, 3, 2, 0.45),
        (4, 1, 1, 1, 0.9),
        (2, 1, 1, 1, 0.9),  # too few cores for the rule: one of each all the same
        (64, 8, 31, 2, 0.45),
        (96, 4, 71, 3, 0.3),  # never more than three per GPU
        (2, 0, 1, 1, None),  # the CI box: the model's thread pool takes the cores
        (32, 0, 4, 1, None),
    ],
)
def test_known_hosts(cores: int, gpus: int, gateways: int, workers_per_gpu: int,
                     fraction: float | None) -> None:  # fmt: skip
    sizing = host_sizing(cores, gpus)
    assert (sizing.gateway_processes, sizing.workers_per_gpu) == (gateways, workers_per_gpu)
    assert sizing.worker_memory_fraction == fraction
    assert sizing.worker_processes == workers_per_gpu * max(1, gpus)


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128])
@pytest.mark.parametrize("gpus", [0, 1, 2, 4, 8])
def test_every_host_gets_at_least_one_of_each_within_its_cores(cores: int, gpus: int) -> None:
    sizing = host_sizing(cores, gpus)
    assert sizing.gateway_processes >= 1 and 1 <= sizing.workers_per_gpu <= 3
    if gpus and cores >= 4 * gpus + 2:  # room for the rule's allowances: they fit the cores
        assert sizing.gateway_processes + 1 + 2 * sizing.worker_processes == cores
    if gpus:  # the workers of one card never ask for more than 90 % of it between them
        assert sizing.worker_memory_fraction is not None
        assert sizing.worker_memory_fraction * sizing.workers_per_gpu <= 0.9


def test_each_worker_is_pinned_to_its_gpu_with_bounded_memory() -> None:
    sizing = host_sizing(16, 2)  # two per GPU
    environments = [sizing.worker_gpu_environment(index) for index in range(4)]
    assert [env["CUDA_VISIBLE_DEVICES"] for env in environments] == ["0", "0", "1", "1"]
    assert {env["XLA_PYTHON_CLIENT_MEM_FRACTION"] for env in environments} == {"0.45"}
    assert {env["XLA_PYTHON_CLIENT_PREALLOCATE"] for env in environments} == {"false"}
    assert host_sizing(2, 0).worker_gpu_environment(0) == {}


def test_nonsense_hosts_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one core"):
        host_sizing(0, 1)
    with pytest.raises(ValueError, match="negative"):
        host_sizing(4, -1)


def test_a_plan_overrides_the_rule_and_the_memory_share_follows() -> None:
    plan = HostPlan.quick()
    overridden = host_plan_sizing(
        HostPlan(**{**plan.__dict__, "gateway_processes": 5, "workers_per_gpu": 2}), 16, 1
    )
    assert (overridden.gateway_processes, overridden.workers_per_gpu) == (5, 2)
    assert overridden.worker_memory_fraction == 0.45
    cpu_host = host_plan_sizing(HostPlan(**{**plan.__dict__, "workers_per_gpu": 2}), 2, 0)
    assert cpu_host.worker_processes == 2 and cpu_host.worker_memory_fraction is None


def test_compose_and_kubernetes_run_the_gpu_workers_settings() -> None:
    """The benchmark's GPU workers run as deployed: the same settings in both manifests."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    environment = compose["services"]["worker-gpu"]["environment"]
    assert {name: environment[name] for name in GPU_WORKER_SETTINGS} == GPU_WORKER_SETTINGS
    deployment = yaml.safe_load((REPO_ROOT / "deploy/k8s/worker.yaml").read_text())
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    values = {item["name"]: item.get("value") for item in env}
    assert {name: values[name] for name in GPU_WORKER_SETTINGS} == GPU_WORKER_SETTINGS


def load_run(img_s: float, gateway_ms: float, redis_ms: float, load_ms: float,
             host_busy: float = 0.1) -> dict:  # fmt: skip
    cpu = {"gateway": gateway_ms, "redis": redis_ms, "load generator": load_ms, "worker": 1.0}
    cpu["total"] = sum(cpu.values())
    return {"img_s": img_s, "cpu_ms": cpu, "load_processes": 2, "host_busy_share": host_busy}


SIXTEEN_CORES = HostSizing(cores=16, gpus=1, gateway_processes=9, workers_per_gpu=3,
                           worker_memory_fraction=0.3)  # fmt: skip


def test_the_busiest_kind_against_what_it_has_is_the_bound() -> None:
    # 3,000 img/s x 2.85 gateway CPU ms = 8.55 cores of 9 gateway processes.
    gateways = run_bounds(load_run(3000, 2.85, 0.1, 0.2), SIXTEEN_CORES, pool_img_s=6000)
    assert gateways["usage"]["gateway"] == 0.95 and gateways["bound"] == "gateway"
    # Redis: one core, 0.19 ms x 5,000 img/s.
    redis = run_bounds(load_run(5000, 1.0, 0.19, 0.1), SIXTEEN_CORES, pool_img_s=6000)
    assert redis["usage"]["redis"] == 0.95 and redis["bound"] == "redis"
    pool = run_bounds(load_run(5900, 1.0, 0.1, 0.1), SIXTEEN_CORES, pool_img_s=6000)
    assert pool["bound"] == "worker pool"
    shared_box = run_bounds(load_run(100, 1.0, 0.1, 0.1, host_busy=0.97), SIXTEEN_CORES, 6000)
    assert shared_box["bound"] == "host cores, all processes"


def test_a_run_with_nothing_busy_is_bound_by_latency() -> None:
    idle = run_bounds(load_run(50, 1.0, 0.1, 0.1), SIXTEEN_CORES, pool_img_s=6000)
    assert idle["bound"] == "latency (none busy)"
    assert all(0 <= share < 0.8 for share in idle["usage"].values())
