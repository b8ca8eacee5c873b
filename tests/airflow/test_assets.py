"""The served model as an Airflow asset, through real Airflow in-process: the DAGs parsed from dags/, runs
by `dag.test()`, and the asset events read back from the Airflow metadata DB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestration.assets import SERVED_MODEL_ASSET
from tests.sample_data import PROJECT_ROOT, quick_conf

pytestmark = pytest.mark.slow

BATCH_PREDICT = "movie_genre_batch_predict"


@pytest.fixture
def bag(airflow_db: Path, dirs: dict[str, Path]) -> dict[str, Any]:
    """The DAGs parsed now, with this test's model and artifact folders."""
    from airflow.dag_processing.dagbag import DagBag

    parsed = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert parsed.import_errors == {}
    return parsed.dags


def asset_events(run_id: str) -> list[dict[str, Any]]:
    """The asset events a DAG run emitted, as recorded in the metadata DB."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(select(AssetEvent).where(AssetEvent.source_run_id == run_id)).all()
        return [
            {
                "asset": (event.asset.name, event.asset.uri),
                "task": f"{event.source_dag_id}.{event.source_task_id}",
                "extra": event.extra,
            }
            for event in events
        ]


def run(dag: Any, conf: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Run `dag` once with `dag.test()`; its run id and the state of the run and of each task."""
    dag_run = dag.test(run_conf=conf)
    return dag_run.run_id, {
        "run": str(dag_run.state),
        **{ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()},
    }


def test_batch_predict_is_scheduled_on_the_asset_that_promote_and_rollback_update(bag) -> None:
    from airflow.sdk import Asset, AssetAll
    from airflow.sdk.definitions.timetables.assets import AssetTriggeredTimetable

    asset = Asset(name=SERVED_MODEL_ASSET)
    timetable = bag[BATCH_PREDICT].timetable
    assert isinstance(timetable, AssetTriggeredTimetable) and timetable.asset_condition == AssetAll(asset)
    assert bag["movie_genre_retrain"].get_task("promote").outlets == [asset]
    assert bag["movie_genre_rollback"].get_task("rollback").outlets == [asset]
    assert [t.task_id for t in bag[BATCH_PREDICT].tasks] == ["batch_predict"]
    assert bag[BATCH_PREDICT].max_active_runs == 1 and len(bag[BATCH_PREDICT].params) == 0


def test_the_rollback_and_batch_predict_dags_each_run_their_step_from_the_one_pipeline(bag) -> None:
    import inspect

    for dag_id, task_id in (("movie_genre_rollback", "rollback"), (BATCH_PREDICT, "batch_predict")):
        (task,) = bag[dag_id].tasks
        assert task.task_id == task_id and f"steps.{task_id}(" in inspect.getsource(task.python_callable), dag_id


def test_batch_predict_dag_file_parses_without_heavy_imports() -> None:
    probe = (
        "import sys, runpy; import airflow.sdk;"
        f"runpy.run_path({str(PROJECT_ROOT / 'dags' / 'movie_genre_batch_predict.py')!r});"
        "print(','.join(m for m in ('tensorflow', 'pandas', 'pyarrow', 'great_expectations') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert output.strip().splitlines()[-1:] in ([], [""]), f"the DAG file imported {output.strip()}"


def test_a_promotion_announces_its_version_and_metrics_and_no_other_retrain_emits(
    bag, dirs, sample_csv: Path, glove_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed model gate emits nothing; a promotion emits version 1 with its test metrics; a run with
    nothing new (skipped) emits nothing. Then a manual batch predict run (no event) scores version 1."""
    served = dirs["models"] / "movie_genre"
    conf = quick_conf(sample_csv, embedding_module=glove_module)

    gated, states = run(bag["movie_genre_retrain"], {**conf, "auc_threshold": 0.99})
    assert states["run"] == "failed" and states["gate"] == "failed" and states["promote"] == "upstream_failed"
    assert asset_events(gated) == []

    promoting, states = run(bag["movie_genre_retrain"], conf)
    assert states["run"] == "success" and states["promote"] == "success", states
    manifest = json.loads((served / "1" / "manifest.json").read_text())
    metrics = {k: v for k, v in manifest["metrics"].items() if k not in ("path", "seconds")}
    assert set(metrics) >= {"auc_micro", "auc_macro", "test_rows"}
    assert asset_events(promoting) == [
        {
            "asset": (SERVED_MODEL_ASSET, SERVED_MODEL_ASSET),
            "task": "movie_genre_retrain.promote",
            "extra": {
                "version": 1,
                "rollback_of": None,
                "metrics": metrics,
                "dag_run_id": promoting,
                "path": str(served / "1"),
            },
        }
    ]

    unchanged, states = run(bag["movie_genre_retrain"], conf)
    assert states["run"] == "success" and states["promote"] == "skipped", "nothing new: the run short-circuits"
    assert asset_events(unchanged) == []

    monkeypatch.setenv("GENRE_SCORING_URL", str(sample_csv))
    _, states = run(bag[BATCH_PREDICT], {})
    assert states == {"run": "success", "batch_predict": "success"}
    summary = json.loads((dirs["artifacts"] / "predictions" / "1" / "summary.json").read_text())
    assert summary["version"] == 1 and summary["announced_version"] is None and summary["records"] == 800
    embeddings = summary["embeddings"]
    # The retrain cached the overviews of the movies it kept (those with a target genre): only the others
    # are embedded now.
    assert embeddings["from_cache"] > embeddings["computed"] > 0, embeddings


def test_a_rollback_announces_the_new_version_with_the_metrics_of_the_one_served_again(bag, dirs, tmp_path) -> None:
    """Two versions published by hand (no event: outside Airflow); a rollback to version 1 emits version 3
    with version 1's metrics; a refused rollback emits nothing."""
    from tasks.registry.promote import promote_model

    served = dirs["models"] / "movie_genre"
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"rollback copies folders; it never loads the model")
    for run_id, auc in (("week 1", 0.84), ("week 2", 0.79)):
        manifest = {"dag_run_id": run_id, "metrics": {"auc_micro": auc, "auc_macro": auc - 0.1, "path": "/x"}}
        promote_model(model, served, manifest, actor="test", reason=run_id, keep_versions=5)

    rolled_back, states = run(bag["movie_genre_rollback"], {"version": 1, "reason": "week 2 is worse"})
    assert states["run"] == "success", states
    assert asset_events(rolled_back) == [
        {
            "asset": (SERVED_MODEL_ASSET, SERVED_MODEL_ASSET),
            "task": "movie_genre_rollback.rollback",
            "extra": {
                "version": 3,
                "rollback_of": 1,
                "metrics": {"auc_micro": 0.84, "auc_macro": pytest.approx(0.74)},
                "dag_run_id": "week 1",
                "path": str(served / "3"),
            },
        }
    ]

    refused, states = run(bag["movie_genre_rollback"], {"version": 3, "reason": "already served"})
    assert states["run"] == "failed"
    assert asset_events(refused) == []
