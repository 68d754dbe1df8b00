"""A JPEG's pixels without its metadata (`shared.jpeg_segments`): the same pixels, none of the
metadata, and None for every stream it cannot vouch for."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.jpeg_segments import pixels_only
from tests.support.images import encode, phantom

IDENTIFYING = b"DOE^JANE 1961-04-02"
NOT_A_MARKER = (0x00, *range(0xD0, 0xD8))  # after 0xFF inside a scan: stuffing, restarts


def film(seed: int = 0, size: int = 96) -> Image.Image:
    return Image.fromarray(phantom(seed, pneumonia=True, size=size).image)


def with_metadata(image: Image.Image, **options: object) -> bytes:
    """A JPEG carrying what a scanner or a phone might add: EXIF text, a comment, an XMP-like
    APP1, and a trailer after its end."""
    exif = Image.Exif()
    exif[0x013B] = IDENTIFYING.decode()  # Artist
    exif[0x010E] = "Ward 7, portable"  # ImageDescription
    data = encode(image, "JPEG", quality=90, exif=exif, comment=IDENTIFYING, **options)
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>" + IDENTIFYING + b"</x:xmpmeta>"
    app1 = b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp
    return data[:2] + app1 + data[2:] + b"trailer " + IDENTIFYING


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def markers(data: bytes) -> list[int]:
    """Every segment marker outside entropy-coded data, in order (walked independently of the
    module: segment lengths, then a byte scan through each scan's data)."""
    found, position = [], 2
    while position < len(data):
        assert data[position] == 0xFF
        marker = data[position + 1]
        found.append(marker)
        if marker == 0xD9:
            break
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        position += 2 + length
        if marker == 0xDA:
            while not (data[position] == 0xFF and data[position + 1] not in NOT_A_MARKER):
                position += 1
    return found


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"restart_marker_blocks": 4}, {"optimize": True}],
    ids=["baseline", "progressive", "restart-intervals", "optimised-tables"],
)
def test_the_same_pixels_and_none_of_the_metadata(options: dict[str, object]) -> None:
    data = with_metadata(film(), **options)
    assert data.count(IDENTIFYING) == 4  # EXIF, comment, XMP, trailer: all there to remove
    kept = pixels_only(data)
    assert kept is not None
    np.testing.assert_array_equal(pixels(kept), pixels(data))
    assert IDENTIFYING not in kept and b"Ward 7" not in kept and b"Exif" not in kept
    remaining = markers(kept)
    assert not [marker for marker in remaining if 0xE0 <= marker <= 0xEF or marker == 0xFE]
    assert remaining[-1] == 0xD9 and kept.endswith(b"\xff\xd9")
    with Image.open(io.BytesIO(kept)) as image:
        assert image.mode == "L" and "exif" not in image.info and "comment" not in image.info
    if "restart_marker_blocks" in options:  # the interval and its markers are pixels: kept
        assert 0xDD in remaining and b"\xff\xd0" in kept


def test_metadata_between_the_scans_of_a_progressive_jpeg_goes_too() -> None:
    data = encode(film(1), "JPEG", quality=90, progressive=True)
    second_scan = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
    comment = b"\xff\xfe" + (len(IDENTIFYING) + 2).to_bytes(2, "big") + IDENTIFYING
    data = data[:second_scan] + comment + data[second_scan:]
    kept = pixels_only(data)
    assert kept is not None and IDENTIFYING not in kept
    np.testing.assert_array_equal(pixels(kept), pixels(data))


def frame_header_at(data: bytes) -> int:
    """Where the frame header's marker byte is (SOF0 or SOF2 for what Pillow writes)."""
    return next(data.index(sof) + 1 for sof in (b"\xff\xc0", b"\xff\xc2") if sof in data)


def test_streams_it_cannot_vouch_for_are_refused() -> None:
    gray = encode(film(2), "JPEG", quality=90)
    frame = frame_header_at(gray)
    arithmetic = gray[:frame] + b"\xc9" + gray[frame + 1 :]  # SOF9: arithmetic coding
    twelve_bit = gray[: frame + 3] + b"\x0c" + gray[frame + 4 :]  # sample precision 12
    scan = gray.index(b"\xff\xda")
    stray = gray[:scan] + b"\x00\x00" + gray[scan:]  # bytes between two segments
    refused = {
        "colour": encode(film(2).convert("RGB"), "JPEG", quality=90),
        "cmyk": encode(film(2).convert("CMYK"), "JPEG", quality=90),
        "arithmetic": arithmetic,
        "12-bit": twelve_bit,
        "truncated": gray[: len(gray) // 2],
        "no end marker": gray[:-2],
        "stray bytes": stray,
        "png": encode(film(2), "PNG"),
        "empty": b"",
        "only a start": b"\xff\xd8",
    }
    for name, data in refused.items():
        assert pixels_only(data) is None, name
    assert pixels_only(gray) is not None  # the unaltered stream is fine


def test_a_clean_stream_comes_back_as_it_was() -> None:
    data = encode(film(3), "JPEG", quality=90)  # Pillow adds only JFIF (APP0)
    kept = pixels_only(data)
    assert kept is not None
    app0 = data.index(b"\xff\xe0")
    app0_length = int.from_bytes(data[app0 + 2 : app0 + 4], "big")
    assert kept == data[:app0] + data[app0 + 2 + app0_length :]
