"""Submitting many radiographs with progress: the engine behind `pneumo submit`.

Uploads run a few at a time (the gateway validates each by decoding it); waiting is cheap
long-polling, so every submitted job is awaited at once and the worker can batch them.
One file's failure is recorded in its row and never stops the others.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from client.api import AsyncClient, ClientError
from shared.schemas import Job, JobStatus

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}


@dataclass
class Row:
    """One file's outcome, as the summary table, CSV and JSON show it."""

    file: str
    status: str = "not sent"
    job_id: str = ""
    label: str = ""
    probability: float | None = None
    assessment: str = ""  # in_distribution, out_of_distribution or not_assessed
    error: str = ""
    job: Job | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status in (JobStatus.queued, JobStatus.running, JobStatus.succeeded)

    def record(self, job: Job) -> None:
        self.job, self.job_id, self.status = job, job.job_id, job.status.value
        if job.result:
            self.label, self.probability = job.result.label, round(job.result.probability, 4)
            self.assessment = job.result.assessment
        if job.error:
            self.error = f"{job.error.code}: {job.error.message}"

    def as_dict(self, with_job: bool = True) -> dict[str, Any]:
        fields = {key: getattr(self, key) for key in ("file", "status", "job_id", "label")}
        fields.update(probability=self.probability, assessment=self.assessment, error=self.error)
        if with_job:
            fields["job"] = self.job.model_dump(mode="json") if self.job else None
        return fields


def collect_files(paths: list[Path]) -> list[Path]:
    """Files as given; folders searched recursively for images and DICOM.

    DICOM exports often have no suffix, so suffix-less files are taken too: the gateway
    checks content, not names.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(child for child in path.rglob("*") if _looks_submittable(child)))
        else:
            found.append(path)
    return found


def _looks_submittable(path: Path) -> bool:
    if not path.is_file() or path.name.startswith("."):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES or path.suffix == ""


@dataclass(frozen=True)
class RunOptions:
    wait: bool
    out: Path | None
    method: str
    timeout_s: float
    parallel_uploads: int


async def submit_all(
    client: AsyncClient, files: list[Path], options: RunOptions, console: Console
) -> list[Row]:
    uploads = asyncio.Semaphore(options.parallel_uploads)
    with progress_bar(console) as progress:
        sent = progress.add_task("Uploading", total=len(files))
        finished = progress.add_task("Analysing", total=len(files), visible=options.wait)

        async def one(path: Path) -> Row:
            row = Row(file=str(path))
            async with uploads:
                await _guarded(row, _submit(client, path, row, options))
            progress.advance(sent)
            if options.wait and row.job:
                await _guarded(row, _finish(client, path, row, options))
            progress.advance(finished)
            return row

        return list(await asyncio.gather(*(one(path) for path in files)))


async def _submit(client: AsyncClient, path: Path, row: Row, options: RunOptions) -> None:
    row.record(await client.submit(path, options.method))


async def _finish(client: AsyncClient, path: Path, row: Row, options: RunOptions) -> None:
    assert row.job is not None
    row.record(await client.wait(row.job, options.timeout_s))
    if options.out and row.status == JobStatus.succeeded:
        await client.download_overlay(
            row.job, options.out / f"{path.stem}-{row.job_id[:8]}-overlay.png"
        )


async def _guarded(row: Row, step: Any) -> None:
    """Turn one file's failure into its row's status, so the other files carry on."""
    try:
        await step
    except ClientError as error:
        row.status = (
            "timeout" if error.code == "wait_timeout" else ("failed" if row.job else "rejected")
        )
        row.error = f"{error.code}: {error.message}"
    except httpx.TransportError as error:
        row.status, row.error = "unreachable", f"{type(error).__name__}: {error}"
    except OSError as error:
        row.status, row.error = "unreadable", str(error)


def progress_bar(console: Console) -> Progress:
    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn())
    return Progress(*columns, TimeElapsedColumn(), console=console)


def write_results(rows: list[Row], out: Path) -> Path:
    target = out / "results.json"
    target.write_text(json.dumps([row.as_dict() for row in rows], indent=2) + "\n")
    return target
