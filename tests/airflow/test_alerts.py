"""Failure alerts: message building, and real runs through Airflow (`dag.test()`) that send the alert to a
real SMTP server (aiosmtpd) and a real HTTP server standing in for a Slack incoming webhook, both on
127.0.0.1."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestration.alerts import (
    MAX_REASON_CHARS,
    Alert,
    QualityGateFailed,
    alert_from_context,
    artifact_paths,
    build_alert,
    describe_error,
    email_html,
    notify_failure,
    slack_text,
    step_name,
)
from tasks.config import Settings
from tasks.run_folder import RunFolder
from tests.servers import SMTP_PASSWORD, SmtpInbox, WebhookServer, free_port, smtp_connection

DATA_GATE_REASON = (
    "DataGateError: data gate failed: 2 expectation(s) not met: "
    "movies: expect_table_row_count_to_be_between(min_value=1000000); "
    "records: expect_column_values_to_not_be_null(column=overview) ... Data Docs: /runs/x/index.html"
)
MODEL_GATE_REASON = "ModelGateError: model gate failed: auc_micro 0.7000 < auc_threshold 0.9900"
SLACK_TOKEN = "T0SECRET/B0SECRET/sl4ckW3bh00kT0ken"


# ---------------------------------------------------------------- message building (no Airflow)


def test_step_names() -> None:
    assert step_name("validate") == "data gate"
    assert step_name("gate") == "model gate"
    assert step_name("serving_check") == "serving check"
    assert step_name("train") == "task train"


def test_build_alert_names_dag_run_step_reason_and_paths(tmp_path: Path) -> None:
    alert = build_alert(
        dag_id="movie_genre_retrain",
        run_id="manual__2026-01-05T00:00:00+00:00",
        task_id="gate",
        try_number=1,
        reason=MODEL_GATE_REASON,
        paths={"Artifacts": tmp_path},
    )
    assert alert.subject == "[movie_genre_retrain] model gate failed in run manual__2026-01-05T00:00:00+00:00"
    assert "The DAG run failed at the model gate." in alert.body
    assert "DAG: movie_genre_retrain" in alert.body
    assert "Run: manual__2026-01-05T00:00:00+00:00" in alert.body
    assert "Failed: model gate (task gate, try 1)" in alert.body
    assert f"Reason: {MODEL_GATE_REASON}" in alert.body
    assert f"Artifacts: {tmp_path}" in alert.body


def test_every_line_of_an_alert_reads_on_its_own(tmp_path: Path) -> None:
    alert = build_alert(
        dag_id="movie_genre_retrain",
        run_id="r",
        task_id="gate",
        try_number=None,
        reason=MODEL_GATE_REASON,
        paths={"Report": tmp_path / "report.html", "Data Docs": tmp_path / "index.html", "Artifacts": tmp_path},
        figures=["auc_micro 0.7000 < auc_threshold 0.9900", "served version 2: auc_micro 0.8900"],
    )
    lines = [line for line in alert.body.splitlines()[1:] if line]
    assert all(re.fullmatch(r"[A-Z][A-Za-z ]*: \S.*", line) for line in lines), lines
    assert "Figure: served version 2: auc_micro 0.8900" in lines
    assert f"Report: {tmp_path / 'report.html'}" in lines


def test_build_alert_for_an_ordinary_task_and_long_reason() -> None:
    alert = build_alert(dag_id="d", run_id="r", task_id="train", try_number=4, reason="x" * (MAX_REASON_CHARS + 50))
    assert alert.subject == "[d] task train failed in run r"
    assert "The DAG run failed: task train failed." in alert.body
    assert "Failed: task train (try 4)" in alert.body
    assert "x" * MAX_REASON_CHARS + " … (truncated; see the task log)" in alert.body
    assert "x" * (MAX_REASON_CHARS + 1) not in alert.body

    def failed_line(task_id: str) -> str:
        body = build_alert(dag_id="d", run_id="r", task_id=task_id, try_number=None, reason="why").body
        return next(line for line in body.splitlines() if line.startswith("Failed:"))

    assert failed_line("train") == "Failed: task train"
    assert failed_line("serving_check") == "Failed: serving check (task serving_check)"


def test_describe_error() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    assert describe_error(AirflowFailException(DATA_GATE_REASON)) == DATA_GATE_REASON
    assert describe_error(QualityGateFailed(MODEL_GATE_REASON)) == MODEL_GATE_REASON
    assert describe_error(ValueError("bad value")) == "ValueError: bad value"
    assert describe_error(TimeoutError()) == "TimeoutError"
    assert describe_error("already text") == "already text"
    assert describe_error(None).startswith("unknown")


def test_artifact_paths_list_only_reports_that_exist(tmp_path: Path) -> None:
    assert artifact_paths(RunFolder(tmp_path)) == {"Artifacts": tmp_path}
    docs = tmp_path / "validation" / "data_docs" / "index.html"
    docs.parent.mkdir(parents=True)
    docs.write_text("<html></html>")
    (tmp_path / "report.html").write_text("<html></html>")
    assert list(artifact_paths(RunFolder(tmp_path)).items()) == [
        ("Report", tmp_path / "report.html"),
        ("Data Docs", docs),
        ("Artifacts", tmp_path),
    ]


def test_alert_from_context_uses_the_run_artifact_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENRE_ARTIFACTS_DIR", str(tmp_path))
    run_dir = tmp_path / "runs" / "manual__2026-01-05T00~3A00~3A00~2B00~3A00"  # the run id, path-safe
    docs = run_dir / "validation" / "data_docs" / "index.html"
    docs.parent.mkdir(parents=True)
    docs.write_text("<html></html>")

    class TI:
        task_id = "validate"
        dag_id = "movie_genre_retrain"
        try_number = 1

    alert = alert_from_context(
        {"ti": TI(), "run_id": "manual__2026-01-05T00:00:00+00:00", "exception": RuntimeError("boom")}
    )
    assert alert.subject == "[movie_genre_retrain] data gate failed in run manual__2026-01-05T00:00:00+00:00"
    assert f"Artifacts: {run_dir}" in alert.body
    assert f"Data Docs: {docs}" in alert.body
    assert "Report:" not in alert.body
    assert "Reason: RuntimeError: boom" in alert.body


def test_email_and_slack_rendering_escape_markup() -> None:
    alert = Alert(subject="s <b>", body="a < b & c > d ```x```\n")
    assert email_html(alert) == "<pre>a &lt; b &amp; c &gt; d ```x```\n</pre>"
    text = slack_text(alert)
    assert text.startswith("*s &lt;b&gt;*\n```\n")
    assert "a &lt; b &amp; c &gt; d '''x'''" in text and text.endswith("```")


def test_recipients_and_sender_from_environment() -> None:
    assert Settings.from_env({}).alert_emails == ()
    emails = Settings.from_env({"GENRE_ALERT_EMAILS": " a@x.org, ,b@y.org ,"}).alert_emails
    assert emails == ("a@x.org", "b@y.org")
    assert Settings.from_env({}).alert_sender == "movie-genre-retrain@localhost"
    assert Settings.from_env({"GENRE_ALERT_FROM": "ml@x.org"}).alert_sender == "ml@x.org"


def test_notify_failure_never_raises_on_a_bad_context() -> None:
    notify_failure({})
    notify_failure({"run_id": "", "exception": None})


# ---------------------------------------------------------------- real servers on 127.0.0.1


@pytest.fixture
def smtp_inbox() -> Iterator[SmtpInbox]:
    with SmtpInbox() as inbox:
        yield inbox


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server


def _body_text(message: Message) -> str:
    parts = [part for part in message.walk() if part.get_content_type() == "text/html"]
    assert len(parts) == 1
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(parts[0].get_content_charset() or "utf-8")


# ---------------------------------------------------------------- through Airflow


@pytest.fixture
def alert_env(airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A migrated Airflow DB, no channel configured unless a test sets one, artifacts in tmp_path.

    Airflow replaces the root log handlers when it first loads, which would drop pytest's log capture
    in a test that happens to load it first: loading it here, before the test, keeps `caplog` working."""
    import airflow.dag_processing.dagbag
    import airflow.sdk  # noqa: F401

    for name in ("AIRFLOW_CONN_SMTP_DEFAULT", "AIRFLOW_CONN_SLACK_WEBHOOK", "GENRE_ALERT_EMAILS", "GENRE_ALERT_FROM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GENRE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    return tmp_path / "artifacts"


def _failing_dag(dag_id: str, task_id: str, message: str, write_docs: bool = False):
    """A one-task DAG whose task fails like our gates do, with notify_failure as its callback."""
    from airflow.sdk import DAG, get_current_context, task
    from airflow.sdk.exceptions import AirflowFailException

    from tasks.config import Settings

    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"on_failure_callback": notify_failure, "retries": 0},
    ) as dag:

        @task(task_id=task_id)
        def failing() -> None:
            if write_docs:
                run_dir = Settings.from_env().run_dir(get_current_context()["run_id"])
                docs = run_dir / "validation" / "data_docs" / "index.html"
                docs.parent.mkdir(parents=True, exist_ok=True)
                docs.write_text("<html>data docs</html>")
            raise AirflowFailException(message)

        failing()
    return dag


