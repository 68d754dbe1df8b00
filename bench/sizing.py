"""How many gateway and worker processes one host runs, from its cores and GPUs.

The same rule is written down in deploy/README.md ("Sizing one host") and carried by
docker-compose.yml and deploy/k8s as comments and environment; `python -m bench --host` starts
a host sized by it unless told otherwise, and reports the CPU each kind of process spent per
image, which is what checks the rule's per-process allowances on a real machine.

Why these numbers (bench/RESULTS.md, one H100): one GPU worker process drains a quarter of
what its GPU's model does (about 2,800 of 12,000 img/s), bound by its own Python (the GIL held
in two thirds of the ticks), so more than one process shares each GPU. Each is allowed two
cores: its GIL-bound thread and the accelerator runtime's host threads beside it. Redis is
single-threaded: one core. The gateways get every core left, because end to end their JPEG
decode and HTTP handling cost more CPU per image than anything else on the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

CORES_PER_GPU_WORKER = 2
REDIS_CORES = 1
MAX_WORKERS_PER_GPU = 3  # ~3 x 2,800 img/s already passes half of one H100's model ceiling
# GPU memory the workers on one card may take between them; the rest is the benchmark's own
# in-process model (or, in production, headroom for the driver and a rolling update's twin).
GPU_MEMORY_SHARE_FOR_WORKERS = 0.9
# What every GPU worker runs with, as in docker-compose.yml's worker-gpu and deploy/k8s:
# batches of 128, no kombu per-message bookkeeping, many messages per Redis round trip and
# two batches in flight (each measured on one H100, bench/RESULTS.md).
GPU_WORKER_SETTINGS = {
    "PNEUMO_BATCH_SIZE": "128",
    "PNEUMO_BROKER_ACK_EMULATION": "false",
    "PNEUMO_BROKER_MULTI_POP": "true",
    "PNEUMO_BATCHES_IN_FLIGHT": "2",
}


@dataclass(frozen=True)
class HostSizing:
    cores: int
    gpus: int
    gateway_processes: int
    workers_per_gpu: int  # on a CPU host: the CPU worker processes
    # XLA_PYTHON_CLIENT_MEM_FRACTION per worker (JAX); None without a GPU.
    worker_memory_fraction: float | None

    @property
    def worker_processes(self) -> int:
        return self.workers_per_gpu * max(1, self.gpus)

    def worker_gpu_environment(self, worker_index: int) -> dict[str, str]:
        """The accelerator settings of the `worker_index`-th worker: its card, and model
        memory bounded so the card's workers fit beside each other."""
        if not self.gpus:
            return {}
        return {
            "CUDA_VISIBLE_DEVICES": str(worker_index // self.workers_per_gpu),
            # JAX: allocate on demand, and never past this share of the card.
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
            "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{self.worker_memory_fraction:.2f}",
            # TensorFlow: grow on demand (it has no per-process share by environment).
            "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        }


def host_sizing(cores: int, gpus: int) -> HostSizing:
    """The rule. GPU host: per GPU, as many workers (at most three) as half the cores allow
    at two cores each; one core for Redis; every other core a gateway process. CPU host: one
    worker (the model's own thread pool takes every core), a gateway per eight cores."""
    if cores < 1 or gpus < 0:
        raise ValueError(f"A host has at least one core and no negative GPUs; got {cores}, {gpus}.")
    if gpus == 0:
        return HostSizing(cores, 0, max(1, cores // 8), 1, None)
    half_the_cores_per_gpu = cores // 2 // gpus
    per_gpu = max(1, min(MAX_WORKERS_PER_GPU, half_the_cores_per_gpu // CORES_PER_GPU_WORKER))
    left = cores - REDIS_CORES - per_gpu * gpus * CORES_PER_GPU_WORKER
    return HostSizing(cores, gpus, max(1, left), per_gpu, worker_memory_fraction(per_gpu))


def worker_memory_fraction(workers_per_gpu: int) -> float:
    """Each worker's share of its card: the workers' share split evenly, rounded down."""
    return int(GPU_MEMORY_SHARE_FOR_WORKERS / workers_per_gpu * 100) / 100


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU set), where the OS says."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def visible_gpus() -> int:
    """NVIDIA GPUs nvidia-smi lists (CUDA_VISIBLE_DEVICES narrows them); 0 without either."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return 0
    try:
        listing = subprocess.run([command, "-L"], capture_output=True, text=True, timeout=30,
                                 check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return 0
    found = sum(line.startswith("GPU ") for line in listing.splitlines())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return found
    return min(found, len([device for device in visible.split(",") if device.strip()]))


def environment_lines(sizing: HostSizing) -> list[str]:
    """The sizing as docker-compose.yml's variables, for a `.env` on this host."""
    lines = [f"PNEUMO_GATEWAY_PROCESSES={sizing.gateway_processes}"]
    if sizing.gpus:
        lines += ["PNEUMO_CPU_WORKERS=0", f"PNEUMO_GPU_WORKERS={sizing.workers_per_gpu}",
                  f"PNEUMO_GPU_MEMORY_FRACTION={sizing.worker_memory_fraction:.2f}"]  # fmt: skip
    else:
        lines.append(f"PNEUMO_CPU_WORKERS={sizing.workers_per_gpu}")
    return lines


if __name__ == "__main__":  # `python3 -m bench.sizing`: this host's sizing, as .env lines
    found = host_sizing(usable_cores(), visible_gpus())
    print(f"# {found.cores} cores, {found.gpus} GPU(s): deploy/README.md, 'Sizing one host'")
    print("\n".join(environment_lines(found)))
