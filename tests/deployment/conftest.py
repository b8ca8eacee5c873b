"""Fixtures of the deployment tests.

`shared_cluster`: one LocalExecutor deployment (tests/deployment/airflow_cluster.py) for the session,
shared by the acceptance tests that need nothing of a cluster but the pipeline's own settings (the
approval, the browser trigger, the Genre models page, the task logs; tests/conftest.py runs them on one
pytest-xdist worker, one after another). Booting a cluster costs about a minute of both cores; these
tests used to boot one each.

What they would otherwise get from a cluster of their own, they get from `SharedCluster.use(folder)`:
- the pipeline's model and artifact folders are the test's own. The cluster's GENRE_MODEL_DIR and
  GENRE_ARTIFACTS_DIR lie below a symlink (`SharedCluster.workspace`) that `use` points at the test's
  folder. Every process of the pipeline resolves those paths when it reads them (`Settings.from_env`), so
  a run writes where the test reads. `use` first waits until no run of an earlier test is still going
  (and fails those that do not end: a failed test may leave one waiting for an approval);
- an empty SMTP inbox (the cluster's `smtp_default`; GENRE_ALERT_EMAILS is `APPROVERS`);
- the same site defaults (`GENRE_PARAM_DEFAULTS`: `SITE_DEFAULTS` with the GloVe module) and the same
  800 real movies (`SharedCluster.dataset`, the cluster's MOVIES_DATASET_URL);
- users admin and viewer;
- what the fresh install showed before any test used it (`fresh_install`: each DAG's is_paused).
A test counts the runs it starts (new run ids), not all of a DAG's runs. When a test on it fails, its
teardown prints the cluster's log tails and keeps its logs (airflow_cluster.keep_logs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import failed
from tests.deployment.airflow_cluster import (
    AirflowCluster,
    ClusterError,
    airflow_cluster,
    keep_logs,
    pipeline_env,
    wait_until,
)
from tests.sample_data import write_head
from tests.servers import SmtpInbox, smtp_connection

RETRAIN = "movie_genre_retrain"
ROLLBACK = "movie_genre_rollback"
BATCH_PREDICT = "movie_genre_batch_predict"
# What an operator of a small test deployment sets in GENRE_PARAM_DEFAULTS: 800 movies, a quick model.
SITE_DEFAULTS = {"min_rows": 200, "epochs": 5, "auc_threshold": 0.5, "candidates": [{"wide": True}]}
APPROVERS = "ml-approvers@example.org"
VIEWER = "viewer"
QUIET_TIMEOUT = 300  # seconds for an earlier test's runs to end before `use` fails them
UNFINISHED = ("queued", "running")


@pytest.fixture
def dataset(tmp_path: Path, shared_csv: Path) -> Path:
    """The first 800 real movies, in a data folder of the test's own (the cluster's GENRE_DATA_ROOT)."""
    data = tmp_path / "data"
    data.mkdir()
    return write_head(shared_csv, data / "movies_head800.csv", 800)


@dataclass
class SharedCluster:
    cluster: AirflowCluster
    inbox: SmtpInbox
    dataset: Path
    workspace: Path  # a symlink: the cluster's model and artifact folders lie below it
    glove_module: str
    fresh_install: dict[str, bool]

    def unfinished_runs(self) -> list[dict[str, Any]]:
        response = self.cluster.api("GET", "/dags/~/dagRuns", params={"state": list(UNFINISHED), "limit": 100})
        response.raise_for_status()
        return list(response.json()["dag_runs"])

    def quiesce(self) -> None:
        """Wait until no run is queued or running; fail those still going after QUIET_TIMEOUT."""
        try:
            wait_until(
                lambda: not self.unfinished_runs(), QUIET_TIMEOUT, "earlier runs to end", self.cluster.check_alive
            )
        except ClusterError:
            for run in self.unfinished_runs():
                path = f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}"
                self.cluster.api("PATCH", path, json={"state": "failed"}).raise_for_status()
            wait_until(lambda: not self.unfinished_runs(), 60, "the failed runs to stop", self.cluster.check_alive)

    def use(self, folder: Path) -> None:
        """From now on the pipeline's models and artifacts are in `folder` (its `models` and `artifacts`),
        and the inbox is empty."""
        self.quiesce()
        folder.mkdir(parents=True, exist_ok=True)
        pointer = self.workspace.with_name(self.workspace.name + ".next")
        pointer.unlink(missing_ok=True)
        pointer.symlink_to(folder.resolve(), target_is_directory=True)
        os.replace(pointer, self.workspace)
        self.inbox.messages.clear()

    def run_ids(self, dag_id: str) -> set[str]:
        response = self.cluster.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})
        response.raise_for_status()
        return {run["dag_run_id"] for run in response.json()["dag_runs"]}

    def report_failure(self) -> None:
        print(f"Airflow cluster logs (tails):\n{self.cluster.logs()}")
        print(f"Airflow cluster logs (whole, and the task logs): {keep_logs(self.cluster.home)}")


@pytest.fixture(scope="session")
def shared_cluster(
    tmp_path_factory: pytest.TempPathFactory, shared_csv: Path, glove_module: str
) -> Iterator[SharedCluster]:
    root = tmp_path_factory.mktemp("shared-cluster")
    (root / "data").mkdir()
    dataset = write_head(shared_csv, root / "data" / "movies_head800.csv", 800)
    workspace = root / "workspace"
    (root / "nobody").mkdir()
    workspace.symlink_to(root / "nobody", target_is_directory=True)
    with SmtpInbox() as inbox:
        env = {
            **pipeline_env(workspace, dataset),
            "GENRE_PARAM_DEFAULTS": json.dumps(SITE_DEFAULTS | {"embedding_module": glove_module}),
            "AIRFLOW_CONN_SMTP_DEFAULT": smtp_connection(inbox.port),
            "GENRE_ALERT_EMAILS": APPROVERS,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{VIEWER}:viewer",
        }
        with airflow_cluster("LocalExecutor", workers=0, env=env) as cluster:
            fresh_install = {}
            for dag_id in (RETRAIN, ROLLBACK, BATCH_PREDICT):
                fresh_install[dag_id] = bool(cluster.wait_for_dag(dag_id)["is_paused"])
            yield SharedCluster(cluster, inbox, dataset, workspace, glove_module, fresh_install)


@pytest.fixture
def on_shared_cluster(
    shared_cluster: SharedCluster, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[SharedCluster]:
    """The shared cluster, its models and artifacts in the test's tmp_path, its inbox empty."""
    shared_cluster.use(tmp_path)
    yield shared_cluster
    if failed(request):
        shared_cluster.report_failure()
