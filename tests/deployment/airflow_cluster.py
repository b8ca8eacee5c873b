"""A real Airflow 3 deployment on this machine, for the acceptance tests.

`airflow_cluster()` starts `airflow api-server`, `airflow scheduler`, `airflow dag-processor` and, with
the CeleryExecutor, `airflow celery worker` processes, each a separate process group, on a database of
its own in the local PostgreSQL (127.0.0.1:5432, user postgres) and, for Celery, a key prefix of its own
in the local Redis (127.0.0.1:6379). It yields an `AirflowCluster` that talks to the REST API as the UI
does, and on exit stops what it started, drops its database, deletes its Redis keys and removes its
AIRFLOW_HOME, even when the test failed (keeping its logs first, in artifacts/test-cluster-logs/).

It also reads what a person reads in the UI (`task_log`: a task's log line by line with its level; a
task's tries; the audit log), and injects faults: `wait_for_running_on_worker` + `kill_worker` SIGKILL
the worker running a task instance (`start_worker` brings it back), `kill_component` +
`start_component` kill and restart the scheduler. The scheduler notices a lost task within
`LOST_TASK_DETECTION_SECONDS` (`heartbeat_timeout_env`, the compose deployment's settings too).

With `database_url` and `broker_url` the cluster uses a PostgreSQL database and a Redis of the test's own
(tests/servers.py `PostgresServer`, `RedisServer`), which the test may stop and restart; it then
creates and drops nothing on the machine's shared services.

Every subprocess and every wait here is bounded in time.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from tests.sample_data import PROJECT_ROOT
from tests.servers import free_port

AIRFLOW = str(Path(sys.executable).parent / "airflow")
PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}
REDIS = {"host": "127.0.0.1", "port": 6379, "db": 0}
ADMIN_USER = "admin"
# Read by `worker_hostname`: the name a Celery worker reports as a task instance's `hostname`.
WORKER_NAME_ENV = "AIRFLOW_TEST_WORKER_NAME"
HTTP_TIMEOUT = 30
STARTUP_TIMEOUT = 240
STOP_TIMEOUT = 30
COMMAND_TIMEOUT = 600
POLL_SECONDS = 2
KEPT_LOGS = PROJECT_ROOT / "artifacts" / "test-cluster-logs"  # a failed cluster's logs (keep_logs)


class ClusterError(RuntimeError):
    """The cluster did not start, a process died, or a wait ran out of time."""


def worker_hostname() -> str:
    """`[core] hostname_callable` of the test workers: each reports its own name, not the machine's."""
    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()


def wait_until(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    check: Callable[[], None] = lambda: None,
    poll: float = POLL_SECONDS,
) -> Any:
    """Poll `condition` every `poll` seconds until it returns something truthy; `check` may raise to stop
    early."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check()
        result = condition()
        if result:
            return result
        time.sleep(poll)
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- PostgreSQL and Redis ------------------------------------------------------------------------------


def _pg(command: str, *args: str) -> None:
    flags = ["-h", PG["host"], "-p", PG["port"], "-U", PG["user"]]
    result = subprocess.run([command, *flags, *args], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise ClusterError(f"{command} {' '.join(args)} failed: {result.stderr.strip()}")


def _pg_url(name: str) -> str:
    return f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"


@contextmanager
def postgres_database(prefix: str, template: str | None = None) -> Iterator[str]:
    """A new, uniquely named database (a copy of `template`, if given); dropped (closing its
    connections) on exit."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    _pg("createdb", *(["--template", template] if template else []), name)
    try:
        yield _pg_url(name)
    finally:
        _pg("dropdb", "--if-exists", "--force", name)


_migrated_template: str | None = None


