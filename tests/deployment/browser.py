"""Shared helpers for the browser acceptance tests: Debian's headless Chromium driven by Playwright.

`chromium()` launches /usr/bin/chromium (Playwright downloads no browser), `log_in()` signs in to a
tests/deployment/airflow_cluster.py API server with its simple-auth user, `save_screenshot()` keeps a
full-page screenshot in the test's tmp folder and in artifacts/test-screenshots/ (gitignored).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.deployment.airflow_cluster import AirflowCluster
from tests.sample_data import PROJECT_ROOT

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
expect.set_options(timeout=UI_TIMEOUT_MS)


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
    """Sign in through the API server's login form as the cluster's user; waits for the Dags link."""
    page.goto(f"{cluster.base_url}/")
    page.get_by_label("Username").fill(cluster.username)
    page.get_by_label("Password").fill(cluster.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile("/auth/login"))
    expect(page.get_by_role("link", name="Dags", exact=True)).to_be_visible()  # not "Failed Dags" etc.


def save_screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    """Into the test's tmp folder and artifacts/test-screenshots/ (gitignored); prints both paths."""
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    kept = SCREENSHOTS / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.png"
    shutil.copyfile(shot, kept)
    print(f"screenshot: {shot}\nscreenshot: {kept}")
    return kept
