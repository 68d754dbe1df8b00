"""Every way the gateway is started leaves X-Forwarded-For to the gateway's own setting.

uvicorn believes `X-Forwarded-For` from 127.0.0.1 unless told otherwise, so any local client
could pick its own rate-limit and idempotency scope. Each start command turns uvicorn's proxy
handling off; the gateway applies `PNEUMO_TRUSTED_PROXIES` itself (gateway.security).
"""

from __future__ import annotations

import re

import pytest

from tests.deploy.conftest import REPO_ROOT

START_FILES = [
    "deploy/gateway.Dockerfile",
    "deploy/k8s/gateway.yaml",
    "worker/serving/launcher.py",
    "docker-compose.yml",
    "bench/processes.py",
]
# A command's first word: `uvicorn ...` in a shell script, "uvicorn" in a JSON/YAML/Python list.
UVICORN_START = re.compile(r'^\s*uvicorn\s|"uvicorn"')


@pytest.mark.parametrize("relative", START_FILES)
def test_each_uvicorn_start_command_turns_proxy_headers_off(relative: str) -> None:
    lines = (REPO_ROOT / relative).read_text().splitlines()
    starts = [index for index, line in enumerate(lines) if UVICORN_START.search(line)]
    assert starts, f"no uvicorn start command found in {relative}"
    for index in starts:  # a command may wrap onto its next lines (bench's argument list)
        command = " ".join(lines[index : index + 3])
        assert "--no-proxy-headers" in command, f"{relative}:{index + 1}"


@pytest.mark.parametrize("relative", [name for name in START_FILES if name != "bench/processes.py"])
def test_each_gateway_start_command_runs_the_head_deadline_protocol(relative: str) -> None:
    # The benchmark's UvicornProcess adds it for the gateway only (its baseline is seed-like).
    text = (REPO_ROOT / relative).read_text()
    assert "--http" in text and "gateway.http_protocol:HeadDeadlineProtocol" in text, relative


def test_pneumo_gateway_turns_proxy_headers_off() -> None:
    source = (REPO_ROOT / "gateway" / "cli.py").read_text()
    assert "uvicorn.run(" in source and "proxy_headers=False" in source
    assert "http=PROTOCOL_PATH" in source


def test_no_start_command_trusts_forwarded_headers_from_everyone() -> None:
    for relative in [*START_FILES, "gateway/cli.py"]:
        text = (REPO_ROOT / relative).read_text()
        assert not re.search(r"forwarded[-_]allow[-_]ips\W+\*", text, re.IGNORECASE), relative
