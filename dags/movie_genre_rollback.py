"""Manual rollback of the served movie-genre model.

Re-publishes the chosen version as the new highest version, so TensorFlow Serving switches to it, and
records the rollback in the model folder's history. A rollback that succeeds emits an event of the
served-model asset (the new version and the metrics of the version served again), which starts
`movie_genre_batch_predict`. Trigger it from the UI: left empty, `version` means
the version served before the current one. The version already served is refused. The history records
the run and the person who triggered it.

It starts unpaused (`is_paused_upon_creation=False`), whatever `[core] dags_are_paused_at_creation` says:
with `schedule=None` nothing starts it but a trigger, and the "Genre models" page's "Serve this version
again" triggers it, so a fresh install's rollback runs instead of waiting queued. (Rather than the page
unpausing it before each trigger, which would need the DAG-edit permission on top of the trigger one and
would undo a deliberate pause.) Pausing it by hand still stops rollbacks; the page then says so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, get_current_context

from orchestration.assets import SERVED_MODEL, announce_served_version
from orchestration.wiring import DEFAULT_TASK_ARGS, step_task, trigger_form
from tasks import pipeline as steps
from tasks.config import ROLLBACK_PARAM_SCHEMAS, RollbackConfig, Settings


@dag(
    dag_id="movie_genre_rollback",
    description="Serve an earlier version of the movie-genre model again",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    params=trigger_form(ROLLBACK_PARAM_SCHEMAS),
    default_args={**DEFAULT_TASK_ARGS, "retries": 0},
    tags=["ml", "movie-genre"],
    doc_md=__doc__,
)
def movie_genre_rollback() -> None:
    @step_task(outlets=[SERVED_MODEL])
    def rollback() -> dict[str, Any]:
        context = get_current_context()
        settings = Settings.from_env()
        published = steps.rollback(
            settings,
            RollbackConfig.from_params(context["params"], settings),
            run_id=context["run_id"],
            triggered_by=context["dag_run"].triggering_user_name,
        )
        announce_served_version(context, published)  # the asset event's extra: version served again, metrics
        return published

    rollback()


movie_genre_rollback()
