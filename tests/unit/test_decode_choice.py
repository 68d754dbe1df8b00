"""The decode comparison (`python -m bench.decode_choice`): its decoders decode at Pillow's draft
scale, so their pixels compare with the service's; the run reports every decoder or says why not."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench.decode_choice import compare, draft_scale, markdown, pillow_draft, pixel_difference
from shared.imaging import PreprocessParams


def gray_jpeg(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (height, width), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(("width", "height"), [(1000, 1000), (1500, 1200), (2100, 600), (300, 300)])
def test_the_scale_is_the_one_pillows_draft_picks(width: int, height: int) -> None:
    image = Image.open(io.BytesIO(gray_jpeg(width, height)))
    image.draft("L", (256, 256))
    scale = draft_scale(width, height, 256)
    assert image.size == (-(-width // scale), -(-height // scale))


def test_the_service_decode_against_itself_differs_nowhere() -> None:
    films = [gray_jpeg(1000, 800)]
    assert pixel_difference(pillow_draft, films, 256) == {
        "max_abs_difference": 0,
        "differing_pixel_share": 0.0,
    }


def test_a_run_reports_every_decoder_or_why_it_is_missing() -> None:
    results = compare([600], films_per_side=1, repeats=1, params=PreprocessParams())
    row = results["sides"]["600"]
    assert results["draft_side"] == 256 and row["jpeg_kb"] > 0
    assert row["pillow_draft"]["cpu_ms_per_image"] >= 0
    for name in ("simplejpeg", "pyvips"):  # optional: measured where installed
        assert (name in row) != (name in results["missing"])
        if name in row:
            assert row[name]["max_abs_difference"] == 0
    assert "| 600 |" in markdown(results)
