"""A model artifact is a directory: `model.keras`, `model.json` (the card) and, for models made
since the out-of-distribution gate, `ood.npz` (its training-set statistics). Nothing else."""

from __future__ import annotations

import hashlib
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import keras

from shared.model_card import ModelCard
from worker.model.ood import OodGate, OodStatistics, load_statistics, save_statistics

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


def save_artifact(
    model: keras.Model, card: ModelCard, directory: Path, ood: OodStatistics | None = None
) -> ModelCard:
    """Write weights (and OOD statistics), then the card with their checksums; returns the card
    as written. A card that names an OOD gate must come with its statistics."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / MODEL_FILE)
    if (ood is None) != (card.ood is None):
        raise ArtifactError("A card's OOD gate and its statistics go together.")
    if ood is not None and card.ood is not None:
        ood_path = save_statistics(ood, directory)
        card = card.model_copy(
            update={"ood": card.ood.model_copy(update={"file": ood_path.name,
                                                       "sha256": file_sha256(ood_path)})}
        )  # fmt: skip
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


def load_ood_gate(directory: Path, card: ModelCard) -> OodGate | None:
    """The card's OOD gate with its verified statistics; None for artifacts made before it."""
    if card.ood is None:
        return None
    path = directory / card.ood.file
    if not path.is_file():
        raise ArtifactError(f"{CARD_FILE} names an OOD gate, but {path} is missing.")
    actual = file_sha256(path)
    if card.ood.sha256 and actual != card.ood.sha256:
        raise ArtifactError(f"{path} has sha256 {actual}, but {CARD_FILE} says {card.ood.sha256}.")
    return OodGate(load_statistics(path), card.ood.method, card.ood.threshold)
