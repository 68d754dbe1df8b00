"""The failure table: every code once, each with a documented status, and every code a worker
can write into a job record answered with that same status when the gateway reads it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared import errors
from shared.errors import (
    ERRORS_BY_CODE,
    UNKNOWN_CODE_STATUS,
    AppError,
    InvalidImage,
    error_for_code,
    status_for_code,
)

REPO = Path(__file__).resolve().parents[2]
# The statuses the API documents (405 comes from the web framework's routing).
DOCUMENTED_STATUSES = {400, 401, 404, 405, 408, 409, 413, 415, 422, 429, 500, 503, 504}
# Where a job record's failure comes from: the worker's pipeline and the decoders it calls.
WORKER_FAILURE_SOURCES = ("worker/serving/pipeline.py", "shared/imaging.py", "shared/dicom.py")
FAILURES = sorted(ERRORS_BY_CODE.items())


def failures_raised_in(relative_path: str) -> set[type[AppError]]:
    """The failures a module imports from shared.errors, read from its source (importing the
    worker's pipeline would load the model runtime)."""
    tree = ast.parse((REPO / relative_path).read_text())
    names = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "shared.errors"
        for alias in node.names
    }
    imported = {getattr(errors, name) for name in names}
    return {item for item in imported if isinstance(item, type) and item in ERRORS_BY_CODE.values()}


def test_the_registry_holds_every_failure_class_under_its_own_code() -> None:
    defined = {
        item
        for item in vars(errors).values()
        if isinstance(item, type) and issubclass(item, AppError) and "code" in vars(item)
    }
    assert set(ERRORS_BY_CODE.values()) == defined
    assert all(code == failure.code for code, failure in ERRORS_BY_CODE.items())


@pytest.mark.parametrize(("code", "failure"), FAILURES, ids=[code for code, _ in FAILURES])
def test_each_failure_is_documented_and_answers_with_its_status(
    code: str, failure: type[AppError]
) -> None:
    assert code and code == code.lower() and " " not in code
    assert failure.status in DOCUMENTED_STATUSES
    assert status_for_code(code) == failure.status
    assert failure.__doc__ and "\n" not in failure.__doc__.strip()
    if failure.status in (503, 504):  # the service expects to recover: say when to retry
        assert failure.retry_after_s is not None
    error = error_for_code(code, "what happened")
    assert type(error) is failure and error.status == failure.status
    assert error.to_dict() == {"error": {"code": code, "message": "what happened"}}


def test_a_reused_code_fails_when_its_class_is_defined() -> None:
    before = dict(ERRORS_BY_CODE)
    with pytest.raises(TypeError, match="corrupt_image"):

        class _Again(InvalidImage):
            code = "corrupt_image"

    assert ERRORS_BY_CODE == before


def test_a_family_cannot_be_raised_only_its_failures() -> None:
    with pytest.raises(TypeError, match="family"):
        InvalidImage("which failure?")
    assert issubclass(ERRORS_BY_CODE["corrupt_image"], InvalidImage)


def test_every_code_a_worker_can_store_maps_to_an_error_status() -> None:
    stored = set().union(*(failures_raised_in(path) for path in WORKER_FAILURE_SOURCES))
    codes = {failure.code for failure in stored}
    # The decoders' refusals and the worker's own failures, found in the source.
    assert {"corrupt_image", "too_many_pixels", "unsupported_transfer_syntax"} <= codes
    assert {"upload_missing", "worker_lost"} <= codes
    for code in codes:
        assert 400 <= status_for_code(code) < 600, code
    # The file's fault is the client's (4xx); losing it or the worker is the service's (503).
    assert status_for_code("corrupt_image") == 422 and status_for_code("image_too_small") == 422
    assert status_for_code("worker_lost") == 503 and status_for_code("upload_missing") == 503


def test_an_unknown_code_keeps_its_wire_value_with_a_server_error() -> None:
    assert status_for_code("written_by_a_newer_worker") == UNKNOWN_CODE_STATUS == 500
    error = error_for_code("written_by_a_newer_worker", "no idea")
    assert (error.code, error.status) == ("written_by_a_newer_worker", 500)
    assert status_for_code("internal_error") == 500  # the one the class's own code answers


def test_a_retry_after_given_at_raise_time_wins_over_the_class_default() -> None:
    assert ERRORS_BY_CODE["rate_limited"]("slow down", retry_after_s=17).retry_after_s == 17
    assert ERRORS_BY_CODE["queue_full"]("busy").retry_after_s == 5


def test_messages_carry_no_heap_address_and_stay_bounded() -> None:
    from shared.errors import MAX_MESSAGE_CHARS, CorruptImage, shown

    error = CorruptImage("cannot identify image file <_io.BytesIO object at 0x7fab12c3d4e0>")
    assert "0x" not in error.message and "object at" not in error.message
    assert "0x" not in error.to_dict()["error"]["message"]
    assert len(CorruptImage("x" * 100_000).message) == MAX_MESSAGE_CHARS
    echoed = shown("m" * 900_000)
    assert len(echoed) < 100 and "900000 characters" in echoed
    assert shown("gradcam") == "'gradcam'"
