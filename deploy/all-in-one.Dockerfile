# The whole service in one container: Redis, one CPU worker with the demo model, and the gateway,
# started and supervised by `pneumo run-all` (worker/serving/launcher.py), as `make run` does.
# For a demo or a hosted Space (uid 1000, one port from $PORT, default 7860), not for a hospital:
# one Redis without a volume keeps jobs only as long as the container's filesystem.
#   docker build -f deploy/all-in-one.Dockerfile -t pneumo-demo .
#   docker run -p 7860:7860 pneumo-demo          # then http://127.0.0.1:7860
# Give `docker stop` time for the worker's warm shutdown: `docker stop -t 60` (default 10 s).

FROM python:3.11-slim-bookworm AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

FROM python-base AS wheel
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python-base AS runtime
# Debian's Redis (7.0) runs the same deploy/redis/redis.conf as compose's 7.4 image. Not pinned
# to a package version: bookworm-security replaces it on each fix and the pinned one vanishes
# from the mirror; the base image's tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*

# Must equal the tensorflow pin in pyproject.toml (tests/deploy checks it); tensorflow-cpu is the
# same release without the CUDA kernels.
ARG TENSORFLOW_VERSION=2.21.0
COPY pyproject.toml deploy/docker/pyproject_deps.py /tmp/deps/
RUN python /tmp/deps/pyproject_deps.py /tmp/deps/pyproject.toml gateway worker \
        --swap "tensorflow=tensorflow-cpu==${TENSORFLOW_VERSION}" > /tmp/deps/requirements.txt \
    && pip install --no-cache-dir --requirement /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps

COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels

# uid 1000: what Hugging Face Spaces run as, and numeric for Kubernetes' runAsNonRoot.
RUN groupadd --gid 1000 user \
    && useradd --uid 1000 --gid user --create-home --home-dir /home/user user
# Read-only for the services (owned by root): the demo model and Redis's configuration.
COPY models/ /app/models/
COPY deploy/redis/redis.conf /app/redis.conf
ENV PNEUMO_MODEL_DIR=/app/models/demo \
    KERAS_BACKEND=tensorflow \
    PORT=7860
WORKDIR /home/user
USER 1000:1000

EXPOSE 7860
# Liveness of the gateway, on whatever $PORT the platform chose.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '7860'), timeout=4)"]
# Exec form: SIGTERM from `docker stop` reaches the launcher, which stops the gateway, the worker
# (warm shutdown), then Redis (AOF written), and exits 0.
ENTRYPOINT ["pneumo", "run-all", "--host", "0.0.0.0", "--data-dir", "/home/user/data", "--redis-config", "/app/redis.conf"]
