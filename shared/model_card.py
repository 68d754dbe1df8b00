"""`model.json`: everything a worker needs to serve an artifact and a reader needs to trust it."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from shared.imaging import PreprocessParams
from shared.schemas import ModelInfo

INTENDED_USE = (
    "Triage support: flags chest radiographs for earlier review by a radiologist. "
    "Not a diagnosis, and not a substitute for reading the image."
)


class ThresholdChoice(BaseModel):
    """The operating point and how it was picked, so it can be audited and re-chosen."""

    value: float = Field(0.5, gt=0, lt=1, description="P(pneumonia) at or above -> PNEUMONIA.")
    rule: str = "default 0.5"
    target_sensitivity: float | None = None
    validation_sensitivity: float | None = None
    validation_specificity: float | None = None

    @property
    def logit(self) -> float:
        return math.log(self.value / (1.0 - self.value))


class Calibration(BaseModel):
    """How the served probability is made from the model's logit, fitted on validation:
    P(pneumonia) = sigmoid(slope x logit + intercept) (Platt scaling)."""

    method: str = Field("none", description="How slope and intercept were obtained.")
    slope: float = Field(1.0, gt=0, description="Multiplies the logit; > 0 keeps the ranking.")
    intercept: float = Field(0.0, description="Added after the slope; undoes a prior shift.")
    guard: Literal["none", "regularised", "fallback"] = Field(
        "none",
        description="none: the plain fit; regularised: validation was separable, so the prior "
        "and target smoothing set the slope; fallback: the fit was unusable, identity served.",
    )
    reason: str = Field("", description="Why the guard acted, in words.")

    def calibrated_logit(self, logit: float) -> float:
        return self.slope * logit + self.intercept

    def raw_logit(self, calibrated_logit: float) -> float:
        """The model logit whose calibrated logit is `calibrated_logit` (slope > 0)."""
        return (calibrated_logit - self.intercept) / self.slope


class OodChoice(BaseModel):
    """The out-of-distribution gate served with the model (statistics in `file`)."""

    method: str = Field(description="The score served: mahalanobis or feature_norm.")
    threshold: float = Field(description="Scores above this are flagged out_of_distribution.")
    file: str = Field("ood.npz", description="Training-set statistics, beside model.keras.")
    sha256: str = ""
    rule: str = ""
    validation_false_flag_rate: float = Field(
        description="Share of validation images the gate flags (in-distribution, so all false)."
    )
    benchmark_detection_rate: float | None = Field(
        None, description="Share of the foreign-input benchmark flagged, all categories pooled."
    )
    benchmark: dict[str, Any] = Field(
        default_factory=dict, description="Flag rate per benchmark category and where measured."
    )
    candidates: dict[str, Any] = Field(
        default_factory=dict, description="Every method measured, and why this one was chosen."
    )


class PreprocessingChoice(BaseModel):
    """Why the card's `preprocessing.fit` is what it is: the measurement behind the choice."""

    fit: Literal["squash", "letterbox"] = Field(description="The fit this model was trained with.")
    rule: str = Field(description="How the fit was chosen, in words.")
    measured_by: str = Field(description="The command that measured the candidates.")
    results: dict[str, dict[str, dict[str, float]]] = Field(
        description="Per seed, per fit: held-out AUC and pointing game."
    )


class ModelCard(BaseModel):
    name: str
    version: str
    sha256: str = ""
    synthetic: bool
    created_at: str = ""
    intended_use: str = INTENDED_USE
    limitations: list[str] = Field(default_factory=list)
    architecture: dict[str, Any] = Field(default_factory=dict)
    preprocessing: PreprocessParams = Field(default_factory=PreprocessParams)
    preprocessing_choice: PreprocessingChoice | None = Field(
        None, description="Why preprocessing.fit was chosen; None for artifacts made before it."
    )
    last_conv_layer: str = "last_conv"
    threshold: ThresholdChoice = Field(default_factory=ThresholdChoice)
    calibration: Calibration = Field(default_factory=Calibration)
    ood: OodChoice | None = Field(
        None, description="The out-of-distribution gate; None for artifacts made before it."
    )
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _read_legacy_temperature(cls, data: Any) -> Any:
        """Artifacts from before Platt scaling carry only `temperature` (logit / T): the same
        answers are slope 1/T and intercept 0."""
        if not isinstance(data, dict) or "temperature" not in data:
            return data
        data = dict(data)
        temperature = float(data.pop("temperature"))
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if "calibration" not in data:
            data["calibration"] = Calibration(
                method=f"temperature scaling, T = {temperature:g} (legacy artifact)",
                slope=1.0 / temperature,
            )
        return data

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name, version=self.version, sha256=self.sha256, synthetic=self.synthetic
        )
