"""Manual rollback of the served movie-genre model.

Re-publishes the chosen version as the new highest version, so TensorFlow Serving switches to it, and
records the rollback in the model folder's history. Trigger it from the UI with the version to restore.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from orchestration.wiring import DEFAULT_TASK_ARGS, stage, trigger_form
from tasks.config import Settings


@dag(
    dag_id="movie_genre_rollback",
    description="Serve an earlier version of the movie-genre model again",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params={
        "version": Param(1, type="integer", minimum=1, description="The promoted version to serve again."),
        "reason": Param(
            "manual rollback", type="string", minLength=1, maxLength=500, description="Why: kept in the history."
        ),
        **trigger_form(("keep_versions",)),
    },
    default_args={**DEFAULT_TASK_ARGS, "retries": 0},
    tags=["ml", "movie-genre"],
    doc_md=__doc__,
)
def movie_genre_rollback() -> None:
    @task
    @stage
    def rollback() -> dict[str, Any]:
        from tasks.rollback import rollback_model

        context = get_current_context()
        params = context["params"]
        return rollback_model(
            Settings.from_env().served_model_dir,
            int(params["version"]),
            actor=f"dag_run:{context['run_id']}",
            reason=str(params["reason"]),
            keep_versions=int(params["keep_versions"]),
        )

    rollback()


movie_genre_rollback()
