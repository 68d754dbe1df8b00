"""Delivery lag (issue 20): from the C-STORE of a CR to `pneumo dicom-listener` until its SR is
stored in Orthanc, sent back by `pneumo dicom-delivery` (C-STORE). A Redis, one worker, the
listener, the delivery process and a real Orthanc, all on this machine.

Two runs: `--one-at-a-time` instances, each sent once the previous SR arrived (the lag of an
idle service), and a `--burst` sent back to back over one association (the lag with a queue).
The clock starts just before each C-STORE; an SR counts as arrived when Orthanc's change log
shows it (polled every `POLL_S`, so add up to that much to each figure).

    python -m bench.dicom_delivery_lag --one-at-a-time 30 --burst 30
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.uid import UID

from bench.dicom_intake import cr_file, phantom_pixels
from bench.orthanc import AE_TITLE, DeliveryProcess, OrthancProcess, installed
from bench.processes import (
    REPO_ROOT,
    RedisServer,
    ServerProcess,
    WorkerProcess,
    wait_for_workers,
    worker_environment,
)
from shared.config import Settings

CALLING_AE = "BENCHSCU"
CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"
POLL_S = 0.02


def instance(side: int, seed: int) -> bytes:
    """A 12-bit CR of a phantom radiograph, with its own study."""
    pixels = phantom_pixels(np.random.default_rng(seed), side, pneumonia=bool(seed % 2))
    return cr_file(pixels, side, seed)


class Arrivals:
    """When each study's SR showed up in Orthanc's change log."""

    def __init__(self, orthanc: OrthancProcess):
        self.orthanc, self.since = orthanc, orthanc.last_change()
        self.at: dict[str, float] = {}

    def wait_for(self, studies: set[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not studies <= self.at.keys():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(studies - self.at.keys())} SRs never arrived")
            new, self.since = self.orthanc.new_instances(self.since)
            seen = time.monotonic()
            for orthanc_id in new:
                tags = self.orthanc.tags(orthanc_id)
                if tags.get("SOPClassUID") == SR_STORAGE:
                    self.at[tags["StudyInstanceUID"]] = seen
            time.sleep(POLL_S)


def send(port: int, files: list[bytes], arrivals: Arrivals, one_at_a_time: bool) -> list[float]:
    """C-STORE each file over one association; the lag of each, in seconds."""
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(io.BytesIO(data)) for data in files]
    entity = AE(ae_title=CALLING_AE)
    entity.add_requested_context(CR_STORAGE, "1.2.840.10008.1.2.1")
    association = entity.associate("127.0.0.1", port, ae_title="PNEUMO")
    started: dict[str, float] = {}
    try:
        for dataset in datasets:
            started[dataset.StudyInstanceUID] = time.monotonic()
            assert int(association.send_c_store(dataset).Status) == 0
            if one_at_a_time:
                arrivals.wait_for({dataset.StudyInstanceUID}, 120)
    finally:
        association.release()
    arrivals.wait_for(set(started), 300)
    return [arrivals.at[study] - at for study, at in started.items()]


def summary(lags: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(lags, n=20, method="inclusive")
    return {"instances": len(lags), "p50_s": round(statistics.median(lags), 2),
            "p95_s": round(cuts[18], 2), "max_s": round(max(lags), 2)}  # fmt: skip


def measure(one_at_a_time: int, burst: int, side: int, model_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as scratch, RedisServer(Path(scratch)) as redis_server:
        root = Path(scratch)
        environment = worker_environment(redis_server.url, model_dir,
                                         PNEUMO_DICOM_ALLOWED_AETS=CALLING_AE)  # fmt: skip
        pacs = OrthancProcess(root / "orthanc", {}).start()
        environment["PNEUMO_DICOM_DESTINATION"] = f"{AE_TITLE}@127.0.0.1:{pacs.dicom_port}"
        worker = WorkerProcess(environment, root / "worker.log").start()
        listener = ServerProcess(
            [str(REPO_ROOT / ".venv" / "bin" / "pneumo"), "dicom-listener", "--port", "{port}"],
            environment, root / "listener.log",
        )  # fmt: skip
        try:
            wait_for_workers(redis_server.client(), 1, processes=[worker])
            listener.start()
            with DeliveryProcess(environment, root / "delivery.log"):
                arrivals = Arrivals(pacs)
                send(listener.port, [instance(side, 1000)], arrivals, True)  # warm-up
                single = [instance(side, seed) for seed in range(one_at_a_time)]
                queued = [instance(side, 500 + seed) for seed in range(burst)]
                idle = send(listener.port, single, arrivals, True)
                busy = send(listener.port, queued, arrivals, False)
        finally:
            for process in (listener, worker, pacs):
                process.stop()
    default_poll_s = Settings.model_fields["delivery_poll_s"].default
    poll_s = float(environment.get("PNEUMO_DELIVERY_POLL_S", default_poll_s))
    return {"side_px": side, "one_at_a_time": summary(idle), "burst": summary(busy),
            "delivery_poll_s": poll_s}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one-at-a-time", type=int, default=30)
    parser.add_argument("--burst", type=int, default=30)
    parser.add_argument("--side", type=int, default=1024, help="film side in pixels")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models" / "demo")
    arguments = parser.parse_args()
    if not installed():
        raise SystemExit("Orthanc is not installed: make pacs")
    print(json.dumps(measure(arguments.one_at_a_time, arguments.burst, arguments.side,
                             arguments.model_dir)))  # fmt: skip


if __name__ == "__main__":
    main()
