"""Failure alerts: e-mail (SMTP provider) and a Slack incoming webhook, through Airflow notifiers.

Two kinds of alert and an approvers' notice, one message format (every line "Label: value", readable
on its own):

- `notify_failure(context)` is a task-level `on_failure_callback`: Airflow calls it once a task has
  failed for good (after its retries). It names the DAG, the run, the failed task, the reason (the
  exception text) and the run's artifacts. A quality gate's failure (`QualityGateFailed`) is not sent
  from there: the run's report is not written yet.
- `alert_failed_gate(context, folder)` is called by the DAG's `gate_alert` task, after the report: it
  names the failed gate (by the task that refused the run), its figures against their thresholds,
  report.html and the Data Docs.
- `notify_approvers(context, subject, body, link)` is called by the `approval` task when a run requires
  approval before promotion: the link to the required action, then the approval request's body.

Each alert goes through every configured channel:

- e-mail through `SmtpNotifier`, when the `smtp_default` connection exists and `GENRE_ALERT_EMAILS`
  (comma-separated, read by `tasks.config.Settings`) names recipients; the sender is `GENRE_ALERT_FROM`;
- Slack through `SlackWebhookNotifier`, when the `slack_webhook` connection exists.

Without a channel the alert is logged (WARNING). Sending never raises: a broken mail server must not
hide why the run failed. Secrets stay in the Airflow connections and are never logged here. The
providers are imported only when an alert is sent, so DAG files stay fast to parse.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk.exceptions import AirflowFailException

from tasks.config import Settings
from tasks.run_folder import RunFolder

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"
SLACK_CONN_ID = "slack_webhook"
# Tasks that are gates or checks get their own name in an alert; any other task is "task <id>".
STEP_NAMES = {"validate": "data gate", "gate": "model gate", "serving_check": "serving check"}
MAX_REASON_CHARS = 4000


class QualityGateFailed(AirflowFailException):
    """A data or model gate refused the run: no retry, and the alert waits for the run's report."""


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
    if isinstance(error, AirflowFailException) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def artifact_paths(folder: RunFolder) -> dict[str, Path]:
    """The run's report and Data Docs where present, then its artifact folder."""
    files = {"Report": folder.report, "Data Docs": folder.validation.data_docs_index}
    return {**{label: path for label, path in files.items() if path.is_file()}, "Artifacts": folder.path}


def build_alert(
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    try_number: int | None,
    reason: str,
    paths: Mapping[str, Path | str] | None = None,
    figures: Sequence[str] = (),
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
        f"DAG: {dag_id}",
        f"Run: {run_id}",
        f"Failed: {step}" + (f" ({', '.join(details)})" if details else ""),
        f"Reason: {reason}",
        *(f"Figure: {figure}" for figure in figures),
    ]
    if paths:
        lines.append("")
        lines += [f"{label}: {path}" for label, path in paths.items()]
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


def alert_from_context(
    context: Mapping[str, Any], *, gate_task_id: str | None = None, reason: str = "", figures: Sequence[str] = ()
) -> Alert:
    """Build the alert from an Airflow task context: its failed task, run and exception. For a gate's
    alert, sent from another task, `gate_task_id`, `reason` and `figures` say what failed."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    task_id = gate_task_id or str(getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", "?"))
    dag_id = str(getattr(dag, "dag_id", None) or getattr(ti, "dag_id", "?"))
    run_id = str(context.get("run_id") or getattr(dag_run, "run_id", "?"))
    try:
        paths: dict[str, Path] = artifact_paths(Settings.from_env().run_folder(run_id))
    except Exception as err:
        log.warning("no artifact folder for run %r: %s", run_id, err)
        paths = {}
    return build_alert(
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        try_number=None if gate_task_id else getattr(ti, "try_number", None),
        reason=reason or describe_error(context.get("exception")),
        paths=paths,
        figures=figures,
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
    """Task `on_failure_callback`: send the alert through every configured channel; never raises.
    A quality gate's failure is left to `notify_gate_failure`, which runs after the report."""
    if isinstance(context.get("exception"), QualityGateFailed):
        log.info("quality gate failed: the gate_alert task sends the alert once the report is written")
        return
    if not _first_call_for_this_try(context):
        return
    try:
        alert = alert_from_context(context)
    except Exception:
        log.exception("could not build the failure alert")
        return
    send_alert(alert, context)


