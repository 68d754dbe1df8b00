"""The launcher's restart pauses and crash-loop message, on real short-lived processes."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from worker.serving.launcher import (
    CRASH_LOOP_EXITS,
    MAX_RESTART_PAUSE_S,
    STABLE_RUN_S,
    Child,
    local_redis_config,
)


def exited(child: Child) -> None:
    assert child.process is not None
    child.process.wait(10)


def test_quick_exits_double_the_pause_up_to_the_cap_and_say_crash_looping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    child = Child("crasher", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), None)
    pauses = []
    with caplog.at_level(logging.INFO, logger="pneumo.launcher"):
        for _ in range(7):
            child.start()
            exited(child)
            now = child.started_at + 0.5  # each ran half a second
            child.schedule_restart(now)
            assert child.restart_at is not None
            pauses.append(child.restart_at - now)
    assert pauses == [1, 2, 4, 8, 16, MAX_RESTART_PAUSE_S, MAX_RESTART_PAUSE_S]
    assert "crasher exited (exit status 3) after 0.5 s; restarting in 1 s" in caplog.text
    loops = [r.message for r in caplog.records if "crash-looping" in r.message]
    assert len(loops) == 7 - CRASH_LOOP_EXITS + 1
    assert loops[0].startswith(f"crasher is crash-looping: {CRASH_LOOP_EXITS} exits in a row")


def test_a_long_run_starts_the_pauses_over() -> None:
    child = Child("worker", [sys.executable, "-c", "pass"], dict(os.environ), None)
    for _ in range(4):
        child.start()
        exited(child)
        child.schedule_restart(child.started_at + 0.5)
    child.start()
    exited(child)
    now = child.started_at + STABLE_RUN_S + 1  # healthy for a while, then killed
    child.schedule_restart(now)
    assert child.restart_at == now + 1 and child.quick_exits == 1


def test_a_killed_child_is_named_by_its_signal(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    child = Child("gateway", [sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"],
                  dict(os.environ), tmp_path / "gateway.log")  # fmt: skip
    with caplog.at_level(logging.INFO, logger="pneumo.launcher"):
        child.start()
        exited(child)
        child.schedule_restart(child.started_at + 0.1)
    assert "gateway exited (killed by SIGKILL)" in caplog.text


def test_redis_config_keeps_the_deployed_settings_with_a_local_data_dir(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parents[2] / "deploy" / "redis" / "redis.conf"
    config = local_redis_config(source, tmp_path / "data" / "redis").read_text()
    assert f"\ndir {tmp_path / 'data' / 'redis'}\n" in config and "dir /data" not in config
    for setting in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
        assert f"\n{setting}\n" in config
