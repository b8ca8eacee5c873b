"""Failure alerts: e-mail (SMTP provider) and a Slack incoming webhook, through Airflow notifiers.

`notify_failure(context)` is a task-level `on_failure_callback`: Airflow calls it once a task has failed
for good (after its retries). It names the DAG, the run, the failed gate or task, the reason (the
exception text) and the run's artifact folder, then sends that through each configured channel:

- e-mail through `SmtpNotifier`, when the `smtp_default` connection exists and `GENRE_ALERT_EMAILS`
  (comma-separated, read by `tasks.config.Settings`) names recipients; the sender is `GENRE_ALERT_FROM`;
- Slack through `SlackWebhookNotifier`, when the `slack_webhook` connection exists.

Without a channel the alert is logged (WARNING). The callback never raises: a broken mail server must
not hide why the run failed. Secrets stay in the Airflow connections and are never logged here.

Airflow is imported only inside the functions that use it, so `tasks/` imports without Airflow; the
message itself is built by plain functions from plain fields.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"
SLACK_CONN_ID = "slack_webhook"
# Tasks that are gates or checks get their own name in an alert; any other task is "task <id>".
STEP_NAMES = {"validate": "data gate", "gate": "model gate", "serving_check": "serving check"}
# Artifacts an alert points to when the run wrote them, relative to the run's artifact folder.
REPORT_FILES = {"Data Docs": "validation/data_docs/index.html", "Report": "report.html"}
MAX_REASON_CHARS = 4000


@dataclass(frozen=True)
class Alert:
    subject: str
    body: str


def step_name(task_id: str) -> str:
    """'data gate', 'model gate', 'serving check', or 'task <id>'."""
    return STEP_NAMES.get(task_id, f"task {task_id}")


def describe_error(error: BaseException | str | None) -> str:
    """The reason for an alert. Our stages raise AirflowFailException("DataGateError: ..."), whose text
    already names the error; any other exception is prefixed with its type."""
    if error is None:
        return "unknown: no exception was passed to the callback (see the task log)"
    if isinstance(error, str):
        return error
    text = str(error)
    if type(error).__name__ == "AirflowFailException" and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def artifact_paths(run_dir: Path) -> dict[str, Path]:
    """The run's artifact folder and, where present, its Data Docs and report."""
    paths = {"Artifacts": run_dir}
    paths.update({label: run_dir / rel for label, rel in REPORT_FILES.items() if (run_dir / rel).is_file()})
    return paths


def build_alert(
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    try_number: int | None,
    reason: str,
    paths: Mapping[str, Path | str] | None = None,
) -> Alert:
    """Subject and plain-text body of a failure alert."""
    step = step_name(task_id)
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS] + " … (truncated; see the task log)"
    is_step = task_id in STEP_NAMES
    details = ([f"task {task_id}"] if is_step else []) + ([f"try {try_number}"] if try_number else [])
    lines = [
        f"The DAG run failed at the {step}." if is_step else f"The DAG run failed: {step} failed.",
        "",
        f"DAG:     {dag_id}",
        f"Run:     {run_id}",
        f"Failed:  {step}" + (f" ({', '.join(details)})" if details else ""),
        f"Reason:  {reason}",
    ]
    if paths:
        lines.append("")
        lines += [f"{label + ':':<10}{path}" for label, path in paths.items()]
    return Alert(subject=f"[{dag_id}] {step} failed in run {run_id}", body="\n".join(lines) + "\n")


def email_html(alert: Alert) -> str:
    """The body as HTML (SmtpNotifier sends HTML): escaped, preformatted."""
    return f"<pre>{html.escape(alert.body)}</pre>"


def slack_text(alert: Alert) -> str:
    """The alert as Slack mrkdwn: bold subject, body in a code block; &, < and > escaped as Slack asks."""

    def escape(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    body = escape(alert.body).replace("```", "'''")
    return f"*{escape(alert.subject)}*\n```\n{body}```"


def alert_from_context(context: Mapping[str, Any]) -> Alert:
    """Build the alert from an Airflow task context (a mapping; no Airflow import needed)."""
    from tasks.config import Settings

    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    task_id = str(getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", "?"))
    dag_id = str(getattr(dag, "dag_id", None) or getattr(ti, "dag_id", "?"))
    run_id = str(context.get("run_id") or getattr(dag_run, "run_id", "?"))
    try:
        paths: dict[str, Path] = artifact_paths(Settings.from_env().run_dir(run_id))
    except Exception as err:
        log.warning("no artifact folder for run %r: %s", run_id, err)
        paths = {}
    return build_alert(
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        try_number=getattr(ti, "try_number", None),
        reason=describe_error(context.get("exception")),
        paths=paths,
    )


def _connection_exists(conn_id: str) -> bool:
    """Whether Airflow knows the connection (metadata DB, AIRFLOW_CONN_* or a secrets backend)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    except Exception as err:
        log.warning("could not look up connection %r: %s: %s", conn_id, type(err).__name__, err)
        return False
    return True


def notify_failure(context: Mapping[str, Any]) -> None:
    """Task `on_failure_callback`: send the alert through every configured channel; never raises."""
    try:
        alert = alert_from_context(context)
    except Exception:
        log.exception("could not build the failure alert")
        return
    sent: list[str] = []
    from tasks.config import Settings

    settings = Settings.from_env()
    recipients = list(settings.alert_emails)
    if recipients and _connection_exists(SMTP_CONN_ID):
        try:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            # notify(), not __call__: __call__ would render the exception text as a Jinja template.
            SmtpNotifier(
                to=recipients,
                from_email=settings.alert_sender,
                subject=alert.subject,
                html_content=email_html(alert),
                smtp_conn_id=SMTP_CONN_ID,
            ).notify(context)
            sent.append("e-mail")
        except Exception as err:
            log.error("failure alert by e-mail failed: %s: %s", type(err).__name__, err)
    if _connection_exists(SLACK_CONN_ID):
        try:
            from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

            SlackWebhookNotifier(slack_webhook_conn_id=SLACK_CONN_ID, text=slack_text(alert)).notify(context)
            sent.append("Slack")
        except Exception as err:
            log.error("failure alert to Slack failed: %s: %s", type(err).__name__, err)
    if sent:
        log.info("failure alert sent by %s: %s", " and ".join(sent), alert.subject)
    else:
        log.warning(
            "failure alert not sent (no channel configured or reachable: set the %s connection and "
            "GENRE_ALERT_EMAILS, or a %s connection):\n%s\n%s",
            SMTP_CONN_ID,
            SLACK_CONN_ID,
            alert.subject,
            alert.body,
        )
