"""The model runtime: batch padding, the GPU options giving the same answers as float32, and
one model call at a time."""

from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from worker.model.artifact import CARD_FILE
from worker.model.runtime import ModelRuntime, bucket_size


def test_batches_are_padded_to_powers_of_two_up_to_the_maximum() -> None:
    assert [bucket_size(count, 16) for count in (1, 2, 3, 5, 9, 16, 40)] == [1, 2, 4, 8, 16, 16, 16]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (5, 64, 64), dtype=np.uint8)


def test_batches_larger_than_the_maximum_are_chunked(tiny_model_dir: Path, images) -> None:
    whole = ModelRuntime.from_directory(tiny_model_dir, max_batch=8).predict(images)
    chunked = ModelRuntime.from_directory(tiny_model_dir, max_batch=2).predict(images)
    assert len(chunked) == len(images)
    for left, right in zip(whole, chunked, strict=True):
        assert left.probability == pytest.approx(right.probability, abs=1e-5)


def test_xla_gives_the_same_answers(tiny_model_dir: Path, images) -> None:
    reference = ModelRuntime.from_directory(tiny_model_dir).predict(images)
    compiled = ModelRuntime.from_directory(tiny_model_dir, jit_compile=True).predict(images)
    for expected, actual in zip(reference, compiled, strict=True):
        assert actual.probability == pytest.approx(expected.probability, abs=1e-4)
        np.testing.assert_allclose(actual.maps["gradcam"], expected.maps["gradcam"], atol=1e-3)


def test_bfloat16_keeps_probabilities_and_valid_maps(tiny_model_dir: Path, images) -> None:
    """bfloat16 has 8 mantissa bits: probabilities stay close; the maps of this untrained
    model's near-zero gradients are noise either way, so only their contract is checked."""
    reference = ModelRuntime.from_directory(tiny_model_dir).predict(images)
    mixed = ModelRuntime.from_directory(tiny_model_dir, mixed_precision=True).predict(images)
    for expected, actual in zip(reference, mixed, strict=True):
        assert actual.probability == pytest.approx(expected.probability, abs=0.02)
        cam = actual.maps["gradcam"]
        assert cam.dtype == np.float32 and 0.0 <= cam.min() and cam.max() <= 1.0


def test_tensorflow_traces_one_program_in_warm_up_for_every_batch_size(
    tiny_model_dir: Path,
) -> None:
    """TensorFlow's signature leaves the batch axis free: the warm-up's one trace serves every
    size after it. JAX's one compilation per bucket is counted in test_jax_backend.py."""
    runtime = ModelRuntime.from_directory(tiny_model_dir, max_batch=4)
    assert runtime.traced_batch_sizes == []
    runtime.warm_up()
    assert runtime.traced_batch_sizes == [None]
    for count in range(1, 7):
        assert len(runtime.predict(np.zeros((count, 64, 64), np.uint8))) == count
    assert runtime.traced_batch_sizes == [None]


def test_model_calls_from_batches_in_flight_take_turns(tiny_model_dir: Path, images) -> None:
    """PNEUMO_BATCHES_IN_FLIGHT=2 runs two batches in two threads; their model calls must
    not overlap, or each would run at half speed and hold twice the memory."""
    runtime = ModelRuntime.from_directory(tiny_model_dir)
    explain, counter_lock = runtime._explain, threading.Lock()
    inside, most_inside = 0, 0

    def counted(*arguments):
        nonlocal inside, most_inside
        with counter_lock:
            inside += 1
            most_inside = max(most_inside, inside)
        try:
            time.sleep(0.01)  # widens the window in which an overlap would show
            return explain(*arguments)
        finally:
            with counter_lock:
                inside -= 1

    runtime._explain = counted
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda _: runtime.predict(images), range(8)))
    assert most_inside == 1
    assert [len(answer) for answer in answers] == [len(images)] * 8


def artifact_with_card_changes(source: Path, destination: Path, **changes) -> Path:
    """A copy of the tiny artifact whose model.json has `changes` (None deletes a key); the
    weights, and so the checksum, stay the same."""
    shutil.copytree(source, destination)
    card = json.loads((destination / CARD_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    (destination / CARD_FILE).write_text(json.dumps(card))
    return destination


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(values, float)))


def test_serving_applies_the_cards_slope_and_intercept(
    tiny_model_dir: Path, images, tmp_path: Path
) -> None:
    identity = ModelRuntime.from_directory(tiny_model_dir).predict(images)
    raw_logits = np.array([prediction.logit for prediction in identity])
    np.testing.assert_allclose([p.probability for p in identity], sigmoid(raw_logits), rtol=1e-6)
    # An intercept that puts the cut in the middle of these images' logits, so both labels occur.
    slope, intercept = 2.5, -2.5 * float(np.median(raw_logits))
    calibration = {"method": "test", "slope": slope, "intercept": intercept}
    directory = artifact_with_card_changes(tiny_model_dir, tmp_path / "m", calibration=calibration)
    runtime = ModelRuntime.from_directory(directory)
    served = runtime.predict(images)
    expected = sigmoid(slope * raw_logits + intercept)
    np.testing.assert_allclose([p.probability for p in served], expected, rtol=1e-5, atol=1e-7)
    labels = ["PNEUMONIA" if value >= runtime.threshold else "NORMAL" for value in expected]
    assert [prediction.label for prediction in served] == labels
    assert set(labels) == {"NORMAL", "PNEUMONIA"}
    # The explainer's sign cut, in raw logits, is the served threshold mapped back.
    threshold_logit = np.log(runtime.threshold / (1 - runtime.threshold))
    assert slope * runtime.logit_threshold + intercept == pytest.approx(threshold_logit)


def test_an_artifact_with_only_a_temperature_serves_the_same_answers(
    tiny_model_dir: Path, images, tmp_path: Path
) -> None:
    """Cards written before Platt scaling: probability = sigmoid(logit / T), as they served."""
    directory = artifact_with_card_changes(
        tiny_model_dir, tmp_path / "old", calibration=None, temperature=0.25
    )
    runtime = ModelRuntime.from_directory(directory)
    served = runtime.predict(images)
    raw_logits = np.array([prediction.logit for prediction in served])
    np.testing.assert_allclose(
        [p.probability for p in served], sigmoid(raw_logits / 0.25), rtol=1e-5, atol=1e-7
    )
    assert runtime.logit_threshold == pytest.approx(
        0.25 * np.log(runtime.threshold / (1 - runtime.threshold))
    )
