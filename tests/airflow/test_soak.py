"""Soak: the retrain DAG five times back to back through real Airflow (`dag.test()`), on the 800-row
sample with the small GloVe module and one epoch. After every run: the model folder holds at most
`keep_versions` versions and no more bytes than that many versions take, the history accounts for
exactly the folders present, and nothing is left behind: no child process, no temporary file or folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

import psutil
import pytest

from tasks.registry.versions import ModelRegistry
from tests.airflow.dag_runs import run_dag
from tests.history import present_by_history
from tests.sample_data import quick_conf

pytestmark = pytest.mark.slow

KEEP = 3
RUNS = KEEP + 2  # retention retires a version in each of the last two runs


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _temporaries(*folders: Path) -> list[Path]:
    """Files and folders written under a temporary name (artifacts.atomic_*, registry staging)."""
    return [p for folder in folders for pattern in (".*.tmp", ".staging-*") for p in folder.rglob(pattern)]


def test_runs_back_to_back_stay_within_retention_and_leave_nothing_behind(
    dag, dirs, sample_csv: Path, glove_module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"  # this test's own temporary folder, for its processes and their children
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    me = psutil.Process()
    children_before = {child.pid for child in me.children(recursive=True)}
    served = dirs["models"] / "movie_genre"
    registry = ModelRegistry(served)
    conf = quick_conf(
        sample_csv,
        epochs=1,
        auc_threshold=0.0,
        max_auc_drop=1.0,  # every run promotes: retention is what is under test
        force=True,  # the same file each time, which an unforced run would skip
        keep_versions=KEEP,
        embedding_module=glove_module,
        candidates=[{"wide": False, "hidden_units": 16}],
    )
    shards: list[Path] = []
    for run in range(1, RUNS + 1):
        states = run_dag(dag, conf)
        assert states["run"] == "success", (run, states)

        versions = registry.versions()
        assert versions == list(range(max(1, run - KEEP + 1), run + 1)), f"run {run}: {versions}"
        history = registry.history()
        assert present_by_history(history) == set(versions), f"run {run}: history disagrees with the folders"
        assert [e["version"] for e in history if e["event"] == "promote"] == list(range(1, run + 1))
        largest = max(_size(registry.version_dir(v)) for v in versions)
        assert _size(served) <= KEEP * largest + 1_000_000, "only the kept versions (and the history) take space"

        assert _temporaries(dirs["artifacts"], dirs["models"]) == [], f"run {run}"
        now = sorted((dirs["artifacts"] / "embedding_cache").rglob("*.npz"))
        assert run == 1 or now == shards, "later runs on the same data embed nothing"
        shards = now

    assert len(list((dirs["artifacts"] / "runs").iterdir())) == RUNS, "every run keeps its artifacts"
    left = [child for child in me.children(recursive=True) if child.pid not in children_before]
    assert [(c.pid, c.name()) for c in left if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
    # TensorFlow's AutoGraph keeps the source it generates until the interpreter exits (an atexit hook
    # removes it); dag.test() runs every task in this one process, where a deployment runs each in its own.
    left_files = [p.name for p in scratch.iterdir() if not p.name.startswith("__autograph_generated_file")]
    assert left_files == [], "no temporary file or folder outlives its run"
