"""What bounds a worker: a py-spy sample of its threads, added up by kind of work.

`Profiler` runs `py-spy record --format raw` against a process until stopped. Raw output is
collapsed stacks, one line per distinct stack and thread:
`thread (TID): NAME;outermost (file.py:line);...;innermost (file.py:line) COUNT`.
`categorise` names the work one stack was doing; `breakdown` adds the samples up.

Samples are per thread: a thread that never rests adds `rate_hz` samples a second, so shares
are shares of thread-time, and threads working side by side (the intake pool) add up.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

MODEL = "model"
DECODE = "decode"
RENDER = "render"
REDIS = "redis"
CELERY = "celery"
SERIALISATION = "json/pydantic"
HTTP = "http"  # a gateway's server, framework and multipart parser (`python -m bench --host`)
OTHER = "other python"
IDLE = "idle/waiting"
BUSY_CATEGORIES = (MODEL, DECODE, RENDER, REDIS, CELERY, SERIALISATION, HTTP, OTHER)

# Libraries with one job in this service: the innermost frame in one of them decides.
SINGLE_PURPOSE_PACKAGES = {
    **dict.fromkeys(["tensorflow", "keras", "tf_keras", "jax", "jaxlib", "optree"], MODEL),
    **dict.fromkeys(["celery", "celery_batches", "kombu", "billiard", "vine", "amqp"], CELERY),
    **dict.fromkeys(["pydantic", "pydantic_core"], SERIALISATION),
    **dict.fromkeys(
        ["uvicorn", "starlette", "fastapi", "httptools", "h11", "python_multipart", "multipart"],
        HTTP,
    ),  # fmt: skip
    "pydicom": DECODE,
}
# Libraries that serve several purposes (Pillow decodes uploads and encodes PNGs; redis-py
# carries both the store and the Celery broker): they take the purpose of the nearest caller
# that has one, and this one only when none does.
GENERAL_PURPOSE_PACKAGES = {
    "PIL": DECODE,
    "redis": REDIS,
    "socket.py": REDIS,
    "json": SERIALISATION,
    "numpy": OTHER,
}
# Our own code. A frame here ends the search outwards: past it, the caller is glue (the
# pipeline, the task, Celery) that says nothing more about the work.
OWN_PACKAGES = ("shared", "worker", "gateway", "bench", "client")
OWN_FILE_PURPOSE = {
    "worker/model/runtime.py": MODEL,
    "worker/model/gradients.py": MODEL,
    "worker/model/gradcam.py": MODEL,
    "worker/model/architecture.py": MODEL,
    "shared/imaging.py": DECODE,
    "shared/dicom.py": DECODE,
    "shared/overlay.py": RENDER,
    "shared/handoff.py": DECODE,  # the gateway's model input, unpacked instead of decoding
    "shared/store/sync_store.py": REDIS,
    "shared/store/records.py": REDIS,
    "shared/store/keys.py": REDIS,
    "shared/schemas.py": SERIALISATION,
    "worker/serving/batching.py": CELERY,
}
OWN_FUNCTION_PURPOSE = {
    ("shared/imaging.py", "encode_png"): RENDER,
    ("worker/serving/pipeline.py", "_decode"): DECODE,
    ("worker/serving/pipeline.py", "decode_one"): DECODE,
    ("worker/serving/pipeline.py", "_prepare_inputs"): DECODE,
    # Packing the explanation map (and an input decoded here) for the store: the output side.
    ("shared/handoff.py", "pack_map"): RENDER,
    ("shared/handoff.py", "pack_input"): RENDER,
    ("shared/handoff.py", "_to_bytes"): RENDER,
}
# Innermost frames of a thread blocked until something happens. py-spy shows no C frames,
# so a wait in C (a lock, `SimpleQueue.get`, epoll, `time.sleep`) appears as the Python
# function that called it: a pool thread waiting for work sits in `_worker`, the watchdog
# in `_watch`. A thread waiting for a Redis reply is not here: that wait is the batch's time.
# A gateway's event loop is uvloop, in C: with no Python callback running, its thread's
# innermost Python frame is `Runner.run`, and what it does there is mostly waiting in epoll
# (its C socket reads and writes are in the process's CPU from /proc, not in these samples).
# Counted as HTTP work, that wait made an idle gateway look 56-93 % busy in HTTP.
BLOCKING_FRAMES = {
    ("asyncio/runners.py", "run"),
    ("threading.py", "wait"),
    ("threading.py", "wait_for"),
    ("threading.py", "join"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("selectors.py", "select"),
    ("queue.py", "get"),
    ("concurrent/futures/thread.py", "_worker"),
    ("kombu/utils/eventio.py", "poll"),
    ("worker/serving/time_limits.py", "_watch"),
    ("worker/serving/tasks.py", "hand_back"),
}

_FRAME = re.compile(r"^(?P<function>.*) \((?P<filename>[^()]*?)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \((?P<tid>[^)]*)\)(?:: (?P<name>.*))?$")


@dataclass(frozen=True)
class Frame:
    function: str  # qualified as py-spy prints it: "Condition.wait", "<module>"
    # Shortened by py-spy to the part below sys.path ("redis/client.py",
    # "worker/serving/pipeline.py"), so the first component names the package; hence no
    # `--full-filenames` in `Profiler`.
    filename: str

    @classmethod
    def parse(cls, text: str) -> Frame:
        match = _FRAME.match(text)
        return cls(match["function"], match["filename"]) if match else cls(text, "")

    @property
    def package(self) -> str:
        return self.filename.split("/")[0]

    def is_in(self, path: str) -> bool:
        return self.filename == path or self.filename.endswith("/" + path)

    def is_named(self, function: str) -> bool:
        return self.function.rpartition(".")[2] == function


@dataclass(frozen=True)
class Sample:
    thread: str
    frames: tuple[Frame, ...]  # outermost first, as py-spy writes them
    count: int


def parse_collapsed(text: str) -> list[Sample]:
    """py-spy's raw format; lines without a thread frame (no `--threads`) get thread "all"."""
    samples = []
    for line in text.splitlines():
        stack, _, count = line.strip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        names = stack.split(";")
        thread = _THREAD.match(names[0])
        if thread:
            names = names[1:]
        thread_name = (thread["name"] or f"thread {thread['tid']}") if thread else "all"
        samples.append(Sample(thread_name, tuple(map(Frame.parse, names)), int(count)))
    return samples


