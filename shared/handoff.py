"""Arrays that travel between processes through Redis: the model input and the explanation map.

Decode once: the gateway must decode every upload anyway to refuse corrupt files, so it keeps
what it decoded as the model input (16 KB at 128 px, instead of a 300 KB JPEG to decode again)
and the worker goes straight to the model. The input is tagged with a fingerprint of the
preprocessing that made it; a worker whose model preprocesses differently (a rolling upgrade,
a gateway that saw no worker yet) ignores it and decodes the stored upload itself, so a model
never sees pixels prepared for another.

Render late: the worker stores the explanation map (1 KB) beside the input instead of two PNGs,
and the gateway draws a picture when a client first asks for it (`gateway.pictures`).

Arrays travel as a 6-byte header (dtype code, height, width) and their raw bytes: a GPU
worker unpacks and packs one of each per job, and numpy's .npy reader (a Python literal
parser for its header) cost more per job than the rest of the batch's bookkeeping together.
"""

from __future__ import annotations

import hashlib
import struct
from functools import lru_cache

import numpy as np

from shared.imaging import PreprocessParams

FINGERPRINT_LENGTH = 16
SEPARATOR = b"\n"
HEADER = struct.Struct("<2sHH")  # dtype code, height, width
DTYPE_CODES: dict[bytes, np.dtype] = {b"u1": np.dtype(np.uint8), b"f4": np.dtype("<f4")}
CODE_OF_DTYPE = {dtype: code for code, dtype in DTYPE_CODES.items()}


@lru_cache(maxsize=16)
def fingerprint(params: PreprocessParams) -> str:
    """Equal for exactly the parameter sets that turn the same file into the same pixels.
    Cached: a worker checks it for every job of every batch against the same parameters."""
    canonical = params.model_dump_json().encode()
    return hashlib.sha256(canonical).hexdigest()[:FINGERPRINT_LENGTH]


def pack_input(pixels: np.ndarray, params: PreprocessParams) -> bytes:
    return fingerprint(params).encode() + SEPARATOR + _to_bytes(pixels)


def unpack_input(data: bytes | None, params: PreprocessParams) -> np.ndarray | None:
    """The stored input if it was made by `params`' preprocessing and has their shape."""
    if data is None or data[:FINGERPRINT_LENGTH].decode(errors="replace") != fingerprint(params):
        return None
    pixels = input_pixels(data)
    size = params.image_size
    return pixels if pixels is not None and pixels.shape == (size, size) else None


def input_pixels(data: bytes) -> np.ndarray | None:
    """The stored input whatever made it (for pictures of what a model saw); None if unreadable."""
    pixels = _from_bytes(data[FINGERPRINT_LENGTH + len(SEPARATOR) :])
    return pixels if pixels is not None and pixels.dtype == np.uint8 and pixels.ndim == 2 else None


def pack_map(cam: np.ndarray) -> bytes:
    return _to_bytes(cam.astype(np.float32))


def unpack_map(data: bytes) -> np.ndarray | None:
    cam = _from_bytes(data)
    return cam if cam is not None and cam.dtype == np.float32 and cam.ndim == 2 else None


def _to_bytes(array: np.ndarray) -> bytes:
    header = HEADER.pack(CODE_OF_DTYPE[array.dtype], *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def _from_bytes(data: bytes) -> np.ndarray | None:
    """The array, or None for anything that is not exactly one (truncated, another format)."""
    if len(data) < HEADER.size:
        return None
    code, height, width = HEADER.unpack_from(data)
    dtype = DTYPE_CODES.get(code)
    if dtype is None or len(data) != HEADER.size + height * width * dtype.itemsize:
        return None
    return np.frombuffer(data, dtype, offset=HEADER.size).reshape(height, width)
