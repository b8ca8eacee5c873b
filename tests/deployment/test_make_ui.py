"""`make ui`, run as a user would from a fresh shell: `airflow standalone` with this repo's DAGs.

The shell's PATH does not hold `.venv/bin` (the target must add it, or every component dies with
FileNotFoundError: 'airflow'). AIRFLOW_HOME is a fresh temporary folder (the Makefile's `?=` lets the
environment choose it), so the standalone makes its own SQLite database, config and admin password there.
The test logs in with the generated password, finds both DAGs (and no example DAG), checks what the README
says unpausing does (no task runs: the pool gets no slot), then stops make's process group with SIGTERM
and checks that no process with its AIRFLOW_HOME is left.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import pytest
import requests

from orchestration.standalone import kill_components
from tests.deployment.airflow_cluster import ClusterError, processes_with_home, stop_stragglers, wait_until
from tests.sample_data import PROJECT_ROOT
from tests.servers import free_port

VENV_BIN = Path(sys.executable).parent
OUR_DAGS = {"movie_genre_retrain", "movie_genre_rollback", "movie_genre_batch_predict"}
API_TIMEOUT = 240  # a cold start on 2 busy cores: 40-180 s until the api-server listens
DAGS_TIMEOUT = 90
SCHEDULE_TIMEOUT = 60
STOP_TIMEOUT = 60
HTTP_TIMEOUT = 10


def fresh_shell_env(airflow_home: Path) -> dict[str, str]:
    """What a new login shell has (no venv, no Airflow or make settings), plus where this test writes."""
    path = os.pathsep.join(
        entry
        for entry in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if entry and Path(entry).resolve() != VENV_BIN.resolve()
    )
    env = {key: os.environ[key] for key in ("HOME", "USER", "LOGNAME", "LANG", "SHELL") if key in os.environ}
    return env | {
        "PATH": path,
        "AIRFLOW_HOME": str(airflow_home),
        "GENRE_MODEL_DIR": str(airflow_home.parent / "models"),
        "GENRE_ARTIFACTS_DIR": str(airflow_home.parent / "artifacts"),
        # The scheduler's and triggerer's log servers listen on fixed ports (8793, 8794) on every
        # interface: free ones, so this test does not clash with a `make ui` already running here.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }


@dataclass
class MakeUi:
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def check_running(self) -> None:
        """Stop waiting early: make exited, or the standalone could not start a component (it runs on)."""
        if self.popen.poll() is not None:
            raise ClusterError(f"make ui exited with {self.popen.returncode}:\n{self.output()[-5000:]}")
        if "FileNotFoundError" in self.output():
            raise ClusterError(f"a component did not start:\n{self.output()[-5000:]}")


@contextmanager
def make_ui(port: int, env: dict[str, str], log: Path) -> Iterator[MakeUi]:
    """`make ui UI_PORT=<port>` in its own process group; on exit, whatever is left of it is killed."""
    make = shutil.which("make", path=env["PATH"])
    assert make, "make is not on the shell's PATH"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [make, "--no-print-directory", "ui", f"UI_PORT={port}"],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield MakeUi(popen, log)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=10)
        stop_stragglers(Path(env["AIRFLOW_HOME"]))


def check_unpausing_the_weekly_dag(base_url: str, headers: dict[str, str], ui: MakeUi) -> None:
    """What the README says of unpausing: unpausing the @weekly, catchup=False DAG makes the scheduler start
    last Sunday's run at once, with the default params, and a run triggered with it (as the form's "Unpause
    on trigger" does) waits for that one (max_active_runs=1). No task runs here: the pool has no slot."""

    def api(method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, f"{base_url}/api/v2{path}", headers=headers, timeout=HTTP_TIMEOUT, **kwargs)
        assert response.ok, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    dag = "/dags/movie_genre_retrain"
    assert api("PATCH", "/pools/default_pool", params={"update_mask": "slots"}, json={"slots": 0})["slots"] == 0
    manual = api("POST", f"{dag}/dagRuns", json={"logical_date": None, "conf": {"epochs": 5}})["dag_run_id"]
    assert api("PATCH", dag, json={"is_paused": False})["is_paused"] is False

    def scheduled_run_started() -> dict[str, Any] | None:
        runs = api("GET", f"{dag}/dagRuns")["dag_runs"]
        return next((r for r in runs if r["run_type"] == "scheduled" and r["state"] == "running"), None)

    scheduled = wait_until(scheduled_run_started, SCHEDULE_TIMEOUT, "the scheduled run", ui.check_running)
    logical = datetime.fromisoformat(scheduled["logical_date"].replace("Z", "+00:00"))
    now = datetime.now(UTC)
    assert (logical.weekday(), logical.time()) == (6, datetime.min.time()), f"not Sunday 00:00 UTC: {logical}"
    assert now - timedelta(days=7, hours=1) < logical <= now
    assert scheduled["conf"] == {}
    assert api("GET", f"{dag}/dagRuns/{quote(manual, safe='')}")["state"] == "queued"


