"""`pneumo`: one command line for people who use, operate and retrain the service.

The HTTP commands (`submit`, `status`) live here and need only the core dependencies. The
commands that run the service or make models live with the code they drive and are offered
where this install has that code's dependencies (`client.commands`), so `pip install
'.[client]'` gives a working client without TensorFlow, Keras, JAX, Redis or Celery.
"""

from __future__ import annotations

import asyncio
import csv
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from client.api import AsyncClient, Client, ClientError
from client.commands import register_installed_commands
from client.submission import Row, RunOptions, collect_files, submit_all, write_results
from shared.schemas import OUT_OF_DISTRIBUTION_MESSAGE, Job

DEFAULT_URL = "http://127.0.0.1:8000"

app = typer.Typer(
    name="pneumo",
    help="Chest X-ray triage: submit radiographs, run the service, retrain and audit the model.",
    no_args_is_help=True,
    add_completion=False,
)
register_installed_commands(app)
# Progress and messages go to stderr, so `--format csv|json` output can be piped cleanly.
messages = Console(stderr=True)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str | None


@app.callback()
def connect(
    context: typer.Context,
    url: Annotated[str, typer.Option(envvar="PNEUMO_URL", help="Gateway base URL.")] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="PNEUMO_API_KEY", help="Sent as X-API-Key.", show_default=False),
    ] = None,
) -> None:
    """Chest X-ray triage: submit radiographs, run the service, retrain and audit the model."""
    context.obj = Connection(url, api_key)


@contextmanager
def reported_errors() -> Iterator[None]:
    """The gateway's own error code and message, not a traceback; exit status 2."""
    try:
        yield
    except ClientError as error:
        messages.print(f"[red]Error[/red] {error.code}: {error.message}")
        raise typer.Exit(2) from None
    except httpx.TransportError as error:
        messages.print(f"[red]Cannot reach the gateway[/red]: {error}")
        raise typer.Exit(2) from None


@app.command()
def submit(
    context: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(
            exists=True, help="Files, or folders searched recursively (JPEG, PNG, DICOM)."
        ),
    ],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for every result.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Save overlays and results.json here (implies --wait)."),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="How to print the summary.")
    ] = (OutputFormat.table),
    method: Annotated[str, typer.Option(help="gradcam, gradcam++ or eigengradcam.")] = "gradcam",
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for each result.")] = 300.0,
    parallel: Annotated[int, typer.Option(min=1, max=32, help="Uploads in flight at once.")] = 4,
) -> None:
    """Submit radiographs, show progress, and print a summary (file, label, probability, job id).

    Exit status: 0 when every file was accepted (and, with --wait, succeeded), 1 otherwise.
    """
    files = collect_files(paths)
    if not files:
        messages.print("No image files found.")
        raise typer.Exit(1)
    if out:
        out.mkdir(parents=True, exist_ok=True)
    options = RunOptions(wait or out is not None, out, method, timeout, parallel)
    rows = asyncio.run(_submit(context.obj, files, options))
    print_rows(rows, output_format)
    if out:
        messages.print(f"Results and overlays in {write_results(rows, out).parent}")
    raise typer.Exit(0 if all(row.ok for row in rows) else 1)


async def _submit(connection: Connection, files: list[Path], options: RunOptions) -> list[Row]:
    async with AsyncClient(connection.url, connection.api_key) as client:
        return await submit_all(client, files, options, messages)


def print_rows(rows: list[Row], output_format: OutputFormat) -> None:
    if output_format is OutputFormat.json:
        import json

        typer.echo(json.dumps([row.as_dict() for row in rows], indent=2))
    elif output_format is OutputFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["file", "status", "assessment", "label", "probability", "job_id", "error"])
        for row in rows:
            writer.writerow([row.file, row.status, row.assessment, row.label,
                             row.probability or "", row.job_id, row.error])  # fmt: skip
    else:
        Console().print(summary_table(rows))
        messages.print(summary_line(rows))


def summary_table(rows: list[Row]) -> Table:
    table = Table(title="Submissions", header_style="bold")
    for column, justify in [("File", "left"), ("Status", "left"), ("Label", "left"),
                            ("P(pneumonia)", "right"), ("Job id", "left")]:  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        probability = "" if row.probability is None else f"{row.probability:.3f}"
        status = row.status if not row.error else f"{row.status}\n[dim]{row.error}[/dim]"
        table.add_row(row.file, status, label_cell(row.label, row.assessment), probability,
                      row.job_id)  # fmt: skip
    return table


def label_cell(label: str, assessment: str) -> str:
    """An out-of-distribution answer leads with the warning; its label follows, dimmed."""
    if assessment != "out_of_distribution":
        return label
    return f"[bold yellow]{OUT_OF_DISTRIBUTION_MESSAGE}[/bold yellow]\n[dim](label {label})[/dim]"


def summary_line(rows: list[Row]) -> str:
    statuses = Counter(row.status for row in rows)
    labels = Counter(
        "out of distribution" if row.assessment == "out_of_distribution" else row.label
        for row in rows
        if row.label
    )
    parts = [f"{count} {status}" for status, count in sorted(statuses.items())]
    parts += [f"{count} {label}" for label, count in sorted(labels.items())]
    return f"{len(rows)} files: " + ", ".join(parts)


@app.command()
def status(
    context: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job id that submit printed.")],
    wait: Annotated[float, typer.Option(min=0, help="Long-poll up to this many seconds.")] = 0.0,
    output_format: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """Show one job: status, label, probability, threshold, model and timings."""
    connection: Connection = context.obj
    with reported_errors(), Client(connection.url, connection.api_key) as client:
        job = client.status(job_id, wait_s=wait)
    if output_format is OutputFormat.table:
        Console().print(job_table(job))
    else:
        typer.echo(job.model_dump_json(indent=2))


def job_table(job: Job) -> Table:
    table = Table(title=f"Job {job.job_id}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("status", job.status.value)
    if job.result:
        model = job.result.model
        if not job.result.reliable:
            table.add_row("assessment", f"[bold yellow]{OUT_OF_DISTRIBUTION_MESSAGE}[/bold yellow]")
        else:
            table.add_row("assessment", job.result.assessment)
        table.add_row("label", job.result.label)
        table.add_row("P(pneumonia)", f"{job.result.probability:.4f}")
        table.add_row("threshold", f"{job.result.threshold:.4f}")
        if job.result.ood:
            ood = job.result.ood
            table.add_row("OOD score", f"{ood.score:.3f} (flagged above {ood.threshold:.3f})")
        synthetic = " (synthetic demo: not for diagnosis)" if model.synthetic else ""
        table.add_row("model", f"{model.name} {model.version}{synthetic}")
    if job.explanation:
        table.add_row("overlay", job.explanation.overlay_url)
    if job.error:
        table.add_row("error", f"{job.error.code}: {job.error.message}")
    for name, value in (("created", job.created_at), ("finished", job.finished_at)):
        table.add_row(name, value.isoformat(timespec="seconds") if value else "")
    return table
