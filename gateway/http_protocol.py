"""The HTTP protocol the gateway runs under uvicorn: httptools' own, plus a deadline for each
request's head.

uvicorn times the idle gap between requests, but any byte cancels that timer, and nothing times
the request line and headers themselves: a client that sends a header byte every few seconds
holds its connection, and a slot of the server's, for ever. Here each request's head must arrive
within `PNEUMO_HEADER_TIMEOUT_S` of its first byte (for the first request, of the connection
opening); past it the client gets 408 and the connection is closed. Bodies have their own limits
(`gateway.request_body`). Start uvicorn with `--http gateway.http_protocol:HeadDeadlineProtocol`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from shared.config import get_settings

PROTOCOL_PATH = "gateway.http_protocol:HeadDeadlineProtocol"  # uvicorn's --http value
_TIMEOUT_BODY = b"The request's headers did not arrive in time."


class HeadDeadlineProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout_s = get_settings().header_timeout_s
        self.head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.head_deadline is None:  # the first byte of a kept-alive connection's next request
            self._start_head_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _start_head_deadline(self) -> None:
        self.head_deadline = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _cancel_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_too_slow(self) -> None:
        self.head_deadline = None
        if self.transport.is_closing():
            return
        self.transport.write(
            STATUS_LINE[408]
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\n" % len(_TIMEOUT_BODY)
            + b"connection: close\r\n\r\n"
            + _TIMEOUT_BODY
        )
        self.transport.close()
