"""Every malformed, odd or hostile file gets a correct result or a clear 4xx, never a crash.

The corpus (tests/support/corpus.py) goes through both intake paths: the gateway's single
decode (`accept_upload`, which also makes the model input it hands to the worker) and the
worker's own preprocessing of the stored upload (`load_radiograph`), which must agree pixel for
pixel. Seeded random corruptions of valid files then probe the decoders for exceptions we do
not map.
"""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import AppError
from shared.imaging import IntakeLimits, PreprocessParams, accept_upload, load_radiograph
from tests.support.corpus import OK, corpus, mutants

LIMITS = IntakeLimits(max_pixels=50_000_000, min_side=32)
PARAMS = PreprocessParams(image_size=64)
VALIDATION_DRAFT_SIDE = 256  # as gateway.submission validates
CORPUS = corpus()
MUTANTS = 400


def model_input(data: bytes) -> np.ndarray:
    """The gateway's decode, then the worker's preprocessing of what the gateway stored: the
    worker uses the gateway's input when it has one, so the two must be identical."""
    accept_upload(data, LIMITS, draft_side=VALIDATION_DRAFT_SIDE)  # no worker known: same refusals
    accepted = accept_upload(data, LIMITS, PARAMS)
    decoded_by_worker = load_radiograph(accepted.stored, PARAMS, LIMITS)
    assert accepted.model_input is not None
    assert np.array_equal(accepted.model_input, decoded_by_worker)
    return decoded_by_worker


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_file_gets_a_result_or_its_clear_error(name: str) -> None:
    data, expected = CORPUS[name]
    if expected == OK:
        tensor = model_input(data)
        assert tensor.shape == (64, 64) and tensor.dtype == np.uint8
        return
    with pytest.raises(AppError) as refused:
        model_input(data)
    assert (refused.value.status, refused.value.code) == expected, refused.value.message
    with pytest.raises(AppError) as worker_refused:  # the worker refuses it the same way
        load_radiograph(data, PARAMS, LIMITS)
    assert 400 <= worker_refused.value.status < 500


def test_random_corruptions_never_escape_as_crashes() -> None:
    outcomes = {"result": 0, "refused": 0}
    for name, data in mutants(MUTANTS):
        try:
            tensor = model_input(data)
        except AppError as error:
            assert 400 <= error.status < 500 and error.code and error.message, name
            outcomes["refused"] += 1
        else:
            assert tensor.shape == (64, 64) and tensor.dtype == np.uint8, name
            outcomes["result"] += 1
    print(
        f"\nmutants={MUTANTS} results={outcomes['result']} refused={outcomes['refused']} crashes=0"
    )
    assert outcomes["refused"] and outcomes["result"]
