"""Faults on the distributed engine: the retrain DAG on a real CeleryExecutor cluster loses a worker, its
broker, its database or its scheduler mid-run, and nothing is lost.

One cluster for the whole module (tests/deployment/airflow_cluster.py: api-server, scheduler,
dag-processor, two Celery workers) on a PostgreSQL and a Redis of its own, started here on free ports
(tests/servers.py), so that a case can stop and restart them; the machine's shared services are never
touched. Alerts go to a real SMTP inbox on loopback. The cases run one after another; each starts by
bringing back whatever an earlier case left down, triggers its own runs with `force` (the same 400 real
rows every time: unforced, a run after the first would end "unchanged") and `keep_versions` high enough
that retention retires nothing (so a rollback's target stays present), and injects its fault at a moment
it observes: the task instance runs on a worker and that worker's task process exists, or the task
waits on the registry lock the test holds. Every wait is bounded; the fixtures stop every process and
server they started, even when an assertion fails.

After every case: each run promoted at most one version (exactly one when it succeeded), every version
folder is whole and accounted for by history.jsonl (and every line by a folder), no staging folder is
left, and the inbox holds one alert for a run that failed and none for a run that recovered by itself.
The timings are printed (`pytest -s`) and summarised in docs/operations.md, Lost workers and faults.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tasks.config import run_folder_name
from tasks.registry.versions import ModelRegistry
from tests.deployment.airflow_cluster import (
    HEARTBEAT_TIMEOUT,
    LOST_TASK_DETECTION_SECONDS,
    AirflowCluster,
    ClusterError,
    Process,
    airflow_cluster,
    pipeline_env,
    process_family,
    wait_until,
)
from tests.history import present_by_history
from tests.sample_data import quick_conf, write_head
from tests.servers import PostgresServer, RedisServer, SmtpInbox, smtp_connection

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

RETRAIN = "movie_genre_retrain"
ROLLBACK = "movie_genre_rollback"
ROWS = 400  # a few hundred real movies: enough to pass min_rows 200 and train in seconds
RUN_TIMEOUT = 600
ALERT_TIMEOUT = 180
RECIPIENT = "ml-team@example.org"
SERVICE_DOWN_SECONDS = 5  # how long Redis or PostgreSQL stays down: a restart, not an outage
KEEP = 50  # retention retires nothing during the suite
FINISHED = ("success", "failed", "upstream_failed", "skipped")


@dataclass
class Rig:
    """The module's cluster, its own services, its inbox and where the pipeline writes."""

    cluster: AirflowCluster
    inbox: SmtpInbox
    redis: RedisServer
    postgres: PostgresServer
    root: Path
    conf: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    restarts: list[str] = field(default_factory=list)

    @property
    def served(self) -> Path:
        return self.root / "models" / "movie_genre"

    def supervise(self) -> None:
        """What the compose deployment's `restart: always` does: start again any component that exited
        (the scheduler exits when its database goes away); each restart is recorded."""
        for process in list(self.cluster.processes):
            if process.popen.poll() is not None:
                self.cluster.processes.remove(process)
                self.restarts.append(f"{process.name} exited with {process.popen.returncode}")
                print(f"restart policy: {process.name} exited ({process.popen.returncode}); starting it again")
                if process.name in self.cluster.worker_names:
                    self.cluster.start_worker(process.name)
                else:
                    self.cluster.start_component(process.name)

    def wait_for_run(self, run_id: str, dag_id: str = RETRAIN) -> dict[str, Any]:
        """Until the run ended, restarting components that exit on the way (see `supervise`)."""

        def finished() -> dict[str, Any] | None:
            try:
                run = self.cluster.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
            except (requests.RequestException, ValueError):  # an API server restarting: ask again
                return None
            return run if run.get("state") in ("success", "failed") else None

        return wait_until(finished, RUN_TIMEOUT, f"run {run_id} of {dag_id} to end", self.supervise)

    def ready(self) -> None:
        """Bring back what an earlier case left down: both workers, the scheduler."""
        self.supervise()
        for name in ("scheduler", *self.cluster.worker_names):
            if not any(p.name == name for p in self.cluster.processes):
                if name in self.cluster.worker_names:
                    self.cluster.start_worker(name)
                else:
                    self.cluster.start_component(name)
        self.cluster.check_alive()

    def alerts_for(self, run_id: str) -> list[str]:
        return [text for text in map(message_text, list(self.inbox.messages)) if run_id in text]


