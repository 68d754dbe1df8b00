"""The out-of-distribution benchmark: inputs a chest-film model must refuse to answer for.

Every category is generated here, from a seed, so no real patient image (and no download) is
involved: photographs and other natural images (the samples scikit-image ships), rendered text
and documents, noise, gradients, and in-distribution films made foreign (inverted polarity,
rotated 90 degrees, cropped to a detail), lateral-like views, and phantoms rendered in a film
style the training generator never used. Each image goes through the one preprocessing
function, as an upload would. The in-distribution side is the held-out split under test.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from shared.imaging import PreprocessParams, preprocess, to_grayscale_array
from worker.phantoms.anatomy import draw_anatomy, draw_lesions, smoothstep
from worker.phantoms.film import resize_field, smooth_noise

NATURAL_SAMPLES = ("astronaut", "camera", "coffee", "chelsea", "coins", "moon", "rocket",
                   "brick", "grass", "gravel", "clock", "cell", "hubble_deep_field",
                   "immunohistochemistry")  # fmt: skip
SOURCE_SIDE = 256
WORDS = ("patient", "report", "invoice", "total", "date", "signature", "radiology", "page",
         "summary", "reference", "account", "room", "dose", "order", "form", "notes")  # fmt: skip


def natural_images(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Random crops (half to all of each side) of scikit-image's bundled sample pictures."""
    from skimage import data  # the training extra installs it; serving never needs it

    samples = [_gray(np.asarray(getattr(data, name)())) for name in NATURAL_SAMPLES]
    images = []
    for index in range(count):
        sample = samples[index % len(samples)]
        height, width = sample.shape
        crop_h, crop_w = (int(side * rng.uniform(0.5, 1.0)) for side in (height, width))
        top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
        images.append(sample[top : top + crop_h, left : left + crop_w])
    return images