def _first_call_for_this_try(context: Mapping[str, Any]) -> bool:
    """False when the failure of this task try has been alerted already. Airflow 3.3.2 calls a task's
    failure callback twice when the scheduler times out its heartbeat (a lost worker): once from
    `_purge_task_instances_without_heartbeats`, and again from `process_executor_events` when the FAILED
    event the purge itself sent finds the task instance still running. Both run in the dag-processor,
    perhaps in two processes, so the first call creates a marker per try in the run's artifact folder
    (exclusively: one of two racing calls wins) and later calls skip; tests/deployment/test_faults.py
    counts the e-mails. When no marker can be written, the alert goes out (a duplicate beats none)."""
    ti = context.get("ti") or context.get("task_instance")
    run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", None)
    if ti is None or not run_id:
        return True
    key = f"{ti.dag_id}.{ti.task_id}.{getattr(ti, 'map_index', -1)}.{getattr(ti, 'try_number', 0)}"
    try:
        folder = Settings.from_env().run_folder(str(run_id)).alerts_sent
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(folder / key, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        log.info("the failure of %s was alerted already: not again", key)
        return False
    except Exception as err:  # no artifact folder, a bad run id: never lose the alert over the marker
        log.warning("cannot record the alert of %s (%s): sending it anyway", key, err)
    return True


def alert_failed_gate(context: Mapping[str, Any], folder: RunFolder) -> dict[str, Any]:
    """The `gate_alert` task, after the report: if a quality gate refused this run, alert with its figures,
    report.html and the Data Docs. Also says, where a person reads it, when no channel is configured."""
    from tasks.model.gate_outcome import gate_failure

    if not configured_channels():
        log.warning(NO_CHANNEL, SMTP_CONN_ID, SLACK_CONN_ID)
    failure = gate_failure(folder)
    if failure is None:
        log.info("no quality gate failed in this run: no alert")
        return {"gate_failed": None, "sent_by": []}
    alert = alert_from_context(context, gate_task_id=failure.task_id, reason=failure.reason, figures=failure.figures)
    return {"gate_failed": step_name(failure.task_id), "sent_by": send_alert(alert, context)}


def configured_channels() -> list[str]:
    """The channels an alert would go through now: 'e-mail' and/or 'Slack'."""
    channels = []
    if Settings.from_env().alert_emails and _connection_exists(SMTP_CONN_ID):
        channels.append("e-mail")
    if _connection_exists(SLACK_CONN_ID):
        channels.append("Slack")
    return channels


NO_CHANNEL = (
    "no alert channel is configured, so alerts are only logged: add the %s connection and set "
    "GENRE_ALERT_EMAILS for e-mail, or add a %s connection (type slackwebhook) for Slack"
)


def send_alert(alert: Alert, context: Mapping[str, Any]) -> list[str]:
    """Send `alert` through every configured channel; the channels it went through. Never raises."""
    sent: list[str] = []
    settings = Settings.from_env()
    channels = configured_channels()
    if "e-mail" in channels:
        try:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            # notify(), not __call__: __call__ would render the exception text as a Jinja template.
            SmtpNotifier(
                to=list(settings.alert_emails),
                from_email=settings.alert_sender,
                subject=alert.subject,
                html_content=email_html(alert),
                smtp_conn_id=SMTP_CONN_ID,
            ).notify(cast("Context", context))  # a task's context, or a callback's: the notifier reads a few keys
            sent.append("e-mail")
        except Exception as err:
            log.error("failure alert by e-mail failed: %s: %s", type(err).__name__, err)
    if "Slack" in channels:
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
            "failure alert not sent (" + NO_CHANNEL + "):\n%s\n%s",
            SMTP_CONN_ID,
            SLACK_CONN_ID,
            alert.subject,
            alert.body,
        )
    return sent


def approval_alert(*, dag_id: str, run_id: str, subject: str, body: str, link: str | None) -> Alert:
    """The approvers' notice of a model that waits for them: where to answer, then the request's body."""
    lines = [
        "A model waits for approval before promotion.",
        "",
        f"DAG: {dag_id}",
        f"Run: {run_id}",
        f"Answer: {link or 'the run in the Airflow UI, Required actions'}",
        "",
        body.rstrip(),
    ]
    return Alert(subject=f"[{dag_id}] approval needed: {subject}", body="\n".join(lines) + "\n")


def notify_approvers(context: Mapping[str, Any], subject: str, body: str, link: str | None) -> list[str]:
    """The approval task's notice, through every configured alert channel; the channels it went through.
    Never raises: the request waits in the UI whether or not the notice went out."""
    try:
        dag = context.get("dag")
        dag_id = str(getattr(dag, "dag_id", None) or "?")
        alert = approval_alert(
            dag_id=dag_id, run_id=str(context.get("run_id", "?")), subject=subject, body=body, link=link
        )
    except Exception:
        log.exception("could not build the approvers' notice")
        return []
    return send_alert(alert, context)