def run_dir(rig: Rig, run_id: str) -> Path:
    """The run's artifact folder, named as `tasks.config.Settings.run_dir` names it."""
    return rig.root / "artifacts" / "runs" / run_folder_name(run_id)


def message_text(message: Message) -> str:
    """Subject and every text part of an e-mail, decoded."""
    parts = [
        part.get_payload(decode=True).decode(errors="replace")
        for part in message.walk()
        if part.get_content_maintype() == "text"
    ]
    return "\n".join([str(message["Subject"]), *parts])


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, shared_csv: Path, glove_module: str) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("faults")
    (root / "data").mkdir()
    dataset = write_head(shared_csv, root / "data" / f"movies_head{ROWS}.csv", ROWS)
    with ExitStack() as stack:  # closed in reverse: the cluster first, then its services, then the inbox
        inbox = stack.enter_context(SmtpInbox())
        postgres = stack.enter_context(PostgresServer())
        redis = stack.enter_context(RedisServer(root / "redis"))
        env = {
            **pipeline_env(root, dataset),
            "AIRFLOW_CONN_SMTP_DEFAULT": smtp_connection(inbox.port),
            "GENRE_ALERT_EMAILS": RECIPIENT,
        }
        started = time.monotonic()
        cluster = stack.enter_context(
            airflow_cluster(
                "CeleryExecutor",
                workers=2,
                env=env,
                database_url=postgres.create_database("airflow"),
                broker_url=redis.url,
            )
        )
        for dag_id in (RETRAIN, ROLLBACK):
            cluster.wait_for_dag(dag_id)
            cluster.unpause(dag_id)
        print(f"cluster up in {time.monotonic() - started:.0f} s")
        conf = quick_conf(
            dataset,
            embedding_module=glove_module,
            epochs=3,
            auc_threshold=0.0,
            max_auc_drop=1.0,  # every run that gets there promotes: the faults are under test, not the gate
            force=True,  # the same file every time, which an unforced run would skip as unchanged
            keep_versions=KEEP,
        )
        rig = Rig(cluster, inbox, redis, postgres, root, conf)
        try:
            yield rig
        finally:
            print("figures:", json.dumps(rig.figures, indent=1, default=str))


# --- What must hold after every case -------------------------------------------------------------------------


def promotions_by(history: list[dict[str, Any]], run_id: str) -> list[int]:
    return [e["version"] for e in history if e["event"] == "promote" and e["by"] == f"dag_run:{run_id}"]


def assert_registry_consistent(served: Path) -> list[dict[str, Any]]:
    """Every version folder whole and in the history, every history version a folder; no staging left."""
    registry = ModelRegistry(served)
    history = registry.history()
    assert set(registry.versions()) == present_by_history(history), (
        f"history.jsonl does not match the folders: {registry.versions()} vs {history}"
    )
    for version in registry.versions():
        folder = registry.version_dir(version)
        assert (folder / "saved_model.pb").is_file() and (folder / "manifest.json").is_file(), f"{folder} not whole"
        assert registry.manifest(version)["version"] == version
    assert not list(served.glob(".staging-*")), "a staging folder was left behind"
    return history


def assert_run_outcome(rig: Rig, run_id: str, state: str, dag_id: str = RETRAIN) -> list[dict[str, Any]]:
    """The run's state, its promotions (one if it succeeded, none if it failed), its alerts (none if it
    succeeded; one, arriving within ALERT_TIMEOUT, if it failed)."""
    run = rig.cluster.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
    states = {
        ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
        for ti in rig.cluster.task_instances(dag_id, run_id)
    }
    assert run["state"] == state, f"run {run_id}: {run['state']}, expected {state}: {states}"
    history = assert_registry_consistent(rig.served)
    if dag_id == RETRAIN:
        assert len(promotions_by(history, run_id)) == (1 if state == "success" else 0), history
    if state == "failed":
        wait_until(lambda: rig.alerts_for(run_id), ALERT_TIMEOUT, f"the alert of failed run {run_id}")
        time.sleep(5)  # a second, duplicate alert would come right after the first
        assert len(rig.alerts_for(run_id)) == 1, rig.alerts_for(run_id)
    else:
        assert rig.alerts_for(run_id) == [], f"an alert for run {run_id}, which recovered: {rig.alerts_for(run_id)}"
    return history


# --- Injecting at a moment the test observes -------------------------------------------------------------------


