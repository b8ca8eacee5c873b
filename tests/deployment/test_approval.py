"""Acceptance: a model waits for a person's approval before promotion, answered in the Airflow 3 UI.

A real deployment (the session's shared cluster, tests/deployment/conftest.py: LocalExecutor on the local
PostgreSQL: api-server, scheduler, dag-processor; models and artifacts in the test's folder) runs the
retrain DAG with `require_approval` true; the site defaults keep the run short (GENRE_PARAM_DEFAULTS, as
an operator sets them). The approvers' notice goes by e-mail through the real SMTP alert channel to an
inbox on loopback, and carries the link to the run's required action.
Headless Chromium opens that link as an approver would, reads the request and presses Approve: the run
promotes version 1. A second run of the same file (`force`, or the fingerprint would skip it) is
rejected in the UI: the run succeeds, promote is skipped, the model folder and history.jsonl are
byte-identical, and the run records who rejected it (XCom, approval.json).

Screenshots go to the test's tmp folder and to artifacts/test-screenshots/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, expect

from tasks.config import Settings
from tests.deployment.airflow_cluster import AirflowCluster, wait_until
from tests.deployment.browser import chromium, log_in, save_screenshot
from tests.deployment.conftest import APPROVERS, RETRAIN, SharedCluster
from tests.sample_data import snapshot
from tests.servers import SmtpInbox

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

RUN_TIMEOUT = 900  # seconds: a quick run to the approval, or from it to the end, on a busy machine


def wait_for_approval_request(cluster: AirflowCluster, run_id: str) -> dict[str, Any]:
    """Wait until the approval task waits for a person; its HITL request (REST API, as the UI reads it)."""

    def waiting() -> dict[str, Any] | None:
        try:
            ti = cluster.task_instance(RETRAIN, run_id, "approval")
            run = cluster.api("GET", f"/dags/{RETRAIN}/dagRuns/{run_id}").json()
        except requests.Timeout:  # a busy machine: ask again at the next poll, within RUN_TIMEOUT
            return None
        if run["state"] in ("success", "failed"):
            raise AssertionError(f"run {run_id} ended ({run['state']}) before asking for approval")
        return ti if ti and ti["state"] == "awaiting_input" else None

    wait_until(waiting, RUN_TIMEOUT, f"the approval of {run_id} to wait for input", cluster.check_alive)
    # A person reads the notice before answering; an answer within the scheduler's next loop or so would
    # meet a race of Airflow's own (docs/operations.md, Approval before promotion), so wait as long as that takes.
    cluster.wait_for_worker_exit_seen(RETRAIN, run_id, "approval")
    response = cluster.api("GET", f"/dags/{RETRAIN}/dagRuns/{run_id}/taskInstances/approval/-1/hitlDetails")
    response.raise_for_status()
    return dict(response.json())


def notice_for(inbox: SmtpInbox, run_id: str) -> str:
    """The approvers' e-mail about this run (HTML body), once it has arrived."""

    def arrived() -> str | None:
        for message in inbox.messages:
            if run_id in str(message["Subject"]) and "approval needed" in str(message["Subject"]):
                part = next(p for p in message.walk() if p.get_content_type() == "text/html")
                return part.get_payload(decode=True).decode()
        return None

    return wait_until(arrived, 60, f"the approvers' notice of {run_id}", poll=1)


def answer_in_the_ui(browser: Browser, cluster: AirflowCluster, link: str, option: str, shot: Path) -> None:
    """Open the required action from the notice's link, read the request, press `option`."""
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    try:
        log_in(page, cluster)
        page.goto(link)
        expect(page.get_by_text("Model gate:", exact=False).first).to_be_visible()
        save_screenshot(page, shot.parent, f"{shot.name}-request")
        button = page.get_by_role("button", name=option, exact=True)
        expect(button).to_be_enabled()
        button.click()
        expect(page.get_by_text(re.compile("response successful|Response received", re.I)).first).to_be_visible()
        save_screenshot(page, shot.parent, f"{shot.name}-answered")
    finally:
        page.close()


