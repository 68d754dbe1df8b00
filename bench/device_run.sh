#!/bin/sh
# The GPU benchmark on a host with a CUDA GPU, JAX, numpy and Pillow but none of this
# project's other packages and no network (the lent H100/H200 of bench/RESULTS.md). The rest
# travels with the checkout: wheels for Python 3.12 in .whl/ and Debian's redis-server with
# its libraries in .redis/bin and .redis/lib. Writes results.json, bench.log and logs.tgz to
# $OUT (default bench/out). `PYTHON=.venv/bin/python sh bench/device_run.sh` rehearses it here.
set -u
out=${OUT:-bench/out}
python=${PYTHON:-python3}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if ! "$python" -c 'import celery, keras, fastapi' 2>/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD" PATH="/tmp/site/bin:$PATH"
fi
[ -d .redis ] && export PATH="$PWD/.redis/bin:$PATH"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
lscpu | grep -E '^Model name|^CPU\(s\)'
redis-server --version || exit 1
# Everything the benchmark's processes import, checked before minutes are spent on it.
"$python" -c 'import celery.bin.celery, uvicorn.main, aiohttp, gateway.app, worker.serving.celery_app, worker.serving.pipeline, bench.host' || exit 1
"$python" -c 'import jax, keras; print("jax", jax.__version__, jax.devices(), "keras", keras.__version__)' || exit 1
# BENCH_ARGS replaces the arguments below: by default the host benchmark (bench/host.py), the
# host sized by bench/sizing.py from this machine's cores and GPUs (`--gateways N
# --workers-per-gpu M` override it); `make bench`'s single-worker run without `--host`.
# shellcheck disable=SC2086
"$python" -m bench ${BENCH_ARGS:---host --profile} \
    --json "$out/results.json" > "$out/bench.log" 2>&1
status=$?
tail -c 6000 "$out/bench.log"
(cd /tmp && tar czf "$out/logs.tgz" pneumo-bench*/*.log pneumo-bench*/*.txt 2>/dev/null)
exit $status
