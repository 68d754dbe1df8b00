"""Fixtures for the deployment checks: the compose file, pyproject, rendered Kubernetes manifests.

None of these checks needs a Docker engine, a cluster or the network. Where a real tool is
installed (hadolint, docker-compose, kubectl/kustomize, kubernetes-validate) the tests use it;
the project's own rules run either way.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
K8S_DIR = DEPLOY / "k8s"

# ${VAR}, ${VAR:-default}, ${VAR-default}; "$$" is a literal "$" (Compose interpolation rules).
_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Resolve Compose `${...}` references in every string of a parsed compose document."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, default = match.groups()
        if operator == ":-":
            return env.get(name) or default
        if operator == "-":
            return env.get(name, default)
        return env.get(name, "")

    return _INTERPOLATION.sub(substitute, value)


@pytest.fixture(scope="session")
def compose_interpolate():
    """`interpolate` for test modules: importing from conftest breaks beside other conftests."""
    return interpolate


@pytest.fixture(scope="session")
def compose_raw() -> dict[str, Any]:
    """docker-compose.yml as written, `${...}` left in place."""
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """docker-compose.yml as Compose sees it with no .env and an empty environment."""
    return interpolate(compose_raw, {})


@pytest.fixture(scope="session")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def k8s_docs() -> list[dict[str, Any]]:
    """Every resource `kubectl apply -k deploy/k8s` would send, rendered by kustomize."""
    return render_kustomization(K8S_DIR)


@pytest.fixture(scope="session")
def k8s_render_without_kustomize():
    return lambda: render_without_kustomize(K8S_DIR)


def render_kustomization(directory: Path) -> list[dict[str, Any]]:
    kustomize, kubectl = shutil.which("kustomize"), shutil.which("kubectl")
    if kustomize or kubectl:
        command = [kustomize, "build"] if kustomize else [kubectl, "kustomize"]
        rendered = subprocess.run(
            [*command, str(directory)], check=True, capture_output=True, text=True, timeout=120
        ).stdout
        return [doc for doc in yaml.safe_load_all(rendered) if doc]
    return render_without_kustomize(directory)


def render_without_kustomize(directory: Path, namespace: str | None = None) -> list[dict]:
    """The subset of kustomize these manifests use, for machines without the binary.

    resources (files and nested kustomizations), namespace and configMapGenerator (files,
    envs). Generated names get no hash suffix, so references stay consistent.
    """
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text("utf-8"))
    namespace = kustomization.get("namespace", namespace)
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            docs.extend(render_without_kustomize(path, namespace))
        else:
            docs.extend(doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc)
    docs.extend(
        generated_config_map(directory, spec)
        for spec in kustomization.get("configMapGenerator", [])
    )
    for doc in docs:
        if namespace and doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = namespace
    return docs


def generated_config_map(directory: Path, spec: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, str] = {}
    for name in spec.get("files", []):
        data[Path(name).name] = (directory / name).read_text("utf-8")
    for name in spec.get("envs", []):
        for line in (directory / name).read_text("utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                data[key.strip()] = value
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": spec["name"]},
        "data": data,
    }
