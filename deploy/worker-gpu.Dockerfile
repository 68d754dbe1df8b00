# GPU worker image: Celery + Keras on the official TensorFlow GPU image, which brings CUDA,
# cuDNN and a TensorFlow build tested against them. One container = one process = one GPU.
# Build from the repo root:  docker build -f deploy/worker-gpu.Dockerfile -t pneumo-worker-gpu .
# The host needs the NVIDIA driver and the NVIDIA Container Toolkit; the image brings the rest.
# If this tag is ever missing from the registry, python:3.11-slim-bookworm plus
# `tensorflow[and-cuda]==<same version>` from PyPI is the equivalent (CUDA comes as wheels).

# Must equal the tensorflow pin in pyproject.toml (tests/deploy checks it).
ARG TENSORFLOW_IMAGE=tensorflow/tensorflow:2.21.0-gpu

FROM ${TENSORFLOW_IMAGE} AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_BREAK_SYSTEM_PACKAGES=1
# PIP_BREAK_SYSTEM_PACKAGES: the TF image installs into the system interpreter on purpose; a
# container is the isolation, so pip must not refuse on an "externally managed" base.

FROM python-base AS wheel
WORKDIR /src
COPY . .
RUN python3 -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python-base AS runtime
# TensorFlow itself comes from the base image (built for its CUDA); everything else is pinned
# by pyproject.toml.
COPY pyproject.toml deploy/docker/pyproject_deps.py /tmp/deps/
RUN python3 /tmp/deps/pyproject_deps.py /tmp/deps/pyproject.toml worker --drop tensorflow \
        > /tmp/deps/requirements.txt \
    && python3 -m pip install --no-cache-dir --requirement /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps

COPY --from=wheel /wheels /tmp/wheels
RUN python3 -m pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app
COPY models/ /app/models/
# Grow GPU memory on demand, so a second process (or a replica) can share the card.
ENV PNEUMO_MODEL_DIR=/app/models/demo \
    KERAS_BACKEND=tensorflow \
    TF_FORCE_GPU_ALLOW_GROWTH=true
WORKDIR /home/app
USER 10001:10001

HEALTHCHECK --interval=30s --timeout=20s --start-period=180s --retries=3 \
    CMD ["sh", "-c", "celery -A worker.serving.celery_app inspect ping --timeout 10 -d \"worker@${HOSTNAME}\""]
CMD ["celery", "-A", "worker.serving.celery_app", "worker", "--loglevel=INFO", "--pool=threads", "--queues=pneumo", "--hostname=worker@%h"]
