"""A rabbitmq-server node of our own, on free ports, for tests and the broker benchmark.

A machine may already run RabbitMQ on 5672 (the development and CI machines do): this node
shares nothing with it but the Erlang port mapper. Its name, ports, data, logs, configuration,
plugins (none: no management plugin) and Erlang cookie live in its own directory, so stopping
and starting it again (`restart`) keeps its durable queues and their messages, as a restarted
broker in production would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import uuid
from pathlib import Path

from bench.processes import free_port, wait_until

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the Debian wrapper in /usr/sbin runs `su`
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
# Erlang boots in a few seconds on an idle machine; a busy 2-core one has taken 30.
START_TIMEOUT_S = 90


class RabbitMQServer:
    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.node = f"pneumo-{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def environment(self) -> dict[str, str]:
        """What makes the node ours alone: every path under its directory, its own ports."""
        config = self.directory / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.default = {self.port}\n"
            # A shared machine's disk may be fuller than RabbitMQ's 50 MB default allows for
            # long; the alarm would block publishers and look like a fault of the service.
            "disk_free_limit.absolute = 10MB\n"
            # How stale `queue()`'s counts may be (5 s by default).
            "collect_statistics_interval = 500\n"
        )
        plugins = self.directory / "enabled_plugins"
        plugins.write_text("[].\n")
        empty_env = self.directory / "rabbitmq-env.conf"  # not /etc/rabbitmq's node name
        empty_env.write_text("")
        return {
            **os.environ,
            "HOME": str(self.directory),  # its Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_CONF_ENV_FILE": str(empty_env),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_PID_FILE": str(self.directory / "rabbitmq.pid"),
        }

    def start(self) -> RabbitMQServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not hasattr(self, "_environment"):  # the same node, ports and files on a restart
            self._environment = self.environment()
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [SERVER], env=self._environment, cwd=self.directory, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_until(self.ready, START_TIMEOUT_S, f"rabbitmq-server on port {self.port}")
        return self

    def ready(self) -> bool:
        """The AMQP listener answers the protocol header: it opens only once the node has
        booted (its queues recovered), unlike the Erlang distribution port."""
        if self.process is None or self.process.poll() is not None:
            log = (self.directory / "server.log").read_text(errors="replace")
            raise RuntimeError(f"rabbitmq-server exited:\n{log[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"AMQP\x00\x00\x09\x01")
                return connection.recv(1) == b"\x01"  # the start of a Connection.Start frame
        except OSError:
            return False

    def queue(self, name: str) -> dict[str, object]:
        """The broker's own account of a queue: its type, and its messages waiting
        (`messages_ready`) and delivered but not yet acknowledged (`messages_unacknowledged`),
        as of its last statistics (every half second). Empty if there is no such queue."""
        listing = self.ctl("list_queues", "name", "type", "messages_ready",
                           "messages_unacknowledged")  # fmt: skip
        return {entry["name"]: entry for entry in listing}.get(name, {})

    def connection_bytes(self) -> int:
        """Bytes the node has received and sent on the client connections open now."""
        listing = self.ctl("list_connections", "recv_oct", "send_oct")
        return sum(int(entry["recv_oct"]) + int(entry["send_oct"]) for entry in listing)

    def ctl(self, command: str, *columns: str) -> list[dict]:
        """`rabbitmqctl COMMAND COLUMNS...` on this node, its rows as JSON."""
        rows: list[dict] = json.loads(self.run_ctl(command, *columns, "--formatter", "json"))
        return rows

    def run_ctl(self, *arguments: str) -> str:
        """`rabbitmqctl ARGUMENTS...` on this node; its output."""
        finished = subprocess.run(
            [CTL, "-n", self.node, "-q", *arguments],
            env=self._environment, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return finished.stdout

    def stop(self) -> None:
        """SIGTERM: the node shuts down cleanly, as `docker compose restart` would stop it."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)
        self.process = None

    def __enter__(self) -> RabbitMQServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