@pytest.mark.slow
@pytest.mark.timeout(API_TIMEOUT + DAGS_TIMEOUT + SCHEDULE_TIMEOUT + 2 * STOP_TIMEOUT)
def test_make_ui_serves_the_dags_and_stops_every_component(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    env = fresh_shell_env(home)
    assert shutil.which("airflow", path=env["PATH"]) is None, "the shell's PATH must not find airflow"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    password_file = home / "simple_auth_manager_passwords.json.generated"
    started = time.monotonic()

    with make_ui(port, env, tmp_path / "make-ui.log") as ui:

        def api_answers() -> bool:
            try:
                return requests.get(f"{base_url}/api/v2/version", timeout=HTTP_TIMEOUT).ok
            except requests.RequestException:
                return False

        try:
            wait_until(api_answers, API_TIMEOUT, "the API server", ui.check_running)
            print(f"API up after {time.monotonic() - started:.0f} s")

            # What the target printed: where to go, who to log in as, where the password is.
            header = ui.output().split("standalone |", 1)[0]
            assert f"Airflow UI  {base_url} " in header
            assert re.search(r"^User\s+admin$", header, re.MULTILINE)
            assert f"Password    in {password_file} " in header
            assert "smtp_default" in header
            assert "slack_webhook" in header

            password = json.loads(password_file.read_text())["admin"]
            response = requests.post(
                f"{base_url}/auth/token", json={"username": "admin", "password": password}, timeout=HTTP_TIMEOUT
            )
            assert response.status_code in (200, 201), response.text
            headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

            def listed_dags() -> dict[str, dict[str, object]] | None:
                response = requests.get(f"{base_url}/api/v2/dags", headers=headers, timeout=HTTP_TIMEOUT)
                response.raise_for_status()
                dags = {dag["dag_id"]: dag for dag in response.json()["dags"]}
                return dags if dags.keys() >= OUR_DAGS else None

            dags = wait_until(listed_dags, DAGS_TIMEOUT, "both DAGs in GET /api/v2/dags", ui.check_running)
            print(f"DAGs listed after {time.monotonic() - started:.0f} s")
            assert set(dags) == OUR_DAGS
            paused = {dag_id for dag_id, dag in dags.items() if dag["is_paused"]}
            # Scheduled DAGs start paused; the rollback, which only a trigger starts, starts unpaused.
            assert paused == OUR_DAGS - {"movie_genre_rollback"}, paused
            # No example DAGs: the dag-processor registered the repo's DAGs folder as its only bundle.
            with sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True) as db:
                bundles = {name for (name,) in db.execute("SELECT name FROM dag_bundle")}
            assert bundles == {"dags-folder"}

            check_unpausing_the_weekly_dag(base_url, headers, ui)
            print(f"unpausing checked after {time.monotonic() - started:.0f} s")
        except BaseException:
            print(f"make ui output (tail):\n{ui.output()[-8000:]}")
            raise

        # Stop it as a supervisor would: SIGTERM to make's process group. Every component must go.
        assert processes_with_home(home), "no process of the standalone found before stopping it"
        stopping = time.monotonic()
        os.killpg(ui.popen.pid, signal.SIGTERM)
        try:
            ui.popen.wait(timeout=STOP_TIMEOUT)
            wait_until(
                lambda: not processes_with_home(home), STOP_TIMEOUT, "every process with this AIRFLOW_HOME to exit"
            )
        except BaseException:
            survivors = [f"{p.pid} {p.status()} {' '.join(p.cmdline())[:150]}" for p in processes_with_home(home)]
            print("still running:\n" + "\n".join(survivors) + f"\nmake ui output (tail):\n{ui.output()[-5000:]}")
            raise
        print(f"stopped in {time.monotonic() - stopping:.0f} s; {time.monotonic() - started:.0f} s in all")
        assert "standalone | Shutting down components" in ui.output()
        assert "standalone | Complete" in ui.output()


def test_make_ui_refuses_a_port_in_use(tmp_path: Path) -> None:
    env = fresh_shell_env(tmp_path / "airflow")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with make_ui(port, env, tmp_path / "make-ui.log") as ui:
            returncode = ui.popen.wait(timeout=120)
            output = ui.output()
    assert returncode != 0
    assert f"make ui: port {port} is in use" in output
    assert "standalone" not in output
    assert not (tmp_path / "airflow").exists()


def process_group(pgid: int) -> list[int]:
    members = []
    for process in psutil.process_iter():
        with suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
    return members


def test_a_late_stop_kills_the_components_and_leaves_the_standalone_to_finish() -> None:
    """The deadline's kill, on a group shaped like the standalone's: its leader, which waits for its child,
    and an orphan whose parent exited (it still holds the output the standalone reads). The leader is not
    killed: with both gone it finishes by itself, as the standalone then says "Complete"."""
    leader = subprocess.Popen(["sh", "-c", "(sleep 60 &); sleep 60 & wait"], start_new_session=True)
    try:
        wait_until(lambda: len(process_group(leader.pid)) == 3, 10, "the leader, its child and the orphan")
        assert kill_components(leader.pid) == 2
        assert leader.wait(timeout=10) == 0, "the leader finished by itself, not killed"
        assert process_group(leader.pid) == []
    finally:
        with suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
