"""Acceptance: task logs, as a real scheduler writes them and a person reads them in the UI.

One deployment (the session's shared cluster, tests/deployment/conftest.py: LocalExecutor on the local
PostgreSQL; models and artifacts in the module's folder) runs the retraining DAG three times: once to
success, once to a failed model gate, once more on the unchanged data. Each task's log is read through
the REST API's task-instance log endpoint, the one the UI's log view uses, line by line with its level.

- A successful run logs no ERROR line: TensorFlow's start-up lines on a host without a GPU (written to
  stderr, which Airflow records at ERROR) and library chatter are not a stage's errors.
- A failed gate's log says why at its first ERROR line, not somewhere below start-up noise.
- A week with nothing new says so in the short-circuit's log, and the run succeeds without training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import failed
from tests.deployment.airflow_cluster import AirflowCluster, LogLine
from tests.deployment.conftest import SharedCluster
from tests.sample_data import quick_conf

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TWO_CANDIDATES = [{"wide": True}, {"wide": False}]
DAG_ID = "movie_genre_retrain"
RUN_TIMEOUT = 900
ERROR_LEVELS = ("error", "critical")
# What TensorFlow prints at start-up without a GPU: no log should show it, at any level.
NO_GPU_STARTUP = ("Could not find cuda drivers", "failed call to cuInit", "absl::InitializeLog()")


@dataclass
class Deployment:
    cluster: AirflowCluster
    dataset: Path
    embedding_module: str


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, shared_cluster: SharedCluster) -> Deployment:
    """The shared cluster for the module's runs, its models and artifacts in a folder of the module's own."""
    shared_cluster.use(tmp_path_factory.mktemp("task-logs"))
    shared_cluster.cluster.unpause(DAG_ID)
    return Deployment(shared_cluster.cluster, shared_cluster.dataset, shared_cluster.glove_module)


@pytest.fixture(autouse=True)
def _report_failure(
    deployment: Deployment, shared_cluster: SharedCluster, request: pytest.FixtureRequest
) -> Iterator[None]:
    yield
    if failed(request):
        shared_cluster.report_failure()


def run(deployment: Deployment, **conf: Any) -> tuple[dict[str, Any], dict[str, list[LogLine]]]:
    """Trigger a quick run with `conf` on top; the finished run and the log of every try of every task
    instance, keyed "task[map index] try N"."""
    cluster = deployment.cluster
    # Two candidates, so that both mapped train tasks' logs are read.
    params = quick_conf(deployment.dataset, embedding_module=deployment.embedding_module, candidates=TWO_CANDIDATES)
    run_id = cluster.trigger(DAG_ID, {**params, **conf})
    finished = cluster.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)
    logs = {}
    for ti in cluster.task_instances(DAG_ID, run_id):
        index = ti["map_index"] if ti["map_index"] is not None else -1
        for try_number in range(1, (ti["try_number"] or 0) + 1):
            key = ti["task_id"] + (f"[{index}]" if index >= 0 else "") + f" try {try_number}"
            logs[key] = cluster.task_log(DAG_ID, run_id, ti["task_id"], try_number, index)
    return finished, logs


def errors(lines: list[LogLine]) -> list[LogLine]:
    return [line for line in lines if line.level in ERROR_LEVELS]


def describe(logs: dict[str, list[LogLine]]) -> str:
    return "\n".join(f"{key}: {line}" for key, lines in logs.items() for line in lines)


def test_a_successful_run_logs_no_error(deployment: Deployment) -> None:
    finished, logs = run(deployment)
    assert finished["state"] == "success", f"run {finished['dag_run_id']} {finished['state']}:\n" + describe(
        {key: errors(lines) for key, lines in logs.items()}
    )
    assert {"train[0] try 1", "train[1] try 1", "evaluate try 1", "gate try 1", "report try 1"} <= set(logs)
    assert all(logs.values()), f"empty task logs: {[key for key, lines in logs.items() if not lines]}"

    error_lines = {key: errors(lines) for key, lines in logs.items() if errors(lines)}
    assert not error_lines, "ERROR lines in the logs of a successful run:\n" + describe(error_lines)
    startup = {
        key: [line for line in lines if any(text in line.event for text in NO_GPU_STARTUP)]
        for key, lines in logs.items()
    }
    assert not any(startup.values()), "TensorFlow's no-GPU start-up lines reached a log:\n" + describe(startup)

    # The data gate's log is about the data gate: its result, not Great Expectations' INFO chatter.
    validate = logs["validate try 1"]
    chatter = [line for line in validate if line.logger.startswith("great_expectations") and line.level == "info"]
    assert not chatter, f"{len(chatter)} INFO lines of Great Expectations in validate's log, e.g. {chatter[0]}"
    assert any(line.event.startswith("data gate passed") for line in validate), describe({"validate": validate})


def test_a_failed_model_gate_says_why_at_its_first_error_line(deployment: Deployment) -> None:
    # force: the module's first run may have promoted a model trained on the same data and params.
    finished, logs = run(deployment, auc_threshold=0.99, force=True)
    assert finished["state"] == "failed", f"run {finished['dag_run_id']} should fail at the model gate"

    gate_errors = errors(logs["gate try 1"])
    assert gate_errors, "the failed gate logged no ERROR line:\n" + describe({"gate": logs["gate try 1"]})
    first = gate_errors[0]
    assert "ModelGateError" in first.event and "auc_threshold 0.9900" in first.event, (
        f"the gate's first ERROR line is not its reason: {first}\nall ERROR lines:\n" + describe({"gate": gate_errors})
    )


def test_an_unchanged_week_says_so_in_its_log(deployment: Deployment) -> None:
    finished, logs = run(deployment)  # the data, module, params and code of the promoted version 1
    assert finished["state"] == "success"
    assert "train[0] try 1" not in logs and "validate try 1" not in logs, "skipped tasks never ran"
    lines = [line.event for line in logs["retrain_needed try 1"]]
    assert any("unchanged since version 1: nothing to retrain" in line for line in lines), lines