def categorise(frames: tuple[Frame, ...]) -> str:
    """The kind of work one stack (outermost first) was doing.

    A blocking wait at the top is idle. Otherwise, from the innermost frame outwards, the first
    frame that names a purpose decides: a single-purpose library or one of our own files. A
    general-purpose library defers to its callers and is the answer only if the search ends
    (at our own code without a purpose, or at the bottom of the stack) with nothing better.
    """
    if not frames or _is_blocking(frames[-1]):
        return IDLE
    fallback = None
    for frame in reversed(frames):
        if frame.package in SINGLE_PURPOSE_PACKAGES:
            return SINGLE_PURPOSE_PACKAGES[frame.package]
        if frame.package in OWN_PACKAGES:
            return _own_purpose(frame) or fallback or OTHER
        fallback = fallback or GENERAL_PURPOSE_PACKAGES.get(frame.package)
    return fallback or OTHER


def _is_blocking(frame: Frame) -> bool:
    return any(frame.is_in(path) and frame.is_named(name) for path, name in BLOCKING_FRAMES)


def _own_purpose(frame: Frame) -> str | None:
    for (path, function), purpose in OWN_FUNCTION_PURPOSE.items():
        if frame.is_in(path) and frame.is_named(function):
            return purpose
    return next((purpose for path, purpose in OWN_FILE_PURPOSE.items() if frame.is_in(path)), None)


