"""A JPEG's own compressed pixels without its metadata: the display copy of a film that needs no
resizing (`shared.display`), made without decoding or encoding anything.

A JPEG file is a run of marker segments. Some carry the picture (the frame header, quantisation
and Huffman tables, the restart interval, each scan's header and its entropy-coded data); the
rest carry metadata: APP0-APP15 (JFIF, EXIF with the camera, dates and free text, ICC profiles,
XMP, vendor blocks) and COM (free-text comments), plus whatever follows the end-of-image marker
(a thumbnail or a second picture). Keeping only the first kind gives a file that decodes to the
same pixels and holds none of the rest.

Only streams this module can vouch for are copied: one frame, baseline, extended or
progressive Huffman coding, 8-bit samples, one component (grayscale), and nothing it does not
recognise. Anything else (colour, 12-bit, arithmetic or lossless coding, hierarchical frames,
stray bytes between segments, a missing end) gets None, and the caller decodes and re-encodes
as for any other film.
"""

from __future__ import annotations

import re

START_OF_IMAGE = 0xD8
END_OF_IMAGE = 0xD9
START_OF_SCAN = 0xDA
# Frame headers kept: baseline, extended sequential and progressive, all Huffman-coded.
FRAME_HEADERS = frozenset({0xC0, 0xC1, 0xC2})
# Tables the decoder needs: Huffman (DHT), quantisation (DQT), restart interval (DRI).
TABLE_SEGMENTS = frozenset({0xC4, 0xDB, 0xDD})
COMMENT = 0xFE
APPLICATION_SEGMENTS = range(0xE0, 0xF0)

# Inside entropy-coded data every 0xFF is followed by a stuffed 0x00 or a restart marker
# (0xD0-0xD7); 0xFF before any other byte (fill bytes aside) starts the next segment.
_END_OF_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def pixels_only(data: bytes) -> bytes | None:
    """`data` with every metadata segment and anything after its end removed; None unless it
    is a single-frame, 8-bit, one-component Huffman JPEG made only of segments known here."""
    if not data.startswith(b"\xff\xd8"):
        return None
    kept = [data[:2]]
    position = 2
    frame_seen = False
    while True:
        marker_at = position
        marker, position = _read_marker(data, position)
        if marker is None:
            return None
        if marker == END_OF_IMAGE:
            kept.append(b"\xff\xd9")
            return b"".join(kept) if frame_seen else None
        if position + 2 > len(data):
            return None
        segment_end = position + int.from_bytes(data[position : position + 2], "big")
        if segment_end < position + 2 or segment_end > len(data):
            return None
        if marker in FRAME_HEADERS:
            if frame_seen or not _one_8_bit_component(data[position + 2 : segment_end]):
                return None
            frame_seen = True
        elif marker == START_OF_SCAN:
            if not frame_seen:
                return None
            scan_end = _END_OF_SCAN.search(data, segment_end)
            if scan_end is None:  # truncated: no end-of-image marker
                return None
            segment_end = scan_end.start()
        elif marker in APPLICATION_SEGMENTS or marker == COMMENT:
            position = segment_end
            continue
        elif marker not in TABLE_SEGMENTS:
            return None
        kept.append(data[marker_at:segment_end])
        position = segment_end


def _read_marker(data: bytes, position: int) -> tuple[int | None, int]:
    """The marker at `position` (after any 0xFF fill bytes) and where its segment starts;
    None where no marker is: stray bytes between segments, or the end of the data."""
    if position >= len(data) or data[position] != 0xFF:
        return None, position
    while position < len(data) and data[position] == 0xFF:
        position += 1
    if position >= len(data) or data[position] in (0x00, START_OF_IMAGE):
        return None, position
    return data[position], position + 1


def _one_8_bit_component(frame_header: bytes) -> bool:
    """A frame header's payload: sample precision (1 byte), rows, columns (2 each), components."""
    return len(frame_header) >= 6 and frame_header[0] == 8 and frame_header[5] == 1
