"""HTTP/1.1 by hand over a socket, for what httpx will not send: a chunked upload that never
ends, a stalled body, and a look at what the server process holds on disk meanwhile."""

from __future__ import annotations

import json
import os
import select
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

BOUNDARY = "raw-http-boundary"
# Long enough for any answer on a loaded CI box; the server's own timeouts are far shorter.
ANSWER_WAIT_S = 60.0


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent_bytes: int = 0
    peak_temp_bytes: int = 0
    samples: list[int] = field(default_factory=list)

    def error_code(self) -> str:
        return str(json.loads(self.body)["error"]["code"])


def multipart_head(field_name: str = "file") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field_name}"; '
        'filename="film.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()


def request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1",
             f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
             *(f"{name}: {value}" for name, value in headers.items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(total_bytes: int, chunk_bytes: int) -> Iterator[bytes]:
    """A multipart body of `total_bytes` zeros after the part's head, in chunked framing; it
    is made as it is sent, so a 300 MB body costs this process one chunk."""
    head = multipart_head()
    yield f"{len(head):x}\r\n".encode() + head + b"\r\n"
    zeros = bytes(chunk_bytes)
    for start in range(0, total_bytes, chunk_bytes):
        size = min(chunk_bytes, total_bytes - start)
        yield f"{size:x}\r\n".encode() + zeros[:size] + b"\r\n"
    yield b"0\r\n\r\n"


def send_until_answered(
    port: int, head: bytes, pieces: Iterator[bytes], sample: Callable[[], int] = lambda: 0
) -> Answer:
    """Send `pieces` until the server answers (or the body ends), sampling `sample` (bytes the
    server holds) after each piece; then read the answer."""
    sent, samples = 0, []
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(head)
        pending = b""
        while True:
            readable, writable, _ = select.select([connection], [connection], [], ANSWER_WAIT_S)
            samples.append(sample())
            if readable or not writable:
                break
            pending = pending or next(pieces, b"")
            if not pending:
                break
            try:
                written = connection.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent, pending = sent + written, pending[written:]
        answer = read_answer(connection)
    samples.append(sample())
    answer.sent_bytes, answer.samples, answer.peak_temp_bytes = sent, samples, max(samples)
    return answer


def read_answer(connection: socket.socket) -> Answer:
    """The response, read until the server closes the connection (every refusal here does)."""
    connection.settimeout(ANSWER_WAIT_S)
    received = b""
    while True:
        try:
            data = connection.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        received += data
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
    return Answer(int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body)


def temp_file_bytes(pid: int, temp_dir: Path) -> int:
    """Bytes in the files under `temp_dir` that process `pid` holds open, deleted or not (the
    multipart parser's spooled uploads are unlinked while open)."""
    total = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in os.listdir(fd_dir):
        try:
            if os.readlink(fd_dir / entry).startswith(str(temp_dir)):
                total += os.stat(fd_dir / entry).st_size
        except FileNotFoundError:  # closed between the listing and the look
            continue
    return total
