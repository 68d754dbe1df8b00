"""Request bodies read within limits as they stream: size and time, counted on ASGI `receive`.

Counting bytes as they arrive, before Starlette's multipart parser spools them to temporary
files, holds a chunked body (no Content-Length) to the same limit as a declared one: the
gateway stops reading at the limit and never writes more than that to disk. A body must also
arrive in time, Apache mod_reqtimeout's way: `body_timeout_s`, plus a second for every
`body_min_rate` bytes received, so a client trickling a few bytes a second is cut off while a
large film on a slow link is not. Either refusal closes the connection, leaving the rest of
the body unread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive

from shared.errors import AppError, RequestTimeout, UploadTooLarge


class BodyRefused(StarletteHTTPException):
    """Raised from `receive`, so it leaves the multipart parser (which closes its temporary
    files) and FastAPI's body reading (which passes HTTP exceptions on) unchanged; carries the
    failure the client is answered with."""

    def __init__(self, failure: AppError):
        super().__init__(failure.status, failure.message, headers=CLOSE_CONNECTION)
        self.failure = failure


# Tells uvicorn to close the connection after the answer instead of reading the unread rest.
CLOSE_CONNECTION = {"Connection": "close"}


@dataclass
class BodyBudget:
    """What one request's body may still take: bytes up to `limit_bytes`, and time up to a
    deadline that each byte received moves on by 1/`min_rate` seconds."""

    limit_bytes: int
    timeout_s: float
    min_rate: float  # bytes per second
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=-1.0)
    received: int = 0

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.clock()

    def seconds_left(self) -> float:
        deadline = self.started + self.timeout_s + self.received / self.min_rate
        return deadline - self.clock()

    def count(self, size: int) -> None:
        """Raises `BodyRefused` (413) once the body passes the limit."""
        self.received += size
        if self.received > self.limit_bytes:
            raise BodyRefused(UploadTooLarge(f"The request exceeds {self.limit_bytes} bytes."))

    def too_slow(self) -> BodyRefused:
        return BodyRefused(
            RequestTimeout(
                f"The request body did not arrive in time ({self.received} bytes in "
                f"{self.clock() - self.started:.1f} s); the connection is closed."
            )
        )


def limited_receive(receive: Receive, budget: BodyBudget) -> Receive:
    """`receive`, refusing a body that outgrows the budget's bytes or time. Once the body is
    complete it passes messages (a disconnect) straight through: a long poll or a waiting
    `/predict` may listen as long as it likes."""
    complete = False

    async def receive_within_budget() -> Message:
        nonlocal complete
        if complete:
            return await receive()
        seconds_left = budget.seconds_left()
        if seconds_left <= 0:
            raise budget.too_slow()
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation
            # (the client hung up) that lands as `receive` completes.
            async with asyncio.timeout(seconds_left):
                message = await receive()
        except TimeoutError:
            raise budget.too_slow() from None
        if message["type"] == "http.request":
            budget.count(len(message.get("body", b"")))
            complete = not message.get("more_body", False)
        return message

    return receive_within_budget
