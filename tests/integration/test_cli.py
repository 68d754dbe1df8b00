"""`pneumo` through typer's runner against a live stack (`pneumo gateway`, Redis, a worker).

`pneumo gateway` itself is what the `gateway` fixture starts, so every test here runs on it.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from client.cli import app
from tests.support.dicoms import DicomSpec, dicom_file, ramp
from tests.support.images import phantom_png
from tests.unit.test_boundaries import modules_loaded_by
from worker.serving.cli import worker_command

pytestmark = pytest.mark.slow
# Wide enough that rich never folds a job id across lines.
WIDE = {"COLUMNS": "220", "NO_COLOR": "1"}


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def scans(tmp_path: Path) -> Path:
    """A folder as a PACS export looks: nested, DICOM without a suffix, one bad file."""
    folder = tmp_path / "scans"
    (folder / "ward-b").mkdir(parents=True)
    (folder / "a.png").write_bytes(phantom_png(seed=81))
    (folder / "ward-b" / "b.png").write_bytes(phantom_png(seed=82, pneumonia=False))
    (folder / "ward-b" / "IM0001").write_bytes(
        dicom_file(DicomSpec(ramp(128, 128).astype("uint8")))
    )
    (folder / "z-notes.png").write_bytes(b"not an image")
    (folder / ".DS_Store").write_bytes(b"hidden files are skipped")
    return folder


def pneumo(runner: CliRunner, gateway, *arguments: str):
    return runner.invoke(app, ["--url", gateway.url, *arguments], env=WIDE)


def test_submit_a_folder_waits_and_prints_json(runner, gateway, scans: Path) -> None:
    result = pneumo(runner, gateway, "submit", str(scans), "--wait", "--format", "json")
    assert result.exit_code == 1, result.output  # one file was refused
    rows = {Path(row["file"]).name: row for row in json.loads(result.stdout)}
    assert set(rows) == {"a.png", "b.png", "IM0001", "z-notes.png"}
    for name in ("a.png", "b.png", "IM0001"):
        assert rows[name]["status"] == "succeeded", rows[name]
        assert (
            rows[name]["label"] in ("NORMAL", "PNEUMONIA") and 0 <= rows[name]["probability"] <= 1
        )
        assert rows[name]["job"]["result"]["model"]["synthetic"] is True
    assert rows["z-notes.png"]["status"] == "rejected"
    assert rows["z-notes.png"]["error"].startswith("unsupported_format: ")
    assert "Analysing" in result.stderr and "4/4" in result.stderr  # the progress bar


def test_submit_with_out_writes_overlays_and_csv(
    runner, gateway, scans: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    result = pneumo(
        runner, gateway, "submit", str(scans / "a.png"), "--out", str(out), "--format", "csv"
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["status"] for row in rows] == ["succeeded"]
    assert float(rows[0]["probability"]) >= 0 and rows[0]["label"]
    overlays = list(out.glob("a-*-overlay.png"))
    assert len(overlays) == 1 and overlays[0].read_bytes().startswith(b"\x89PNG")
    saved = json.loads((out / "results.json").read_text())
    assert saved[0]["job"]["job_id"] == rows[0]["job_id"]


def test_submit_without_wait_then_status(runner, gateway, scans: Path) -> None:
    result = pneumo(runner, gateway, "submit", str(scans / "ward-b" / "b.png"))
    assert result.exit_code == 0, result.output
    assert "Submissions" in result.stdout and "1 files:" in result.stderr
    job_id = json.loads(
        pneumo(runner, gateway, "submit", str(scans / "a.png"), "--format", "json").stdout
    )[0]["job_id"]
    status = pneumo(runner, gateway, "status", job_id, "--wait", "30")
    assert status.exit_code == 0, status.output
    assert job_id in status.stdout and "succeeded" in status.stdout
    assert "synthetic demo: not for diagnosis" in status.stdout
    as_json = json.loads(pneumo(runner, gateway, "status", job_id, "--format", "json").stdout)
    assert as_json["status"] == "succeeded" and as_json["result"]["threshold"] > 0


def test_errors_are_messages_not_tracebacks(runner, gateway, tmp_path: Path) -> None:
    missing = pneumo(runner, gateway, "status", "00000000-0000-4000-8000-000000000000")
    assert missing.exit_code == 2 and "job_not_found" in missing.stderr
    unreachable = runner.invoke(app, ["--url", "http://127.0.0.1:9", "status", "x"], env=WIDE)
    assert unreachable.exit_code == 2 and "Cannot reach the gateway" in unreachable.stderr
    empty = pneumo(runner, gateway, "submit", str(tmp_path))
    assert empty.exit_code == 1 and "No image files" in empty.stderr


def test_url_comes_from_the_environment(runner, gateway, scans: Path) -> None:
    result = runner.invoke(app, ["submit", str(scans / "a.png"), "--format", "json"],
                           env={**WIDE, "PNEUMO_URL": gateway.url})  # fmt: skip
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["status"] == "queued"


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        ([], ["submit", "status", "gateway", "worker", "synth", "train", "evaluate", "--url"]),
        (["submit"], ["--wait", "--out", "--format", "table|csv|json", "DICOM"]),
        (["status"], ["JOB_ID", "--wait"]),
        (["gateway"], ["--host", "--port", "PNEUMO_"]),
        (["worker"], ["--batches-in-flight", "PNEUMO_BATCHES_IN_FLIGHT", "PNEUMO_MODEL_DIR"]),
        (["synth"], ["--count"]),
        (["train"], ["--data", "--out"]),
        (["evaluate"], ["--model", "--data"]),
    ],
    ids=["pneumo", "submit", "status", "gateway", "worker", "synth", "train", "evaluate"],
)
def test_help_of_each_command_stands_alone(runner, command: list[str], mentions: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    for text in mentions:
        assert text.lower() in result.stdout.lower(), (command, text)


def test_worker_command_is_the_deployed_one() -> None:
    command = worker_command("pneumo", "INFO")
    assert command[:3] == [sys.executable, "-m", "celery"]
    assert command[3:] == [
        "-A", "worker.serving.celery_app", "worker", "--pool=threads", "--queues=pneumo",
        "--loglevel=INFO", "--hostname=worker@%h",
    ]  # fmt: skip


def test_importing_the_cli_loads_no_ml_framework() -> None:
    loaded = modules_loaded_by("import client.cli")
    assert "typer" in loaded and "httpx" in loaded
    assert not {"tensorflow", "keras", "jax", "fastapi"} & loaded


def test_tables_lead_with_the_warning_for_a_flagged_result(
    runner, gated_stack, tmp_path: Path
) -> None:
    """A model with a gate: `pneumo submit` and `pneumo status` tables show the warning in
    place of the label for the noise field, and the label for the phantom."""
    (tmp_path / "noise.png").write_bytes(gated_stack.model.noise_field)
    (tmp_path / "chest.png").write_bytes(gated_stack.model.typical_film)
    submitted = pneumo(runner, gated_stack.gateway, "submit", str(tmp_path), "--wait")
    assert submitted.exit_code == 0, submitted.output
    lines = {name: line for line in submitted.stdout.splitlines()
             for name in ("noise.png", "chest.png") if name in line}  # fmt: skip
    assert "This image does not resemble" in lines["noise.png"]
    assert "does not resemble" not in lines["chest.png"]
    assert "NORMAL" in lines["chest.png"] or "PNEUMONIA" in lines["chest.png"]
    as_json = pneumo(runner, gated_stack.gateway, "submit", str(tmp_path / "noise.png"),
                     "--format", "json")  # fmt: skip
    job_id = json.loads(as_json.stdout)[0]["job_id"]
    status = pneumo(runner, gated_stack.gateway, "status", job_id, "--wait", "60")
    assert status.exit_code == 0, status.output
    rows = [line for line in status.stdout.splitlines() if line.strip()]
    warning_row = next(index for index, line in enumerate(rows) if "does not resemble" in line)
    label_rows = [
        index for index, line in enumerate(rows) if "PNEUMONIA" in line or "NORMAL" in line
    ]
    assert "assessment" in rows[warning_row]
    assert all(warning_row < index for index in label_rows), status.stdout
