"""`model.json`: everything a worker needs to serve an artifact and a reader needs to trust it."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

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
    last_conv_layer: str = "last_conv"
    threshold: ThresholdChoice = Field(default_factory=ThresholdChoice)
    temperature: float = Field(1.0, gt=0, description="Logits are divided by this (calibration).")
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=dict)

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name, version=self.version, sha256=self.sha256, synthetic=self.synthetic
        )
