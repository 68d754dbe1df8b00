"""A lossless JPEG (ITU T.81 process 14, first-order prediction) encoder for test files.

No encoder for it installs from PyPI (pydicom encodes RLE, JPEG-LS and JPEG 2000 only), and the
DICOM syntaxes JPEG Lossless and JPEG Lossless SV1 carry exactly this codestream: one
component, predictor 1 (the pixel to the left; the row above for a row's first pixel), point
transform 0, one Huffman table in which each of the 17 difference categories has a 5-bit code.
Written from the standard (H.1), so a decoder that reads it back is checked independently.
"""

from __future__ import annotations

import struct

import numpy as np

CODE_LENGTH = 5  # 17 categories fit in 32 five-bit codes; code 11111 is left unused as T.81 asks


def encode_lossless_jpeg(pixels: np.ndarray, precision: int) -> bytes:
    """`pixels`: 2-D unsigned values below 2**precision (2-16 bits)."""
    rows, columns = pixels.shape
    differences = _differences(pixels.astype(np.int64), precision)
    return b"".join([
        b"\xff\xd8",  # SOI
        _segment(0xC3, struct.pack(">BHHBBBB", precision, rows, columns, 1, 1, 0x11, 0)),
        _segment(0xC4, bytes([0x00]) + _huffman_counts() + bytes(range(17))),
        _segment(0xDA, bytes([1, 1, 0x00, 1, 0, 0])),  # 1 component, table 0, Ss=1, Se=0, Pt=0
        _entropy_coded(differences),
        b"\xff\xd9",  # EOI
    ])  # fmt: skip


def _differences(values: np.ndarray, precision: int) -> np.ndarray:
    """Each pixel minus its prediction, modulo 2**16 as T.81 H.1.2.1 defines it."""
    predicted = np.empty_like(values)
    predicted[0, 0] = 1 << (precision - 1)
    predicted[0, 1:] = values[0, :-1]
    predicted[1:, 0] = values[:-1, 0]
    predicted[1:, 1:] = values[1:, :-1]
    difference = (values - predicted) % 65536
    return np.where(difference >= 32768, difference - 65536, difference).ravel()


def _huffman_counts() -> bytes:
    counts = [0] * 16
    counts[CODE_LENGTH - 1] = 17
    return bytes(counts)


def _entropy_coded(differences: np.ndarray) -> bytes:
    bits: list[str] = []
    for value in differences.tolist():
        category = 0 if value == 0 else int(abs(value)).bit_length()
        bits.append(format(category, f"0{CODE_LENGTH}b"))
        if 0 < category < 16:  # category 16 (difference 32768) has no extra bits
            extra = value if value > 0 else value + (1 << category) - 1
            bits.append(format(extra, f"0{category}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)  # pad the last byte with ones
    coded = int(stream, 2).to_bytes(len(stream) // 8, "big") if stream else b""
    return coded.replace(b"\xff", b"\xff\x00")  # byte stuffing


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload
