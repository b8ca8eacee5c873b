"""Acceptance: the retraining DAG on a real Airflow 3 deployment with the CeleryExecutor.

An API server, a scheduler, a DAG processor and two Celery workers run as separate processes on this
machine's PostgreSQL and Redis (tests/airflow_cluster.py). The run is unpaused and triggered through the
REST API as the UI does, and must succeed on the workers and promote a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deployment.airflow_cluster import AirflowCluster, airflow_cluster, pipeline_env
from tests.sample_data import quick_conf

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

DAG_ID = "movie_genre_retrain"
RUN_TIMEOUT = 1080
TWO_CANDIDATES = [{"wide": True}, {"wide": False}]  # two train tasks at once, one per worker


def run_once(cluster: AirflowCluster, conf: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Unpause and trigger the DAG through the REST API; the finished run and its task instances."""
    cluster.wait_for_dag(DAG_ID)
    cluster.unpause(DAG_ID)
    run_id = cluster.trigger(DAG_ID, conf)
    run = cluster.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)
    return run, cluster.task_instances(DAG_ID, run_id)


def task_key(task_instance: dict[str, Any]) -> str:
    """task_id, with the map index of a mapped task instance."""
    index = task_instance.get("map_index", -1)
    return task_instance["task_id"] + (f"[{index}]" if index is not None and index >= 0 else "")


def test_celery_deployment_runs_the_dag_on_its_workers(tmp_path: Path, dataset: Path, glove_module: str) -> None:
    with airflow_cluster("CeleryExecutor", workers=2, env=pipeline_env(tmp_path, dataset)) as cluster:
        run, task_instances = run_once(
            cluster, quick_conf(dataset, embedding_module=glove_module, candidates=TWO_CANDIDATES)
        )
        states = {task_key(ti): (ti["state"], ti["hostname"]) for ti in task_instances}
        assert run["state"] == "success", f"run {run['dag_run_id']}: {states}\n{cluster.logs()}"

    assert states.pop("approval")[0] == "skipped", "no approval asked for: the task skips itself"
    assert all(state == "success" for state, _ in states.values()), states
    hostnames = {hostname for _, hostname in states.values()}
    assert hostnames <= set(cluster.worker_names), f"tasks ran outside the Celery workers: {states}"
    assert hostnames == set(cluster.worker_names), f"both workers should have taken tasks: {states}"
    assert (tmp_path / "models" / "movie_genre" / "1" / "saved_model.pb").is_file(), "no model was promoted"