def wait_for_task_process(
    cluster: AirflowCluster, dag_id: str, run_id: str, task_id: str, map_index: int = -1
) -> tuple[Process, dict[str, Any]]:
    """Until the task instance runs on a worker and its task process (the TI's pid) is that worker's
    descendant: the moment to kill. The worker and the task instance."""
    worker, _ = cluster.wait_for_running_on_worker(dag_id, run_id, task_id, map_index, timeout=RUN_TIMEOUT)

    def task_process() -> dict[str, Any] | None:
        ti = cluster.task_instance(dag_id, run_id, task_id, map_index)
        if ti is None or ti["state"] in FINISHED:
            raise ClusterError(f"{task_id}[{map_index}] finished before its process was seen: {ti}")
        pids = {p.pid for p in process_family(worker.popen.pid)}
        return ti if ti.get("pid") in pids else None

    ti = wait_until(task_process, 60, f"{task_id}'s process on {worker.name}", cluster.check_alive, poll=0.2)
    return worker, ti


def wait_for_retry(
    cluster: AirflowCluster, run_id: str, task_id: str, map_index: int, killed_at: float
) -> tuple[float, float]:
    """Seconds from the kill until the lost try is up for retry, and until the next try runs."""

    def lost() -> float | None:
        ti = cluster.task_instance(RETRAIN, run_id, task_id, map_index)
        if ti and (ti["state"] in ("up_for_retry", "scheduled", "queued") or ti["try_number"] > 1):
            return time.monotonic() - killed_at
        return None

    to_up_for_retry = wait_until(lost, 180, f"{task_id} to be up for retry", cluster.check_alive, poll=0.5)

    def retried() -> float | None:
        ti = cluster.task_instance(RETRAIN, run_id, task_id, map_index)
        if ti and ti["try_number"] > 1 and ti["state"] in ("running", "success"):
            return time.monotonic() - killed_at
        return None

    to_retry_start = wait_until(retried, RUN_TIMEOUT, f"{task_id}'s retry to start", cluster.check_alive, poll=0.5)
    return to_up_for_retry, to_retry_start


def run_until_done(rig: Rig, run_id: str, dag_id: str = RETRAIN) -> dict[str, Any]:
    return rig.wait_for_run(run_id, dag_id)


# --- The cases ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task_id", "map_index"), [("train", 0)])
def test_a_worker_killed_mid_task_is_retried_on_the_survivor(rig: Rig, task_id: str, map_index: int) -> None:
    rig.ready()
    cluster = rig.cluster
    run_id = cluster.trigger(RETRAIN, rig.conf)
    lost, running = wait_for_task_process(cluster, RETRAIN, run_id, task_id, map_index)
    killed_wall = datetime.now(UTC)
    killed_at = time.monotonic()
    cluster.kill_worker(lost)
    to_up_for_retry, to_retry_start = wait_for_retry(cluster, run_id, task_id, map_index, killed_at)
    run = run_until_done(rig, run_id)
    recovered = time.monotonic() - killed_at
    rig.figures["worker_killed_mid_" + task_id] = {
        "kill_to_up_for_retry_s": round(to_up_for_retry, 1),
        "kill_to_retry_start_s": round(to_retry_start, 1),
        "kill_to_run_success_s": round(recovered, 1),
    }
    print(f"{task_id}: kill→up_for_retry {to_up_for_retry:.1f} s, →retry start {to_retry_start:.1f} s, run done")

    assert run["state"] == "success"
    assert to_up_for_retry <= LOST_TASK_DETECTION_SECONDS, f"{to_up_for_retry:.0f} s to notice the lost {task_id}"
    tries = cluster.task_tries(RETRAIN, run_id, task_id, map_index)
    survivor = next(name for name in cluster.worker_names if name != lost.name)
    assert [t["try_number"] for t in tries] == [1, 2], tries
    assert tries[0]["hostname"] == lost.name and tries[0]["state"] in ("failed", "up_for_retry"), tries[0]
    assert tries[1]["hostname"] == survivor and tries[1]["state"] == "success", tries[1]
    timeouts = cluster.event_logs(RETRAIN, run_id, "heartbeat timeout")
    assert [(e["task_id"], e["try_number"]) for e in timeouts] == [(task_id, 1)], timeouts
    # The killed try's partial files are not reused: the model the run used was written by the retry.
    model = run_dir(rig, run_id) / "candidates" / str(map_index) / "model"
    written = datetime.fromtimestamp((model / "saved_model.pb").stat().st_mtime, UTC)
    assert written > killed_wall, f"{model} predates the kill ({written} <= {killed_wall}): the lost try's files"
    assert_run_outcome(rig, run_id, "success")
    assert running["try_number"] == 1