def _run(dag) -> tuple[str, str, str]:
    """Register the in-test DAG as the DAG processor would (dag.test() needs a DAG version in the
    metadata DB; Airflow 3.3 only looks for one in the DAG bundles), then run it in-process."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    run = dag.test()
    (ti,) = run.get_task_instances()
    return str(run.state), str(ti.state), run.run_id


@pytest.mark.slow
def test_data_gate_failure_emails_and_posts_to_slack(
    airflow_db: Path,
    alert_env: Path,
    smtp_inbox: SmtpInbox,
    webhook: WebhookServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(smtp_inbox.port))
    # URI form; the webhook URL (the secret) is the password, as in a real Slack connection.
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_WEBHOOK",
        f"slackwebhook://:http%3A%2F%2F127.0.0.1%3A{webhook.port}%2Fservices%2FT000%2FB000%2FXXXX@",
    )
    monkeypatch.setenv("GENRE_ALERT_EMAILS", "ml-team@example.org, oncall@example.org")
    monkeypatch.setenv("GENRE_ALERT_FROM", "airflow@example.org")

    run_state, ti_state, run_id = _run(_failing_dag("alerts_data_gate", "validate", DATA_GATE_REASON, True))

    assert (run_state, ti_state) == ("failed", "failed")
    run_dir = Settings.from_env().run_dir(run_id)
    assert run_dir.is_relative_to(alert_env)
    subject = f"[alerts_data_gate] data gate failed in run {run_id}"

    assert len(smtp_inbox.messages) == 1
    assert smtp_inbox.envelopes == [("airflow@example.org", ["ml-team@example.org", "oncall@example.org"])]
    assert smtp_inbox.logins == [("alerts", SMTP_PASSWORD)]
    message = smtp_inbox.messages[0]
    assert message["Subject"] == subject
    assert message["From"] == "airflow@example.org"
    body = _body_text(message)
    assert "The DAG run failed at the data gate." in body
    assert f"Run: {run_id}" in body
    assert "Failed: data gate (task validate, try 1)" in body
    assert "DataGateError: data gate failed: 2 expectation(s) not met" in body
    assert "expect_table_row_count_to_be_between(min_value=1000000)" in body
    assert f"Artifacts: {run_dir}" in body
    assert f"Data Docs: {run_dir / 'validation' / 'data_docs' / 'index.html'}" in body

    assert len(webhook.requests) == 1
    path, payload = webhook.requests[0]
    assert path == "/services/T000/B000/XXXX"
    assert payload["text"].startswith(f"*{subject}*")
    assert DATA_GATE_REASON in payload["text"]
    assert f"Artifacts: {run_dir}" in payload["text"]


@pytest.mark.slow
def test_model_gate_failure_posts_to_slack_only(
    airflow_db: Path, alert_env: Path, webhook: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_WEBHOOK",
        json.dumps(
            {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{webhook.port}/services", "password": "T1/B1/Y"}
        ),
    )
    monkeypatch.setenv("GENRE_ALERT_EMAILS", "ml-team@example.org")  # recipients but no smtp_default connection

    # Template-like text in a reason is sent as it is: notifiers render their fields with Jinja when called.
    reason = MODEL_GATE_REASON + " {{ params }} {% raw %}"
    run_state, ti_state, run_id = _run(_failing_dag("alerts_model_gate", "gate", reason))

    assert (run_state, ti_state) == ("failed", "failed")
    ((path, payload),) = webhook.requests
    assert path == "/services/T1/B1/Y"
    assert f"model gate failed in run {run_id}" in payload["text"]
    assert "auc_micro 0.7000 &lt; auc_threshold 0.9900 {{ params }} {% raw %}" in payload["text"]


@pytest.mark.slow
def test_without_channels_the_alert_is_logged_and_the_run_fails_cleanly(
    airflow_db: Path, alert_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="orchestration.alerts"):
        run_state, ti_state, run_id = _run(_failing_dag("alerts_no_channel", "serving_check", "ServingError: no"))

    assert (run_state, ti_state) == ("failed", "failed")
    warnings = [r for r in caplog.records if r.name == "orchestration.alerts" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    logged = warnings[0].getMessage()
    assert f"[alerts_no_channel] serving check failed in run {run_id}" in logged
    assert "Reason: ServingError: no" in logged
    assert "Artifacts:" in logged
    assert "Failed to run task callback" not in caplog.text


@pytest.mark.slow
def test_connection_secrets_are_never_logged(
    airflow_db: Path,
    alert_env: Path,
    smtp_inbox: SmtpInbox,
    webhook: WebhookServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A send that logs in with the SMTP password, then one to a port where nothing listens (both also post
    to the Slack webhook): no log (captured records and Airflow's own output) contains a secret."""
    # Everything at DEBUG but the test server's own protocol trace (set first: set_level also sets the
    # capture handler's level, and the last call wins).
    caplog.set_level(logging.WARNING, logger="mail.log")
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("GENRE_ALERT_EMAILS", "ml-team@example.org")

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(smtp_inbox.port))
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_WEBHOOK",
        json.dumps({"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{webhook.port}", "password": SLACK_TOKEN}),
    )
    assert _run(_failing_dag("alerts_secret_sent", "train", "RuntimeError: boom"))[:2] == ("failed", "failed")
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(free_port()))
    assert _run(_failing_dag("alerts_secret_refused", "train", "RuntimeError: boom"))[:2] == ("failed", "failed")

    assert smtp_inbox.logins == [("alerts", SMTP_PASSWORD)], "the password was really used"
    assert [path for path, _ in webhook.requests] == [f"/{SLACK_TOKEN}"] * 2, "so was the webhook token"
    output = capfd.readouterr()  # Airflow's structlog output goes to the file descriptors
    logs = caplog.text + output.out + output.err
    assert "failure alert sent by e-mail and Slack: [alerts_secret_sent] task train failed" in logs
    assert "failure alert by e-mail failed: ConnectionRefusedError" in logs
    assert "failure alert sent by Slack: [alerts_secret_refused] task train failed" in logs
    assert SMTP_PASSWORD not in logs
    assert SLACK_TOKEN not in logs


