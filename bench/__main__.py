"""`python -m bench [--quick] [--profile] [--json FILE]`."""

import argparse
import sys
from pathlib import Path

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
    "--batch-size", type=int, default=16, help="worker micro-batch and ceiling batch (GPU: 128)"
)
parser.add_argument(
    "--jpeg-sides", type=int, nargs=2, default=(1000, 2000), metavar=("MIN", "MAX"),
    help="long side of the benchmark films in px, drawn between MIN and MAX",
)  # fmt: skip
arguments = parser.parse_args()
if arguments.profile and py_spy_command() is None:
    # Said now rather than after minutes of benchmark; the run goes on without the profile.
    print("py-spy not found (pip install -e '.[dev]'): the worker profile is skipped.",
          file=sys.stderr)  # fmt: skip
main(arguments.quick, arguments.json, arguments.model, arguments.profile,
     batch_size=arguments.batch_size, jpeg_sides=tuple(arguments.jpeg_sides))  # fmt: skip
