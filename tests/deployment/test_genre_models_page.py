"""Acceptance: the "Genre models" page (orchestration/genre_models) on a real api-server, in a real browser.

The plugin comes from the package's `airflow.plugins` entry point: nothing is copied into a plugins
folder. The api-server is the session's shared cluster's (tests/deployment/conftest.py), its model and
artifact folders the test's own. Two small real versions are promoted there (the session's GloVe model
trained for one epoch, `glove_export`; each from a run folder with real GX Data Docs and the report.html
the pipeline writes). Then:

- `movie_genre_rollback` was unpaused on the cluster's fresh install without anyone unpausing it, and
  still is;
- anonymous requests to every route get 401/403, a bad token 403; the admin's token gets the JSON; every
  answer carries nosniff and a CSP that lets only the UI frame it;
- every same-site link of a served report.html and of the Data Docs index answers 200;
- with a token, `..`, URL-encoded `..` and `/`, and absolute paths in the run id, the Data Docs path and
  the static path are refused (400/404) and leak nothing;
- a person logs in, opens "Genre models" from the navigation (Airflow 3.3 draws it in a sandboxed iframe)
  and clicks as a person would: the report opens in the frame (and comes back after a reload of the
  address Airflow mirrors), its Data Docs link, Back, the report's "← Genre models", the list's Data Docs
  link, the origin run (Airflow's run page in the top window, not the UI nested in the frame); "Serve this
  version again" on version 1 triggers `movie_genre_rollback` through Airflow's REST API with the person's
  own session, the run succeeds, its link opens the run's page, and the page then serves version 3,
  offers no button for version 1 (served as its copy) and its history says who asked;
- the same links in the page's own tab;
- a viewer (who may not trigger) presses the button and sees Airflow's refusal;
- with every non-loopback request aborted, a Data Docs validation page renders its table and status icons
  from the app's local copies of the CDN files, and no request leaves the machine.

Throughout, the console shows no CSP violation and nothing blocked by the iframe's sandbox.

Screenshots: tests/deployment/browser.py's save_screenshot.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest
import requests
from playwright.sync_api import BrowserContext, FrameLocator, Page, Route, expect

from tasks.config import Settings
from tests.deployment.airflow_cluster import AirflowCluster, pipeline_env
from tests.deployment.browser import UI_TIMEOUT_MS, chromium, log_in, save_screenshot
from tests.deployment.conftest import RETRAIN, ROLLBACK, VIEWER, SharedCluster
from tests.unit.test_genre_models import RUN_IDS, page_links, publish_sample_versions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PAGE = "/genre-models"
RUN_TIMEOUT_S = 300
HTTP_TIMEOUT_S = 30
# bootstrap-table's footer: the Data Docs index drew its table.
DATA_DOCS_TABLE = re.compile(r"Showing 1 to \d+ of \d+ rows")
# What Chromium logs when a page breaks its CSP, or when the iframe's sandbox blocks a popup or a
# navigation of the top window.
BLOCKED = re.compile(
    r"Content Security Policy|Refused to|Blocked opening|Unsafe attempt to initiate navigation|allow-popups"
    r"|allow-top-navigation",
    re.IGNORECASE,
)


@pytest.fixture
def published(on_shared_cluster: SharedCluster, tmp_path: Path, glove_export: Path, prepared_sample: Path) -> Settings:
    """Two promoted versions in the test's model folder, their runs' artifacts beside."""
    settings = Settings.from_env(pipeline_env(tmp_path, on_shared_cluster.dataset))
    publish_sample_versions(settings, glove_export, prepared_sample)
    return settings


def raw_get(cluster: AirflowCluster, path: str, token: str | None) -> tuple[int, str, Mapping[str, str]]:
    """GET `path` exactly as written (no client normalises its dots or decodes its escapes): the status,
    the body and the headers."""
    netloc = urlsplit(cluster.base_url)
    connection = http.client.HTTPConnection(netloc.hostname, netloc.port, timeout=HTTP_TIMEOUT_S)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace"), response.headers
    finally:
        connection.close()


def assert_security_headers(path: str, headers: Mapping[str, str]) -> None:
    assert headers.get("X-Content-Type-Options") == "nosniff", path
    assert "frame-ancestors 'self'" in headers.get("Content-Security-Policy", ""), path


def follow_links(cluster: AirflowCluster, path: str, token: str) -> list[str]:
    """GET every same-site <a href> of the page at `path` (relative ones resolved against it, without
    their fragment) with `token`; each must answer 200. The URLs followed."""
    auth = {"Authorization": f"Bearer {token}"}
    page_url = f"{cluster.base_url}{path}"
    response = requests.get(page_url, headers=auth, timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 200, path
    followed = []
    for href in page_links(response.text):
        url = urldefrag(urljoin(page_url, href)).url
        if urlsplit(url).netloc != urlsplit(cluster.base_url).netloc:
            continue  # another site (GX's own), mailto:, javascript:
        answer = requests.get(url, headers=auth, timeout=HTTP_TIMEOUT_S)
        assert answer.status_code == 200, (path, href, answer.status_code)
        followed.append(url)
    return followed


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


def row(frame: FrameLocator | Page, version: int) -> Any:
    return frame.locator(f'#versions tr[data-version="{version}"]')


def watch_console(page: Page, messages: list[str]) -> None:
    """Append to `messages` the errors and warnings the console of `page` and its frames shows from now on."""
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)


def back(page: Page) -> None:
    """The browser's Back: the joint history of the window and its frames."""
    page.evaluate("() => void setTimeout(() => history.back())")  # after evaluate returns: it may unload the page


