"""Decode image files with the serving path's `load_radiograph`, and keep the result on disk.

Decoding a few thousand full-size JPEGs takes minutes on two cores; the uint8 arrays they become
take a few tens of MB. One `.npy` per file list is keyed by the files (path, size, mtime), the
preprocessing parameters, the preprocessing code itself and the Pillow version, so any change to
what a served image would look like makes a new entry instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL

import shared.imaging
from shared.errors import AppError
from shared.imaging import IntakeLimits, PreprocessParams, load_radiograph

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def decode_file(path: Path, params: PreprocessParams, limits: IntakeLimits) -> np.ndarray:
    try:
        return load_radiograph(path.read_bytes(), params, limits)
    except AppError as error:
        raise ValueError(f"{path}: {error.message}") from error


def decode_files(paths: list[Path], params: PreprocessParams) -> np.ndarray:
    """(N, S, S) uint8; threads, because Pillow releases the GIL while it decodes and resizes."""
    limits = IntakeLimits()
    size = params.image_size
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        images = list(pool.map(lambda path: decode_file(path, params, limits), paths))
    return np.stack(images) if images else np.zeros((0, size, size), np.uint8)


def cache_key(root: Path, files: list[str], params: PreprocessParams) -> str:
    entries = []
    for file in files:
        status = (root / file).stat()
        entries.append((file, status.st_size, status.st_mtime_ns))
    payload = {
        "format": CACHE_FORMAT,
        "files": entries,
        "params": params.model_dump(mode="json"),
        "imaging_code": hashlib.sha256(Path(shared.imaging.__file__).read_bytes()).hexdigest(),
        "pillow": PIL.__version__,
    }
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def decode_cached(
    root: Path, files: list[str], params: PreprocessParams, cache_dir: Path | None
) -> np.ndarray:
    """`decode_files` of root/file for each file, read from cache_dir when it was done before."""
    if cache_dir is None:
        return decode_files([root / file for file in files], params)
    size = params.image_size
    path = cache_dir / f"images-{size}px-{cache_key(root, files, params)[:24]}.npy"
    if path.is_file():
        images = np.load(path)
        if images.shape == (len(files), size, size) and images.dtype == np.uint8:
            log.info("Read %d preprocessed images from %s", len(files), path)
            return images
    images = decode_files([root / file for file in files], params)
    _store(images, path)
    return images


def _store(images: np.ndarray, path: Path) -> None:
    """Write atomically; a read-only dataset folder only costs the cache, never the run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        with partial.open("wb") as handle:
            np.save(handle, images)
        os.replace(partial, path)
    except OSError as error:
        log.warning("Could not cache preprocessed images at %s: %s", path, error)
