"""bench.profile on hand-written py-spy stacks: what each stack counts as, and the totals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.profile import (
    BUSY_CATEGORIES,
    CELERY,
    DECODE,
    HTTP,
    IDLE,
    MODEL,
    OTHER,
    REDIS,
    RENDER,
    SERIALISATION,
    Frame,
    Profiler,
    breakdown,
    categorise,
    parse_collapsed,
    py_spy_command,
)

# Outer parts of stacks that py-spy recorded from a real worker, shortened.
POOL_THREAD = "Thread.run (threading.py:982);_worker (concurrent/futures/thread.py:83)"
BATCH = (
    f"{POOL_THREAD};apply_batches_task (celery_batches/trace.py:112);"
    "predict (worker/serving/tasks.py:47);process_jobs (worker/serving/pipeline.py:60)"
)
CONSUMER = "asynloop (celery/worker/loops.py:97);Hub.create_loop (kombu/asynchronous/hub.py:465)"
REDIS_READ = (
    "Pipeline.execute (redis/client.py:2233);"
    "_HiredisParser.read_from_socket (redis/_parsers/hiredis.py:192)"
)
TENSORFLOW = "quick_execute (tensorflow/python/eager/execute.py:53)"
GATEWAY_LOOP = (
    "<module> (uvicorn/__main__.py:4);run (uvicorn/main.py:632);Server.run (uvicorn/server.py:86);"
    "asyncio_run (uvicorn/_compat.py:30);Runner.run (asyncio/runners.py:118)"
)


def stack(*parts: str) -> tuple[Frame, ...]:
    """Outermost first; each part one frame or several joined by ';' as py-spy writes them."""
    return tuple(Frame.parse(frame) for part in parts for frame in part.split(";"))


@pytest.mark.parametrize(
    ("expected", "frames"),
    [
        (MODEL, stack(BATCH, "ModelRuntime.predict (worker/model/runtime.py:95)", TENSORFLOW)),
        (MODEL, stack(BATCH, "ModelRuntime.predict (worker/model/runtime.py:95)")),
        (
            MODEL,
            stack(BATCH, "predict (worker/model/runtime.py:95)", "asarray (numpy/_core/a.py:10)"),
        ),
        (
            DECODE,
            stack(
                POOL_THREAD,
                "decode_one (worker/serving/pipeline.py:160)",
                "load_radiograph (shared/imaging.py:218)",
                "ImageFile.load (PIL/ImageFile.py:300)",
            ),
        ),
        (
            RENDER,
            stack(
                "pictures (gateway/pictures.py:20)",
                "encode_png (shared/imaging.py:230)",
                "Image.save (PIL/Image.py:2500)",
            ),
        ),
        (RENDER, stack("blend (shared/overlay.py:36)", "Image.resize (PIL/Image.py:2300)")),
        (
            RENDER,
            stack(BATCH, "pack_map (shared/handoff.py:53)", "_to_bytes (shared/handoff.py:72)"),
        ),
        (REDIS, stack(BATCH, "SyncStore.load_jobs (shared/store/sync_store.py:45)", REDIS_READ)),
        (CELERY, stack(CONSUMER, "QoS.append (kombu/transport/redis.py:490)", REDIS_READ)),
        (
            CELERY,
            stack(
                CONSUMER,
                "_brpop_read (kombu/transport/redis.py:1491)",
                "loads (json/__init__.py:346)",
            ),
        ),
        (
            SERIALISATION,
            stack(
                BATCH,
                "SyncStore.load_jobs (shared/store/sync_store.py:46)",
                "BaseModel.model_validate_json (pydantic/main.py:700)",
            ),
        ),
        (SERIALISATION, stack("dumps (json/__init__.py:231)", "encode (json/encoder.py:200)")),
        (
            OTHER,
            stack(
                BATCH, "_compute (worker/serving/pipeline.py:116)", "stack (numpy/_core/s.py:460)"
            ),
        ),
        (OTHER, stack(POOL_THREAD, "Condition.notify (threading.py:400)")),
        # A gateway: the framework's own work is HTTP, the intake it calls is decoding.
        (
            HTTP,
            stack(
                "run (uvicorn/server.py:60)",
                "__call__ (starlette/routing.py:700)",
                "parse (python_multipart/multipart.py:1200)",
            ),
        ),
        (
            DECODE,
            stack(
                "__call__ (starlette/routing.py:700)",
                "submit_job (gateway/routes/jobs.py:40)",
                "accept_upload (shared/imaging.py:124)",
                "load (PIL/ImageFile.py:300)",
            ),
        ),
    ],
)
def test_the_innermost_frame_with_a_purpose_decides(expected: str, frames: tuple) -> None:
    assert categorise(frames) == expected


@pytest.mark.parametrize(
    "frames",
    [
        stack(POOL_THREAD),  # a pool thread waiting for work
        stack(
            BATCH,
            "Future.result (concurrent/futures/_base.py:449)",
            "Condition.wait (threading.py:327)",
        ),
        stack(CONSUMER, "_epoll.poll (kombu/utils/eventio.py:83)"),
        stack("beat (worker/serving/context.py:58)", "Event.wait (threading.py:629)"),
        stack(
            "Thread.run (threading.py:982)", "Watchdog._watch (worker/serving/time_limits.py:75)"
        ),
        stack(GATEWAY_LOOP),  # uvloop between callbacks, in C
        (),
    ],
)
def test_a_thread_blocked_at_the_top_of_its_stack_is_idle(frames: tuple) -> None:
    assert categorise(frames) == IDLE


def test_a_wait_below_the_top_of_the_stack_is_not_idle() -> None:
    assert categorise(stack(BATCH, "Condition.wait (threading.py:327)", TENSORFLOW)) == MODEL


def test_a_callback_the_gateway_loop_runs_is_http_work() -> None:
    callback = "RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:420)"
    assert categorise(stack(GATEWAY_LOOP, callback)) == HTTP


RAW = f"""\
thread (101): MainThread;{CONSUMER};_epoll.poll (kombu/utils/eventio.py:83) 30
thread (101): MainThread;{CONSUMER};QoS.ack (kombu/transport/redis.py:500);{REDIS_READ} 10
thread (202): ThreadPoolExecutor-0_0;{BATCH};predict (worker/model/runtime.py:95) 25
thread (202): ThreadPoolExecutor-0_0;{BATCH};save (shared/store/sync_store.py:75);{REDIS_READ} 15
thread (303);{POOL_THREAD} 40
"""


def test_parse_reads_threads_frames_and_counts() -> None:
    samples = parse_collapsed(RAW + "\nnot a sample line\n")
    assert [sample.thread for sample in samples] == [
        "MainThread", "MainThread", "ThreadPoolExecutor-0_0", "ThreadPoolExecutor-0_0",
        "thread 303",
    ]  # fmt: skip
    assert [sample.count for sample in samples] == [30, 10, 25, 15, 40]
    assert samples[2].frames[-1] == Frame("predict", "worker/model/runtime.py")
    assert samples[4].frames == stack(POOL_THREAD)
    assert parse_collapsed("dumps (json/__init__.py:231) 7")[0].thread == "all"


def test_breakdown_shares_are_of_busy_samples_only() -> None:
    profile = breakdown(parse_collapsed(RAW))
    assert (profile["samples"], profile["busy_samples"], profile["idle_samples"]) == (120, 50, 70)
    categories = profile["categories"]
    assert list(categories) == list(BUSY_CATEGORIES)
    assert categories[MODEL] == {"samples": 25, "busy_share": 0.5}
    assert categories[REDIS] == {"samples": 15, "busy_share": 0.3}
    assert categories[CELERY] == {"samples": 10, "busy_share": 0.2}
    assert categories[DECODE] == {"samples": 0, "busy_share": 0.0}
    assert profile["threads"]["MainThread"] == {
        "busy_samples": 10, "idle_samples": 30, "busy": {CELERY: 10}
    }  # fmt: skip
    assert profile["threads"]["thread 303"] == {"busy_samples": 0, "idle_samples": 40, "busy": {}}


def test_breakdown_of_nothing_has_no_shares() -> None:
    profile = breakdown([])
    assert profile["busy_samples"] == 0
    assert all(row == {"samples": 0, "busy_share": 0.0} for row in profile["categories"].values())


def test_a_profiler_that_never_started_says_why(tmp_path: Path) -> None:
    assert "not installed" in Profiler(1, tmp_path / "profile.txt").stop()["skipped"]


@pytest.mark.skipif(py_spy_command() is None, reason="py-spy is not installed")
def test_a_profiler_that_cannot_attach_says_why_instead_of_raising(tmp_path: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    profile = Profiler(finished.pid, tmp_path / "profile.txt").start().stop()
    assert profile["skipped"].startswith("py-spy recorded nothing")
