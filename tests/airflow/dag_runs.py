"""Helpers for the tests that run the retrain DAG through real Airflow (`dag.test()`); the fixtures
they use (`dag`, `dirs`, `inbox`) are in conftest.py."""

from __future__ import annotations

from tests.servers import SmtpInbox


def alert_texts(inbox: SmtpInbox) -> list[str]:
    """The HTML body of every alert the inbox received."""
    return [
        part.get_payload(decode=True).decode()
        for message in inbox.messages
        for part in message.walk()
        if part.get_content_type() == "text/html"
    ]


def run_dag(dag, conf: dict) -> dict[str, str]:
    """Run `dag` once with `conf`; the run's state and each task's."""
    run = dag.test(run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    return {"run": str(run.state), **states}