def migrated_template() -> str:
    """The name of a database on the shared PostgreSQL that `airflow db migrate` ran on, once per test
    process (dropped when the process exits). A cluster's database is a copy of it (`createdb
    --template`): a second, where migrating an empty database takes half a minute of CPU on 2 cores.
    Migrating writes the schema and Airflow's fixed rows only (nothing of a cluster's own settings), so
    the copy is what migrating the cluster's own database would give."""
    global _migrated_template
    if _migrated_template is None:
        name = f"airflow_template_{secrets.token_hex(6)}"
        _pg("createdb", name)
        atexit.register(_pg, "dropdb", "--if-exists", "--force", name)
        home = Path(tempfile.mkdtemp(prefix="airflow-template-"))
        try:
            run_airflow(["db", "migrate"], cluster_env(home, _pg_url(name), free_port(), "LocalExecutor", None, {}))
        finally:
            shutil.rmtree(home, ignore_errors=True)
        _migrated_template = name
    return _migrated_template


@contextmanager
def redis_key_prefix(prefix: str) -> Iterator[str]:
    """A unique Redis key prefix for Celery's broker keys; its keys are deleted on exit."""
    import redis

    key_prefix = f"{prefix}-{secrets.token_hex(6)}:"
    try:
        yield key_prefix
    finally:
        client = redis.Redis(**REDIS, socket_timeout=10)
        try:
            keys = list(client.scan_iter(match=f"{key_prefix}*", count=500))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


# --- Processes --------------------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def start_process(name: str, args: list[str], env: Mapping[str, str], log_dir: Path, append: bool = False) -> Process:
    """Start `args` in a new session (its own process group), output to `log_dir/<name>.log` (after what
    an earlier process of that name wrote, with `append`)."""
    log = log_dir / f"{name}.log"
    with log.open("ab" if append else "wb") as out:
        popen = subprocess.Popen(
            args,
            env=dict(env),
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, popen, log)


def process_family(pid: int) -> list[psutil.Process]:
    """The process and every descendant (an empty list once it is gone)."""
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _terminate(processes: list[psutil.Process], timeout: float) -> None:
    for process in processes:
        with suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=10)


