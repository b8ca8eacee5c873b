"""What the project's DAGs share: the trigger form, task defaults, the run context of a task, and the
glue between a task and its step (`tasks.pipeline`): one XCom per summary, a record of each task in the
run's folder, a failure's first ERROR line, and permanent errors as no-retry failures."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from airflow.sdk import Param, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from orchestration.alerts import QualityGateFailed, notify_failure
from tasks.config import Settings, nullable
from tasks.errors import DataGateError, ModelGateError, PermanentError
from tasks.pipeline import RunContext
from tasks.stage_records import StageError, StageRecord, StageState, write_stage_record

log = logging.getLogger(__name__)

TaskBody = TypeVar("TaskBody", bound=Callable[..., Any])

DEFAULT_TASK_ARGS: dict[str, Any] = {
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    # Task level: Airflow 3 does not reliably call a DAG-level failure callback. Called once a task
    # has failed for good (after its retries); it e-mails / posts to Slack, or logs when neither is set.
    "on_failure_callback": notify_failure,
}


def run_context() -> RunContext:
    """This task's run: its id, settings and checked params."""
    context = get_current_context()
    return RunContext.from_params(context["run_id"], context["params"], Settings.from_env())


def recorded(function: TaskBody) -> TaskBody:
    """A task body that keeps what it did in the run's folder (`tasks.stage_records`) and fails clearly:
    a failure's first ERROR line names the task, the error class and the reason, and a `PermanentError`
    becomes Airflow's no-retry failure (a quality gate's, `QualityGateFailed`)."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            result = function(*args, **kwargs)
        except AirflowSkipException as skip:
            record_stage("skipped", started, error=StageError(type="skip", reason=str(skip)))
            raise
        except Exception as err:
            log.error("%s failed: %s: %s", function.__name__, type(err).__name__, err)
            permanent = isinstance(err, PermanentError)
            record_stage("failed", started, error=StageError(type=type(err).__name__, reason=str(err)), final=permanent)
            if isinstance(err, DataGateError | ModelGateError):
                raise QualityGateFailed(f"{type(err).__name__}: {err}") from err
            if permanent:
                raise AirflowFailException(f"{type(err).__name__}: {err}") from err
            raise
        record_stage("success", started, result=result)
        return result

    return run  # type: ignore[return-value]


def record_stage(
    state: StageState, started: float, *, result: Any = None, error: StageError | None = None, final: bool = False
) -> None:
    """Write this task instance's record; a failed try is final when permanent or when no retry is left."""
    context = get_current_context()
    ti = context["ti"]
    logical_date = context.get("logical_date")
    record = StageRecord(
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        logical_date=logical_date.isoformat() if logical_date else None,
        task_id=ti.task_id,
        map_index=-1 if ti.map_index is None else ti.map_index,
        try_number=ti.try_number,
        state=state,
        final=state != "failed" or final or ti.try_number > ti.max_tries,
        seconds=round(time.monotonic() - started, 2),
        result=result,
        error=error,
    )
    try:
        write_stage_record(Settings.from_env().run_folder(ti.run_id), record)
    except OSError as err:  # the record only informs the console: the task's own outcome stands
        log.warning("could not record %s's outcome in the run folder: %s", ti.task_id, err)


def step_task(**task_kwargs: Any) -> Callable[[TaskBody], Any]:
    """`@task` for a task that runs one step: its summary is one XCom (not one per key), recorded in the
    run's folder, and it fails clearly (`recorded`)."""

    def decorate(function: TaskBody) -> Any:
        return task(multiple_outputs=False, **task_kwargs)(recorded(function))

    return decorate


def retrain_wanted(fingerprinted: Mapping[str, Any]) -> bool:
    """The short-circuit's condition: false skips the rest of the run, which then succeeds unalerted."""
    log.info("%s", fingerprinted["reason"])
    return bool(fingerprinted["retrain"])


def finished_summary(task_id: str) -> dict[str, Any] | None:
    """The summary of a task of this run that succeeded, or None: read without an edge from that task
    (so the graph shows the flow) and without asking for an XCom that a failed task never wrote."""
    context = get_current_context()
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=[task_id], run_ids=[ti.run_id])
    if states.get(ti.run_id, {}).get(task_id) != "success":
        return None
    summary: dict[str, Any] | None = ti.xcom_pull(task_ids=task_id)
    return summary


def stage_summaries(task_ids: Mapping[str, str]) -> dict[str, dict[str, Any] | None]:
    """{name: summary} of the given tasks of this run ({name: task id})."""
    return {name: finished_summary(task_id) for name, task_id in task_ids.items()}


def trigger_form(schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Param]:
    """One typed, described field per param, in its section. Every field may be left empty (null), which
    means its default, so the untouched form submits; bounds still apply to every other value."""
    defaults = Settings.from_env().param_defaults(schemas)
    return {name: Param(defaults[name], **nullable(schema)) for name, schema in schemas.items()}
