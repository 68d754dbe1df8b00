"""Imports point downward, read from every import statement in the tree (those inside functions
too): serving, training and audit build on the model; the model, the phantoms and `shared` build
on nothing of ours; the benchmark sits on top and nothing imports it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.processes import REPO_ROOT

PACKAGES = ("shared", "gateway", "worker", "client", "bench")
OURS = (*PACKAGES, "tests")

# Each part of the tree and the parts it may import: itself always, `tests` never. The client
# reaches the server packages only through `client/commands.py`, by module name (`importlib`),
# never by an import statement: a client-only install has none of them.
MAY_IMPORT: dict[str, set[str]] = {
    "shared": set(),
    "client": {"shared"},
    "gateway": {"shared"},
    "worker": set(),
    "worker.model": {"shared"},
    "worker.phantoms": {"shared"},
    "worker.serving": {"shared", "worker.model"},
    "worker.training": {"shared", "worker.model", "worker.phantoms"},
    "worker.audit": {"shared", "worker.model", "worker.training", "worker.phantoms"},
    "bench": {"shared", "gateway", "worker.model", "worker.serving", "worker.phantoms"},
}


def part_of(module: str) -> str:
    """`worker.serving.tasks` -> `worker.serving`; `shared.config.Settings` -> `shared`."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "worker" and len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO_ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported_names(source: str, package: str) -> Iterator[str]:
    """Every module or module attribute `source` imports, anywhere in it; relative imports
    resolved against `package`, the package the source's module is in."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield from (f"{module}.{alias.name}" for alias in node.names)


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports_between_parts() -> Iterator[tuple[str, str, str]]:
    """(importing part, imported part, importing file) for each import across parts."""
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            importer = part_of(module_name(path))
            for name in imported_names(path.read_text(), package_of(path)):
                imported = part_of(name)
                if name.split(".")[0] in OURS and imported != importer:
                    yield importer, imported, str(path.relative_to(REPO_ROOT))


def test_every_part_of_the_tree_has_a_rule() -> None:
    parts = {part_of(module_name(path)) for p in PACKAGES for path in (REPO_ROOT / p).rglob("*.py")}
    assert parts == set(MAY_IMPORT)


@pytest.mark.parametrize("importer", sorted(MAY_IMPORT))
def test_imports_only_point_downward(importer: str) -> None:
    wrong = sorted(
        f"{path} imports {imported}"
        for source, imported, path in imports_between_parts()
        if source == importer and imported not in MAY_IMPORT[importer]
    )
    assert not wrong, f"{importer} may import only {sorted(MAY_IMPORT[importer])}:\n" + "\n".join(
        wrong
    )


def test_the_reader_sees_imports_inside_functions_and_resolves_relative_ones() -> None:
    source = (
        "import shared.config\n"
        "from . import pipeline\n"
        "from ..model.runtime import ModelRuntime\n"
        "def later():\n"
        "    from worker.training import trainer\n"
    )
    names = set(imported_names(source, "worker.serving"))
    assert names == {
        "shared.config", "worker.serving.pipeline", "worker.model.runtime.ModelRuntime",
        "worker.training.trainer",
    }  # fmt: skip
