"""`pneumo worker` and `pneumo bench`: the serving commands, offered by `pneumo` where the
worker's dependencies are installed."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

messages = Console(stderr=True)


def worker_command(queue: str, log_level: str) -> list[str]:
    # No --concurrency: the pool gets one thread per batch in flight (worker.serving.celery_app).
    return [
        sys.executable, "-m", "celery", "-A", "worker.serving.celery_app", "worker",
        "--pool=threads", f"--queues={queue}", f"--loglevel={log_level}", "--hostname=worker@%h",
    ]  # fmt: skip


BATCHES_IN_FLIGHT_HELP = (
    "Batches side by side, one pool thread each (2 on a GPU). "
    "Default: PNEUMO_BATCHES_IN_FLIGHT, or 1."
)


def worker(
    batches_in_flight: Annotated[
        int | None,
        typer.Option(min=1, max=4, help=BATCHES_IN_FLIGHT_HELP),
    ] = None,
    queue: Annotated[str | None, typer.Option(help="Default: PNEUMO_QUEUE_NAME or pneumo.")] = None,
    log_level: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a model worker (celery -A worker.serving.celery_app worker).

    It loads the model once, then serves batches from Redis. The model and Redis come from
    PNEUMO_MODEL_DIR and PNEUMO_REDIS_URL.
    """
    from shared.config import get_settings

    environment = dict(os.environ)
    if batches_in_flight is not None:  # read by the worker's settings after the exec below
        environment["PNEUMO_BATCHES_IN_FLIGHT"] = str(batches_in_flight)
    command = worker_command(queue or get_settings().queue_name, log_level)
    messages.print(" ".join(command[1:]))
    # Replace this process, so signals from a supervisor reach Celery directly.
    os.execve(command[0], command, environment)


def bench(
    quick: Annotated[bool, typer.Option(help="A short smoke-test run (about a minute).")] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write every figure here as JSON.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model directory (default: models/demo).")
    ] = None,
) -> None:
    """Throughput side by side from one run: the model's ceiling, a worker draining a queue,
    HTTP submit-and-poll at concurrency 1, 8 and 32, and a synchronous seed-shaped baseline.

    Starts its own Redis, workers and gateway on free ports (needs redis-server on PATH and a
    repository checkout). Compare the printed ratios, not absolute numbers, across machines.
    """
    import subprocess

    from shared.config import REPO_ROOT

    # The benchmark is a repository tool (it runs the checkout's own stack), so it runs there.
    command = [sys.executable, "-m", "bench"] + (["--quick"] if quick else [])
    if json_path:
        command += ["--json", str(json_path.resolve())]
    if model:
        command += ["--model", str(model.resolve())]
    raise typer.Exit(subprocess.run(command, cwd=REPO_ROOT, check=False).returncode)


def run_all(
    port: Annotated[
        int, typer.Option(envvar="PORT", min=1, max=65535, help="The gateway's port.")
    ] = 8000,
    host: Annotated[str, typer.Option(help="The gateway's interface.")] = "127.0.0.1",
    redis_port: Annotated[
        int,
        typer.Option(
            envvar="PNEUMO_LOCAL_REDIS_PORT",
            min=1,
            max=65535,
            help="Redis's port, on loopback (not 6379: a system Redis is left alone).",
        ),
    ] = 6380,  # fmt: skip
    data_dir: Annotated[Path, typer.Option(help="Redis's AOF goes under DATA_DIR/redis.")] = Path(
        ".run"
    ),
    log_dir: Annotated[
        Path | None,
        typer.Option(help="Redis's and the worker's logs go here. Default: this terminal."),
    ] = None,
    redis_config: Annotated[
        Path | None, typer.Option(help="Default: the checkout's deploy/redis/redis.conf.")
    ] = None,
) -> None:
    """Redis (AOF on), one worker and the gateway, supervised: one that dies is started again
    (the pause doubles up to 30 s); SIGTERM or Ctrl-C stops the gateway, the worker, then Redis.

    What `make run` and deploy/all-in-one.Dockerfile run. Needs redis-server on PATH and the
    gateway's and the worker's dependencies; PNEUMO_* settings reach the children.
    """
    import logging
    import shutil
    from importlib.util import find_spec

    from shared.config import get_settings

    from .launcher import REDIS_CONFIG, Launcher, LaunchPlan

    if shutil.which("redis-server") is None:
        raise typer.BadParameter("redis-server is not on PATH (apt-get install redis-server).")
    if find_spec("fastapi") is None or find_spec("uvicorn") is None:
        raise typer.BadParameter("the gateway is not installed: pip install '.[gateway,worker]'")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s launcher: %(message)s")
    plan = LaunchPlan(host=host, port=port, redis_port=redis_port, data_dir=data_dir.resolve(),
                      log_dir=log_dir.resolve() if log_dir else None,
                      redis_config=(redis_config or REDIS_CONFIG).resolve(),
                      queue=get_settings().queue_name)  # fmt: skip
    raise typer.Exit(Launcher(plan).run())


def register_commands(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("run-all")(run_all)
    app.command("bench")(bench)
