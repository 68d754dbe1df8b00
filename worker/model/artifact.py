"""A model artifact is a directory: `model.keras` + `model.json` (the card). Nothing else."""

from __future__ import annotations

import hashlib
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import keras

from shared.model_card import ModelCard

MODEL_FILE = "model.keras"
CARD_FILE = "model.json"


class ArtifactError(RuntimeError):
    """The artifact is missing, incomplete, or its weights do not match the card's checksum."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "keras_backend": keras.backend.backend()}
    for package in ("keras", "tensorflow", "jax", "numpy", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def save_artifact(model: keras.Model, card: ModelCard, directory: Path) -> ModelCard:
    """Write weights, then the card with their checksum; returns the card as written."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / MODEL_FILE)
    card = card.model_copy(
        update={
            "sha256": file_sha256(directory / MODEL_FILE),
            "created_at": card.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
            "library_versions": card.library_versions or library_versions(),
        }
    )
    write_card(card, directory)
    return card


def write_card(card: ModelCard, directory: Path) -> None:
    (directory / CARD_FILE).write_text(card.model_dump_json(indent=2) + "\n")


def read_card(directory: Path) -> ModelCard:
    path = directory / CARD_FILE
    if not path.is_file():
        raise ArtifactError(f"No {CARD_FILE} in {directory}.")
    return ModelCard.model_validate_json(path.read_text())


def load_artifact(directory: Path) -> tuple[keras.Model, ModelCard]:
    """Load and verify: a card whose checksum does not match its weights is refused."""
    card = read_card(directory)
    weights = directory / MODEL_FILE
    if not weights.is_file():
        raise ArtifactError(f"No {MODEL_FILE} in {directory}.")
    actual = file_sha256(weights)
    if card.sha256 and actual != card.sha256:
        raise ArtifactError(f"{weights} has sha256 {actual}, but {CARD_FILE} says {card.sha256}.")
    return keras.saving.load_model(weights, compile=False), card
