"""Acceptance: a change of the served version makes a real scheduler tag the catalogue.

A real deployment (api-server, scheduler with the LocalExecutor, dag-processor; PostgreSQL; see
airflow_cluster.py) with two versions of a small GloVe model published beforehand. A rollback triggered
through the REST API publishes version 3 and emits the served-model asset's event; nothing else is
triggered: the scheduler must start `movie_genre_batch_predict` on that event by itself, and the run
must write predictions/3/predictions.parquet for the catalogue at GENRE_SCORING_URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.deployment.airflow_cluster import AirflowCluster, airflow_cluster, pipeline_env, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BATCH_PREDICT = "movie_genre_batch_predict"
ROLLBACK = "movie_genre_rollback"
RUN_TIMEOUT = 300


@pytest.fixture
def served(tmp_path: Path, glove_export: Path, glove_module: str) -> Path:
    """Versions 1 and 2 of a small real model (the session's `glove_export`: one epoch of a narrow head on
    the GloVe module, trained on the same 800 movies), published as a retrain publishes them, its manifest
    naming the module."""
    from tasks.embedding.modules import module_fingerprint
    from tasks.registry.promote import promote_model

    folder = tmp_path / "models" / "movie_genre"
    module = {"path": glove_module, "fingerprint": module_fingerprint(glove_module)}
    for week, auc in (("week 1", 0.81), ("week 2", 0.78)):
        manifest = {"dag_run_id": week, "embedding_module": module, "metrics": {"auc_micro": auc}}
        promote_model(glove_export, folder, manifest, actor="test", reason=week, keep_versions=5)
    return folder


def runs_of(cluster: AirflowCluster, dag_id: str) -> list[dict[str, Any]]:
    response = cluster.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})
    response.raise_for_status()
    return list(response.json()["dag_runs"])


def test_a_rollback_makes_the_scheduler_tag_the_catalogue_with_the_new_version(
    tmp_path: Path, dataset: Path, served: Path
) -> None:
    env = {
        **pipeline_env(tmp_path, dataset),
        "GENRE_SCORING_URL": str(dataset),
        # The harness turns the scheduler's own run creation off (no @weekly run); asset-triggered runs
        # are created there too. The retrain stays paused, so nothing else is scheduled.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
    }
    with airflow_cluster("LocalExecutor", workers=0, env=env) as cluster:
        for dag_id in (BATCH_PREDICT, ROLLBACK):
            cluster.wait_for_dag(dag_id)
            cluster.unpause(dag_id)
        assert runs_of(cluster, BATCH_PREDICT) == [], "no run before the served version changes"

        rollback_id = cluster.trigger(ROLLBACK, {"reason": "week 2 mislabels documentaries"})
        rollback = cluster.wait_for_run(ROLLBACK, rollback_id, RUN_TIMEOUT)
        assert rollback["state"] == "success", cluster.logs()

        (scheduled,) = wait_until(
            lambda: runs_of(cluster, BATCH_PREDICT), RUN_TIMEOUT, "the scheduler to start the batch predict run"
        )
        assert scheduled["run_type"] == "asset_triggered"
        finished = cluster.wait_for_run(BATCH_PREDICT, scheduled["dag_run_id"], RUN_TIMEOUT)
        assert finished["state"] == "success", cluster.logs()
        response = cluster.api("GET", f"/dags/{BATCH_PREDICT}/dagRuns/{scheduled['dag_run_id']}/upstreamAssetEvents")
        response.raise_for_status()
        (event,) = response.json()["asset_events"]

    assert (event["source_dag_id"], event["source_run_id"]) == (ROLLBACK, rollback_id)
    assert event["extra"]["version"] == 3 and event["extra"]["rollback_of"] == 1
    assert event["extra"]["metrics"] == {"auc_micro": 0.81}, "the metrics of the version served again"

    out = tmp_path / "artifacts" / "predictions"
    assert sorted(p.name for p in out.iterdir()) == ["3"], "only the served version's folder, no leftovers"
    summary = json.loads((out / "3" / "summary.json").read_text())
    assert summary["version"] == summary["announced_version"] == 3
    assert summary["records"] == 800 == summary["scored"] + sum(summary["skipped"].values())

    import pyarrow.parquet as pq

    table = pq.read_table(out / "3" / "predictions.parquet")
    assert table.num_rows == summary["scored"] and table.column_names[:2] == ["id", "genres"]
