"""`python -m bench [--quick] [--json FILE]`."""

import argparse
from pathlib import Path

from bench.run import DEFAULT_MODEL_DIR, main

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--quick", action="store_true", help="a short smoke-test run")
parser.add_argument("--json", type=Path, default=None, help="also write the results here")
parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
arguments = parser.parse_args()
main(arguments.quick, arguments.json, arguments.model)