def click_through_the_files(page: Page, frame: FrameLocator, tmp_path: Path) -> None:
    """From the list in the UI's frame: version 2's report, its Data Docs link, Back, the report's way
    back to the list, the list's Data Docs link, Back; each lands in the frame, the address bar mirrors
    it, and a reload of that address shows the same page again."""
    report = frame.get_by_role("heading", name=re.compile(f"{RETRAIN} · run"))
    listing = frame.get_by_role("heading", name="Genre models", exact=True)
    row(frame, 2).get_by_role("link", name="report").click()
    expect(report).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/plugin/genre-models{PAGE}/runs/[^/]+/report\.html$"))
    page.reload()  # Airflow rebuilds the frame's location from the address bar
    expect(report).to_be_visible()
    save_screenshot(page, tmp_path, "genre-models-report-in-frame")
    frame.get_by_role("link", name="Data Docs").click()
    expect(frame.get_by_text(DATA_DOCS_TABLE).first).to_be_visible()
    expect(page).to_have_url(re.compile(r"/runs/[^/]+/validation/data_docs/index\.html$"))
    save_screenshot(page, tmp_path, "genre-models-data-docs-in-frame")
    back(page)
    expect(report).to_be_visible()
    frame.get_by_role("link", name="← Genre models").click()
    expect(listing).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/plugin/genre-models{PAGE}/$"))
    row(frame, 2).get_by_role("link", name="Data Docs").click()
    expect(frame.get_by_text(DATA_DOCS_TABLE).first).to_be_visible()
    # The address bar follows the frame a moment after it loads (Airflow's iframe URL sync): Back before
    # then would go back past the page that is showing.
    expect(page).to_have_url(re.compile(r"/runs/[^/]+/validation/data_docs/index\.html$"))
    back(page)
    expect(listing).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/plugin/genre-models{PAGE}/$"))


