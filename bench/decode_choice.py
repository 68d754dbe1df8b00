"""`python -m bench.decode_choice`: the gateway's JPEG decode, side by side with its alternatives.

Each decoder turns the benchmark's films into the grayscale film the service decodes at (the
model's draft scale: the smallest DCT scale leaving twice the model's side), then the model
input. Pillow's draft mode is what `shared.imaging` does today; `simplejpeg` and `pyvips` are
libjpeg-turbo's and libvips' scaled decodes, measured when installed (neither is a dependency:
`pip install simplejpeg pyvips pyvips-binary` to include them). Every decoder decodes at the
same scale as Pillow's draft, so their pixels can be compared with it exactly.

CPU per image is `time.process_time` over all of this process's threads (libvips runs a
thread pool); wall time beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

from bench.measure import benchmark_jpegs
from shared.imaging import IntakeLimits, PreprocessParams, decode_grayscale, model_draft_side

Decoder = Callable[[bytes, int], np.ndarray]


def pillow_draft(data: bytes, draft_side: int) -> np.ndarray:
    """The service's decode as it is: header checks, draft, EXIF orientation."""
    return decode_grayscale(data, IntakeLimits(), draft_side)


def draft_scale(width: int, height: int, draft_side: int) -> int:
    """The reduction Pillow's `draft` picks: the largest of 1/8, 1/4, 1/2 that keeps both
    sides at least `draft_side` (Pillow's JpegImagePlugin.draft)."""
    fits = min(width // draft_side, height // draft_side)
    return next((scale for scale in (8, 4, 2) if scale <= fits), 1)


def simplejpeg_scaled(data: bytes, draft_side: int) -> np.ndarray:
    import simplejpeg

    height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    scale = draft_scale(width, height, draft_side)
    # The smallest output at least this big is exactly Pillow's draft size (ceil(side/scale)).
    decoded = simplejpeg.decode_jpeg(data, colorspace="GRAY", min_width=-(-width // scale),
                                     min_height=-(-height // scale))  # fmt: skip
    return decoded[:, :, 0]


def pyvips_shrink(data: bytes, draft_side: int) -> np.ndarray:
    import pyvips

    header = pyvips.Image.new_from_buffer(data, "", access="sequential")
    scale = draft_scale(header.width, header.height, draft_side)
    image = pyvips.Image.jpegload_buffer(data, shrink=scale, access="sequential")
    if image.bands > 1:
        image = image.colourspace("b-w")[0]
    return image.numpy()


def available_decoders() -> tuple[dict[str, Decoder], dict[str, str]]:
    """The decoders importable here, and why each missing one is missing."""
    decoders: dict[str, Decoder] = {"pillow_draft": pillow_draft}
    missing = {}
    for name, decoder, module in (("simplejpeg", simplejpeg_scaled, "simplejpeg"),
                                  ("pyvips", pyvips_shrink, "pyvips")):  # fmt: skip
        try:
            __import__(module)
        except (ImportError, OSError) as error:  # pyvips raises OSError without libvips
            missing[name] = f"not importable: {error}"
            continue
        decoders[name] = decoder
    return decoders, missing


def costs_per_image(decoders: dict[str, Decoder], films: list[bytes], draft_side: int,
                    repeats: int) -> dict[str, dict[str, float]]:  # fmt: skip
    """Each decoder's CPU and wall ms per image. The decoders take turns, one pass over the
    films each per round, so a busy minute on a shared machine falls on all of them alike."""
    spent = {name: [0.0, 0.0] for name in decoders}
    for round_ in range(repeats + 1):
        for name, decoder in decoders.items():
            cpu_started, wall_started = time.process_time(), time.perf_counter()
            for film in films:
                decoder(film, draft_side)
            if round_:  # the first round warms up: imports, libraries' first-call set-up
                spent[name][0] += time.process_time() - cpu_started
                spent[name][1] += time.perf_counter() - wall_started
    count = repeats * len(films)
    return {name: {"cpu_ms_per_image": round(cpu * 1000.0 / count, 3),
                   "wall_ms_per_image": round(wall * 1000.0 / count, 3)}
            for name, (cpu, wall) in spent.items()}  # fmt: skip


def pixel_difference(decoder: Decoder, films: list[bytes], draft_side: int) -> dict[str, float]:
    """Against Pillow's draft on the same films: the largest difference of any pixel, and
    the share of pixels that differ at all (shapes must match, or the decoder is unusable)."""
    largest, differing, total = 0, 0, 0
    for film in films:
        reference, other = pillow_draft(film, draft_side), decoder(film, draft_side)
        if reference.shape != other.shape:
            return {"shape_mismatch": 1.0}
        difference = np.abs(reference.astype(np.int16) - other.astype(np.int16))
        largest = max(largest, int(difference.max()))
        differing += int(np.count_nonzero(difference))
        total += difference.size
    return {"max_abs_difference": largest, "differing_pixel_share": round(differing / total, 6)}


def compare(sides: list[int], films_per_side: int, repeats: int,
            params: PreprocessParams) -> dict:  # fmt: skip
    draft_side = model_draft_side(params)
    assert draft_side is not None, "the comparison is of draft-scale decodes"
    decoders, missing = available_decoders()
    results: dict = {"draft_side": draft_side, "missing": missing, "sides": {}}
    for side in sides:
        films = benchmark_jpegs(films_per_side, seed=side, sides=(side, side))
        row: dict = {"jpeg_kb": round(sum(map(len, films)) / len(films) / 1024, 1)}
        row |= costs_per_image(decoders, films, draft_side, repeats)
        for name, decoder in decoders.items():
            if name != "pillow_draft":
                row[name] |= pixel_difference(decoder, films, draft_side)
        results["sides"][str(side)] = row
    return results


def markdown(results: dict) -> str:
    names = [name for name in next(iter(results["sides"].values())) if name != "jpeg_kb"]
    lines = [f"Decode at the draft scale for a {results['draft_side']} px draft side "
             "(CPU ms per image, wall in brackets):", "",
             "| film side | JPEG KB | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]  # fmt: skip
    for side, row in results["sides"].items():
        cells = [f"{row[name]['cpu_ms_per_image']} ({row[name]['wall_ms_per_image']})"
                 for name in names]  # fmt: skip
        lines.append(f"| {side} | {row['jpeg_kb']} | " + " | ".join(cells) + " |")
    for side, row in results["sides"].items():
        for name in names[1:]:
            pixels = {key: value for key, value in row[name].items() if "ms" not in key}
            lines.append(f"\n{side} px, {name} vs Pillow's draft: {json.dumps(pixels)}")
    for name, why in results["missing"].items():
        lines.append(f"\n{name}: {why}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[1000, 1500])
    parser.add_argument("--films", type=int, default=8, help="distinct films per side")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=128, help="the model's input side")
    arguments = parser.parse_args()
    found = compare(arguments.sides, arguments.films, arguments.repeats,
                    PreprocessParams(image_size=arguments.image_size))  # fmt: skip
    print(json.dumps(found))
    print(markdown(found))
