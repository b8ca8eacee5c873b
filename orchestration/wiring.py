"""What the project's DAGs share: the trigger form, task defaults, and the glue between a task and its
stage function (one XCom per summary, its timing, its first ERROR line, and its permanent errors as
no-retry failures)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from airflow.sdk import Param, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from orchestration.alerts import QualityGateFailed, notify_failure
from tasks.config import RunConfig, Settings, nullable
from tasks.errors import DataGateError, ModelGateError, PermanentError

log = logging.getLogger(__name__)

Stage = TypeVar("Stage", bound=Callable[..., dict[str, Any]])

DEFAULT_TASK_ARGS: dict[str, Any] = {
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    # Task level: Airflow 3 does not reliably call a DAG-level failure callback. Called once a task
    # has failed for good (after its retries); it e-mails / posts to Slack, or logs when neither is set.
    "on_failure_callback": notify_failure,
}


@dataclass(frozen=True)
class RunContext:
    run_id: str
    settings: Settings
    config: RunConfig
    dir: Path

    def embedding_cache(self, embedding: dict[str, Any]) -> Any:
        from tasks.embedding_cache import EmbeddingCache

        return EmbeddingCache(self.settings.embedding_cache_dir, embedding["fingerprint"])


def run_context() -> RunContext:
    """This run's settings, checked params and artifact folder."""
    context = get_current_context()
    settings = Settings.from_env()
    run_id = context["run_id"]
    return RunContext(run_id, settings, RunConfig.from_params(context["params"], settings), settings.run_dir(run_id))


def stage(function: Stage) -> Stage:
    """Time a stage into its summary. A failure's first ERROR line names the task, the error class and
    the reason; a `PermanentError` becomes Airflow's no-retry failure (a gate's, `QualityGateFailed`)."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        started = time.monotonic()
        try:
            summary = function(*args, **kwargs)
        except Exception as err:
            log.error("%s failed: %s: %s", function.__name__, type(err).__name__, err)
            if isinstance(err, DataGateError | ModelGateError):
                raise QualityGateFailed(f"{type(err).__name__}: {err}") from err
            if isinstance(err, PermanentError):
                raise AirflowFailException(f"{type(err).__name__}: {err}") from err
            raise
        return {**summary, "seconds": round(time.monotonic() - started, 2)}

    return run  # type: ignore[return-value]


def stage_task(**task_kwargs: Any) -> Callable[[Stage], Any]:
    """`@task` for a stage function: its summary dict is one XCom (not one per key), wrapped by `stage`."""

    def decorate(function: Stage) -> Any:
        return task(multiple_outputs=False, **task_kwargs)(stage(function))

    return decorate


def finished_summary(task_id: str) -> dict[str, Any] | None:
    """The summary of a task of this run that succeeded, or None: read without an edge from that task
    (so the graph shows the flow) and without asking for an XCom that a failed task never wrote."""
    context = get_current_context()
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=[task_id], run_ids=[ti.run_id])
    if states.get(ti.run_id, {}).get(task_id) != "success":
        return None
    return ti.xcom_pull(task_ids=task_id)


def stage_summaries(task_ids: Mapping[str, str]) -> dict[str, dict[str, Any] | None]:
    """{stage name: summary} of the given tasks of this run ({name: task id})."""
    return {name: finished_summary(task_id) for name, task_id in task_ids.items()}


def trigger_form(schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Param]:
    """One typed, described field per param, in its section. Every field may be left empty (null), which
    means its default, so the untouched form submits; bounds still apply to every other value."""
    defaults = Settings.from_env().param_defaults(schemas)
    return {name: Param(defaults[name], **nullable(schema)) for name, schema in schemas.items()}
