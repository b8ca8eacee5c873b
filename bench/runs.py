"""One retraining run, measured: directly (`bench/pipeline.py`) or through Airflow (`airflow dags test`).

Both run in a fresh process under a home folder of their own (artifacts, models, Airflow's SQLite DB),
sampled for memory; the result has the wall time of the whole process, and each stage's time and peak
RSS (the process tree's, while the stage ran).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.measure import Measured, run_measured

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAG_ID = "movie_genre_retrain"


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mb: float
    stages: dict[str, dict[str, float]]  # stage → seconds (summed over mapped tasks), peak_rss_mb
    summaries: dict[str, Any]


def run_direct(home: Path, params: dict[str, Any], run_id: str = "bench", isolate: bool = False) -> Run:
    """The stages called in one Python process (`isolate`: each in a child process of its own)."""
    home.mkdir(parents=True, exist_ok=True)
    timeline_file = home / f"{run_id}.timeline.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "pipeline.py"),
        *("--home", str(home), "--timeline", str(timeline_file), "--run-id", run_id),
        *("--params", json.dumps(params)),
        *(["--isolate"] if isolate else []),
    ]
    measured = run_measured(command, home / f"{run_id}.log", _environment(home, params))
    timeline = json.loads(timeline_file.read_text(encoding="utf-8"))
    intervals = [(step["stage"], step["start"], step["end"]) for step in timeline]
    return _run(measured, intervals, {step["stage"]: step["summary"] for step in timeline})


def run_airflow(home: Path, params: dict[str, Any], run_id: str = "bench") -> Run:
    """The DAG through `airflow dags test` (what `make run` does): a fresh process, its own SQLite DB."""
    home.mkdir(parents=True, exist_ok=True)
    env = _environment(home, params)
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    command = [str(BIN / "airflow"), "dags", "test", DAG_ID, "--conf", json.dumps(params)]
    measured = run_measured(command, home / f"{run_id}.log", env)
    return _run(measured, _task_intervals(home / "airflow" / "airflow.db"), {})


def _environment(home: Path, params: dict[str, Any]) -> dict[str, str]:
    dataset = Path(params["dataset_url"])
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "GENRE_MODEL_DIR": str(home / "models"),
        "GENRE_ARTIFACTS_DIR": str(home / "artifacts"),
        "GENRE_DATA_ROOT": str(dataset.parent),
        "MOVIES_DATASET_URL": str(dataset),
        "GX_ANALYTICS_ENABLED": "false",
    }


def _task_intervals(database: Path) -> list[tuple[str, float, float]]:
    """(task, start, end) of every task instance of the run, from Airflow's metadata DB."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT task_id, start_date, end_date FROM task_instance WHERE dag_id = ? AND end_date IS NOT NULL",
            (DAG_ID,),
        ).fetchall()
    return [(task, _timestamp(start), _timestamp(end)) for task, start, end in rows]


def _timestamp(value: str) -> float:
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _run(measured: Measured, intervals: list[tuple[str, float, float]], summaries: dict[str, Any]) -> Run:
    stages: dict[str, dict[str, float]] = defaultdict(lambda: {"seconds": 0.0, "peak_rss_mb": 0.0})
    for stage, start, end in sorted(intervals, key=lambda interval: interval[1]):
        stages[stage]["seconds"] += end - start
        stages[stage]["peak_rss_mb"] = max(stages[stage]["peak_rss_mb"], measured.peak_rss_mb_between(start, end))
    return Run(measured.seconds, measured.peak_rss_mb, dict(stages), summaries)
