"""What the project's DAGs share: the trigger form, task defaults, and the glue between a task and its
stage function (its timing, and its permanent errors as no-retry failures)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from airflow.sdk import Param, get_current_context
from airflow.sdk.exceptions import AirflowFailException

from tasks.alerts import notify_failure
from tasks.config import PARAM_SCHEMAS, RunConfig, Settings
from tasks.errors import PermanentError

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
    """Time a stage into its summary, and turn its `PermanentError` into Airflow's no-retry failure."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        started = time.monotonic()
        try:
            summary = function(*args, **kwargs)
        except PermanentError as err:
            raise AirflowFailException(f"{type(err).__name__}: {err}") from err
        return {**summary, "seconds": round(time.monotonic() - started, 2)}

    return run  # type: ignore[return-value]


def trigger_form(names: tuple[str, ...] = tuple(PARAM_SCHEMAS)) -> dict[str, Param]:
    """One typed, described field per run param; dataset_url defaults to the environment's."""
    defaults = {"dataset_url": Settings.from_env().dataset_url}
    return {
        name: Param(
            PARAM_SCHEMAS[name].get("default", defaults.get(name)),
            **{k: v for k, v in PARAM_SCHEMAS[name].items() if k != "default"},
        )
        for name in names
    }
