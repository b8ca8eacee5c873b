"""Acceptance: a user triggers the retraining DAG from the Airflow 3 UI in a real browser.

Headless Chromium (Debian's `chromium`, driven by Playwright) logs in to an API server on loopback, opens
the DAG and its trigger form, reads the params' descriptions, changes auc_threshold (and the params that
keep the run short), triggers, and watches the run page until the run succeeds. The deployment is
tests/airflow_cluster.py with the LocalExecutor on the local PostgreSQL: the same API server, scheduler and
DAG processor as production, without Celery workers, which tests/test_celery_deployment.py covers.

A screenshot of the finished run goes to the test's tmp folder and to artifacts/test-screenshots/.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tasks.config import PARAM_SCHEMAS
from tests.airflow_cluster import AirflowCluster, airflow_cluster, pipeline_env, quick_conf
from tests.conftest import PROJECT_ROOT, write_head

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

DAG_ID = "movie_genre_retrain"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = PROJECT_ROOT / "artifacts" / "test-screenshots"
UI_TIMEOUT_MS = 60_000
RUN_TIMEOUT_MS = 900_000
AUC_THRESHOLD = 0.55  # changed in the form from the default 0.8
expect.set_options(timeout=UI_TIMEOUT_MS)


@pytest.fixture
def dataset(tmp_path: Path, shared_csv: Path) -> Path:
    """The first 800 real movies, in a data folder of the test's own."""
    data = tmp_path / "data"
    data.mkdir()
    return write_head(shared_csv, data / "movies_head800.csv", 800)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless; Playwright downloads no browser."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=UI_TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            browser.close()


def log_in(page: Page, cluster: AirflowCluster) -> None:
    page.goto(f"{cluster.base_url}/")
    page.get_by_label("Username").fill(cluster.username)
    page.get_by_label("Password").fill(cluster.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile("/auth/login"))
    expect(page.get_by_role("link", name="Dags")).to_be_visible()


def open_trigger_form(page: Page, cluster: AirflowCluster) -> Locator:
    page.goto(f"{cluster.base_url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Trigger Dag - {DAG_ID}")).to_be_visible()
    return dialog


def param_field(dialog: Locator, name: str) -> Locator:
    """The form field of a run param (the UI names it element_<param>)."""
    return dialog.locator(f'[name="element_{name}"]')


def fill_params(dialog: Locator, conf: dict[str, Any]) -> None:
    for name, value in conf.items():
        field = param_field(dialog, name)
        field.fill(str(value))
        field.blur()
        expect(field).to_have_value(str(value))


def save_screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    """Into the test's tmp folder and artifacts/test-screenshots/ (gitignored); prints both paths."""
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    kept = SCREENSHOTS / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.png"
    shutil.copyfile(shot, kept)
    print(f"screenshot: {shot}\nscreenshot: {kept}")
    return kept


def test_trigger_from_the_ui_and_watch_the_run_succeed(tmp_path: Path, dataset: Path, glove_module: str) -> None:
    conf = {**quick_conf(dataset, glove_module), "auc_threshold": AUC_THRESHOLD}
    with (
        airflow_cluster("LocalExecutor", workers=0, env=pipeline_env(tmp_path, dataset)) as cluster,
        chromium() as browser,
    ):
        cluster.wait_for_dag(DAG_ID)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        try:
            log_in(page, cluster)
            dialog = open_trigger_form(page, cluster)
            for name in ("auc_threshold", "dataset_url", "embedding_module"):
                expect(dialog.get_by_text(PARAM_SCHEMAS[name]["description"])).to_be_visible()
            expect(param_field(dialog, "auc_threshold")).to_have_value(str(PARAM_SCHEMAS["auc_threshold"]["default"]))
            fill_params(dialog, conf)
            save_screenshot(page, tmp_path, "trigger-form")
            dialog.get_by_role("button", name="Trigger", exact=True).click()

            page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/"))
            run_state = page.locator('[data-testid="header-card"] [data-testid="state-badge"]')
            expect(run_state).to_have_text(re.compile("Success|Failed"), timeout=RUN_TIMEOUT_MS)
        finally:
            save_screenshot(page, tmp_path, "triggered-run")  # also when the run failed or timed out
        assert run_state.inner_text().strip() == "Success", cluster.logs()
        (run,) = cluster.api("GET", f"/dags/{DAG_ID}/dagRuns").json()["dag_runs"]

    assert run["state"] == "success" and run["run_type"] == "manual"
    assert run["conf"]["auc_threshold"] == AUC_THRESHOLD, "the form's value reached the run"
    assert run["conf"]["epochs"] == conf["epochs"] and run["conf"]["dataset_url"] == str(dataset)
    assert (tmp_path / "models" / "movie_genre" / "1" / "saved_model.pb").is_file(), "no model was promoted"
