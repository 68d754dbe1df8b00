#!/usr/bin/env bash
# `make run`: the compose stack as local processes — Redis (AOF), one worker, the gateway.
# Ctrl-C stops all three. Redis data lives in .run/redis so accepted jobs survive a restart.
set -euo pipefail
cd "$(dirname "$0")/../.."

REDIS_PORT="${PNEUMO_LOCAL_REDIS_PORT:-6380}"   # not 6379, so a system Redis is left alone
GATEWAY_PORT="${PNEUMO_GATEWAY_PORT:-8000}"
export PNEUMO_REDIS_URL="${PNEUMO_REDIS_URL:-redis://127.0.0.1:${REDIS_PORT}/0}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
mkdir -p .run/redis

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The compose config, with its container data directory (which Redis enters while parsing the
# file, before any command-line override) pointed at .run/redis.
sed "s#^dir /data\$#dir $PWD/.run/redis#" deploy/redis/redis.conf >.run/redis.conf
redis-server .run/redis.conf --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes \
  --daemonize no >.run/redis.log 2>&1 &
pids+=($!)
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done
echo "redis    on 127.0.0.1:${REDIS_PORT} (AOF in .run/redis, log .run/redis.log)"

celery -A worker.serving.celery_app worker --pool=threads --loglevel=INFO --queues=pneumo \
  --hostname="worker@%h" >.run/worker.log 2>&1 &
pids+=($!)
echo "worker   loading model ${PNEUMO_MODEL_DIR:-models/demo} (log .run/worker.log)"

echo "gateway  on http://127.0.0.1:${GATEWAY_PORT}  (docs at /docs, readiness at /readyz)"
uvicorn --factory gateway.app:create_app --host 127.0.0.1 --port "$GATEWAY_PORT" &
pids+=($!)
wait -n
