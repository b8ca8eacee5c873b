"""Acceptance: the "Genre models" page (orchestration/genre_models) on a real api-server, in a real browser.

The plugin comes from the package's `airflow.plugins` entry point: nothing is copied into a plugins
folder. Before the cluster starts, two small real versions are promoted (a GloVe model trained for one
epoch; each from a run folder with real GX Data Docs and a report.html). Then:

- anonymous requests to every route get 401/403, a bad token 403; the admin's token gets the JSON;
- with a token, `..`, URL-encoded `..` and `/`, and absolute paths in the run id, the Data Docs path and
  the static path are refused (400/404) and leak nothing;
- a person logs in, opens "Genre models" from the navigation, sees both versions, presses "Serve this
  version again" on version 1: the page triggers `movie_genre_rollback` through Airflow's REST API with
  the person's own session, the run succeeds, and after a reload version 3 is served;
- a viewer (who may not trigger) presses the button and sees Airflow's refusal;
- with every non-loopback request aborted, a Data Docs validation page renders its table and status icons
  from the app's local copies of the CDN files, and no request leaves the machine.

Screenshots: tests/deployment/browser.py's save_screenshot.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import BrowserContext, FrameLocator, Page, Route, expect

from tasks.config import DEFAULT_GENRES, Settings
from tests.deployment.airflow_cluster import AirflowCluster, airflow_cluster, pipeline_env
from tests.deployment.browser import UI_TIMEOUT_MS, chromium, log_in, save_screenshot
from tests.unit.test_genre_models import RUN_IDS, publish_sample_versions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROLLBACK = "movie_genre_rollback"
PAGE = "/genre-models"
RUN_TIMEOUT_S = 300
HTTP_TIMEOUT_S = 30
VIEWER = "viewer"


@pytest.fixture
def published(tmp_path: Path, dataset: Path, glove_module: str) -> Settings:
    """Two promoted versions in the test's model folder, their runs' artifacts beside."""
    from tasks.data.prepare import prepare_dataset
    from tasks.embedding.cache import EmbeddingCache
    from tasks.model.train import TrainConfig, train_model

    settings = Settings.from_env(pipeline_env(tmp_path, dataset))
    prepared = tmp_path / "prepared"
    prepare_dataset(dataset, prepared, DEFAULT_GENRES, 0.2, 0.1)
    config = TrainConfig(
        embedding_module=glove_module, epochs=1, batch_size=64, hidden_units=8, learning_rate=0.01, seed=0
    )
    model = tmp_path / "model"
    train_model(prepared, model, config, EmbeddingCache(tmp_path / "cache", "glove"))
    publish_sample_versions(settings, model, prepared)
    return settings


def raw_get(cluster: AirflowCluster, path: str, token: str | None) -> tuple[int, str]:
    """GET `path` exactly as written (no client normalises its dots or decodes its escapes)."""
    netloc = urlsplit(cluster.base_url)
    connection = http.client.HTTPConnection(netloc.hostname, netloc.port, timeout=HTTP_TIMEOUT_S)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def user_token(cluster: AirflowCluster, username: str, password: str) -> str:
    response = requests.post(
        f"{cluster.base_url}/auth/token", json={"username": username, "password": password}, timeout=HTTP_TIMEOUT_S
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def open_from_navigation(page: Page, cluster: AirflowCluster, tmp_path: Path, name: str) -> FrameLocator:
    """Click "Genre models" in the UI's navigation; the page, shown inside the UI."""
    page.goto(f"{cluster.base_url}/")
    page.get_by_role("link", name="Genre models").click()  # a top-level entry of the left-hand navigation
    expect(page).to_have_url(re.compile("/plugin/genre-models"))
    frame = page.frame_locator("iframe")
    expect(frame.get_by_role("heading", name="Genre models")).to_be_visible()
    save_screenshot(page, tmp_path, name)
    return frame


