"""The original project's serving shape, for comparison: one process, and inside each request
decode + predict + Grad-CAM + PNG encode, with TensorFlow called from `async def` (so requests
queue behind each other on the event loop). Same model and same preprocessing as the service.

Run: PNEUMO_MODEL_DIR=models/demo uvicorn bench.sync_baseline:app --port 8100
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Annotated

from fastapi import FastAPI, File, UploadFile

from shared.config import get_settings
from shared.imaging import IntakeLimits, encode_png, load_radiograph
from shared.overlay import blend
from worker.model.runtime import ModelRuntime


@lru_cache(maxsize=1)
def runtime() -> ModelRuntime:
    settings = get_settings()
    loaded = ModelRuntime.from_directory(settings.model_dir, max_batch=1)
    loaded.warm_up()
    return loaded


@asynccontextmanager
async def load_model_at_startup(_: FastAPI) -> AsyncIterator[None]:
    runtime()  # the seed loaded its model once at start-up too
    yield


app = FastAPI(title="synchronous baseline", lifespan=load_model_at_startup)


@app.post("/predict")
async def predict(file: Annotated[UploadFile, File()]) -> dict[str, object]:
    model = runtime()
    image = load_radiograph(await file.read(), model.card.preprocessing, IntakeLimits())
    prediction = model.predict(image[None])[0]
    overlay = encode_png(blend(image, prediction.maps["gradcam"]))
    return {"prediction": prediction.label, "confidence": prediction.confidence,
            "overlay_bytes": len(overlay)}  # fmt: skip
