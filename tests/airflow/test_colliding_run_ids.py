"""Two runs whose ids differ only in characters a path cannot hold keep separate artifact folders.

`xss_coll:1` and `xss_coll_1` once mapped to one folder: the second run overwrote the first one's
report.html and Data Docs, so a promoted version's "report" link showed another run's failed gate.
Both runs here go through the real DAG (`dag.test()`) up to the data gate, which each fails.
"""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import pytest

from tasks.config import Settings
from tests.airflow.dag_runs import run_dag
from tests.sample_data import quick_conf

pytestmark = pytest.mark.slow

COLLIDING_RUN_IDS = ("xss_coll:1", "xss_coll_1")


def test_colliding_run_ids_keep_their_own_reports(dag, dirs, sample_csv: Path, glove_module: str) -> None:
    from airflow.models.dagrun import DagRun

    conf = quick_conf(sample_csv, min_rows=100_000, embedding_module=glove_module)
    for run_id in COLLIDING_RUN_IDS:
        # dag.test() names its run itself; this gives it the run id a person may type in the trigger form.
        with patch.object(DagRun, "generate_run_id", return_value=run_id):
            states = run_dag(dag, conf)
        assert states["run"] == "failed" and states["validate"] == "failed", states

    settings = Settings.from_env()
    folders = [settings.run_dir(run_id) for run_id in COLLIDING_RUN_IDS]
    assert sorted(p.name for p in (dirs["artifacts"] / "runs").iterdir()) == sorted(f.name for f in folders)
    for run_id, folder in zip(COLLIDING_RUN_IDS, folders, strict=True):
        report = (folder / "report.html").read_text(encoding="utf-8")
        assert run_id in report and (folder / "validation" / "data_docs" / "index.html").is_file()
        other = next(r for r in COLLIDING_RUN_IDS if r != run_id)
        assert other not in report, f"{folder.name}'s report names the other run"
