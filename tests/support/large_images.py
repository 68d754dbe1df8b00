"""Films at the pixel limit's edge that compress to a few hundred kilobytes: 7,000 px 16-bit
and RGBA PNGs, the uploads that once took gigabytes to decode (issue 22).

Written scanline by scanline with PNG's "Up" filter, so making one takes a fraction of a
second and never holds the film itself: most rows repeat the one above (all-zero filtered
bytes), every `BAND_ROWS`-th row starts a new band of a ramp that shifts with the seed.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

BAND_ROWS = 250
FILTER_NONE, FILTER_UP = b"\x00", b"\x02"


def sixteen_bit_png(side: int = 7000, seed: int = 0) -> bytes:
    """Grayscale, 16 bits per sample."""

    def row(band: int) -> bytes:
        ramp = np.linspace(0, 60_000, side) + 97 * band + seed
        return ramp.astype(">u2").tobytes()

    return _png(side, bit_depth=16, colour_type=0, row=row, row_bytes=2 * side)


def rgba_png(side: int = 7000, seed: int = 0) -> bytes:
    """RGBA, 8 bits per sample, part transparent."""

    def row(band: int) -> bytes:
        gray = (np.linspace(0, 230, side) + 3 * band + seed) % 256
        alpha = np.where(np.arange(side) % 700 < 600, 255, 90)
        return np.stack([gray, gray, gray, alpha], axis=1).astype(np.uint8).tobytes()

    return _png(side, bit_depth=8, colour_type=6, row=row, row_bytes=4 * side)


def _png(side: int, bit_depth: int, colour_type: int, row, row_bytes: int) -> bytes:
    compressor = zlib.compressobj(6)
    repeated = FILTER_UP + bytes(row_bytes)
    parts = []
    for top in range(0, side, BAND_ROWS):
        parts.append(compressor.compress(FILTER_NONE + row(top // BAND_ROWS)))
        for _ in range(min(BAND_ROWS, side - top) - 1):
            parts.append(compressor.compress(repeated))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))