def row(frame: FrameLocator, version: int) -> Any:
    return frame.locator(f'#versions tr[data-version="{version}"]')


def only_loopback(context: BrowserContext) -> list[str]:
    """Abort every request that would leave the machine; the list of those aborted."""
    blocked: list[str] = []

    def handle(route: Route) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", handle)
    return blocked


def test_genre_models_page(tmp_path: Path, dataset: Path, published: Settings) -> None:
    env = {
        **pipeline_env(tmp_path, dataset),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{VIEWER}:viewer",
    }
    with airflow_cluster("LocalExecutor", workers=0, env=env) as cluster, chromium() as browser:
        cluster.wait_for_dag(ROLLBACK)
        cluster.unpause(ROLLBACK)
        token = cluster.token()
        run = RUN_IDS[1]
        docs_page = f"{PAGE}/runs/{run}/data_docs/index.html"

        # Nothing without an authenticated Airflow user.
        for path in (
            f"{PAGE}/",
            f"{PAGE}/api/versions",
            f"{PAGE}/runs/{run}/report.html",
            docs_page,
            f"{PAGE}/static/jquery/dist/jquery.min.js",
        ):
            status, _ = raw_get(cluster, path, None)
            assert status in (401, 403), (path, status)
            status, _ = raw_get(cluster, path, "not-a-token")
            assert status in (401, 403), (path, status)
            status, _ = raw_get(cluster, path, token)
            assert status == 200, (path, status)
        status, body = raw_get(cluster, f"{PAGE}/api/versions", token)
        versions = json.loads(body)["versions"]
        assert [(v["version"], v["served"]) for v in versions] == [(2, True), (1, False)]

        # Nothing outside the run's folder, its Data Docs or the static files.
        secret = published.artifacts_dir / "secret.txt"
        secret.write_text("SECRET")
        (published.model_dir / "secret.txt").write_text("SECRET")
        for path in (
            f"{PAGE}/runs/../report.html",
            f"{PAGE}/runs/%2e%2e/report.html",
            f"{PAGE}/runs/%2e%2e%2f%2e%2e%2fsecret.txt/report.html",
            f"{PAGE}/runs/{run}/data_docs/../../report.html",
            f"{PAGE}/runs/{run}/data_docs/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
            f"{PAGE}/runs/{run}/data_docs/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
            f"{PAGE}/runs/{run}/data_docs/..%2f..%2f..%2f..%2fsecret.txt",
            f"{PAGE}/runs/{run}/data_docs//etc/passwd",
            f"{PAGE}/runs/{run}/data_docs/%2fetc%2fpasswd",
            f"{PAGE}/runs/{run}/data_docs/{secret}",
            f"{PAGE}/runs/%2fetc/report.html",
            f"{PAGE}/static/../../../../../../etc/passwd",
            f"{PAGE}/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            f"{PAGE}/static//etc/passwd",
            f"{PAGE}/static/%2fetc%2fpasswd",
        ):
            status, body = raw_get(cluster, path, token)
            assert status in (400, 404), (path, status, body[:200])
            assert "SECRET" not in body and "root:" not in body, path

        # The rollback button, as the admin.
        admin = browser.new_context(viewport={"width": 1500, "height": 1000})
        admin.set_default_timeout(UI_TIMEOUT_MS)
        page = admin.new_page()
        log_in(page, cluster)
        frame = open_from_navigation(page, cluster, tmp_path, "genre-models-page")
        expect(row(frame, 2)).to_contain_text("served")
        expect(row(frame, 1)).to_contain_text("not served")
        expect(row(frame, 2)).to_contain_text("0.8740")
        expect(row(frame, 1)).to_contain_text("0.8610")
        expect(row(frame, 2)).to_contain_text("against version 1")  # drift summary
        expect(row(frame, 1)).to_contain_text(RUN_IDS[0])
        expect(frame.locator("#history")).to_contain_text("promote")
        expect(row(frame, 2).get_by_role("button", name="Serve this version again")).to_have_count(0)
        before = {r["dag_run_id"] for r in cluster.api("GET", f"/dags/{ROLLBACK}/dagRuns").json()["dag_runs"]}
        row(frame, 1).get_by_role("button", name="Serve this version again").click()
        expect(row(frame, 1).get_by_role("link", name=re.compile("Rollback run"))).to_be_visible()
        save_screenshot(page, tmp_path, "genre-models-rollback-triggered")
        (rollback,) = [
            r
            for r in cluster.api("GET", f"/dags/{ROLLBACK}/dagRuns").json()["dag_runs"]
            if r["dag_run_id"] not in before
        ]
        assert rollback["conf"] == {"version": 1}
        finished = cluster.wait_for_run(ROLLBACK, rollback["dag_run_id"], RUN_TIMEOUT_S)
        assert finished["state"] == "success", cluster.logs()
        page.reload()
        frame = page.frame_locator("iframe")
        expect(row(frame, 3)).to_contain_text("served")
        expect(row(frame, 3)).to_contain_text("copy of 1")
        expect(row(frame, 2)).to_contain_text("not served")
        expect(frame.locator("#history tbody tr").first).to_contain_text("rollback")
        save_screenshot(page, tmp_path, "genre-models-after-rollback")
        admin.close()

        # A viewer may look, not trigger: Airflow's refusal is shown.
        passwords = json.loads((cluster.home / "passwords.json").read_text())
        viewer = browser.new_context(viewport={"width": 1500, "height": 1000})
        viewer.set_default_timeout(UI_TIMEOUT_MS)
        page = viewer.new_page()
        log_in(page, dataclasses.replace(cluster, username=VIEWER, password=passwords[VIEWER]))
        frame = open_from_navigation(page, cluster, tmp_path, "genre-models-viewer")
        row(frame, 2).get_by_role("button", name="Serve this version again").click()
        expect(row(frame, 2).locator(".status.error")).to_contain_text("Airflow refused (403)")
        save_screenshot(page, tmp_path, "genre-models-viewer-refused")
        assert len(cluster.api("GET", f"/dags/{ROLLBACK}/dagRuns").json()["dag_runs"]) == 1
        viewer.close()

        # Data Docs, offline.
        offline = browser.new_context(viewport={"width": 1500, "height": 1200})
        offline.set_default_timeout(UI_TIMEOUT_MS)
        blocked = only_loopback(offline)
        page = offline.new_page()
        failed: list[str] = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        log_in(page, cluster)
        page.goto(f"{cluster.base_url}{docs_page}")
        expect(
            page.get_by_text(re.compile(r"Showing 1 to \d+ of \d+ rows")).first
        ).to_be_visible()  # bootstrap-table's JS
        save_screenshot(page, tmp_path, "genre-models-data-docs-index-offline")
        page.get_by_role("cell", name="movies_metadata.movies", exact=True).click()  # a row opens its validation
        page.wait_for_url(re.compile("/data_docs/validations/movies/"))
        expect(page.locator(".bootstrap-table").first).to_be_visible()  # the validation table, built by its JS
        expect(page.get_by_text("Observed Value").first).to_be_visible()
        icons = page.locator("i.fas.fa-check-circle")
        expect(icons.first).to_be_visible()
        page.wait_for_function(
            "document.fonts.ready.then(() => document.fonts.check('900 16px \"Font Awesome 6 Free\"'))"
        )
        family = icons.first.evaluate("e => getComputedStyle(e, '::before').fontFamily")
        assert "Font Awesome" in family, family
        width = icons.first.evaluate("e => e.getBoundingClientRect().width")
        assert width > 4, "the status icon has its glyph"
        save_screenshot(page, tmp_path, "genre-models-data-docs-offline")
        assert not blocked, f"requests that needed the internet: {blocked}"
        assert not [f for f in failed if "/genre-models/" in f], failed
        offline.close()