def click_through_in_its_own_tab(tab: Page, cluster: AirflowCluster) -> None:
    """The page opened by its address: the same links, in the tab; the origin run is Airflow's page."""
    tab.goto(f"{cluster.base_url}{PAGE}/")
    row(tab, 2).get_by_role("link", name="report").click()
    expect(tab).to_have_url(re.compile(rf"{PAGE}/runs/[^/]+/report\.html$"))
    tab.get_by_role("link", name="Data Docs").click()
    expect(tab.get_by_text(DATA_DOCS_TABLE).first).to_be_visible()
    back(tab)
    tab.get_by_role("link", name="← Genre models").click()
    expect(tab).to_have_url(f"{cluster.base_url}{PAGE}/")
    row(tab, 2).get_by_role("link", name="Data Docs").click()
    expect(tab).to_have_url(re.compile(r"/validation/data_docs/index\.html$"))
    expect(tab.get_by_text(DATA_DOCS_TABLE).first).to_be_visible()
    back(tab)
    row(tab, 1).get_by_role("link", name=RUN_IDS[0]).click()
    expect(tab).to_have_url(re.compile(rf"/dags/{RETRAIN}/runs/manual__2026-12-01T10"))
    expect(tab.get_by_role("link", name="Dags", exact=True)).to_be_visible()  # Airflow's UI, in this tab


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


