"""Pictures on the film: letterboxing, the placement of the model input on the film, maps carried
back through it, and the display copy kept for drawing them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.display import decode_display, display_copy, display_target
from shared.geometry import Placement, display_shape, map_on_film, placement_of
from shared.imaging import IntakeLimits, PreprocessParams, accept_upload, preprocess
from shared.overlay import film_heatmap, film_overlay
from worker.phantoms.radiograph import generate_phantom

LIMITS = IntakeLimits()


def non_square_film(rows: int = 300, columns: int = 480, seed: int = 3) -> np.ndarray:
    """A phantom cropped to a landscape film, with flat padding (trimmed by preprocessing) on
    the top and the left: three different scales between the film and the model input."""
    rng = np.random.default_rng(seed)
    anatomy = generate_phantom(rng, columns, pneumonia=False).image
    top = (columns - rows) // 2
    grain = rng.integers(0, 20, (rows, columns))  # so that only the padding is flat
    film = np.minimum(anatomy[top : top + rows] + grain, 180).astype(np.uint8)  # room for a marker
    return np.pad(film, ((30, 0), (60, 0)), constant_values=0)


def gaussian_map(shape: tuple[int, int], centre: tuple[float, float], width: float = 1.0):
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    distance = (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2
    return np.exp(-distance / (2 * width**2)).astype(np.float32)


def test_letterbox_keeps_proportions_and_pads_with_black() -> None:
    film = np.random.default_rng(0).integers(100, 140, (200, 400)).astype(np.uint8)
    params = PreprocessParams(image_size=64, fit="letterbox")
    model_input = preprocess(film, params)
    assert model_input.shape == (64, 64)
    content_rows = np.flatnonzero(model_input.max(axis=1) > 0)
    assert content_rows[0] == 16 and content_rows[-1] == 47  # 32 rows: half of 64, centred
    assert (model_input[:16] == 0).all() and (model_input[48:] == 0).all()
    squashed = preprocess(film, PreprocessParams(image_size=64))
    assert (squashed > 0).all()  # the default still fills the square (old cards: squash)


@pytest.mark.parametrize("fit", ["squash", "letterbox"])
def test_a_map_peak_lands_on_the_film_point_that_produced_it(fit: str) -> None:
    """Mark a point on the film, find where preprocessing put it, put a map peak there; carried
    back, the peak lies on the marked point of the film picture (at half the film's size)."""
    film = non_square_film()
    marked = (250, 140)  # row, column on the film, inside the anatomy
    film[marked[0] - 2 : marked[0] + 3, marked[1] - 2 : marked[1] + 3] = 255
    params = PreprocessParams(image_size=128, fit=fit)
    model_input = preprocess(film, params)
    seen_at = np.unravel_index(np.argmax(model_input), model_input.shape)
    cam_side = 32  # a Grad-CAM grid four times coarser than the input
    cam = gaussian_map(
        (cam_side, cam_side), ((seen_at[0] + 0.5) / 4, (seen_at[1] + 0.5) / 4), width=1.5
    )
    picture_shape = display_shape(film.shape, max_side=film.shape[1] // 2)
    values, seen = map_on_film(cam, placement_of(film, params), picture_shape)
    assert values.shape == picture_shape == (165, 270)
    peak = np.unravel_index(np.argmax(values), values.shape)
    expected = (marked[0] * picture_shape[0] / film.shape[0], marked[1] / 2)
    assert abs(peak[0] - expected[0]) <= 0.02 * picture_shape[0]
    assert abs(peak[1] - expected[1]) <= 0.02 * picture_shape[1]
    assert not seen[:10].any() and not seen[:, :25].any()  # the trimmed padding
    assert seen[20:, 35:].all()


def test_pictures_on_the_film_have_its_shape_and_leave_unseen_borders_plain() -> None:
    film = non_square_film()
    placement = placement_of(film, PreprocessParams(image_size=64, fit="letterbox"))
    cam = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    heatmap = film_heatmap(cam, placement, film.shape)
    overlay = film_overlay(film, cam, placement)
    assert heatmap.shape == (*film.shape, 4) and overlay.shape == (*film.shape, 3)
    assert (heatmap[:20, :, 3] == 0).all() and (heatmap[40:, 70:, 3] == 255).all()
    np.testing.assert_array_equal(overlay[:20, :, 0], film[:20])  # padding left as it was
    assert Placement.from_bytes(placement.to_bytes()) == placement
    assert Placement.from_bytes(b"not json") is None and Placement.from_bytes(None) is None


def test_display_shape_keeps_the_aspect_ratio_and_never_upscales() -> None:
    assert display_shape((1416, 1776), 1024) == (816, 1024)
    assert display_shape((1776, 968), 1024) == (1024, 558)
    assert display_shape((500, 300), 1024) == (500, 300)


def jpeg_bytes(pixels: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", **({"quality": 90} | options))
    return buffer.getvalue()


def test_the_display_copy_of_a_draft_decoded_jpeg_is_the_whole_film_at_display_size() -> None:
    """The model's decode of a big JPEG is drafted to a fraction of its size: the display copy
    decodes again at its own scale, upright, at the film's aspect ratio."""
    film = np.kron(non_square_film(), np.ones((4, 4), np.uint8))  # 1320 x 2160
    film[:, -200:] = 250  # a bright band on the right, to check the orientation
    data = jpeg_bytes(film)
    accepted = accept_upload(data, LIMITS, PreprocessParams(), draft_side=256)
    assert accepted.decoded is not None and accepted.decoded.shape[1] < 1024
    copy = decode_display(display_copy(data, accepted.decoded, LIMITS, 1024))
    assert copy is not None and copy.shape == display_shape(film.shape, 1024) == (626, 1024)
    assert copy[:, -50:].mean() > 240 and copy[:, :50].mean() < 60


def test_the_display_copy_follows_exif_rotation_and_never_upscales() -> None:
    film = non_square_film()  # 330 x 540
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = jpeg_bytes(np.ascontiguousarray(np.rot90(film)), exif=exif)
    accepted = accept_upload(data, LIMITS)
    assert accepted.decoded is not None
    copy = decode_display(display_copy(data, accepted.decoded, LIMITS, 1024))
    assert copy is not None and copy.shape == accepted.decoded.shape == film.shape
    assert decode_display(b"\xff\xd8\xff broken") is None


def test_a_grayscale_jpeg_that_fits_is_its_own_display_copy_without_its_metadata() -> None:
    """No decode, no encode: the upload's own compressed pixels, so the same pixels exactly,
    with the EXIF and comments gone (`shared.jpeg_segments`)."""
    film = non_square_film()
    exif = Image.Exif()
    exif[0x013B] = "DOE^JANE"  # Artist
    data = jpeg_bytes(film, exif=exif, comment=b"DOE^JANE")
    accepted = accept_upload(data, LIMITS, PreprocessParams(), draft_side=256)
    assert accepted.decoded is not None
    display = display_copy(data, accepted.decoded, LIMITS, 1024)
    assert b"DOE^JANE" not in display and len(display) < len(data)
    with Image.open(io.BytesIO(data)) as upload:
        np.testing.assert_array_equal(decode_display(display), np.asarray(upload))


def test_a_film_the_display_cannot_keep_as_sent_is_drawn_again_in_grayscale() -> None:
    """Colour, too heavy (quality 100 on grain) or too large: re-encoded at the display's
    quality, in grayscale."""
    grain = np.random.default_rng(5).integers(0, 256, (400, 400)).astype(np.uint8)
    film = non_square_film()
    cases = {
        "colour": jpeg_bytes(np.stack([film] * 3, axis=-1)),
        "heavy": jpeg_bytes(grain, quality=100),
        "large": jpeg_bytes(film),
    }
    for name, data in cases.items():
        max_side = 256 if name == "large" else 1024
        accepted = accept_upload(data, LIMITS)
        assert accepted.decoded is not None
        display = display_copy(data, accepted.decoded, LIMITS, max_side)
        with Image.open(io.BytesIO(display)) as picture:
            assert picture.mode == "L", name
            assert picture.info.get("jfif") is not None, name  # Pillow's own encode, not the upload
        if name == "heavy":
            assert len(display) < 0.5 * len(data)


def test_a_jpeg_a_draft_brings_close_to_the_display_side_keeps_the_drafts_size() -> None:
    """1/2 of a 1,600 x 2,000 film is 800 x 1,000: within a quarter of 1,024, so the display is
    the DCT-scaled decode itself, not resampled. 1/2 of 1,300 px would be 650 (too coarse):
    that film is resampled to 1,024 exactly, as is a PNG."""
    assert display_target((1600, 2000), 1024, jpeg=True) == (800, 1000)
    assert display_target((1601, 2001), 1024, jpeg=True) == (801, 1001)  # libjpeg rounds up
    assert display_target((1300, 1300), 1024, jpeg=True) == (1024, 1024)
    assert display_target((1600, 2000), 1024, jpeg=False) == (819, 1024)
    assert display_target((4000, 4000), 1024, jpeg=True) == (1000, 1000)  # 1/4
    assert display_target((900, 1000), 1024, jpeg=True) == (900, 1000)  # fits already

    film = np.kron(non_square_film(rows=160, columns=190), np.ones((8, 8), np.uint8))
    film[:, -400:] = 250  # a bright band on the right: the copy is upright
    data = jpeg_bytes(film)  # 1,520 x 2,000
    accepted = accept_upload(data, LIMITS, PreprocessParams(), draft_side=256)
    assert accepted.decoded is not None
    copy = decode_display(display_copy(data, accepted.decoded, LIMITS, 1024))
    with Image.open(io.BytesIO(data)) as image:
        image.draft("L", (760, 760))
        drafted = np.asarray(image)
    assert copy is not None and copy.shape == drafted.shape == (760, 1000)
    assert np.abs(copy.astype(int) - drafted).mean() < 2  # the draft itself, re-encoded
    assert copy[:, -150:].mean() > 240 and copy[:, :50].mean() < 120
