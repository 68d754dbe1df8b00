"""A real Orthanc PACS for the tests and the delivery benchmark (Debian's `orthanc` and
`orthanc-dicomweb`, `make pacs`): its own storage, a generated configuration on free ports, its
REST API for the checks; and `pneumo dicom-delivery`, which sends results to it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from bench.processes import ServerProcess, free_port

ORTHANC = shutil.which("Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AE_TITLE = "ORTHANC"
MISSING = (
    "Orthanc with its DICOMweb plugin is not installed (as root: make pacs, which runs "
    "apt-get install orthanc orthanc-dicomweb dicom3tools dcmtk)"
)
CHANGES_PAGE = 200


def installed() -> bool:
    return ORTHANC is not None and DICOMWEB_PLUGIN.exists()


class OrthancProcess(ServerProcess):
    """`Orthanc config.json`, ready when its REST API answers. `modalities`: name -> (AE title,
    port) of the DICOM peers on this machine it may send to (`send`)."""

    def __init__(self, directory: Path, modalities: dict[str, tuple[str, int]]):
        directory.mkdir(parents=True, exist_ok=True)
        self.dicom_port = free_port()
        config = directory / "orthanc.json"
        super().__init__([str(ORTHANC), str(config)], {}, directory / "orthanc.log",
                         ready_path="/system")  # fmt: skip
        config.write_text(json.dumps(self._config(directory, modalities), indent=2))

    def _config(self, directory: Path, modalities: dict[str, tuple[str, int]]) -> dict:
        return {
            "Name": "pneumo-test-pacs",
            "StorageDirectory": str(directory / "storage"),
            "IndexDirectory": str(directory / "index"),
            "HttpPort": self.port,
            "DicomPort": self.dicom_port,
            "DicomAet": AE_TITLE,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {
                name: [title, "127.0.0.1", port] for name, (title, port) in modalities.items()
            },
        }

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def upload(self, data: bytes) -> dict:
        """POST /instances: the instance stored, as Orthanc describes it (its `ID`, ...)."""
        answer = httpx.post(f"{self.url}/instances", content=data, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def send(self, modality: str, orthanc_id: str) -> dict:
        """Make Orthanc C-STORE a resource to a configured modality, waiting for the answer."""
        answer = httpx.post(f"{self.url}/modalities/{modality}/store",
                            json={"Resources": [orthanc_id], "Synchronous": True},
                            timeout=60)  # fmt: skip
        answer.raise_for_status()
        return answer.json()

    def study_instances(self, study_uid: str) -> list[dict]:
        """Every instance of the study, each as {ID, Modality, SOPClassUID, ...} (simplified
        tags)."""
        found = httpx.post(f"{self.url}/tools/find",
                           json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}},
                           timeout=30).json()  # fmt: skip
        return [{"ID": orthanc_id, **self.tags(orthanc_id)} for orthanc_id in found]

    def file(self, orthanc_id: str) -> bytes:
        return httpx.get(f"{self.url}/instances/{orthanc_id}/file", timeout=30).content

    def last_change(self) -> int:
        return int(httpx.get(f"{self.url}/changes", params={"last": ""}, timeout=10).json()["Last"])

    def new_instances(self, since: int) -> tuple[list[str], int]:
        """Orthanc ids of instances stored after change `since`, and the last change seen."""
        found = []
        while True:
            page = httpx.get(f"{self.url}/changes", params={"since": since,
                             "limit": CHANGES_PAGE}, timeout=10).json()  # fmt: skip
            found += [change["ID"] for change in page["Changes"]
                      if change["ChangeType"] == "NewInstance"]  # fmt: skip
            since = page["Last"]
            if page["Done"]:
                return found, since

    def tags(self, orthanc_id: str) -> dict:
        return httpx.get(f"{self.url}/instances/{orthanc_id}/simplified-tags", timeout=30).json()


class DeliveryProcess:
    """`pneumo dicom-delivery`, as an operator starts it, in its own process group."""

    def __init__(self, environment: dict[str, str], log_path: Path):
        self.environment, self.log_path = environment, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DeliveryProcess:
        command = [str(Path(sys.executable).parent / "pneumo"), "dicom-delivery", "--log-level",
                   "INFO"]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.environment, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip
        return self

    def __exit__(self, *_: object) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
