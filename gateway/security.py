"""Who is asking, decided before a byte of the body is read; the headers every answer carries.

FastAPI reads a multipart body (spooling it to temporary files) before it resolves a route's
dependencies, so a key checked in a dependency is checked after the upload was taken in.
`Guard` is a plain ASGI middleware in front of the body limit and the routes: it identifies
the caller from the headers alone, answers 401 (with `WWW-Authenticate`) or 429 without
reading the body, and leaves the caller in the request's state for the routes
(`gateway.deps.CallerDep`).

With API keys on, a caller is its key: jobs carry the digest of the key that made them
(`Job.owner`) and other keys are told the job does not exist. Logs and metrics name keys by
their configured name, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.prometheus_metrics import Metrics
from gateway.rate_limit import RateLimiter
from gateway.request_body import CLOSE_CONNECTION
from shared.config import Settings
from shared.errors import AppError, StoreUnavailable, Unauthorized

log = logging.getLogger(__name__)

# Open with keys on: the page and its files (they hold no data; the page asks for the key),
# liveness and readiness probes, and the API's own documentation.
OPEN_PATHS = frozenset(
    {"/", "/model-card", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc",
     "/openapi.json"}
)  # fmt: skip
OPEN_PREFIXES = ("/static/",)
# Each POST here is a submission, counted against the caller's rate limit before it is read.
SUBMISSION_PATHS = frozenset({"/v1/jobs", "/v1/batches", "/predict", "/dicomweb/studies"})
CHALLENGE = b'Bearer realm="pneumo", charset="UTF-8"'
UNAUTHORIZED_MESSAGE = "A valid API key is required (X-API-Key or Authorization: Bearer)."
ANONYMOUS = "anonymous"
UNAUTHENTICATED = "unauthenticated"

# The page loads only its own scripts and styles, draws pictures from blob: URLs it makes
# from fetched PNGs and the chosen file, and talks only to this gateway.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc pages load their scripts from a CDN and start them inline.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https:; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# Hex digits of a key's digest that name a job's owner (and the key's rate-limit scope).
OWNER_DIGITS = 32
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
COMMON_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def owner_of(key: str) -> str:
    """What a job made with `key` records as its owner (`Job.owner`)."""
    return digest(key)[:OWNER_DIGITS]


@dataclass(frozen=True)
class Caller:
    """Who is asking. `name` is for logs and metrics; `scope` keys rate limits and idempotency
    keys; `owner` (a digest of the key, None with keys off) is what a job records."""

    name: str
    scope: str
    owner: str | None = None

    def may_see(self, owner: str | None) -> bool:
        """With keys off everyone sees every job; with keys on, a key sees its own jobs only
        (not those made while keys were off either)."""
        if self.owner is None:
            return True
        return owner is not None and hmac.compare_digest(owner, self.owner)


class KeyRing:
    """The configured keys, held as digests, each with its name."""

    def __init__(self, named_keys: dict[str, str]):
        self.digests = [(name, digest(key)) for name, key in named_keys.items()]

    @property
    def open(self) -> bool:
        return not self.digests

    def identify(self, headers: Headers, peer: str) -> Caller | None:
        """The caller, or None for a missing or wrong key."""
        if self.open:
            return Caller(ANONYMOUS, f"address:{peer}")
        presented = headers.get("x-api-key") or bearer_token(headers.get("authorization"))
        if not presented:
            return None
        presented_digest = digest(presented)
        # Digests compared, every one, always: the time taken tells neither the key's length,
        # its prefix, nor which key matched. compare_digest refuses non-ASCII str, and digests
        # are hex whatever header text came.
        matches = [
            name for name, known in self.digests if hmac.compare_digest(presented_digest, known)
        ]
        if not matches:
            return None
        owner = presented_digest[:OWNER_DIGITS]  # owner_of(presented), digested once
        return Caller(matches[0], f"key:{owner}", owner)


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def needs_key(path: str) -> bool:
    return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)


class Guard:
    """Security headers on every answer; with keys on, 401 before anything else reads the
    request; the submission rate limit before the body is read. Counts requests per key name."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics):
        self.app = app
        self.keys = KeyRing(settings.named_api_keys)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        send = with_security_headers(send, DOCS_POLICY if path in DOCS_PATHS else PAGE_POLICY)
        peer = scope["client"][0] if scope.get("client") else "unknown"
        caller = self.keys.identify(Headers(scope=scope), peer)
        name = caller.name if caller else UNAUTHENTICATED
        send = self.counting(send, name)
        if caller is None and needs_key(path):
            log.info("Refused %s %s from %s: no valid API key", scope["method"], path, peer)
            await refusal(Unauthorized(UNAUTHORIZED_MESSAGE))(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        if caller is not None and scope["method"] == "POST" and path in SUBMISSION_PATHS:
            error = await self.admit(scope, caller)
            if error is not None:
                await refusal(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def admit(self, scope: Scope, caller: Caller) -> AppError | None:
        """One submission counted; the error to answer instead, if any."""
        state = scope["app"].state
        rate_limiter: RateLimiter = state.rate_limiter
        try:
            await rate_limiter.admit(state.store, caller.scope)
        except AppError as error:
            return error
        except RedisError as error:
            log.warning("Redis unavailable: %s", error)
            return StoreUnavailable("The job store is unavailable; try again shortly.")
        return None

    def counting(self, send: Send, name: str) -> Send:
        async def send_and_count(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.client_requests.labels(name, str(message["status"])).inc()
            await send(message)

        return send_and_count


def with_security_headers(send: Send, policy: str) -> Send:
    """Adds what the answer does not set itself; a 401 from anywhere gets its challenge."""
    added = [*COMMON_HEADERS, (b"content-security-policy", policy.encode())]

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            challenge = [(b"www-authenticate", CHALLENGE)] if message["status"] == 401 else []
            extra = [(name, value) for name, value in added + challenge if name not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return send_with_headers


def refusal(error: AppError) -> JSONResponse:
    """Answered with the body unread: the connection closes, else uvicorn reads (and drops)
    the rest of it, however long, to reach the next request."""
    headers = dict(CLOSE_CONNECTION)
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    return JSONResponse(error.to_dict(), status_code=error.status, headers=headers)
