"""Nobody in, nothing leaked, nothing abused: keys, ids, CORS, logs, metadata, erasure, limits.

Against the real gateway app, a real Redis and the real worker process of tests/conftest.py.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from gateway.rate_limit import WINDOW_S, RateLimiter
from shared.config import Settings
from tests.support.images import encode, phantom, phantom_png
from tests.support.processes import REPO_ROOT, RedisServer, WorkerProcess, wait_until

pytestmark = pytest.mark.slow

KEYS = ("k1-7f3c9e1d2b", "k2-second-key-of-another-length")
OPEN_PATHS = {"/healthz", "/readyz"}


def gateway(settings: Settings, **changes: object) -> TestClient:
    from gateway.app import create_app

    return TestClient(create_app(settings.model_copy(update=changes)))


@pytest.fixture()
def keyed(settings: Settings, worker: WorkerProcess) -> Iterator[TestClient]:
    with gateway(settings, api_keys=KEYS) as client:
        yield client


def operations(client: TestClient) -> Iterator[tuple[str, str]]:
    job_id = str(uuid.uuid4())
    for template, methods in client.get("/openapi.json").json()["paths"].items():
        path = template.replace("{name}", "overlay")
        for method in methods:
            yield method.upper(), re.sub(r"\{[a-z_]+\}", job_id, path)


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"X-API-Key": KEYS[0][:-1]}, {"Authorization": "Bearer nope"},
     {"X-API-Key": b"caf\xe9"}, {"Authorization": KEYS[0]}],
    ids=["none", "wrong", "prefix", "wrong_bearer", "latin1", "no_bearer_scheme"],
)  # fmt: skip
def test_every_operation_but_health_needs_a_valid_key(
    keyed: TestClient, headers: dict[str, str]
) -> None:
    checked = 0
    for method, path in operations(keyed):
        files = {"file": ("x.png", phantom_png(1, size=64))} if method == "POST" else None
        response = keyed.request(method, path, headers=headers, files=files)
        if path in OPEN_PATHS:
            assert response.status_code != 401, path
            continue
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")
        checked += 1
    assert checked >= 8


def test_either_key_works_in_either_header(keyed: TestClient) -> None:
    for headers in ({"X-API-Key": KEYS[0]}, {"Authorization": f"Bearer {KEYS[1]}"}):
        response = keyed.post(
            "/v1/jobs", files={"file": ("x.png", phantom_png(2))}, headers=headers
        )
        assert response.status_code == 202, response.text
        assert keyed.get(response.headers["Location"], headers=headers).status_code == 200


def test_job_ids_carry_122_random_bits(api: TestClient) -> None:
    job_ids = [
        api.post("/v1/jobs", files={"file": ("x.png", phantom_png(3))}).json()["job_id"]
        for _ in range(10)
    ]
    parsed = [uuid.UUID(job_id) for job_id in job_ids]
    # Version 4, RFC 4122 variant: 128 bits less 6 fixed ones.
    assert all(item.version == 4 and item.variant == uuid.RFC_4122 for item in parsed)
    assert len(set(job_ids)) == len(job_ids)


def test_cors_is_off_unless_origins_are_configured(settings: Settings, api: TestClient) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in api.options("/v1/jobs", headers=preflight).headers
    assert "access-control-allow-origin" not in api.get("/healthz", headers=preflight).headers
    with gateway(settings, cors_origins=("https://ris.example",)) as client:
        allowed = {**preflight, "Origin": "https://ris.example"}
        answer = client.options("/v1/jobs", headers=allowed)
        assert answer.headers["access-control-allow-origin"] == "https://ris.example"
        refused = client.options("/v1/jobs", headers=preflight)
        assert "access-control-allow-origin" not in refused.headers


def png_with_text(pixels, marker: str) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", marker)
    return encode(Image.fromarray(pixels), "PNG", pnginfo=info)


def test_no_file_name_or_image_content_reaches_any_log(
    api: TestClient, worker: WorkerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    name, marker = "Doe-Jane-MRN-4821337.png", "PIXEL-MARKER-93af01"
    upload = png_with_text(phantom(4, True).image, marker)
    assert marker.encode() in upload
    caplog.set_level(logging.DEBUG)
    logged_before = len(worker.log_text())
    response = api.post("/v1/jobs", files={"file": (name, upload)})
    done = api.get(response.headers["Location"], params={"wait": 30}).json()
    assert done["status"] == "succeeded"
    # The worker did log this batch (just after its final write, which the long poll may beat)...
    wait_until(lambda: "succeeded" in worker.log_text()[logged_before:], 10, "the batch's log")
    worker_log = worker.log_text()[logged_before:]
    for text in (worker_log, caplog.text, str(done)):
        assert "MRN-4821337" not in text and marker not in text  # ...but not its name or bytes


def exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x010E] = "Jane Doe, born 1950-01-01"  # ImageDescription
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}  # GPS latitude
    return encode(Image.fromarray(phantom(5, True).image), "JPEG", exif=exif)


def png_chunk_types(data: bytes) -> list[bytes]:
    types, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        types.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return types


def test_stored_pictures_carry_no_metadata(api: TestClient) -> None:
    assert b"SecretCam" in exif_jpeg()
    response = api.post("/v1/jobs", files={"file": ("scan.jpg", exif_jpeg())})
    done = api.get(response.headers["Location"], params={"wait": 30}).json()
    for url in (done["explanation"]["overlay_url"], done["explanation"]["heatmap_url"]):
        picture = api.get(url).content
        assert set(png_chunk_types(picture)) <= {b"IHDR", b"IDAT", b"IEND"}, url
        assert not Image.open(io.BytesIO(picture)).getexif()
        assert b"SecretCam" not in picture and b"Jane" not in picture


def keys_of(redis_server: RedisServer, job_id: str) -> list[bytes]:
    """Every key whose name, value or members mention the job."""
    client, needle = redis_server.client(), job_id.encode()
    found = []
    for key in client.scan_iter("pneumo:*"):
        kind = client.type(key)
        value = client.get(key)[:4096] if kind == b"string" else b""
        member = kind == b"zset" and client.zscore(key, job_id) is not None
        if needle in key or needle in value or member:
            found.append(key)
    return found


def test_delete_erases_every_key_including_lookups(
    settings: Settings, worker: WorkerProcess, redis_server: RedisServer
) -> None:
    with gateway(settings, dedupe_results=True) as client:
        headers = {"Idempotency-Key": f"erase-{uuid.uuid4()}"}
        reply = client.post("/v1/jobs", files={"file": ("x.png", phantom_png(6))}, headers=headers)
        job_id = reply.json()["job_id"]
        assert client.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()["status"] == "succeeded"
        kinds = {key.split(b":")[1] for key in keys_of(redis_server, job_id)}
        assert kinds >= {b"job", b"blob", b"finals", b"idem", b"dedupe", b"refs"}
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert keys_of(redis_server, job_id) == []
        again = client.post("/v1/jobs", files={"file": ("x.png", phantom_png(6))}, headers=headers)
        assert again.status_code == 202 and again.json()["job_id"] != job_id


def test_every_key_of_a_job_expires_with_its_ttl(
    settings: Settings, worker: WorkerProcess, redis_server: RedisServer
) -> None:
    with gateway(settings, job_ttl_s=3) as client:
        headers = {"Idempotency-Key": f"ttl-{uuid.uuid4()}"}
        job_id = client.post("/v1/jobs", files={"file": ("x.png", phantom_png(7))},
                             headers=headers).json()["job_id"]  # fmt: skip
        client.get(f"/v1/jobs/{job_id}", params={"wait": 2.5})
        assert keys_of(redis_server, job_id)
        wait_until(lambda: keys_of(redis_server, job_id) == [], 10, "the job's keys to expire")
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404


def test_containers_run_as_non_root_and_redis_keeps_every_job() -> None:
    dockerfiles = sorted((REPO_ROOT / "deploy").glob("*.Dockerfile"))
    assert dockerfiles
    for dockerfile in dockerfiles:
        users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.MULTILINE)
        assert users and users[-1].split(":")[0] not in ("root", "0"), dockerfile.name
    config = (REPO_ROOT / "deploy" / "redis" / "redis.conf").read_text()
    for setting in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
        assert re.search(rf"^{setting}$", config, flags=re.MULTILINE), setting
    # `make run` and the all-in-one image start Redis with this same file.
    from worker.serving.launcher import REDIS_CONFIG

    assert REDIS_CONFIG == REPO_ROOT / "deploy" / "redis" / "redis.conf"


def test_queue_depth_limit_answers_503_and_stores_nothing(
    settings: Settings, redis_server: RedisServer
) -> None:
    queue = f"nobody-consumes-{uuid.uuid4().hex[:8]}"
    with gateway(settings, queue_name=queue, max_queue_depth=2) as client:
        replies = [
            client.post("/v1/jobs", files={"file": ("x.png", phantom_png(8))}) for _ in range(3)
        ]
        assert [reply.status_code for reply in replies] == [202, 202, 503]
        assert replies[2].json()["error"]["code"] == "queue_full"
        assert int(replies[2].headers["Retry-After"]) > 0
        assert redis_server.client().llen(queue) == 2
        for reply in replies[:2]:  # unfinished jobs: deleting them clears the pending index too
            assert client.delete(reply.headers["Location"]).status_code == 204
            assert keys_of(redis_server, reply.json()["job_id"]) == []
    redis_server.client().delete(queue)


def test_rate_limit_is_per_client_and_per_window(settings: Settings, worker: WorkerProcess) -> None:
    keys = (f"rate-1-{uuid.uuid4()}", f"rate-2-{uuid.uuid4()}")  # clients with no count yet
    now = [10 * WINDOW_S + 5.0]  # five seconds into a window, on the limiter's clock
    with gateway(settings, api_keys=keys, rate_limit_per_minute=3) as client:
        client.app.state.rate_limiter = RateLimiter(3, clock=lambda: now[0])
        first, second = ({"X-API-Key": key} for key in keys)
        image = {"file": ("x.png", phantom_png(9))}
        replies = [client.post("/v1/jobs", files=image, headers=first) for _ in range(4)]
        assert [reply.status_code for reply in replies] == [202, 202, 202, 429]
        assert replies[3].json()["error"]["code"] == "rate_limited"
        assert replies[3].headers["Retry-After"] == str(WINDOW_S - 5)  # when the window ends
        assert client.post("/v1/jobs", files=image, headers=second).status_code == 202
        now[0] += WINDOW_S - 5  # the next window
        assert client.post("/v1/jobs", files=image, headers=first).status_code == 202


def test_other_clients_cannot_reach_a_job_through_an_idempotency_key(keyed: TestClient) -> None:
    shared_key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    image = {"file": ("x.png", phantom_png(10))}
    job_ids = [
        keyed.post("/v1/jobs", files=image, headers={**shared_key, "X-API-Key": key}).json()[
            "job_id"
        ]
        for key in KEYS
    ]
    assert job_ids[0] != job_ids[1]