@contextmanager
def http_server(statuses: list[int]) -> Iterator[str]:
    """A real HTTP server on loopback answering each GET with the next status (the last one repeats);
    a 200 carries a small CSV."""
    answered: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = statuses[min(len(answered), len(statuses) - 1)]
            answered.append(status)
            body = b"id,overview,genres\n1,A film.,[]\n" if status == 200 else b"unavailable"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/movies.csv"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _download_dag(dag_id: str, url: str, out_dir: Path):
    """One download task with the project's task defaults and callback, retried at once (no delay)."""
    from airflow.sdk import DAG

    from orchestration.wiring import DEFAULT_TASK_ARGS, step_task
    from tasks.data.download import DownloadPolicy, download_dataset, parse_allowed_hosts

    retried_at_once = {"retries": 2, "retry_delay": timedelta(0), "retry_exponential_backoff": False}
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={**DEFAULT_TASK_ARGS, **retried_at_once},
    ) as dag:

        @step_task()
        def download() -> dict[str, Any]:
            loopback = parse_allowed_hosts(["127.0.0.1"])  # the test's server, as GENRE_DOWNLOAD_ALLOWED_HOSTS would
            return download_dataset(url, out_dir, DownloadPolicy(out_dir, 1 << 20, allowed_hosts=loopback))

        download()
    return dag


@pytest.mark.slow
@pytest.mark.parametrize(
    ("statuses", "expected_state", "alerts"),
    [([503], "failed", 1), ([503, 200], "success", 0)],
    ids=["fails-every-try", "succeeds-on-retry"],
)
def test_a_retried_download_alerts_once_and_only_when_it_fails_for_good(
    airflow_db: Path,
    alert_env: Path,
    smtp_inbox: SmtpInbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    statuses: list[int],
    expected_state: str,
    alerts: int,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(smtp_inbox.port))
    monkeypatch.setenv("GENRE_ALERT_EMAILS", "ml-team@example.org")
    dag_id = f"alerts_download_{expected_state}"
    with http_server(statuses) as url:
        run_state, ti_state, _ = _run(_download_dag(dag_id, url, tmp_path / "raw"))

    assert (run_state, ti_state) == (expected_state, expected_state)
    assert len(smtp_inbox.messages) == alerts
    if alerts:
        body = _body_text(smtp_inbox.messages[0])
        assert "Failed: task download (try 3)" in body and "503" in body
