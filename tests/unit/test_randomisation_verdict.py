"""The sanity check's verdict rule on known stage results: judged from the first stage on."""

from __future__ import annotations

from worker.audit.randomisation import SIMILARITY_LIMIT, verdict
from worker.model.gradcam import METHOD_NAMES


def stages(*per_stage: tuple[float | None, float | None]) -> list[dict]:
    """Every method gets the same (spearman, ssim) at each stage."""
    names = ["head", "+ conv block 2", "+ conv block 1"]
    return [
        {
            "stage": names[index],
            "methods": {m: {"spearman": rho, "ssim": ssim} for m in METHOD_NAMES},
        }
        for index, (rho, ssim) in enumerate(per_stage)
    ]


def test_maps_that_survive_the_head_alone_fail_even_if_later_stages_pass() -> None:
    """The demo's Grad-CAM before this rule: similar with only the head random, judged only
    once the last block was random too, and called a pass."""
    result = verdict(stages((0.769, 0.617), (0.2, 0.3), (0.0, 0.2)))
    for method in METHOD_NAMES:
        assert result[method]["passed"] is False
        assert result[method]["first_failed_stage"] == "head"
        assert result[method]["failed_stages"] == ["head"]
        assert (result[method]["spearman"], result[method]["ssim"]) == (0.769, 0.617)


def test_one_measure_above_the_limit_at_any_stage_fails() -> None:
    above = SIMILARITY_LIMIT + 0.01
    result = verdict(stages((0.1, 0.2), (0.1, above), (0.0, 0.1)))
    assert all(not entry["passed"] for entry in result.values())
    assert {entry["first_failed_stage"] for entry in result.values()} == {"+ conv block 2"}


def test_maps_dissimilar_at_every_stage_pass() -> None:
    result = verdict(stages((0.3, SIMILARITY_LIMIT), (-0.4, 0.1), (0.0, 0.2)))
    assert all(entry["passed"] and entry["first_failed_stage"] is None for entry in result.values())


def test_a_stage_with_nothing_to_rank_shows_nothing_and_does_not_pass() -> None:
    result = verdict(stages((None, None), (0.1, 0.1), (0.0, 0.1)))
    assert all(entry["first_failed_stage"] == "head" for entry in result.values())
