"""Acceptance: a Celery worker lost in the middle of a task costs a retry, not a false failure alert.

A CeleryExecutor deployment with two workers (tests/airflow_cluster.py) and a real SMTP inbox on
loopback for the failure alerts. While `train[0]` runs, its worker's whole process tree is SIGKILLed, as
when a machine dies. Airflow must notice that the task instance stopped heartbeating, retry it on the
surviving worker, finish the run and promote exactly one version, and send no failure alert: the task
has tries left. Airflow 3.3.0 ran the task's on_failure_callback there (apache/airflow#65400, fixed in
3.3.2), so every lost worker e-mailed the team that a run had failed when it went on to succeed.

So that "no alert" means something, a second run then loses the last worker in the middle of
`validate`, which has no retries: that failure is real, and its alert must reach the inbox through the
same path (the scheduler's heartbeat timeout, the callback run by the dag-processor, SMTP).
"""

from __future__ import annotations

import time
from email.message import Message
from pathlib import Path

import pytest

from tests.deployment.airflow_cluster import (
    airflow_cluster,
    heartbeat_timeout_env,
    pipeline_env,
    wait_until,
)
from tests.sample_data import quick_conf
from tests.servers import SmtpInbox, smtp_connection

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

DAG_ID = "movie_genre_retrain"
RUN_TIMEOUT = 1080
# Seconds without a heartbeat before the scheduler fails a task instance (Airflow's default is 300).
HEARTBEAT_TIMEOUT = 30
ALERT_TIMEOUT = 300
RECIPIENT = "ml-team@example.org"


def message_text(message: Message) -> str:
    """Subject and every text part of an e-mail, decoded."""
    parts = [
        part.get_payload(decode=True).decode(errors="replace")
        for part in message.walk()
        if part.get_content_maintype() == "text"
    ]
    return "\n".join([str(message["Subject"]), *parts])


def test_a_lost_worker_is_retried_elsewhere_without_a_failure_alert(
    tmp_path: Path, dataset: Path, glove_module: str
) -> None:
    conf = quick_conf(dataset, embedding_module=glove_module, candidates=[{"wide": True}, {"wide": False}])
    with SmtpInbox() as inbox:
        env = {
            **pipeline_env(tmp_path, dataset),
            **heartbeat_timeout_env(HEARTBEAT_TIMEOUT),
            "AIRFLOW_CONN_SMTP_DEFAULT": smtp_connection(inbox.port),
            "GENRE_ALERT_EMAILS": RECIPIENT,
        }
        with airflow_cluster("CeleryExecutor", workers=2, env=env) as cluster:
            cluster.wait_for_dag(DAG_ID)
            cluster.unpause(DAG_ID)

            run_id = cluster.trigger(DAG_ID, conf)
            lost, running = cluster.wait_for_running_on_worker(DAG_ID, run_id, "train", 0, timeout=RUN_TIMEOUT)
            killed_at = time.monotonic()
            killed = cluster.kill_worker(lost)
            print(f"killed {lost.name} (pids {killed}) while train[0] try {running['try_number']} ran on it")
            run = cluster.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)
            print(f"run {run['state']} {time.monotonic() - killed_at:.0f} s after the kill")
            tries = cluster.task_tries(DAG_ID, run_id, "train", 0)
            timeouts = cluster.event_logs(DAG_ID, run_id, "heartbeat timeout")
            states = {
                ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): (ti["state"], ti["hostname"])
                for ti in cluster.task_instances(DAG_ID, run_id)
            }
            survivor = next(name for name in cluster.worker_names if name != lost.name)

            # The control: the last worker lost in the middle of validate, a task without retries.
            control_id = cluster.trigger(DAG_ID, {**conf, "force": True})  # same data: not skipped
            last, _ = cluster.wait_for_running_on_worker(DAG_ID, control_id, "validate", timeout=RUN_TIMEOUT)
            cluster.kill_worker(last)
            wait_until(
                lambda: any(control_id in message_text(m) for m in inbox.messages),
                ALERT_TIMEOUT,
                "the control run's failure alert",
                cluster.check_alive,
            )
            control_validate = cluster.task_instance(DAG_ID, control_id, "validate")
        alerts = [message_text(message) for message in inbox.messages]

    assert run["state"] == "success", f"run {run_id} after losing {lost.name}: {states}"
    assert [t["try_number"] for t in tries] == [1, 2], f"train[0] should have run twice: {tries}"
    assert tries[0]["hostname"] == lost.name and tries[0]["state"] in ("failed", "up_for_retry"), tries[0]
    assert tries[1]["hostname"] == survivor and tries[1]["state"] == "success", tries[1]
    assert [(e["task_id"], e["map_index"], e["try_number"]) for e in timeouts] == [("train", 0, 1)], (
        f"Airflow should have noticed the lost heartbeat of train[0] try 1, and only that: {timeouts}"
    )
    versions = sorted(p.name for p in (tmp_path / "models" / "movie_genre").iterdir() if p.name.isdigit())
    assert versions == ["1"], f"exactly one version should be promoted: {versions}"

    false_alerts = [text for text in alerts if run_id in text]
    assert not false_alerts, "a failure alert for a run that recovered and succeeded:\n" + "\n---\n".join(false_alerts)
    assert control_validate is not None and control_validate["state"] == "failed", control_validate
    control_alerts = [text for text in alerts if control_id in text]
    print(f"control run: {len(control_alerts)} alert(s)")
    assert control_alerts and all("data gate" in text for text in control_alerts), control_alerts
