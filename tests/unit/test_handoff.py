"""The arrays the gateway hands to the worker, and the worker to the gateway's pictures."""

from __future__ import annotations

import numpy as np

from shared.handoff import (
    fingerprint,
    input_pixels,
    pack_input,
    pack_map,
    unpack_input,
    unpack_map,
)
from shared.imaging import PreprocessParams

PARAMS = PreprocessParams(image_size=64)
PIXELS = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)


def test_an_input_comes_back_only_for_the_preprocessing_that_made_it() -> None:
    packed = pack_input(PIXELS, PARAMS)
    assert np.array_equal(unpack_input(packed, PARAMS), PIXELS)
    for other in (
        PreprocessParams(image_size=64, trim_borders=False),
        PreprocessParams(image_size=64, interpolation="area"),
        PreprocessParams(image_size=64, jpeg_draft=False),
    ):
        assert fingerprint(other) != fingerprint(PARAMS)
        assert unpack_input(packed, other) is None
        assert np.array_equal(input_pixels(packed), PIXELS)  # still drawable in a picture


def test_a_wrong_shape_or_garbage_is_refused_not_raised() -> None:
    wrong_shape = pack_input(PIXELS[:32], PARAMS)
    assert unpack_input(wrong_shape, PARAMS) is None
    for garbage in (b"", b"x" * 40, fingerprint(PARAMS).encode() + b"\nnot an array", None):
        assert unpack_input(garbage, PARAMS) is None
    assert input_pixels(b"nonsense") is None
    assert unpack_map(b"nonsense") is None
    assert unpack_map(pack_input(PIXELS, PARAMS)) is None  # an input is not a map


def test_a_map_round_trips_as_float32() -> None:
    cam = np.random.default_rng(1).random((8, 8))
    restored = unpack_map(pack_map(cam))
    assert restored is not None and restored.dtype == np.float32
    assert np.allclose(restored, cam, atol=1e-7)


def test_truncated_or_padded_arrays_are_refused() -> None:
    packed = pack_map(np.ones((4, 4)))
    assert unpack_map(packed[:-1]) is None
    assert unpack_map(packed + b"\0") is None
    assert unpack_map(b"i8" + packed[2:]) is None  # a dtype nothing here writes
