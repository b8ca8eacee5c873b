"""`make run` as a person runs it: the real Makefile target, `airflow dags test` underneath, its own
AIRFLOW_HOME, model and artifact folders. The console shows one line per stage, a summary and the three
predictions, in under 60 lines; Airflow's log goes to the file it names. An unchanged week says so, and a
run the model gate refuses ends with its reason as the last line and a non-zero exit."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.sample_data import PROJECT_ROOT, quick_conf

pytestmark = pytest.mark.slow

MAX_LINES = 60
RUN_TIMEOUT = 900
STAGE = re.compile(r"^(?P<name>[a-z_]+(?:\[\d+\])?)\s+(?P<seconds>\d+\.\d) s  (?P<figure>.+)$")
GROUPED = re.compile(r"^(?P<label>skipped|not run)\s{10,}(?P<names>[a-z_\[\]\d, ]+)$")


def make_run(home: Path, conf: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    assert make, "make is not on PATH"
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env |= {
        "AIRFLOW_HOME": str(home),
        "GENRE_MODEL_DIR": str(tmp_path / "models"),
        "GENRE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "GENRE_DATA_ROOT": str(Path(conf["dataset_url"]).parent),
    }
    return subprocess.run(
        [make, "--no-print-directory", "run", f"CONF={json.dumps(conf)}"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def task_instances(home: Path) -> list[str]:
    """The newest run's task instances, as the console names them (`train[0]` for a mapped one)."""
    with sqlite3.connect(home / "airflow.db") as db:
        (run_id,) = db.execute("SELECT run_id FROM dag_run ORDER BY id DESC LIMIT 1").fetchone()
        rows = db.execute("SELECT task_id, map_index FROM task_instance WHERE run_id = ?", (run_id,)).fetchall()
    return sorted(task if index < 0 else f"{task}[{index}]" for task, index in rows)


def console_stages(lines: list[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """{stage: its figure} of the stage lines, and {label: stages} of the grouped lines; each stage once."""
    figures: dict[str, str] = {}
    grouped: dict[str, list[str]] = {}
    for line in lines:
        if match := STAGE.match(line):
            assert match["name"] not in figures, f"two lines for {match['name']}"
            figures[match["name"]] = match["figure"]
        elif match := GROUPED.match(line):
            grouped.setdefault(match["label"], []).extend(match["names"].split(", "))
    return figures, grouped


def check_each_task_once(home: Path, lines: list[str]) -> dict[str, str]:
    figures, grouped = console_stages(lines)
    shown = sorted([*figures, *(name for names in grouped.values() for name in names)])
    assert shown == task_instances(home), "one line per stage, each task of the run shown once"
    return figures


@pytest.mark.timeout(3 * RUN_TIMEOUT)
def test_make_run_prints_a_readable_run_and_a_failure_last(tmp_path: Path, sample_csv: Path, glove_module: str):
    home = tmp_path / "airflow"
    conf = quick_conf(sample_csv, embedding_module=glove_module)
    log = home / "make-run.log"

    # Week 1: promotes version 1.
    first = make_run(home, conf, tmp_path)
    lines = first.stdout.splitlines()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert len(lines) + len(first.stderr.splitlines()) < MAX_LINES, first.stdout + first.stderr
    assert lines[0] == f"Running movie_genre_retrain through Airflow; its full log: {log}"
    figures = check_each_task_once(home, lines)
    assert {"download", "prepare", "validate", "train[0]", "evaluate", "gate", "promote", "report"} <= set(figures)
    assert re.fullmatch(r"\d+ of \d+ movies kept \(train \d+, validation \d+, test \d+\)", figures["prepare"])
    assert "data gate passed" in figures["validate"] and "drift skipped (no served version)" in figures["validate"]
    assert re.fullmatch(r"test AUC micro 0\.\d{4}, macro 0\.\d{4} on \d+ movies", figures["evaluate"])
    assert figures["gate"].startswith("passed: auc_micro") and figures["promote"] == "version 1 published"
    run_dir = next((tmp_path / "artifacts" / "runs").iterdir())
    summary = lines[lines.index("Summary") :]
    assert any(line.startswith("  Data      ") and "data gate passed" in line for line in summary)
    assert any(line.startswith("  Model     test AUC micro") and "baselines: TF-IDF" in line for line in summary)
    assert any(line.startswith("  Decision  promote: ") for line in summary)
    assert f"  Version   1 promoted to {tmp_path / 'models' / 'movie_genre' / '1'}" in summary
    assert f"  Report    {run_dir / 'report.html'}" in summary and (run_dir / "report.html").is_file()
    assert f"  Log       {log}" in summary
    predicted = "  predicted genres (probability >= the genre's tuned threshold): "
    predictions = [line for line in lines if line.startswith(predicted)]
    assert len(predictions) == 3 and lines[-1].startswith(predicted)
    airflow_log = log.read_text()
    assert "[DAG TEST] end task task_id=promote" in airflow_log and "DagRun Finished" in airflow_log
    assert "[DAG TEST]" not in first.stdout, "Airflow's own lines stay in the log file"

    # Week 2, the same file: nothing retrained, and the console says since which version.
    second = make_run(home, conf, tmp_path)
    lines = second.stdout.splitlines()
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    figures = check_each_task_once(home, lines)
    gate_again = 'trigger with {"force": true} to retrain and gate again'
    assert figures["fingerprint"] == "unchanged since version 1"
    assert figures["retrain_needed"] == f"unchanged since version 1: nothing to retrain; {gate_again}"
    assert f"  Decision  nothing retrained: unchanged since version 1; {gate_again}" in lines
    assert len(lines) < MAX_LINES

    # Forced, with a threshold the model cannot reach: the gate refuses it, and says so last.
    third = make_run(home, {**conf, "auc_threshold": 0.99, "force": True}, tmp_path)
    lines = third.stdout.splitlines()
    assert third.returncode != 0
    assert re.fullmatch(
        r"gate failed: ModelGateError: model gate failed: auc_micro 0\.\d{4} < auc_threshold 0\.9900 "
        r"\(champion version 1 auc_micro 0\.\d{4}\)",
        lines[-1],
    ), lines[-5:]
    assert "  Version   nothing promoted" in lines
    assert check_each_task_once(home, lines)["gate"] == "FAILED"
    assert re.fullmatch(r"make: \*\*\* \[Makefile:\d+: run\] Error 1", third.stderr.strip()), third.stderr
    assert len(lines) < MAX_LINES
    assert sorted(p.name for p in (tmp_path / "models" / "movie_genre").iterdir() if p.name.isdigit()) == ["1"]
