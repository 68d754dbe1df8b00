"""The gateway's guard (gateway.security) and the low-severity hardening of issue 22: the key
and the rate limit checked before a byte of the body is read, security headers on every
answer, forwarded headers believed only from trusted proxies, bounded echoes of client input,
ids checked before Redis, no heap addresses, no hosts or paths in /v1/models.

Against the real gateway app and a real Redis; the ASGI-level tests drive the app directly
with a `receive` that counts how much of the body was asked for.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.rate_limit import WINDOW_S, RateLimiter
from gateway.security import digest
from shared.config import Settings
from shared.store import AsyncStore
from tests.support.images import phantom_png
from tests.support.processes import WorkerProcess

pytestmark = pytest.mark.slow

KEY = "guard-key-3f9a71c2e8"
CHUNK = b"x" * 65536
BODY_HEADERS = [
    (b"content-type", b"multipart/form-data; boundary=guard"),
    (b"transfer-encoding", b"chunked"),
]


def gateway(settings: Settings, **changes: object) -> TestClient:
    from gateway.app import create_app

    return TestClient(create_app(settings.model_copy(update=changes)))


async def post_unread(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict]:
    """POST an endless chunked body straight into the ASGI app; fails if any of it is read."""
    started: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": [*BODY_HEADERS, *headers],
        "client": ("192.0.2.7", 40000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    await app(scope, receive, send)
    return started["status"], {k.decode(): v.decode() for k, v in started["headers"]}


@pytest.mark.parametrize(
    "path", ["/v1/jobs", "/v1/batches", "/predict", "/dicomweb/studies", "/dicomweb/studies/1.2.3"]
)
def test_no_key_is_refused_before_a_byte_of_the_body_is_read(settings: Settings, path: str) -> None:
    from gateway.app import create_app

    app = create_app(settings.model_copy(update={"api_keys": (KEY,)}))
    for headers in ([], [(b"x-api-key", b"wrong")]):
        status, answer_headers = asyncio.run(post_unread(app, path, headers))
        assert status == 401 and answer_headers["www-authenticate"].startswith("Bearer")


def test_a_rate_limited_client_is_refused_before_its_body_is_read(settings: Settings) -> None:
    from gateway.app import create_app

    app = create_app(settings.model_copy(update={"api_keys": (KEY,)}))
    now = float(uuid.uuid4().int % 10**9) * WINDOW_S  # a window nobody has counted in
    app.state.rate_limiter = limiter = RateLimiter(1, clock=lambda: now)

    async def over_the_limit() -> tuple[int, dict]:
        store = AsyncStore.from_url(settings.redis_url, settings.key_prefix, settings.job_ttl_s)
        app.state.store = store
        await limiter.admit(store, f"key:{digest(KEY)[:32]}")  # the one allowed this minute
        try:
            return await post_unread(app, "/v1/jobs", [(b"x-api-key", KEY.encode())])
        finally:
            await store.aclose()

    status, headers = asyncio.run(over_the_limit())
    assert status == 429 and int(headers["retry-after"]) > 0


SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture()
def keyed(settings: Settings) -> Iterator[TestClient]:
    with gateway(settings, api_keys=(KEY,)) as client:
        yield client


def test_every_answer_carries_the_security_headers(keyed: TestClient) -> None:
    answers = [
        keyed.get("/"), keyed.get("/model-card"), keyed.get("/static/app.js"),
        keyed.get("/healthz"), keyed.get("/v1/jobs/" + str(uuid.uuid4())),
        keyed.get("/v1/jobs/" + str(uuid.uuid4()), headers={"X-API-Key": KEY}),
        keyed.get("/no/such/path", headers={"X-API-Key": KEY}), keyed.get("/static/nope.js"),
        keyed.post("/v1/jobs", headers={"X-API-Key": KEY}),  # no file: 422
    ]  # fmt: skip
    assert {answer.status_code for answer in answers} >= {200, 401, 404, 422}
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value, (answer.url, name)
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, answer.url


def test_the_api_docs_get_a_policy_their_cdn_scripts_run_under(keyed: TestClient) -> None:
    docs = keyed.get("/docs")
    assert docs.status_code == 200 and "cdn.jsdelivr.net" in docs.text
    assert "https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]


def test_metrics_need_the_key_when_keys_are_on(keyed: TestClient) -> None:
    assert keyed.get("/metrics").status_code == 401
    assert "pneumo_queue_depth" in keyed.get("/metrics", headers={"X-API-Key": KEY}).text


def refused_by_rate_limit(client: TestClient, forwarded_for: str) -> bool:
    """A submission with an unknown method: counted by the guard, then refused (400), so
    nothing is stored whichever way it goes."""
    reply = client.post(
        "/v1/jobs",
        files={"file": ("x.png", b"unused")},
        data={"method": "none"},
        headers={"X-Forwarded-For": forwarded_for},
    )
    assert reply.status_code in (400, 429), reply.text
    return reply.status_code == 429


@pytest.mark.parametrize("trusted", [(), ("testclient",)], ids=["nobody", "the_proxy"])
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    settings: Settings, trusted: tuple[str, ...]
) -> None:
    now = float(uuid.uuid4().int % 10**9) * WINDOW_S
    with gateway(settings, rate_limit_per_minute=1, trusted_proxies=trusted) as client:
        client.app.state.rate_limiter = RateLimiter(1, clock=lambda: now)
        assert not refused_by_rate_limit(client, "203.0.113.1")
        # From an untrusted peer the header is ignored: the same peer, the same count.
        assert refused_by_rate_limit(client, "203.0.113.2") is (not trusted)


def test_echoed_input_is_cut_short(settings: Settings) -> None:
    with gateway(settings) as client:
        long_id = "a" * 65_000
        for answer in (
            client.get(f"/v1/jobs/{long_id}"),
            client.get(f"/v1/batches/{long_id}"),
            client.post(
                "/v1/jobs",
                files={"file": ("x.png", phantom_png(1, size=64))},
                data={"method": "m" * 900_000},
            ),  # fmt: skip
        ):
            assert answer.status_code in (400, 404), answer.text[:200]
            assert len(answer.json()["error"]["message"]) < 200


def test_ids_that_are_not_canonical_never_reach_redis(settings: Settings) -> None:
    """With Redis unreachable, a well-formed id gets 503 (it was looked up), a malformed 404."""
    with gateway(settings, redis_url="redis://127.0.0.1:1/0") as client:
        for collection in ("jobs", "batches"):
            assert client.get(f"/v1/{collection}/not-a-uuid").status_code == 404
            malformed = str(uuid.uuid4()).upper()
            assert client.get(f"/v1/{collection}/{malformed}").status_code == 404
            assert client.get(f"/v1/{collection}/{uuid.uuid4()}").status_code == 503


def test_no_heap_address_in_any_message(settings: Settings) -> None:
    not_really_a_png = b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20
    with gateway(settings) as client:
        answer = client.post("/v1/jobs", files={"file": ("x.png", not_really_a_png)})
    assert answer.status_code in (415, 422), answer.text
    assert not re.search(r"object at 0x|0x[0-9a-f]{6,}", answer.text)


def test_model_cards_name_no_worker_host_pid_or_path(
    api: TestClient, worker: WorkerProcess
) -> None:
    (card,) = api.get("/v1/models").json()["models"]
    assert isinstance(card["workers"], int) and card["workers"] >= 1

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, str):
            yield value

    for text in strings(card):
        assert not text.startswith(("/", "~/")) and "@" not in text, text