def test_a_worker_lost_in_a_task_without_retries_fails_the_run_with_one_alert(rig: Rig) -> None:
    """The control of the case above: `validate` has no retries, so losing its worker is a real failure,
    and its alert must come through the same path (heartbeat timeout, failure callback, SMTP)."""
    rig.ready()
    cluster = rig.cluster
    run_id = cluster.trigger(RETRAIN, rig.conf)
    lost, _ = wait_for_task_process(cluster, RETRAIN, run_id, "validate")
    killed_at = time.monotonic()
    cluster.kill_worker(lost)
    run = run_until_done(rig, run_id)
    rig.figures["worker_killed_mid_validate_no_retries"] = {"kill_to_run_failed_s": round(time.monotonic() - killed_at)}
    assert run["state"] == "failed"
    assert cluster.task_instance(RETRAIN, run_id, "validate")["state"] == "failed"
    assert_run_outcome(rig, run_id, "failed")
    assert all("data gate" in text for text in rig.alerts_for(run_id)), rig.alerts_for(run_id)


def test_a_worker_killed_right_after_promote_published_does_not_publish_twice(rig: Rig) -> None:
    """The worst moment for promote: the version is renamed into place and in the history, but Airflow
    never heard of it. The test holds the registry lock so promote is seen waiting, releases it, and
    SIGKILLs the worker the moment the run's history line appears. The retry must announce that version,
    not publish the model again."""
    rig.ready()
    cluster = rig.cluster
    registry = ModelRegistry(rig.served)
    history = rig.served / "history.jsonl"
    with ExitStack() as held:
        held.enter_context(registry.locked())
        run_id = cluster.trigger(RETRAIN, rig.conf)
        lost, running = wait_for_task_process(cluster, RETRAIN, run_id, "promote")
        task_process = psutil.Process(running["pid"])
    # Released: promote publishes now. Kill its worker as soon as its line is in the history.
    deadline = time.monotonic() + 120
    while not (history.is_file() and promotions_by(registry.history(), run_id)):
        if time.monotonic() > deadline:
            raise ClusterError(f"promote of {run_id} did not publish within 120 s")
        time.sleep(0.002)
    os.kill(task_process.pid, signal.SIGKILL)  # first the task itself: the narrowest window
    killed_at = time.monotonic()
    cluster.kill_worker(lost)
    state_at_kill = cluster.task_instance(RETRAIN, run_id, "promote")["state"]
    run = run_until_done(rig, run_id)
    tries = cluster.task_tries(RETRAIN, run_id, "promote")
    rig.figures["worker_killed_after_promote_published"] = {
        "promote_state_at_kill": state_at_kill,
        "tries": len(tries),
        "kill_to_run_success_s": round(time.monotonic() - killed_at, 1),
    }
    assert run["state"] == "success"
    assert state_at_kill == "running", f"promote finished before the kill landed ({state_at_kill}): inconclusive"
    assert len(tries) == 2 and tries[-1]["state"] == "success", tries
    history_now = assert_run_outcome(rig, run_id, "success")
    assert len(promotions_by(history_now, run_id)) == 1, "the retry published the same model again"
    log = "\n".join(line.event for line in cluster.task_log(RETRAIN, run_id, "promote", try_number=2))
    assert "already published version" in log, log


@pytest.mark.parametrize("service", ["redis", "postgres"])
def test_a_restarted_broker_or_database_loses_nothing(rig: Rig, service: str) -> None:
    """Redis (the Celery broker) or PostgreSQL (the metadata database and Celery's result backend) is
    stopped for SERVICE_DOWN_SECONDS while `embed` runs on a worker, then started again in place. The
    run completes, or it fails with one alert naming the task that could not go on and a new trigger
    succeeds; the figures say which (docs/operations.md, Lost workers and faults)."""
    rig.ready()
    cluster = rig.cluster
    restarts_before = len(rig.restarts)
    run_id = cluster.trigger(RETRAIN, rig.conf)
    wait_for_task_process(cluster, RETRAIN, run_id, "embed")
    restarted_at = time.monotonic()
    (rig.redis if service == "redis" else rig.postgres).restart(down_seconds=SERVICE_DOWN_SECONDS)
    run = run_until_done(rig, run_id)
    figures: dict[str, Any] = {
        "outcome": run["state"],
        "restart_to_run_end_s": round(time.monotonic() - restarted_at, 1),
        "components_restarted": rig.restarts[restarts_before:],
    }
    rig.figures[f"{service}_restarted_mid_run"] = figures
    if run["state"] == "success":
        assert_run_outcome(rig, run_id, "success")
        return
    assert_run_outcome(rig, run_id, "failed")
    failed = [ti["task_id"] for ti in cluster.task_instances(RETRAIN, run_id) if ti["state"] == "failed"]
    figures["failed_tasks"] = failed
    figures["alert"] = rig.alerts_for(run_id)[0][:300]
    assert failed and all(task in rig.alerts_for(run_id)[0] for task in failed), (failed, rig.alerts_for(run_id))
    again = cluster.trigger(RETRAIN, rig.conf)
    assert_run_outcome(rig, run_until_done(rig, again)["dag_run_id"], "success")
    figures["new_trigger"] = "success"