def test_genre_models_page(tmp_path: Path, on_shared_cluster: SharedCluster, published: Settings) -> None:
    cluster = on_shared_cluster.cluster
    with chromium() as browser:
        assert on_shared_cluster.fresh_install[ROLLBACK] is False, "nobody unpaused it"
        assert cluster.api("GET", f"/dags/{ROLLBACK}").json()["is_paused"] is False, "nor paused it since"
        token = cluster.token()
        run = RUN_IDS[1]
        report_page = f"{PAGE}/runs/{run}/report.html"
        docs_page = f"{PAGE}/runs/{run}/validation/data_docs/index.html"

        # Nothing without an authenticated Airflow user; the same headers on every answer.
        for path in (
            f"{PAGE}/",
            f"{PAGE}/api/versions",
            report_page,
            docs_page,
            f"{PAGE}/static/jquery/dist/jquery.min.js",
        ):
            for credentials in (None, "not-a-token"):
                status, _, headers = raw_get(cluster, path, credentials)
                assert status in (401, 403), (path, status)
                assert_security_headers(path, headers)
            status, _, headers = raw_get(cluster, path, token)
            assert status == 200, (path, status)
            assert_security_headers(path, headers)
        status, body, _ = raw_get(cluster, f"{PAGE}/api/versions", token)
        versions = json.loads(body)["versions"]
        assert [(v["version"], v["served"]) for v in versions] == [(2, True), (1, False)]

        # report.html's links and the Data Docs' resolve where the page serves them.
        followed = follow_links(cluster, report_page, token)
        assert followed == [f"{cluster.base_url}{PAGE}/", f"{cluster.base_url}{docs_page}"], "back, Data Docs"
        assert len(follow_links(cluster, docs_page, token)) >= 2, "the index links its validation pages"

        # Nothing outside the run's folder, its Data Docs or the static files.
        secret = published.artifacts_dir / "secret.txt"
        secret.write_text("SECRET")
        (published.model_dir / "secret.txt").write_text("SECRET")
        for path in (
            f"{PAGE}/runs/../report.html",
            f"{PAGE}/runs/%2e%2e/report.html",
            f"{PAGE}/runs/%2e%2e%2f%2e%2e%2fsecret.txt/report.html",
            f"{PAGE}/runs/{run}/validation/data_docs/../../report.html",
            f"{PAGE}/runs/{run}/validation/data_docs/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
            f"{PAGE}/runs/{run}/validation/data_docs/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
            f"{PAGE}/runs/{run}/validation/data_docs/..%2f..%2f..%2f..%2fsecret.txt",
            f"{PAGE}/runs/{run}/validation/data_docs//etc/passwd",
            f"{PAGE}/runs/{run}/validation/data_docs/%2fetc%2fpasswd",
            f"{PAGE}/runs/{run}/validation/data_docs/{secret}",
            f"{PAGE}/runs/%2fetc/report.html",
            f"{PAGE}/static/../../../../../../etc/passwd",
            f"{PAGE}/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            f"{PAGE}/static//etc/passwd",
            f"{PAGE}/static/%2fetc%2fpasswd",
        ):
            status, body, _ = raw_get(cluster, path, token)
            assert status in (400, 404), (path, status, body[:200])
            assert "SECRET" not in body and "root:" not in body, path

        # Every link and button, clicked inside the UI's frame, as the admin.
        admin = browser.new_context(viewport={"width": 1500, "height": 1000})
        admin.set_default_timeout(UI_TIMEOUT_MS)
        page = admin.new_page()
        console: list[str] = []
        watch_console(page, console)
        refused: list[str] = []  # the plugin's answers >= 400 to what the person clicked
        admin.on(
            "response", lambda r: refused.append(f"{r.status} {r.url}") if r.status >= 400 and PAGE in r.url else None
        )
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
        click_through_the_files(page, frame, tmp_path)

        # The origin run: Airflow's run page in the top window, not the UI nested in the frame.
        row(frame, 1).get_by_role("link", name=RUN_IDS[0]).click()
        expect(page).to_have_url(re.compile(rf"/dags/{RETRAIN}/runs/manual__2026-12-01T10"))
        expect(page.locator("iframe")).to_have_count(0)
        back(page)
        expect(page).to_have_url(re.compile(rf"/plugin/genre-models{PAGE}/$"))

        # "Serve this version again", then its run's link.
        before = on_shared_cluster.run_ids(ROLLBACK)
        row(frame, 1).get_by_role("button", name="Serve this version again").click()
        run_link = row(frame, 1).get_by_role("link", name=re.compile("Rollback run"))
        expect(run_link).to_be_visible()
        expect(row(frame, 1).locator(".status")).not_to_contain_text("paused")
        save_screenshot(page, tmp_path, "genre-models-rollback-triggered")
        (rollback,) = [
            r
            for r in cluster.api("GET", f"/dags/{ROLLBACK}/dagRuns", params={"limit": 100}).json()["dag_runs"]
            if r["dag_run_id"] not in before
        ]
        assert rollback["conf"] == {"version": 1}
        finished = cluster.wait_for_run(ROLLBACK, rollback["dag_run_id"], RUN_TIMEOUT_S)
        assert finished["state"] == "success", cluster.logs()
        run_link.click()
        expect(page).to_have_url(re.compile(rf"/dags/{ROLLBACK}/runs/"))
        expect(page.locator("iframe")).to_have_count(0)
        expect(page.get_by_text(rollback["dag_run_id"]).first).to_be_visible()  # Airflow drew the run's page
        save_screenshot(page, tmp_path, "genre-models-rollback-run")
        back(page)
        expect(page).to_have_url(re.compile("/plugin/genre-models"))
        page.reload()
        expect(row(frame, 3)).to_contain_text("served")
        expect(row(frame, 3)).to_contain_text("copy of 1")
        expect(row(frame, 2)).to_contain_text("not served")
        expect(row(frame, 1).get_by_role("button")).to_have_count(0)
        expect(row(frame, 1)).to_contain_text("already served (as version 3")
        asked = f"dag_run:{rollback['dag_run_id']} (triggered by admin)"
        expect(row(frame, 3)).to_contain_text(asked)  # "Published by"
        latest = frame.locator("#history tbody tr").first
        expect(latest).to_contain_text("rollback")
        expect(latest).to_contain_text(asked)
        save_screenshot(page, tmp_path, "genre-models-after-rollback")

        own_tab = admin.new_page()
        watch_console(own_tab, console)
        click_through_in_its_own_tab(own_tab, cluster)
        print("console of the admin's pages:", *console, sep="\n  ")
        assert not [m for m in console if BLOCKED.search(m)], console
        assert not refused, refused
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
        assert on_shared_cluster.run_ids(ROLLBACK) == before | {rollback["dag_run_id"]}, "the viewer started none"
        viewer.close()

        # Data Docs, offline.
        offline = browser.new_context(viewport={"width": 1500, "height": 1200})
        offline.set_default_timeout(UI_TIMEOUT_MS)
        blocked = only_loopback(offline)
        page = offline.new_page()
        console = []
        watch_console(page, console)
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
        assert not [m for m in console if BLOCKED.search(m)], console
        offline.close()
