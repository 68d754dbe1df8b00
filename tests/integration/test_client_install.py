"""The client stands alone: `pip install '.[client]'` into a fresh virtual environment gives
`pneumo submit|status` and `client.api`, with none of the server's frameworks installed, and that
client works against the real stack (the session's gateway and worker)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.processes import REPO_ROOT
from tests.support.images import phantom_png
from tests.support.processes import GatewayProcess

pytestmark = pytest.mark.slow

SERVER_ONLY_MODULES = ("tensorflow", "keras", "jax", "redis", "celery", "fastapi")
# What a wheel of the project is built from (pyproject.toml's packages, and its readme).
SOURCES = ("pyproject.toml", "README.md", "client", "shared", "gateway", "worker")


@dataclass(frozen=True)
class ClientVenv:
    directory: Path
    working_directory: Path  # outside the repository, so nothing imports the checkout's code

    def run(self, program: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.directory / "bin" / program), *arguments], cwd=self.working_directory,
            env=clean_environment(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def pneumo(self, gateway: GatewayProcess, *arguments: str) -> subprocess.CompletedProcess[str]:
        return self.run("pneumo", "--url", gateway.url, *arguments)


def clean_environment() -> dict[str, str]:
    """This process's environment less whatever would lead Python back to the project's venv."""
    leaks = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    environment = {key: value for key, value in os.environ.items() if key not in leaks}
    return environment | {"COLUMNS": "200", "NO_COLOR": "1"}


def copy_sources(destination: Path) -> Path:
    """The project's sources without build leftovers: pip builds a local directory in place, and a
    stale `build/` or `*.egg-info` there could slip old modules into the wheel."""
    leftovers = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    destination.mkdir()
    for name in SOURCES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=leftovers)
        else:
            shutil.copy2(source, destination / name)
    return destination


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClientVenv]:
    root = tmp_path_factory.mktemp("client-install")
    sources = copy_sources(root / "sources")
    venv = root / "venv"
    # `python -m venv` from inside a venv makes one on the base interpreter, without its packages.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", f"{sources}[client]"],
        cwd=root, env=clean_environment(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    yield ClientVenv(venv, root)


def test_the_client_install_has_none_of_the_server_frameworks(client_venv: ClientVenv) -> None:
    probe = (
        "import importlib, json\n"
        "importable = []\n"
        f"for name in {SERVER_ONLY_MODULES!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        continue\n"
        "    importable.append(name)\n"
        "import client.api\n"
        "print(json.dumps({'importable': importable, 'api': client.api.__file__}))\n"
    )
    result = client_venv.run("python", "-c", probe)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["importable"] == []
    assert Path(found["api"]).is_relative_to(client_venv.directory)


def test_pneumo_offers_only_what_the_client_can_run(client_venv: ClientVenv) -> None:
    result = client_venv.run("pneumo", "--help")
    assert result.returncode == 0, result.stderr
    commands = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("│ ")}
    assert {"submit", "status"} <= commands
    assert not {"gateway", "worker", "train", "train-demo", "audit", "bench"} & commands


def test_submit_and_status_against_the_real_stack(
    client_venv: ClientVenv, gateway: GatewayProcess
) -> None:
    film = client_venv.working_directory / "film.png"
    film.write_bytes(phantom_png(seed=91))
    submitted = client_venv.pneumo(gateway, "submit", str(film), "--format", "json")
    assert submitted.returncode == 0, submitted.stderr
    [row] = json.loads(submitted.stdout)
    status = client_venv.pneumo(
        gateway, "status", row["job_id"], "--wait", "30", "--format", "json"
    )
    assert status.returncode == 0, status.stderr
    job = json.loads(status.stdout)
    assert job["status"] == "succeeded", job
    assert job["result"]["label"] in ("NORMAL", "PNEUMONIA")
    assert 0.0 <= job["result"]["probability"] <= 1.0
