"""Reading a `multipart/related` body (RFC 2387), as STOW-RS sends DICOM instances: the parts
in order, each with its Content-Type, streamed through python-multipart's parser (Starlette's
form parser takes `multipart/form-data` only).

The body as a whole is limited and timed by `gateway.request_body` before a byte gets here; a
part larger than `part_limit` keeps only its first `part_limit + 1` bytes, enough to name the
instance it was, and says it was cut.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from shared.errors import InvalidRequest, TooManyFiles, UnsupportedContentType


@dataclass
class Part:
    content_type: str = ""
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0  # bytes received, kept or not

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def cut(self, limit: int) -> bool:
        return self.size > limit


def related_boundary(content_type: str | None, part_type: str) -> bytes:
    """The boundary of a `multipart/related; type="<part_type>"` body; 415 for anything else."""
    media_type, options = parse_options_header(content_type or "")
    declared = options.get(b"type", b"").decode("latin-1").strip().lower()
    boundary = options.get(b"boundary")
    if media_type.decode("latin-1").lower() != "multipart/related" or declared != part_type:
        raise UnsupportedContentType(
            f'This route takes multipart/related; type="{part_type}" with a boundary.'
        )
    if not boundary:
        raise InvalidRequest("The multipart/related Content-Type names no boundary.")
    return boundary


async def read_parts(
    body: AsyncIterator[bytes], boundary: bytes, part_limit: int, max_parts: int
) -> list[Part]:
    """Every part of the body, in order; each keeps at most `part_limit + 1` bytes."""
    parts: list[Part] = []
    header_field, header_value = bytearray(), bytearray()

    def on_part_begin() -> None:
        if len(parts) >= max_parts:
            raise TooManyFiles(f"The request holds more than {max_parts} instances.")
        parts.append(Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        if header_field.decode("latin-1").strip().lower() == "content-type":
            media_type, _ = parse_options_header(bytes(header_value))
            parts[-1].content_type = media_type.decode("latin-1").lower()
        header_field.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = parts[-1]
        room = part_limit + 1 - part.size
        if room > 0:
            part.chunks.append(data[start : min(end, start + room)])
        part.size += end - start

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data,
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end,
    })  # fmt: skip
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as error:
        raise InvalidRequest(f"The multipart/related body is malformed ({error}).") from None
    return parts
