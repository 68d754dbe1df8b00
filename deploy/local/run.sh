#!/usr/bin/env bash
# `make run`: the compose stack as local processes — Redis (AOF), one worker, the gateway.
# Each is supervised: one that exits (a crash, the OOM killer) is started again after a pause,
# as compose's `restart: unless-stopped` would, instead of the whole stack going down with it.
# Ctrl-C stops all three. Redis data lives in .run/redis so accepted jobs survive a restart.
set -euo pipefail
cd "$(dirname "$0")/../.."

REDIS_PORT="${PNEUMO_LOCAL_REDIS_PORT:-6380}"   # not 6379, so a system Redis is left alone
GATEWAY_PORT="${PNEUMO_GATEWAY_PORT:-8000}"
RESTART_PAUSE_S="${PNEUMO_LOCAL_RESTART_PAUSE_S:-2}"
export PNEUMO_REDIS_URL="${PNEUMO_REDIS_URL:-redis://127.0.0.1:${REDIS_PORT}/0}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
mkdir -p .run/redis

# supervise NAME LOG COMMAND...: run COMMAND, appending to LOG (- for the terminal), and start it
# again whenever it exits, until this supervisor is told to stop (TERM), which stops it too.
supervise() {
  local name=$1 log=$2 child=""
  shift 2
  trap '[[ -n $child ]] && kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM
  while true; do
    if [[ $log == - ]]; then "$@" & else "$@" >>"$log" 2>&1 & fi
    child=$!
    local status=0
    wait "$child" || status=$?
    echo "$name exited (status $status); restarting in ${RESTART_PAUSE_S} s" >&2
    sleep "$RESTART_PAUSE_S" & wait $! || true
  done
}

supervisors=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${supervisors[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The compose config, with its container data directory (which Redis enters while parsing the
# file, before any command-line override) pointed at .run/redis.
sed "s#^dir /data\$#dir $PWD/.run/redis#" deploy/redis/redis.conf >.run/redis.conf
supervise redis .run/redis.log redis-server .run/redis.conf --port "$REDIS_PORT" \
  --bind 127.0.0.1 --protected-mode yes --daemonize no &
supervisors+=($!)
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done
echo "redis    on 127.0.0.1:${REDIS_PORT} (AOF in .run/redis, log .run/redis.log)"

supervise worker .run/worker.log celery -A worker.serving.celery_app worker --pool=threads \
  --loglevel=INFO --queues=pneumo --hostname="worker@%h" &
supervisors+=($!)
echo "worker   loading model ${PNEUMO_MODEL_DIR:-models/demo} (log .run/worker.log)"

echo "gateway  on http://127.0.0.1:${GATEWAY_PORT}  (docs at /docs, readiness at /readyz)"
supervise gateway - \
  uvicorn --factory gateway.app:create_app --host 127.0.0.1 --port "$GATEWAY_PORT" --no-proxy-headers \
    --http gateway.http_protocol:HeadDeadlineProtocol &
supervisors+=($!)
wait
