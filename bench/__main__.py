"""`python -m bench [--host] [--quick] [--profile] [--json FILE]`."""

import argparse
import sys
from pathlib import Path

from bench.host import main_host
from bench.profile import py_spy_command
from bench.run import DEFAULT_MODEL_DIR, main

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--quick", action="store_true", help="a short smoke-test run")
parser.add_argument("--json", type=Path, default=None, help="also write the results here")
parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
parser.add_argument(
    "--profile", action="store_true", help="py-spy the draining worker: what bounds it"
)
parser.add_argument(
    "--batch-size",
    type=int,
    default=None,
    help="worker micro-batch and ceiling batch (default 16; GPU: 128, --host's default there)",
)
parser.add_argument(
    "--jpeg-sides", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
    help="long side of the benchmark films in px, drawn between MIN and MAX "
    "(default 1,000-2,000; --host: MIN alone, default 1,000)",
)  # fmt: skip
parser.add_argument(
    "--drain-jobs", type=int, default=None, metavar="N",
    help="jobs per drain (default 5,000; quick 64): more for a worker that takes 1,000+ a second",
)  # fmt: skip
parser.add_argument(
    "--worker-decode-jobs", type=int, default=0, metavar="N",
    help="also drain N jobs queued as uploads alone, so the worker decodes every JPEG",
)  # fmt: skip
parser.add_argument(
    "--profile-gil",
    action="store_true",
    help="the profile samples only the GIL's holder: which thread's Python fills the time",
)
parser.add_argument(
    "--worker-variant",
    action="append",
    default=[],
    metavar="NAME:VAR=VALUE[,VAR=VALUE]",
    help="another drain, by a worker with these settings on top "
    "(e.g. noack:PNEUMO_BROKER_ACK_EMULATION=false)",
)
parser.add_argument(
    "--no-http", action="store_true", help="drains only: skip the end-to-end and baseline runs"
)
parser.add_argument(
    "--host", action="store_true",
    help="one host as deployed (bench/host.py): N gateways and M workers per GPU from the "
    "sizing rule, pool drain and end to end at concurrency 1, 32, 256",
)  # fmt: skip
parser.add_argument("--gateways", type=int, default=None, help="--host: gateway processes")
parser.add_argument(
    "--workers-per-gpu", type=int, default=None, help="--host: worker processes per GPU"
)


def variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = text.partition(":")
    return name, dict(pair.split("=", 1) for pair in assignments.split(",") if pair)


arguments = parser.parse_args()
profile = arguments.profile or arguments.profile_gil
plan_changes = {} if arguments.drain_jobs is None else {"drain_jobs": arguments.drain_jobs}
if profile and py_spy_command() is None:
    # Said now rather than after minutes of benchmark; the run goes on without the profile.
    print("py-spy not found (pip install -e '.[dev]'): the worker profile is skipped.",
          file=sys.stderr)  # fmt: skip
if arguments.host:
    main_host(arguments.quick, arguments.json, arguments.model, profile=profile,
              batch_size=arguments.batch_size, gateway_processes=arguments.gateways,
              workers_per_gpu=arguments.workers_per_gpu,
              jpeg_side=arguments.jpeg_sides[0] if arguments.jpeg_sides else 1000,
              **plan_changes)  # fmt: skip
    sys.exit(0)
main(arguments.quick, arguments.json, arguments.model, profile,
     batch_size=arguments.batch_size or 16,
     jpeg_sides=tuple(arguments.jpeg_sides or (1000, 2000)),
     worker_decode_jobs=arguments.worker_decode_jobs, profile_gil=arguments.profile_gil,
     worker_variants=dict(map(variant, arguments.worker_variant)),
     http=not arguments.no_http, **plan_changes)  # fmt: skip