def test_two_triggers_at_once_run_one_after_the_other_through_a_scheduler_restart(rig: Rig) -> None:
    """Two runs triggered at once: the second waits (max_active_runs 1) until the first has ended, even
    when the scheduler is killed while the first trains and started again (as compose's restart policy
    would); both succeed, each promoting once, in order."""
    rig.ready()
    cluster = rig.cluster
    first = cluster.trigger(RETRAIN, rig.conf)
    second = cluster.trigger(RETRAIN, rig.conf)  # force: the same data, retrained again
    wait_for_task_process(cluster, RETRAIN, first, "train", 0)
    killed_at = time.monotonic()
    cluster.kill_component("scheduler")
    time.sleep(SERVICE_DOWN_SECONDS)
    cluster.start_component("scheduler")
    states = []

    def first_done() -> bool:
        runs = {r: cluster.api("GET", f"/dags/{RETRAIN}/dagRuns/{r}").json()["state"] for r in (first, second)}
        states.append(runs)
        return runs[first] in ("success", "failed")

    wait_until(first_done, RUN_TIMEOUT, f"run {first}", cluster.check_alive)
    rig.figures["scheduler_killed_mid_run"] = {
        "outcome": states[-1][first],
        "kill_to_run_end_s": round(time.monotonic() - killed_at, 1),
    }
    assert all(s[second] == "queued" for s in states[:-1]), f"the second run started beside the first: {states}"
    run_until_done(rig, second)
    for run_id in (first, second):
        assert_run_outcome(rig, run_id, "success")
    history = ModelRegistry(rig.served).history()
    assert promotions_by(history, first) < promotions_by(history, second), history


def test_a_rollback_during_promote_waits_for_the_registry_lock(rig: Rig) -> None:
    rig.ready()
    cluster = rig.cluster
    registry = ModelRegistry(rig.served)
    while len(registry.versions()) < 2:  # a rollback needs an earlier version (only when run out of order)
        assert_run_outcome(rig, run_until_done(rig, cluster.trigger(RETRAIN, rig.conf))["dag_run_id"], "success")
    target = registry.versions()[-2]
    before = len(registry.history())
    with registry.locked():  # promote and the rollback both wait here: they are promoting at once
        retrain = cluster.trigger(RETRAIN, rig.conf)
        wait_for_task_process(cluster, RETRAIN, retrain, "promote")
        rollback = cluster.trigger(ROLLBACK, {"version": target, "reason": "fault test", "keep_versions": KEEP})
        wait_for_task_process(cluster, ROLLBACK, rollback, "rollback")
    for dag_id, run_id in ((RETRAIN, retrain), (ROLLBACK, rollback)):
        run_until_done(rig, run_id, dag_id)
        assert_run_outcome(rig, run_id, "success", dag_id)
    added = registry.history()[before:]
    assert sorted((e["event"], e["by"]) for e in added) == [
        ("promote", f"dag_run:{retrain}"),
        ("rollback", f"dag_run:{rollback} (triggered by {cluster.username})"),  # the REST API's user
    ], added
    assert [e["version"] for e in added] == sorted(e["version"] for e in added), f"history out of order: {added}"
    rig.figures["rollback_during_promote"] = {"order": [e["event"] for e in added]}


def test_timeout_is_the_deployments() -> None:
    """The harness and the compose deployment notice a lost worker with the same settings."""
    compose = (Path(__file__).resolve().parents[2] / "docker-compose.yaml").read_text()
    assert f"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT: '{HEARTBEAT_TIMEOUT}'" in compose
