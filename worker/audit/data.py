"""The images an audit explains, as the model sees them, with whatever ground truth exists,
and what the serving runtime returns for them.

Pixels come from `shared.imaging.load_radiograph`, the serving path. Phantom folders carry a
manifest naming each image's lung and lesion masks and its scanner artefact; those masks are
moved onto model-input coordinates with `worker.audit.mask_geometry`. A plain Kermany folder has no
masks: the audit then scores only what needs none (border energy, randomisation, deletion).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared.imaging import IntakeLimits, PreprocessParams, decode_grayscale, load_radiograph
from shared.overlay import upsample_map
from worker.audit.mask_geometry import preprocess_box, transform_mask
from worker.model.gradcam import METHOD_NAMES
from worker.model.runtime import ModelRuntime
from worker.phantoms.artefacts import artifact_band_mask
from worker.phantoms.kermany import MANIFEST_NAME
from worker.training.datasets import CLASS_NAMES, find_kermany_root, scan_kermany


@dataclass
class AuditData:
    images: np.ndarray  # (N, S, S) uint8 model inputs
    labels: np.ndarray  # (N,) int, 1 = PNEUMONIA
    files: list[str]  # relative to the data root
    lung_masks: np.ndarray | None = None  # (N, S, S) bool, on model-input coordinates
    lesion_masks: np.ndarray | None = None
    artifact_masks: np.ndarray | None = None  # where an artefact was drawn (all False if none)

    @property
    def has_masks(self) -> bool:
        return self.lesion_masks is not None


@dataclass(frozen=True)
class Entry:
    file: str
    label: int
    lung_mask: str | None = None
    lesion_mask: str | None = None
    artifact: str | None = None


def list_entries(root: Path, split: str) -> list[Entry]:
    """The split's images: from the phantom manifest when there is one, else from the folders."""
    manifest_path = root / MANIFEST_NAME
    if manifest_path.is_file():
        files = json.loads(manifest_path.read_text())["files"]
        return [
            Entry(
                item["path"],
                int(item["label"]),
                item.get("lung_mask"),
                item.get("lesion_mask"),
                item.get("artifact"),
            )
            for item in files
            if item["split"] == split
        ]
    return [Entry(record.file, record.label) for record in scan_kermany(root)[split]]


def stratified_subset(entries: list[Entry], limit: int | None, seed: int) -> list[Entry]:
    """At most `limit` entries, each class keeping its share; a fixed seed picks the same ones."""
    if limit is None or len(entries) <= limit:
        return entries
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in range(len(CLASS_NAMES)):
        members = [index for index, entry in enumerate(entries) if entry.label == label]
        quota = int(round(limit * len(members) / len(entries)))
        chosen += list(rng.permutation(members)[:quota])
    return [entries[index] for index in sorted(chosen)]


def read_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 127


def load_audit_data(
    data_dir: Path,
    params: PreprocessParams,
    *,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
) -> AuditData:
    root = find_kermany_root(data_dir)
    entries = stratified_subset(list_entries(root, split), limit, seed)
    if not entries:
        raise FileNotFoundError(f"No images in the {split!r} split of {root}.")
    samples = [load_entry(root, entry, params) for entry in entries]
    images = np.stack([image for image, _ in samples])
    data = AuditData(images, np.array([e.label for e in entries]), [e.file for e in entries])
    if all(masks is not None for _, masks in samples):
        data.lung_masks, data.lesion_masks, data.artifact_masks = (
            np.stack([masks[kind] for _, masks in samples]) for kind in range(3)
        )
    return data


def load_entry(root: Path, entry: Entry, params: PreprocessParams):
    """(model input, (lung, lesion, artefact) masks on model-input coordinates, or None)."""
    data = (root / entry.file).read_bytes()
    limits = IntakeLimits()
    image = load_radiograph(data, params, limits)
    if entry.lung_mask is None or entry.lesion_mask is None:
        return image, None
    # The same decode load_radiograph did, for the crop box: a JPEG may be decoded in draft mode.
    gray = decode_grayscale(data, limits, 2 * params.image_size if params.jpeg_draft else None)
    box = preprocess_box(gray, params)
    lung = read_mask(root / entry.lung_mask)
    lesion = read_mask(root / entry.lesion_mask)
    drawn = np.zeros_like(lung)
    if entry.artifact is not None:
        drawn = artifact_band_mask(lung.shape[0], entry.artifact)
    masks = tuple(transform_mask(mask, gray.shape, box, params) for mask in (lung, lesion, drawn))
    return image, masks


def served_probabilities(runtime: ModelRuntime, images: np.ndarray) -> np.ndarray:
    """Calibrated P(pneumonia) per image, as served."""
    return np.array([prediction.probability for prediction in runtime.predict(images)])


def predict_and_upsample(runtime: ModelRuntime, images: np.ndarray):
    """(predictions, method -> (N, S, S) maps as served, upsampled to the model input)."""
    predictions = runtime.predict(images)
    maps = {
        method: np.stack([upsample_map(p.maps[method], images.shape[1]) for p in predictions])
        for method in METHOD_NAMES
    }
    return predictions, maps
