"""Bodies limited as they stream, and slow clients cut off, against a real uvicorn gateway.

A raw socket sends what httpx will not: a 300 MB chunked upload (no Content-Length to refuse
up front) and a body that stalls. Meanwhile the test reads, from /proc, the bytes the gateway
holds in temporary files (its TMPDIR is the test's own directory).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import MULTIPART_OVERHEAD_BYTES
from shared.config import Settings
from tests.support.processes import GatewayProcess, RedisServer, wait_until, worker_environment
from tests.support.raw_http import (
    chunked,
    multipart_head,
    read_answer,
    request_head,
    send_until_answered,
    temp_file_bytes,
)

pytestmark = pytest.mark.slow

KEY = "streaming-limits-key"
ATTACK_BYTES = 300 * 1024 * 1024
CHUNK_BYTES = 256 * 1024
BODY_TIMEOUT_S = 1.0
HEADER_TIMEOUT_S = 1.0
SOCKET_BUFFERS_BYTES = 32 * 1024 * 1024


@pytest.fixture(scope="module")
def temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-tmp")


@pytest.fixture(scope="module")
def keyed_gateway(
    redis_server: RedisServer, tiny_model_dir: Path, temp_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:  # fmt: skip
    environment = worker_environment(
        redis_server.url, tiny_model_dir, PNEUMO_API_KEYS=KEY, TMPDIR=str(temp_dir),
        PNEUMO_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S), PNEUMO_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
    )  # fmt: skip
    log_path = tmp_path_factory.mktemp("gateway-logs") / "gateway.log"
    process = GatewayProcess(environment, log_path).start()
    yield process
    process.stop()


def held_on_disk(gateway: GatewayProcess, temp_dir: Path) -> int:
    assert gateway.process is not None
    return temp_file_bytes(gateway.process.pid, temp_dir)


@pytest.mark.parametrize(
    ("path", "limit_setting"),
    [("/v1/jobs", "max_upload_bytes"), ("/v1/batches", "max_batch_bytes")],
)
@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no_key"])
def test_a_chunked_300_mb_body_is_refused_at_the_limit_without_spooling_more(
    keyed_gateway: GatewayProcess, temp_dir: Path, path: str, limit_setting: str, with_key: bool
) -> None:
    limit = getattr(Settings(), limit_setting)
    headers = {"Transfer-Encoding": "chunked", **({"X-API-Key": KEY} if with_key else {})}
    answer = send_until_answered(
        keyed_gateway.port, request_head(path, headers), chunked(ATTACK_BYTES, CHUNK_BYTES),
        lambda: held_on_disk(keyed_gateway, temp_dir),
    )  # fmt: skip

    # Without a key, the guard answers before anything reads the body: not a byte on disk.
    expected = (413, "upload_too_large") if with_key else (401, "unauthorized")
    assert (answer.status, answer.error_code()) == expected, answer.body
    assert answer.headers.get("connection") == "close"
    # Stopped near the limit (loopback socket buffers take a few MB more): the rest of the
    # 300 MB was never read.
    assert answer.sent_bytes < limit + SOCKET_BUFFERS_BYTES
    assert answer.peak_temp_bytes < limit + CHUNK_BYTES
    if with_key:  # the measurement sees spooling when there is some
        assert answer.peak_temp_bytes > limit // 2
    else:
        assert answer.peak_temp_bytes == 0
    wait_until(lambda: held_on_disk(keyed_gateway, temp_dir) == 0, 30, "temp files closed")


def test_a_stalled_body_gets_408_and_the_connection_closed(keyed_gateway: GatewayProcess) -> None:
    # Three bytes of a declared kilobyte, then nothing: the server's deadline, not this test's
    # pace, ends it (the answer is awaited for an event with a generous timeout).
    body_start = multipart_head()[:3]
    head = request_head("/v1/jobs", {"Content-Length": "1024", "X-API-Key": KEY})
    answer = send_until_answered(keyed_gateway.port, head, iter([body_start]))

    assert answer.status == 408, answer.body
    assert answer.error_code() == "request_timeout"
    assert answer.headers.get("connection") == "close"


@pytest.mark.parametrize(
    "sent", [b"", b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API"], ids=["nothing", "half"]
)
def test_headers_that_do_not_arrive_in_time_get_408_and_the_connection_closed(
    keyed_gateway: GatewayProcess, sent: bytes
) -> None:
    # A client that connects and stalls, before or inside its headers: uvicorn alone would hold
    # the connection for ever (gateway.http_protocol); the server's deadline ends it.
    with socket.create_connection(("127.0.0.1", keyed_gateway.port)) as connection:
        connection.sendall(sent)
        answer = read_answer(connection)

    assert answer.status == 408, answer.body
    assert answer.headers.get("connection") == "close"


def test_a_declared_oversize_body_is_refused_unread(keyed_gateway: GatewayProcess) -> None:
    too_big = Settings().max_upload_bytes + MULTIPART_OVERHEAD_BYTES + 1
    head = request_head("/v1/jobs", {"Content-Length": str(too_big), "X-API-Key": KEY})
    answer = send_until_answered(keyed_gateway.port, head, iter([]))

    assert answer.status == 413 and answer.error_code() == "upload_too_large"
    assert answer.sent_bytes == 0