def _gray(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    return to_grayscale_array(Image.fromarray(pixels))


def text_documents(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Pages of dark text on light paper (some light on dark, like a screenshot), some ruled."""
    images = []
    for _ in range(count):
        width, height = int(rng.integers(300, 700)), int(rng.integers(300, 700))
        paper, ink = (235, 20) if rng.random() < 0.8 else (25, 230)
        page = Image.new("L", (width, height), paper)
        draw = ImageDraw.Draw(page)
        font_size = int(rng.integers(12, 40))
        font = ImageFont.load_default(size=font_size)
        y = int(rng.integers(5, 30))
        while y < height - 20:
            line = " ".join(rng.choice(WORDS, int(rng.integers(2, 9))))
            draw.text((int(rng.integers(5, 40)), y), line, fill=ink, font=font)
            if rng.random() < 0.3:
                draw.line((0, y - 4, width, y - 4), fill=ink, width=1)
            y += int(font_size * rng.uniform(1.3, 2.2))
        images.append(np.asarray(page))
    return images


def noise_fields(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Uniform, Gaussian, salt-and-pepper and smooth (cloud-like) noise."""
    images = []
    for index in range(count):
        kind = index % 4
        if kind == 0:
            field = rng.uniform(0, 255, (SOURCE_SIDE, SOURCE_SIDE))
        elif kind == 1:
            field = rng.normal(rng.uniform(60, 200), rng.uniform(10, 60), (SOURCE_SIDE,) * 2)
        elif kind == 2:
            field = np.where(rng.random((SOURCE_SIDE,) * 2) < 0.5, 0.0, 255.0)
        else:
            field = 128 + 60 * smooth_noise(rng, SOURCE_SIDE, int(rng.integers(3, 24)))
        images.append(np.clip(field, 0, 255).astype(np.uint8))
    return images


def gradients(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Linear ramps at random angles and radial ramps: smooth images with no anatomy."""
    axis = np.linspace(-1.0, 1.0, SOURCE_SIDE)
    x, y = np.meshgrid(axis, axis)
    images = []
    for index in range(count):
        if index % 2 == 0:
            angle = rng.uniform(0, 2 * np.pi)
            ramp = (x * np.cos(angle) + y * np.sin(angle) + 1.5) / 3.0
        else:
            centre = rng.uniform(-0.5, 0.5, 2)
            ramp = 1.0 - np.hypot(x - centre[0], y - centre[1]) / 2.2
        low, high = np.sort(rng.uniform(0, 255, 2))
        images.append((low + (high - low) * np.clip(ramp, 0, 1)).astype(np.uint8))
    return images


def inverted_films(rng: np.random.Generator, films: np.ndarray, count: int) -> list[np.ndarray]:
    """Negative polarity: what a MONOCHROME1 file looks like when nobody inverts it."""
    return [255 - films[index] for index in _pick(rng, films, count)]


def rotated_films(rng: np.random.Generator, films: np.ndarray, count: int) -> list[np.ndarray]:
    """A quarter turn either way: a film scanned or stored on its side."""
    return [np.rot90(films[index], 1 if rng.random() < 0.5 else -1).copy()
            for index in _pick(rng, films, count)]  # fmt: skip


def cropped_views(rng: np.random.Generator, films: np.ndarray, count: int) -> list[np.ndarray]:
    """A detail (a quarter to a ninth of the film) blown up to a whole image: a cone-down view."""
    images = []
    for index in _pick(rng, films, count):
        film = films[index]
        side = film.shape[0]
        crop = int(side * rng.uniform(0.33, 0.5))
        top, left = rng.integers(0, side - crop + 1, 2)
        images.append(film[top : top + crop, left : left + crop])
    return images


def _pick(rng: np.random.Generator, films: np.ndarray, count: int) -> np.ndarray:
    return rng.choice(len(films), size=count, replace=len(films) < count)


def lateral_views(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """A side-on chest: spine at the back, sternum at the front, one lung field over the heart."""
    axis = (np.arange(SOURCE_SIDE, dtype=np.float32) + 0.5) / SOURCE_SIDE
    x, y = axis[None, :], axis[:, None]
    images = []
    for _ in range(count):
        front, back = rng.uniform(0.08, 0.16), rng.uniform(0.84, 0.92)
        body = smoothstep(front - 0.03, front + 0.03, x) * smoothstep(back + 0.03, back - 0.03, x)
        body = body * smoothstep(0.0, 0.05, y)
        lung = smoothstep(0.2, 0.28, x) * smoothstep(0.8, 0.7, x)
        lung = lung * smoothstep(0.12, 0.22, y) * smoothstep(0.78, 0.7, y - 0.05 * x)
        heart = np.exp(-(((x - 0.35) / 0.14) ** 2 + ((y - 0.62) / 0.14) ** 2))
        spine = smoothstep(0.06, 0.03, np.abs(x - rng.uniform(0.76, 0.8))) * body
        attenuation = 0.03 + 0.5 * body - 0.3 * lung * (1 - heart) + 0.25 * spine
        attenuation += 0.03 * smooth_noise(rng, SOURCE_SIDE, 8)
        images.append(_expose(rng, attenuation, gain=rng.uniform(1.3, 1.6), grain=0.05))
    return images


def unseen_style_phantoms(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """The training generator's anatomy exposed by a film the model never saw: flat, washed-out
    contrast under heavy, coarse grain (an underexposed portable film, over-processed)."""
    images = []
    for index in range(count):
        attenuation, lung_field = draw_anatomy(rng, SOURCE_SIDE)
        if index % 2:
            attenuation += 0.3 * draw_lesions(rng, lung_field)
        images.append(_expose(rng, attenuation, gain=rng.uniform(0.35, 0.5), grain=0.35))
    return images


def _expose(rng: np.random.Generator, attenuation: np.ndarray, gain: float, grain: float):
    film = 0.45 + gain * (attenuation - 0.35)
    film = resize_field(film.astype(np.float32), SOURCE_SIDE)
    film = film + grain * (rng.random(film.shape, dtype=np.float32) - 0.5)
    return (np.clip(film, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def foreign_inputs(
    films: np.ndarray, params: PreprocessParams, per_category: int = 24, seed: int = 0
) -> dict[str, np.ndarray]:
    """Category -> (per_category, S, S) uint8 model inputs. `films` are in-distribution films
    (the split under test), the source of the inverted, rotated and cropped categories."""
    makers: dict[str, Callable[[np.random.Generator], list[np.ndarray]]] = {
        "natural_images": lambda rng: natural_images(rng, per_category),
        "text_documents": lambda rng: text_documents(rng, per_category),
        "noise": lambda rng: noise_fields(rng, per_category),
        "gradients": lambda rng: gradients(rng, per_category),
        "inverted_films": lambda rng: inverted_films(rng, films, per_category),
        "rotated_films": lambda rng: rotated_films(rng, films, per_category),
        "cropped_views": lambda rng: cropped_views(rng, films, per_category),
        "lateral_views": lambda rng: lateral_views(rng, per_category),
        "unseen_style_phantoms": lambda rng: unseen_style_phantoms(rng, per_category),
    }
    rngs = np.random.default_rng(seed).spawn(len(makers))
    return {
        name: np.stack([preprocess(image, params) for image in make(rng)])
        for (name, make), rng in zip(makers.items(), rngs, strict=True)
    }


def detection_report(
    in_distribution_scores: np.ndarray, foreign_scores: dict[str, np.ndarray], threshold: float
) -> dict:
    """Flag rates: on in-distribution images (false flags) and per foreign category."""
    categories = {
        name: {"images": int(len(scores)), "flag_rate": float(np.mean(scores > threshold))}
        for name, scores in foreign_scores.items()
    }
    pooled = np.concatenate(list(foreign_scores.values()))
    return {
        "threshold": float(threshold),
        "in_distribution": {
            "images": int(len(in_distribution_scores)),
            "flag_rate": float(np.mean(np.asarray(in_distribution_scores) > threshold)),
        },
        "foreign": {"images": int(len(pooled)), "flag_rate": float(np.mean(pooled > threshold))},
        "categories": categories,
        "weakest_category": min(categories, key=lambda name: categories[name]["flag_rate"]),
    }
