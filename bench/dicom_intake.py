"""DICOM intake throughput: instances per second through `pneumo dicom-listener` into finished
jobs (issue 20). A Redis (AOF on, as deployed), one worker and one listener; a second process
sends N CR instances over A concurrent associations (C-STORE, Explicit VR Little Endian), and
the clock runs from its first C-STORE until the last job is final.

    python -m bench.dicom_intake --instances 500 --associations 4 --side 1024

Films: phantom radiographs (`worker.phantoms`) resized to `--side` px square, 12-bit
MONOCHROME2 CR; each instance has its own UIDs and the patient tags a real one carries.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from pydicom.uid import UID

from bench.processes import (
    REPO_ROOT,
    RedisServer,
    ServerProcess,
    WorkerProcess,
    wait_for_workers,
    worker_environment,
)

CALLING_AE = "BENCH"
COMPUTED_RADIOGRAPHY = UID("1.2.840.10008.5.1.4.1.1.1")
DISTINCT_FILMS = 16  # pixel sets; every instance still gets its own UIDs (no dedupe for DICOM)


def films(count: int, side: int, seed: int = 0) -> list[bytes]:
    """`count` CR Part 10 files cycling through `DISTINCT_FILMS` phantoms."""
    rng = np.random.default_rng(seed)
    pixel_sets = [
        phantom_pixels(rng, side, pneumonia=bool(index % 2))
        for index in range(min(count, DISTINCT_FILMS))
    ]
    return [cr_file(pixel_sets[index % len(pixel_sets)], side, index) for index in range(count)]


def phantom_pixels(rng: np.random.Generator, side: int, pneumonia: bool) -> bytes:
    """A phantom radiograph at `side` x `side`, as 12-bit stored values."""
    from PIL import Image

    from worker.phantoms.radiograph import generate_phantom

    phantom = generate_phantom(rng, 256, pneumonia=pneumonia).image
    large = Image.fromarray(phantom).resize((side, side), Image.Resampling.BILINEAR)
    return (np.asarray(large, dtype=np.uint16) * 16).tobytes()


def cr_file(pixel_data: bytes, side: int, index: int) -> bytes:
    """A 12-bit CR Part 10 file of its own study, as a sender has it; `index` names the
    (fictitious) patient."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from shared.dicom_results import part10

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = COMPUTED_RADIOGRAPHY
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = COMPUTED_RADIOGRAPHY
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.PatientName, dataset.PatientID = f"Bench^{index}", f"B{index}"
    dataset.Modality = "CR"
    dataset.Rows = dataset.Columns = side
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation, dataset.PixelData = 0, pixel_data
    return part10(dataset)


def send(port: int, instances: int, associations: int, side: int) -> dict:
    """The sending side (run in its own process): every instance C-STOREd, the statuses."""
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(io.BytesIO(data)) for data in films(instances, side)]
    statuses: list[int] = []
    lock = threading.Lock()

    def sender(share: list) -> None:
        ae = AE(ae_title=CALLING_AE)
        ae.add_requested_context(COMPUTED_RADIOGRAPHY, "1.2.840.10008.1.2.1")
        assoc = ae.associate("127.0.0.1", port, ae_title="PNEUMO")
        try:
            for dataset in share:
                status = int(assoc.send_c_store(dataset).Status)
                with lock:
                    statuses.append(status)
        finally:
            assoc.release()

    threads = [threading.Thread(target=sender, args=(datasets[offset::associations],))
               for offset in range(associations)]  # fmt: skip
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = time.time()
    counts = {f"0x{status:04X}": statuses.count(status) for status in sorted(set(statuses))}
    return {"started": started, "stores_done": finished, "statuses": counts}


def cpu_seconds(process: subprocess.Popen[bytes] | None) -> float:
    """User + system CPU of a process and its reaped children, from /proc."""
    assert process is not None, "not started"
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(instances: int, associations: int, side: int, model_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as scratch, RedisServer(Path(scratch)) as redis_server:
        environment = worker_environment(
            redis_server.url, model_dir, PNEUMO_DICOM_ALLOWED_AETS=CALLING_AE,
            PNEUMO_MAX_QUEUE_DEPTH=str(instances * 2),
        )  # fmt: skip
        worker = WorkerProcess(environment, Path(scratch) / "worker.log").start()
        listener = ServerProcess(
            [str(Path(sys.executable).parent / "pneumo"), "dicom-listener", "--port", "{port}"],
            environment, Path(scratch) / "listener.log",
        )  # fmt: skip
        try:
            client = redis_server.client()
            wait_for_workers(client, 1, processes=[worker])
            listener.start()
            cpu_before = {name: cpu_seconds(process) for name, process in
                          (("listener", listener.process), ("worker", worker.process))}  # fmt: skip
            sender = subprocess.run(
                [sys.executable, "-m", "bench.dicom_intake", "--send", str(listener.port),
                 "--instances", str(instances), "--associations", str(associations),
                 "--side", str(side)],
                cwd=REPO_ROOT, env=environment, capture_output=True, text=True, check=True,
            )  # fmt: skip
            sent = json.loads(sender.stdout)
            while client.zcard("pneumo:pending") > 0:  # every queued job is final
                time.sleep(0.02)
            all_final = time.time()
            cpu = {name: round((cpu_seconds(process) - cpu_before[name]) / instances * 1000, 1)
                   for name, process in (("listener", listener.process),
                                         ("worker", worker.process))}  # fmt: skip
            results = sum(int(count) for count in client.hvals("pneumo:results"))
        finally:
            listener.stop()
            worker.stop()
    stores_s = sent["stores_done"] - sent["started"]
    total_s = all_final - sent["started"]
    return {
        "instances": instances, "associations": associations, "side_px": side,
        "statuses": sent["statuses"], "succeeded_results": results,
        "c_store_instances_per_s": round(instances / stores_s, 1),
        "finished_jobs_per_s": round(instances / total_s, 1),
        "seconds_to_all_stored": round(stores_s, 2), "seconds_to_all_final": round(total_s, 2),
        "cpu_ms_per_instance": cpu,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--side", type=int, default=1024, help="film side in pixels")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models" / "demo")
    parser.add_argument("--send", type=int, metavar="PORT", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.send:
        result = send(arguments.send, arguments.instances, arguments.associations, arguments.side)
    else:
        result = measure(arguments.instances, arguments.associations, arguments.side,
                         arguments.model_dir)  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
