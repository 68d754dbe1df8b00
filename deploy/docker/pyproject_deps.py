"""Print the project's runtime requirements for some extras, one per line, for `pip install -r`.

Why this exists: the Dockerfiles install dependencies in their own layer before the code is
copied, so editing code does not reinstall TensorFlow. That layer may only see `pyproject.toml`,
and `pip install .[extra]` needs the whole source tree to build the project, so we read the
pinned requirements out of `pyproject.toml` instead. Standard library only (it runs in a bare
python image before anything is installed).

    python pyproject_deps.py pyproject.toml gateway
    python pyproject_deps.py pyproject.toml worker --swap tensorflow=tensorflow-cpu==2.21.0
    python pyproject_deps.py pyproject.toml worker --drop tensorflow   # base image provides it
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def normalise(name: str) -> str:
    """PEP 503 name normalisation, so `Tensorflow_CPU` and `tensorflow-cpu` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(requirement: str) -> tuple[str, list[str]]:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"cannot read a package name from requirement {requirement!r}")
    extras = [extra.strip() for extra in (match.group(2) or "").split(",") if extra.strip()]
    return normalise(match.group(1)), extras


def collect(project: dict, extras: list[str]) -> list[str]:
    """Core dependencies plus each extra's, following self-references like `me[gateway]`."""
    own_name = normalise(project["name"])
    optional = project.get("optional-dependencies", {})
    pending, seen, requirements = list(extras), set(), list(project.get("dependencies", []))
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise KeyError(f"extra {extra!r} is not in [project.optional-dependencies]")
        seen.add(extra)
        for requirement in optional[extra]:
            name, nested = split_requirement(requirement)
            if name == own_name:
                pending.extend(nested)
            else:
                requirements.append(requirement)
    return list(dict.fromkeys(requirements))


def rewrite(requirements: list[str], drop: list[str], swap: dict[str, str]) -> list[str]:
    dropped = {normalise(name) for name in drop}
    swaps = {normalise(name): replacement for name, replacement in swap.items()}
    result = []
    for requirement in requirements:
        name, _ = split_requirement(requirement)
        if name in dropped:
            continue
        result.append(swaps.get(name, requirement))
    return result


def parse_swap(text: str) -> tuple[str, str]:
    name, separator, replacement = text.partition("=")
    if not separator or not name or not replacement:
        raise argparse.ArgumentTypeError(f"--swap wants NAME=REQUIREMENT, got {text!r}")
    return name, replacement


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("extras", nargs="*", help="optional-dependency groups to add")
    parser.add_argument("--drop", action="append", default=[], metavar="NAME")
    parser.add_argument(
        "--swap", action="append", default=[], type=parse_swap, metavar="NAME=REQUIREMENT"
    )
    args = parser.parse_args(argv)
    project = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))["project"]
    requirements = rewrite(collect(project, args.extras), args.drop, dict(args.swap))
    sys.stdout.write("".join(f"{requirement}\n" for requirement in requirements))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
