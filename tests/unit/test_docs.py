"""The documentation stays true: generated references match the code, the README stays short,
and the commands it shows exist."""

from __future__ import annotations

import re

import typer

from client.cli import app as pneumo_app
from shared.config import Settings
from shared.errors import ERRORS_BY_CODE
from shared.reference_docs import (
    ERRORS_END,
    ERRORS_START,
    REGENERATE_COMMAND,
    configuration_page,
    error_table,
)
from tests.support.processes import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
README_MAX_LINES = 200
OUT_OF_DATE = f"is out of date with the code: run `{REGENERATE_COMMAND}` and commit the result"


def read(path) -> str:
    return path.read_text(encoding="utf-8")


def test_configuration_reference_matches_settings() -> None:
    assert read(DOCS / "configuration.md") == configuration_page(), (
        f"docs/configuration.md {OUT_OF_DATE}"
    )


def test_every_setting_is_described_and_listed() -> None:
    page = configuration_page()
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} needs Field(..., description=...)"
        assert f"`PNEUMO_{name.upper()}`" in page


def test_error_table_matches_the_error_registry() -> None:
    assert error_table() in read(DOCS / "api.md"), f"the error table in docs/api.md {OUT_OF_DATE}"


def test_error_table_lists_every_code_with_its_status() -> None:
    api_page = read(DOCS / "api.md")
    table = api_page[api_page.index(ERRORS_START) : api_page.index(ERRORS_END)]
    for code, failure in ERRORS_BY_CODE.items():
        assert f"| {failure.status} | `{code}` |" in table, code
        assert (failure.__doc__ or "").strip(), (
            f"{failure.__name__} needs a docstring for the table"
        )


def test_readme_is_short_and_opens_with_the_two_commands() -> None:
    lines = read(README).splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; keep it to {README_MAX_LINES}"
    )
    opening = "\n".join(lines[:8])
    for command in ("docker compose up", "make run", "make test"):
        assert command in opening, command


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", read(REPO_ROOT / "Makefile"), re.MULTILINE))


def pneumo_commands() -> set[str]:
    return set(typer.main.get_command(pneumo_app).commands)  # type: ignore[attr-defined]


def commands_shown(program: str, text: str) -> set[str]:
    """Sub-commands of `program` as the docs write commands: in backticks or at a code line's
    start, after any VAR=value; `pneumo a|b|c` names three."""
    pattern = rf"(?:^|`)\s*(?:[A-Z_]+=\S+\s+)*{program} ([a-z][a-z|-]*)"
    groups = re.findall(pattern, text, re.MULTILINE)
    return {name for group in groups for name in group.split("|")}


def test_make_targets_and_pneumo_commands_in_the_docs_exist() -> None:
    pages = [README, *DOCS.glob("*.md"), REPO_ROOT / "deploy" / "README.md"]
    text = "\n".join(read(page) for page in pages)
    assert {"run", "test"} <= commands_shown("make", text)
    assert commands_shown("make", text) <= makefile_targets()
    assert commands_shown("pneumo", text) <= pneumo_commands()


def test_relative_links_in_the_docs_lead_to_files() -> None:
    pages = [README, *DOCS.rglob("*.md"), REPO_ROOT / "deploy" / "README.md"]
    for page in pages:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", read(page)):
            assert (page.parent / target).exists(), f"{page.relative_to(REPO_ROOT)} links {target}"
