"""Acceptance: a user triggers the DAGs from the Airflow 3 UI in a real browser, changing nothing.

Headless Chromium (Debian's `chromium`, driven by Playwright) logs in to an API server on loopback, opens
the retrain DAG's trigger form, reads the params' descriptions and sections, leaves every field as it is
and presses Trigger; the run must succeed and promote. After a second promotion, the rollback form,
also left untouched, serves the version that was served before. The deployment is the session's shared
cluster (tests/deployment/conftest.py; models and artifacts in the test's folder) with the LocalExecutor on
the local PostgreSQL: the same API server, scheduler and DAG processor as production, without Celery
workers, which tests/deployment/test_celery_deployment.py covers. The run is kept short the way an
operator sets site defaults: through the environment (MOVIES_DATASET_URL and GENRE_PARAM_DEFAULTS), never
by filling a field.

Screenshots go to the test's tmp folder and to artifacts/test-screenshots/ (tests/deployment/browser.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tasks.config import PARAM_SCHEMAS
from tests.deployment.airflow_cluster import AirflowCluster
from tests.deployment.browser import UI_TIMEOUT_MS, chromium, log_in, save_screenshot
from tests.deployment.conftest import RETRAIN, ROLLBACK, SITE_DEFAULTS, SharedCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

RUN_TIMEOUT_MS = 900_000


def open_trigger_form(page: Page, cluster: AirflowCluster, dag_id: str) -> Locator:
    page.goto(f"{cluster.base_url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Trigger Dag - {dag_id}")).to_be_visible()
    return dialog


def param_field(dialog: Locator, name: str) -> Locator:
    """The form field of a run param (the UI names it element_<param>)."""
    return dialog.locator(f'[name="element_{name}"]')


def trigger_untouched(page: Page, cluster: AirflowCluster, dag_id: str, tmp_path: Path) -> dict[str, Any]:
    """Open the DAG's trigger form, change nothing, press Trigger; the finished run (REST API's view)."""
    before = {run["dag_run_id"] for run in cluster.api("GET", f"/dags/{dag_id}/dagRuns").json()["dag_runs"]}
    dialog = open_trigger_form(page, cluster, dag_id)
    save_screenshot(page, tmp_path, f"{dag_id}-trigger-form")
    trigger = dialog.get_by_role("button", name="Trigger", exact=True)
    expect(trigger).to_be_enabled()
    trigger.click()
    page.wait_for_url(re.compile(rf"/dags/{dag_id}/runs/"))
    run_state = page.locator('[data-testid="header-card"] [data-testid="state-badge"]')
    try:
        expect(run_state).to_have_text(re.compile("Success|Failed"), timeout=RUN_TIMEOUT_MS)
    finally:
        save_screenshot(page, tmp_path, f"{dag_id}-run")  # also when the run failed or timed out
    (run,) = [
        r for r in cluster.api("GET", f"/dags/{dag_id}/dagRuns").json()["dag_runs"] if r["dag_run_id"] not in before
    ]
    return run


def history(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "models" / "movie_genre" / "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_untouched_forms_retrain_and_roll_back(tmp_path: Path, on_shared_cluster: SharedCluster) -> None:
    cluster, dataset = on_shared_cluster.cluster, on_shared_cluster.dataset
    with chromium() as browser:
        runs_before = on_shared_cluster.run_ids(RETRAIN)
        refused = cluster.api(
            "POST", f"/dags/{RETRAIN}/dagRuns", json={"logical_date": None, "conf": {"auc_threshold": 1.5}}
        )
        assert refused.status_code == 400 and "auc_threshold" in refused.text, refused.text
        assert on_shared_cluster.run_ids(RETRAIN) == runs_before, "a refused conf starts no run"

        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        log_in(page, cluster)
        dialog = open_trigger_form(page, cluster, RETRAIN)
        sections = dialog.get_by_role("button", name=re.compile("^(Data|Data gate|Training|Model gate|Registry)$"))
        expect(sections).to_have_text(["Data", "Data gate", "Training", "Model gate", "Registry"])
        for section, name in (
            ("Data", "dataset_url"),
            ("Training", "embedding_module"),
            ("Model gate", "auc_threshold"),
        ):
            description = dialog.get_by_text(PARAM_SCHEMAS[name]["description"])
            if not description.is_visible():  # a person opens the section to read it; no value changes
                dialog.get_by_role("button", name=section, exact=True).click()
            expect(description).to_be_visible()
        expect(param_field(dialog, "dataset_url")).to_have_value(str(dataset))

        first = trigger_untouched(page, cluster, RETRAIN, tmp_path)
        assert first["state"] == "success", cluster.logs()
        assert first["conf"]["epochs"] == SITE_DEFAULTS["epochs"], "the form carried the site default"
        second_id = cluster.trigger(RETRAIN, {"force": True})  # the same file: unforced, it would be skipped
        assert cluster.wait_for_run(RETRAIN, second_id, RUN_TIMEOUT_MS / 1000)["state"] == "success"
        assert [(e["event"], e["version"]) for e in history(tmp_path)] == [("promote", 1), ("promote", 2)]

        rollback = trigger_untouched(page, cluster, ROLLBACK, tmp_path)
        assert rollback["state"] == "success", cluster.logs()

    assert (tmp_path / "models" / "movie_genre" / "1" / "saved_model.pb").is_file()
    last = history(tmp_path)[-1]
    assert (last["event"], last["version"], last["from_version"]) == ("rollback", 3, 1), "the previous one is served"
