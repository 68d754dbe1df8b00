# Gateway image: FastAPI + uvicorn, no TensorFlow (the gateway never imports it; DESIGN.md).
# Build from the repo root:  docker build -f deploy/gateway.Dockerfile -t pneumo-gateway .
# Base images are pinned by tag; pin by digest (and let Renovate/Dependabot bump it) in production.

FROM python:3.11-slim-bookworm AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Build the project wheel in a throwaway stage: it needs the whole source tree (README, every
# package), none of which should become a layer of the final image.
FROM python-base AS wheel
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python-base AS runtime
# Dependencies first, from pyproject.toml alone: a code change reuses this layer.
COPY pyproject.toml deploy/docker/pyproject_deps.py /tmp/deps/
RUN python /tmp/deps/pyproject_deps.py /tmp/deps/pyproject.toml gateway > /tmp/deps/requirements.txt \
    && pip install --no-cache-dir --requirement /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps

# Then the code, as an installed wheel (no dependency resolution: that happened above).
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels

# A fixed numeric uid so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app
WORKDIR /home/app
USER 10001:10001

EXPOSE 8000
# Liveness only (process answers); readiness (/readyz) depends on Redis and workers and is the
# orchestrator's business, not a reason to mark the container unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# One uvicorn process per container: scale with replicas, and Prometheus metrics stay per process.
CMD ["uvicorn", "--factory", "gateway.app:create_app", "--host", "0.0.0.0", "--port", "8000", "--no-proxy-headers", "--http", "gateway.http_protocol:HeadDeadlineProtocol"]
