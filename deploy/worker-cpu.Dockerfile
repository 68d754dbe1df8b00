# CPU worker image: Celery + Keras on tensorflow-cpu. Runs on any laptop or CI box; fine for a
# demo or a small clinic (rates on two cores: bench/RESULTS.md), not for a hospital's peak.
# Build from the repo root:  docker build -f deploy/worker-cpu.Dockerfile -t pneumo-worker-cpu .
# JAX instead of TensorFlow:  --build-arg PNEUMO_EXTRA=worker-jax, then run with KERAS_BACKEND=jax.

FROM python:3.11-slim-bookworm AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

FROM python-base AS wheel
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python-base AS runtime
ARG PNEUMO_EXTRA=worker
# Must equal the tensorflow pin in pyproject.toml (tests/deploy checks it). tensorflow-cpu is
# the same release without the CUDA kernels: about half the download of `tensorflow`.
ARG TENSORFLOW_VERSION=2.21.0
COPY pyproject.toml deploy/docker/pyproject_deps.py /tmp/deps/
RUN python /tmp/deps/pyproject_deps.py /tmp/deps/pyproject.toml "${PNEUMO_EXTRA}" \
        --swap "tensorflow=tensorflow-cpu==${TENSORFLOW_VERSION}" > /tmp/deps/requirements.txt \
    && pip install --no-cache-dir --requirement /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps

COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app
# The demo artefact ships in the image, owned by root so the worker can read but never alter
# it. Mount a real model over /app/models (read-only) and point PNEUMO_MODEL_DIR at it.
COPY models/ /app/models/
ENV PNEUMO_MODEL_DIR=/app/models/demo \
    KERAS_BACKEND=tensorflow
WORKDIR /home/app
USER 10001:10001

# A worker has no HTTP port: ask it over the broker. Its consumer thread answers while the
# batch thread works; the start period covers model load and warm-up.
HEALTHCHECK --interval=30s --timeout=20s --start-period=120s --retries=3 \
    CMD ["sh", "-c", "celery -A worker.serving.celery_app inspect ping --timeout 10 -d \"worker@${HOSTNAME}\""]
CMD ["celery", "-A", "worker.serving.celery_app", "worker", "--loglevel=INFO", "--pool=threads", "--queues=pneumo", "--hostname=worker@%h"]