def approval_xcom(cluster: AirflowCluster, run_id: str) -> Any:
    path = f"/dags/{RETRAIN}/dagRuns/{run_id}/taskInstances/approval/xcomEntries/decision"
    response = cluster.api("GET", path, params={"deserialize": True})
    response.raise_for_status()
    value = response.json()["value"]
    return json.loads(value) if isinstance(value, str) else value


def states(cluster: AirflowCluster, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: ti["state"] for ti in cluster.task_instances(RETRAIN, run_id)}


def test_approve_promotes_and_reject_keeps_the_served_model(tmp_path: Path, on_shared_cluster: SharedCluster) -> None:
    served = tmp_path / "models" / "movie_genre"
    runs = Settings.from_env({"GENRE_ARTIFACTS_DIR": str(tmp_path / "artifacts")})
    cluster, inbox = on_shared_cluster.cluster, on_shared_cluster.inbox
    with chromium() as browser:
        cluster.unpause(RETRAIN)

        first = cluster.trigger(RETRAIN, {"require_approval": True})
        request = wait_for_approval_request(cluster, first)
        assert request["options"] == ["Approve", "Reject"] and request["defaults"] == ["Reject"]
        assert request["subject"].startswith(f"Promote the model of run {first}?")
        assert "**Model gate:** passed" in request["body"] and "| baseline | auc_micro |" in request["body"]
        assert "Not checked:" in request["body"], "nothing served yet: drift not checked, and it says why"
        assert not served.exists() or not any(p.name.isdigit() for p in served.iterdir()), "nothing promoted yet"
        notice = notice_for(inbox, first)
        link = re.search(r"Answer: (\S+/required_actions\S*)", notice)
        assert link, notice
        answer_in_the_ui(browser, cluster, link.group(1).replace("&amp;", "&"), "Approve", tmp_path / "approve")
        assert cluster.wait_for_run(RETRAIN, first, RUN_TIMEOUT)["state"] == "success", cluster.logs()
        assert states(cluster, first)["promote"] == "success"
        approved = approval_xcom(cluster, first)
        assert (approved["decision"], approved["promote"], approved["by"]) == ("approved", True, "admin")
        history = (served / "history.jsonl").read_text().splitlines()
        assert [(e["event"], e["version"]) for e in map(json.loads, history)] == [("promote", 1)]
        before = snapshot(served)

        second = cluster.trigger(RETRAIN, {"require_approval": True, "force": True})
        request = wait_for_approval_request(cluster, second)
        assert "| champion (version 1) |" in request["body"], "the served model is the champion now"
        assert "Against version 1's training data" in request["body"] or "Not checked: " in request["body"]
        link = re.search(r"Answer: (\S+/required_actions\S*)", notice_for(inbox, second))
        assert link
        answer_in_the_ui(browser, cluster, link.group(1).replace("&amp;", "&"), "Reject", tmp_path / "reject")
        assert cluster.wait_for_run(RETRAIN, second, RUN_TIMEOUT)["state"] == "success", cluster.logs()
        finished = states(cluster, second)
        assert (finished["approval"], finished["promote"]) == ("success", "skipped"), finished
        assert finished["report"] == "success", "the report is still written"
        rejected = approval_xcom(cluster, second)
        assert (rejected["decision"], rejected["promote"], rejected["by"]) == ("rejected", False, "admin")
        assert rejected["reason"] == "rejected by admin: promotion skipped, the served model is unchanged"
        assert json.loads((runs.run_dir(second) / "approval.json").read_text()) == rejected

    assert snapshot(served) == before, "a rejection leaves the versions and history.jsonl byte-identical"
    assert all(APPROVERS in ", ".join(map(str, m.get_all("To", []))) for m in inbox.messages)