def breakdown(samples: list[Sample]) -> dict:
    """Samples per category, shares of the busy ones, and the same per thread."""
    totals: Counter[str] = Counter()
    threads: dict[str, Counter[str]] = defaultdict(Counter)
    for sample in samples:
        category = categorise(sample.frames)
        totals[category] += sample.count
        threads[sample.thread][category] += sample.count
    busy = sum(totals[category] for category in BUSY_CATEGORIES)
    return {
        "samples": busy + totals[IDLE],
        "busy_samples": busy,
        "idle_samples": totals[IDLE],
        "categories": {
            category: {"samples": totals[category], "busy_share": _share(totals[category], busy)}
            for category in BUSY_CATEGORIES
        },
        "threads": {name: _thread_summary(counts) for name, counts in sorted(threads.items())},
    }


def _thread_summary(counts: Counter[str]) -> dict:
    busy = {category: counts[category] for category in BUSY_CATEGORIES if counts[category]}
    return {"busy_samples": sum(busy.values()), "idle_samples": counts[IDLE], "busy": busy}


def _share(part: int, whole: int) -> float:
    return round(part / whole, 3) if whole else 0.0


def py_spy_command() -> str | None:
    """The py-spy installed beside this interpreter (the venv), else one on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """`py-spy record` on one process, from `start()` until `stop()`.

    Never fails the caller: without py-spy, or when it may not attach (ptrace refused), `stop()`
    returns `{"skipped": why}` instead of a breakdown.
    """

    # Nonblocking: read the process's memory without stopping it. Stopping every thread
    # (TensorFlow's too) 100 times a second slowed the draining worker more than reading its
    # memory does, and inflated its waits on Redis; the price is a few unreadable samples.
    # gil: sample only the thread holding the GIL. Where Python threads take turns on it (a
    # GPU worker, whose model barely needs the CPU), this says whose turns fill the time, and
    # the share of samples with any holder says whether the GIL itself is the bottleneck.
    def __init__(self, pid: int, output: Path, rate_hz: int = 100, nonblocking: bool = True,
                 gil: bool = False):  # fmt: skip
        self.pid, self.output, self.rate_hz, self.nonblocking = pid, output, rate_hz, nonblocking
        self.gil = gil
        self.log_path = output.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> Profiler:
        command = py_spy_command()
        if command is None:
            return self
        # --idle: blocked threads are sampled too, so that they can be told apart here. py-spy's
        # own idle test (the OS thread state) would drop a thread waiting on Redis or on
        # TensorFlow's pool, which is time the batch spends, not rest.
        arguments = [
            command, "record", "--pid", str(self.pid), "--rate", str(self.rate_hz),
            "--format", "raw", "--threads", "--idle", "--output", str(self.output),
        ]  # fmt: skip
        if self.nonblocking:
            arguments.append("--nonblocking")
        if self.gil:
            arguments.append("--gil")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT)
        self.started = time.monotonic()
        return self

    def stop(self) -> dict:
        """SIGINT, on which py-spy writes what it has sampled; then the breakdown."""
        if self.process is None:
            return {"skipped": "py-spy is not installed (pip install -e '.[dev]')"}
        seconds = round(time.monotonic() - self.started, 1)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:  # a wedged py-spy costs the profile, not the run
                self.process.kill()
                self.process.wait()
        samples = parse_collapsed(self.output.read_text()) if self.output.exists() else []
        if not samples:
            log = self.log_path.read_text(errors="replace").strip().splitlines()
            return {"skipped": f"py-spy recorded nothing: {' / '.join(log[:3])}"}
        mode = ("nonblocking" if self.nonblocking else "blocking") + (", GIL" if self.gil else "")
        found = breakdown(samples)
        if self.gil:  # one sample per tick at most: the share of ticks when someone held it
            found["gil_held_share"] = _share(found["samples"], round(seconds * self.rate_hz))
        return {"seconds": seconds, "rate_hz": self.rate_hz, "mode": mode} | found
