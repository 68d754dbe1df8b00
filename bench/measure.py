"""In-process measurements: intake costs and the model's own ceiling."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from shared.config import Settings
from shared.imaging import (
    IntakeLimits,
    PreprocessParams,
    accept_upload,
    decode_grayscale,
    encode_png,
    model_draft_side,
    preprocess,
)
from worker.phantoms.kermany import render_large_jpeg
from worker.phantoms.radiograph import generate_phantom


def benchmark_jpegs(
    count: int, seed: int = 0, sides: tuple[int, int] = (1000, 2000)
) -> list[bytes]:
    """Phantom films of realistic size (Kermany originals are ~1,000-2,000 px on a side)."""
    rng = np.random.default_rng(seed)
    return [
        render_large_jpeg(
            generate_phantom(rng, 256, pneumonia=bool(index % 2)),
            rng,
            side=int(rng.integers(sides[0], sides[1] + 1)),
        )  # fmt: skip
        for index in range(count)
    ]


def mean_ms(action: Callable[[], object], repeats: int) -> float:
    action()
    started = time.perf_counter()
    for _ in range(repeats):
        action()
    return round((time.perf_counter() - started) / repeats * 1000.0, 3)


def intake_costs(jpeg_2000px: bytes, params: PreprocessParams, repeats: int) -> dict[str, float]:
    """ms per image: full decode vs Pillow draft mode (at the scale the service decodes);
    PNG encoding at two zlib levels."""
    from shared.overlay import blend, colourise

    limits = IntakeLimits()
    draft_side = model_draft_side(params)
    image = preprocess(decode_grayscale(jpeg_2000px, limits, draft_side), params)
    cam = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    return {
        "jpeg_bytes": len(jpeg_2000px),
        "decode_full_ms": mean_ms(
            lambda: preprocess(decode_grayscale(jpeg_2000px, limits), params), repeats
        ),  # fmt: skip
        "decode_draft_ms": mean_ms(
            lambda: preprocess(decode_grayscale(jpeg_2000px, limits, draft_side), params),
            repeats,
        ),
        "render_png_level1_ms": mean_ms(
            lambda: (
                encode_png(colourise(cam, image.shape[0]), 1),
                encode_png(blend(image, cam), 1),
            ),
            repeats * 5,
        ),
        "render_png_level6_ms": mean_ms(
            lambda: (
                encode_png(colourise(cam, image.shape[0]), 6),
                encode_png(blend(image, cam), 6),
            ),
            repeats * 5,
        ),
    }


def intake_cpu_ms_per_film(films: list[bytes], params: PreprocessParams, repeats: int = 2) -> float:
    """CPU ms per film of what every upload costs before the model, whichever process pays
    it: the gateway's decode-once (`gateway.submission.decode_once`: draft-mode decode,
    preprocessing, display copy, placement)."""
    from gateway.submission import decode_once

    settings = Settings()
    decode_once(films[0], settings, params)
    started = time.process_time()
    for _ in range(repeats):
        for film in films:
            decode_once(film, settings, params)
    return round((time.process_time() - started) * 1000.0 / (repeats * len(films)), 3)


def display_copy_costs(films: list[bytes], params: PreprocessParams, rounds: int = 5) -> dict:
    """CPU ms per film of the display copy (`shared.display`), side by side: kept as sent
    (metadata removed) against drawn again (decoded, resized, encoded), taking turns each
    round; the median round of each, and bytes per film."""
    from shared.display import display_copy

    limits, max_side = IntakeLimits(), Settings().display_max_side
    decoded = [accept_upload(film, limits, params).decoded for film in films]
    ms: dict[bool, list[float]] = {True: [], False: []}
    sizes: dict[bool, int] = {}
    for _ in range(rounds):
        for keep in (True, False):
            started = time.process_time()
            copies = [display_copy(film, pixels, limits, max_side, keep)  # type: ignore[arg-type]
                      for film, pixels in zip(films, decoded, strict=True)]  # fmt: skip
            ms[keep].append((time.process_time() - started) * 1000.0 / len(films))
            sizes[keep] = sum(map(len, copies)) // len(films)
    kept, drawn = float(np.median(ms[True])), float(np.median(ms[False]))
    return {
        "display_kept_ms": round(kept, 3), "display_redrawn_ms": round(drawn, 3),
        "display_kept_over_redrawn": round(kept / drawn, 3) if drawn else None,
        "display_kept_kb": round(sizes[True] / 1024, 1),
        "display_redrawn_kb": round(sizes[False] / 1024, 1),
    }  # fmt: skip


@functools.lru_cache(maxsize=1)
def _warm_runtime(model_dir: Path, batch_size: int):  # -> worker.model.runtime.ModelRuntime
    """Loaded and warmed once per benchmark, however many rounds measure the ceiling."""
    from worker.model.runtime import ModelRuntime
    from worker.serving.device import share_the_gpu_with_other_processes

    share_the_gpu_with_other_processes()  # with the workers this benchmark drives
    runtime = ModelRuntime.from_directory(model_dir, max_batch=batch_size)
    runtime.warm_up()
    return runtime


def model_ceiling(model_dir: Path, batch_size: int, seconds: float) -> dict[str, float]:
    """The model alone (prediction + every explanation map + the OOD score, if the model has
    a gate) on preprocessed batches; with a gate, the same batches again without scoring it."""
    runtime = _warm_runtime(model_dir, batch_size)
    size = runtime.image_size
    batch = np.random.default_rng(0).integers(0, 255, (batch_size, size, size), dtype=np.uint8)
    single_ms = mean_ms(lambda: runtime.predict(batch[:1]), 20)
    figures = {**throughput(runtime, batch, seconds), "single_image_model_ms": single_ms,
               "batch_size": batch_size}  # fmt: skip
    if runtime.ood is not None:
        figures.update(gate_cost(runtime, batch, seconds, figures["model_ceiling_img_s"]))
    return figures


def throughput(runtime, batch: np.ndarray, seconds: float) -> dict[str, float]:
    calls, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        runtime.predict(batch)
        calls += 1
    elapsed = time.perf_counter() - started
    return {
        "model_ceiling_img_s": round(calls * len(batch) / elapsed, 2),
        # All this process's threads (the model's own pools): the drains' worker CPU per job
        # compares with it, the difference being what a job costs beside the model.
        "model_cpu_ms_per_image": round(
            (time.process_time() - cpu_started) * 1000.0 / (calls * len(batch)), 2
        ),
    }


def gate_cost(runtime, batch: np.ndarray, seconds: float, with_gate_img_s: float) -> dict:
    """The ceiling with the OOD score skipped. The compiled call returns the pooled features
    either way (a mean over a map it already holds); what the gate adds is that mean, its copy
    to the host and the numpy scoring, all inside the figure above and none in this one."""
    gate, runtime.ood = runtime.ood, None
    try:
        without = throughput(runtime, batch, seconds)["model_ceiling_img_s"]
    finally:
        runtime.ood = gate
    # The scoring alone, timed apart: on a busy machine it hides in the two ceilings' noise.
    channels = gate.statistics.class_means.shape[1]
    pooled = np.random.default_rng(0).random((len(batch), channels)).astype(np.float32)
    return {
        "model_ceiling_without_gate_img_s": without,
        "ceiling_with_over_without_gate": round(with_gate_img_s / without, 3),
        "gate_scoring_ms_per_image": round(
            mean_ms(lambda: gate.assess(pooled), 200) / len(batch), 4
        ),  # fmt: skip
    }