def stop_process(process: Process) -> None:
    """SIGTERM the process group and every descendant; SIGKILL what is left after STOP_TIMEOUT."""
    family = process_family(process.popen.pid)
    with suppress(ProcessLookupError):
        os.killpg(process.popen.pid, signal.SIGTERM)
    _terminate(family, STOP_TIMEOUT)
    with suppress(ProcessLookupError):
        os.killpg(process.popen.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.popen.wait(timeout=10)


def kill_process_tree(process: Process) -> list[int]:
    """SIGKILL the process, every descendant and its process group at once, as when a machine or
    container dies: nothing gets to clean up or say goodbye. The pids killed."""
    family = process_family(process.popen.pid)
    for member in family:
        with suppress(psutil.NoSuchProcess):
            member.kill()
    with suppress(ProcessLookupError):
        os.killpg(process.popen.pid, signal.SIGKILL)
    psutil.wait_procs(family, timeout=STOP_TIMEOUT)
    with suppress(subprocess.TimeoutExpired):
        process.popen.wait(timeout=10)
    return [member.pid for member in family]


def processes_with_home(airflow_home: Path) -> list[psutil.Process]:
    """Every running process whose environment has this AIRFLOW_HOME (only a test's own have it)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("AIRFLOW_HOME") == str(airflow_home):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop_stragglers(airflow_home: Path) -> None:
    """Any process still running with this cluster's AIRFLOW_HOME: stop it."""
    _terminate(processes_with_home(airflow_home), 10)


def run_airflow(args: list[str], env: Mapping[str, str], timeout: float = COMMAND_TIMEOUT) -> str:
    result = subprocess.run(
        [AIRFLOW, *args], env=dict(env), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise ClusterError(f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


# --- The cluster ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One line of a task log as the UI shows it: its level ("info", "error", …; "" when the line has
    none) and its text, with the logger that wrote it and every other field Airflow recorded."""

    level: str
    event: str
    logger: str
    fields: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, item: Mapping[str, Any] | str) -> LogLine:
        if isinstance(item, str):  # a line Airflow could not parse comes as plain text
            return cls("", item, "", {})
        return cls(str(item.get("level") or ""), str(item.get("event", "")), str(item.get("logger") or ""), item)

    def __str__(self) -> str:
        return f"[{self.level or '-'}] {self.event} [{self.logger}]"


@dataclass
class AirflowCluster:
    """A running deployment: its API, its admin login and its processes."""

    home: Path
    base_url: str
    username: str
    password: str = field(repr=False)
    executor: str
    worker_names: tuple[str, ...]
    processes: list[Process] = field(default_factory=list)
    _token: str | None = field(default=None, repr=False)

    def check_alive(self) -> None:
        for process in self.processes:
            if process.popen.poll() is not None:
                raise ClusterError(f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}")

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.name} ({p.log}) ---\n{p.tail(lines)}" for p in self.processes)

    def token(self) -> str:
        """A REST API token, as the UI gets one: POST /auth/token with the user's password."""
        if self._token is None:
            response = requests.post(
                f"{self.base_url}/auth/token",
                json={"username": self.username, "password": self.password},
                timeout=HTTP_TIMEOUT,
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def api(
        self, method: str, path: str, headers_extra: Mapping[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token()}", **(headers_extra or {})}
        return requests.request(
            method, f"{self.base_url}/api/v2{path}", headers=headers, timeout=HTTP_TIMEOUT, **kwargs
        )

    def wait_for_dag(self, dag_id: str, timeout: float = STARTUP_TIMEOUT) -> dict[str, Any]:
        """Wait until the dag-processor has parsed and serialized the DAG."""

        def parsed() -> dict[str, Any] | None:
            response = self.api("GET", f"/dags/{dag_id}/details")
            return response.json() if response.ok else None

        return wait_until(parsed, timeout, f"DAG {dag_id} to be parsed", self.check_alive)

    def unpause(self, dag_id: str) -> None:
        response = self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        response.raise_for_status()

    def trigger(self, dag_id: str, conf: Mapping[str, Any]) -> str:
        """POST a manual run with `conf`, as the trigger form does; the run id."""
        response = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf)})
        if response.status_code not in (200, 201):
            raise ClusterError(f"trigger {dag_id} failed: {response.status_code} {response.text}")
        return str(response.json()["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        """Wait until the run succeeded or failed; its JSON."""

        def finished() -> dict[str, Any] | None:
            try:
                run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
            except requests.Timeout:  # a busy machine: ask again at the next poll, within `timeout`
                return None
            return run if run.get("state") in ("success", "failed") else None

        return wait_until(finished, timeout, f"run {run_id} of {dag_id} to finish", self.check_alive)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        response = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        response.raise_for_status()
        return list(response.json()["task_instances"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any] | None:
        """The task instance's JSON, or None while the scheduler has not created it (a mapped task's
        instances exist once its upstream has run)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        response = self.api("GET", path + (f"/{map_index}" if map_index >= 0 else ""))
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def task_tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of a task instance (the UI's try picker), oldest first: state, hostname, times."""
        response = self.api(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries", params={"limit": 100}
        )
        response.raise_for_status()
        return sorted(response.json()["task_instances"], key=lambda ti: ti["try_number"])

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> list[LogLine]:
        """The log of one try of a task instance, line by line, as the UI reads it: GET
        /dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number} (JSON)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        params: dict[str, Any] = {"map_index": map_index}
        lines: list[LogLine] = []
        for _ in range(1000):  # a finished task's log comes in one piece; a token means there is more
            response = self.api("GET", path, params=params, headers_extra={"Accept": "application/json"})
            response.raise_for_status()
            body = response.json()
            lines += [LogLine.from_json(item) for item in body["content"]]
            token = body.get("continuation_token")
            if not token or not body["content"]:
                return lines
            params["token"] = token
        raise ClusterError(f"the log of {task_id} try {try_number} did not end")

    def event_logs(self, dag_id: str, run_id: str, event: str) -> list[dict[str, Any]]:
        """Audit log entries of a run (the UI's Audit Log), e.g. event="heartbeat timeout"."""
        response = self.api(
            "GET", "/eventLogs", params={"dag_id": dag_id, "run_id": run_id, "event": event, "limit": 100}
        )
        response.raise_for_status()
        return list(response.json()["event_logs"])

    env: dict[str, str] = field(default_factory=dict, repr=False)
    log_dir: Path | None = None
    commands: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def stop_all(self) -> None:
        """Stop every process this cluster runs now, restarted ones included."""
        for process in reversed(self.processes):
            stop_process(process)

    def component(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def kill_component(self, name: str) -> list[int]:
        """SIGKILL a component's whole process tree (e.g. "scheduler"); `start_component` restarts it."""
        process = self.component(name)
        self.processes.remove(process)
        return kill_process_tree(process)

    def start_component(self, name: str) -> Process:
        """Start a component again with its first command and environment, as a restart policy would."""
        if any(p.name == name for p in self.processes):
            raise ClusterError(f"{name} is still running")
        assert self.log_dir is not None
        env = self.env if name not in self.worker_names else _worker_env(self.env, name)
        process = start_process(f"{name}", self.commands[name], env, self.log_dir, append=True)
        self.processes.append(process)
        return process

    def start_worker(self, name: str) -> Process:
        """Start a lost Celery worker again under its name; wait until it is ready."""
        already = len(self.component_log(name).splitlines()) if self.log_dir else 0
        process = self.start_component(name)
        wait_until(
            lambda: " ready." in "\n".join(process.log.read_text(errors="replace").splitlines()[already:]),
            STARTUP_TIMEOUT,
            f"{name} ready again",
            self.check_alive,
        )
        return process

    def component_log(self, name: str) -> str:
        assert self.log_dir is not None
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def worker(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name and name in self.worker_names)

    def wait_for_worker_exit_seen(self, dag_id: str, run_id: str, task_id: str, timeout: float = 60) -> None:
        """Wait until the scheduler has read the executor's report that the task instance's worker exited
        (its "TaskInstance Finished" line), e.g. after the task parked for a person's input; for a task run
        once in the run. Airflow 3.3.2 fails a resumed task instance as if killed externally when that report
        arrives after the resume was queued (apache/airflow#67287, #72716): docs/operations.md, Approval before
        promotion."""
        seen = f"TaskInstance Finished: dag_id={dag_id}, task_id={task_id}, run_id={run_id},"
        wait_until(
            lambda: seen in self.component_log("scheduler"),
            timeout,
            f"the scheduler to see {task_id}'s worker exit in {run_id}",
            self.check_alive,
            poll=0.5,
        )

    def wait_for_running_on_worker(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, timeout: float = STARTUP_TIMEOUT
    ) -> tuple[Process, dict[str, Any]]:
        """Wait until the task instance runs on one of the Celery workers; that worker and the instance."""

        def running() -> dict[str, Any] | None:
            try:
                ti = self.task_instance(dag_id, run_id, task_id, map_index)
            except requests.Timeout:
                return None
            if ti and ti["state"] in ("success", "failed", "upstream_failed", "skipped"):
                raise ClusterError(f"{task_id}[{map_index}] finished ({ti['state']}) before it was seen running")
            return ti if ti and ti["state"] == "running" and ti.get("hostname") in self.worker_names else None

        ti = wait_until(running, timeout, f"{task_id}[{map_index}] to run on a worker", self.check_alive, poll=0.5)
        return self.worker(ti["hostname"]), ti

    def kill_worker(self, worker: Process) -> list[int]:
        """SIGKILL a Celery worker's whole process tree (the worker, its pool, the supervisor and the task
        it runs), as a lost machine; the cluster stops counting it among its live processes."""
        self.processes.remove(worker)
        return kill_process_tree(worker)


def cluster_env(
    home: Path,
    database_url: str,
    port: int,
    executor: str,
    redis_prefix: str | None,
    extra: Mapping[str, str],
    broker_url: str | None = None,
) -> dict[str, str]:
    """The environment of every process: the caller's, minus its Airflow settings, plus the cluster's."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **base,
        "AIRFLOW_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), base.get("PYTHONPATH")])),
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        **heartbeat_timeout_env(),
        # Only the runs a test triggers: unpausing a @weekly DAG would otherwise start a scheduled run
        # first (catchup=False still runs the latest interval), and max_active_runs=1 queues the test's.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }
    if executor == "CeleryExecutor":
        env |= {
            "AIRFLOW__CELERY__BROKER_URL": broker_url or f"redis://{REDIS['host']}:{REDIS['port']}/{REDIS['db']}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database_url}",  # SQLAlchemy 2.1 defaults to psycopg 3
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            **BROKER_RESTART_ENV,
        }
    if redis_prefix is not None:  # the shared Redis: keys of this cluster's own
        env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] = redis_prefix
    return env | dict(extra)


# The deployment's choice (docker-compose.yaml sets the same; docs/operations.md, Lost workers and faults): a task
# instance without a heartbeat for HEARTBEAT_TIMEOUT s is failed (retried if it has tries left), checked
# every DETECTION_INTERVAL s, so a lost worker's task is up for retry within about 40 + 5 + one scheduler
# loop, under LOST_TASK_DETECTION_SECONDS. A running task's supervisor heartbeats every
# `[workers] min_heartbeat_interval` (5 s) whatever the task does, so only heartbeat gaps count, not task
# length: 40 s is eight missed heartbeats.
HEARTBEAT_TIMEOUT = 40
DETECTION_INTERVAL = 5.0
LOST_TASK_DETECTION_SECONDS = 60
# A restarted scheduler adopts (or resets) the task instances its dead predecessor queued every this many
# seconds (Airflow's default: 300); until then it cannot time out their heartbeats.
ORPHANED_TASKS_CHECK_INTERVAL = 60


# A task sent while Redis restarts: Celery retries the publish for about a second by default, then
# Airflow fails the task at once (only a publish timeout is retried, `task_publish_max_retries` times), so
# a task without retries would fail the run. Keep retrying the publish (1 s operation timeout, then
# Airflow's next try) for about a minute instead. docker-compose.yaml sets the same.
BROKER_RESTART_ENV = {
    "AIRFLOW__CELERY__TASK_PUBLISH_MAX_RETRIES": "30",
    "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps(
        {
            "task_publish_retry_policy": {
                "max_retries": 100,
                "interval_start": 0,
                "interval_step": 0.5,
                "interval_max": 1,
            }
        }
    ),
}


def heartbeat_timeout_env(
    timeout_seconds: int = HEARTBEAT_TIMEOUT, detection_interval_seconds: float = DETECTION_INTERVAL
) -> dict[str, str]:
    """Scheduler settings so that a task instance whose worker is gone is noticed quickly: it is failed
    (and retried, if it has tries left) after `timeout_seconds` without a heartbeat (Airflow's default:
    300 s), checked every `detection_interval_seconds` (default 10 s). Supervisors heartbeat every
    `[workers] min_heartbeat_interval` (5 s), so keep the timeout well above that on a loaded machine."""
    return {
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(timeout_seconds),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": str(detection_interval_seconds),
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": str(ORPHANED_TASKS_CHECK_INTERVAL),
    }


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _worker_env(env: Mapping[str, str], name: str) -> dict[str, str]:
    return {**env, WORKER_NAME_ENV: name, "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname"}


def _start_workers(cluster: AirflowCluster, env: Mapping[str, str], log_dir: Path) -> None:
    """One `airflow celery worker` per name, each reporting its own hostname; wait until each is ready."""
    workers = []
    for name in cluster.worker_names:
        args = [AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "1"]
        cluster.commands[name] = [*args, "--skip-serve-logs", "--without-gossip"]
        process = start_process(name, cluster.commands[name], _worker_env(env, name), log_dir)
        cluster.processes.append(process)
        workers.append(process)
    for worker in workers:
        wait_until(
            lambda w=worker: " ready." in w.tail(200), STARTUP_TIMEOUT, f"{worker.name} ready", cluster.check_alive
        )


def keep_logs(home: Path) -> str:
    """Copy a failed cluster's process logs and task logs out of its AIRFLOW_HOME, which is removed on
    exit, to artifacts/test-cluster-logs/ (gitignored); where they went, or why not. Never raises: the
    test's own failure is the one to report."""
    kept = KEPT_LOGS / home.name
    copied = []
    for folder in ("process-logs", "logs"):
        if (home / folder).is_dir():
            try:  # Airflow may still be writing (or removing) files while the copy runs
                shutil.copytree(home / folder, kept / folder, symlinks=True, dirs_exist_ok=True)
                copied.append(folder)
            except OSError as err:
                return f"not all kept ({folder}: {err}); {kept}"
    return str(kept) if copied else f"no logs in {home}"


def _wait_for_api(cluster: AirflowCluster) -> None:
    def answers() -> bool:
        try:
            return requests.get(f"{cluster.base_url}/api/v2/version", timeout=5).ok
        except requests.RequestException:
            return False

    wait_until(answers, STARTUP_TIMEOUT, "the API server", cluster.check_alive)


@contextmanager
def airflow_cluster(
    executor: str = "CeleryExecutor",
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    database_url: str | None = None,
    broker_url: str | None = None,
) -> Iterator[AirflowCluster]:
    """Start a cluster (see the module docstring); `env` adds to every process's environment. Without
    `database_url` (an empty database) and `broker_url` (a Redis of the caller's), a database and a key
    prefix of their own on the machine's shared PostgreSQL and Redis."""
    if executor != "CeleryExecutor" and workers:
        raise ValueError("workers are Celery workers: use workers=0 with another executor")
    with ExitStack() as stack:
        home = Path(tempfile.mkdtemp(prefix="airflow-cluster-"))
        stack.callback(shutil.rmtree, home, ignore_errors=True)
        migrated = database_url is None
        if database_url is None:  # a copy of a migrated database
            database_url = stack.enter_context(postgres_database("airflow_test", template=migrated_template()))
        prefix = None
        if executor == "CeleryExecutor" and broker_url is None:
            prefix = stack.enter_context(redis_key_prefix("airflow-test"))
        stack.callback(stop_stragglers, home)  # runs after the processes are stopped, before the DB is dropped
        port = free_port()
        password = secrets.token_urlsafe(16)
        (home / "passwords.json").write_text(json.dumps({ADMIN_USER: password}))
        process_env = cluster_env(home, database_url, port, executor, prefix, env or {}, broker_url)
        if not migrated:  # the caller's own, empty database
            run_airflow(["db", "migrate"], process_env)
        cluster = AirflowCluster(
            home=home,
            base_url=f"http://127.0.0.1:{port}",
            username=ADMIN_USER,
            password=password,
            executor=executor,
            worker_names=tuple(f"celery-worker-{n}" for n in range(1, workers + 1)),
            env=process_env,
            log_dir=home / "process-logs",
        )
        log_dir = cluster.log_dir
        assert log_dir is not None
        log_dir.mkdir()
        stack.callback(cluster.stop_all)  # what runs at the end, restarted components included
        for name, args in (
            ("api-server", [AIRFLOW, "api-server", "--port", str(port), "--host", "127.0.0.1", "--workers", "1"]),
            ("scheduler", [AIRFLOW, "scheduler"]),
            ("dag-processor", [AIRFLOW, "dag-processor"]),
        ):
            cluster.commands[name] = args
            process = start_process(name, args, process_env, log_dir)
            cluster.processes.append(process)
        try:
            _wait_for_api(cluster)
            _start_workers(cluster, process_env, log_dir)
            yield cluster
        except BaseException:
            print(f"Airflow cluster logs (tails):\n{cluster.logs()}")
            print(f"Airflow cluster logs (whole, and the task logs): {keep_logs(home)}")
            raise


# --- The project's pipeline on a cluster -----------------------------------------------------------------


def pipeline_env(tmp_path: Path, dataset: Path) -> dict[str, str]:
    """Where the pipeline reads and writes in the cluster: all under the test's tmp folder."""
    return {
        "GENRE_MODEL_DIR": str(tmp_path / "models"),
        "GENRE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "GENRE_DATA_ROOT": str(dataset.parent),
        "MOVIES_DATASET_URL": str(dataset),
        "GX_ANALYTICS_ENABLED": "false",
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "1",  # tasks.tensorflow_runtime's default: TensorFlow's warnings show
    }
