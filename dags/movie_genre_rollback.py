"""Manual rollback of the served movie-genre model.

Re-publishes the chosen version as the new highest version, so TensorFlow Serving switches to it, and
records the rollback in the model folder's history. A rollback that succeeds emits an event of the
served-model asset (the new version and the metrics of the version served again), which starts
`movie_genre_batch_predict`. Trigger it from the UI: left empty, `version` means
the version served before the current one. The version already served is refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, get_current_context

from orchestration.assets import SERVED_MODEL, announce_served_version
from orchestration.wiring import DEFAULT_TASK_ARGS, step_task, trigger_form
from tasks.config import ROLLBACK_PARAM_SCHEMAS, RollbackConfig, Settings


@dag(
    dag_id="movie_genre_rollback",
    description="Serve an earlier version of the movie-genre model again",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=trigger_form(ROLLBACK_PARAM_SCHEMAS),
    default_args={**DEFAULT_TASK_ARGS, "retries": 0},
    tags=["ml", "movie-genre"],
    doc_md=__doc__,
)
def movie_genre_rollback() -> None:
    @step_task(outlets=[SERVED_MODEL])
    def rollback() -> dict[str, Any]:
        from tasks.registry.rollback import rollback_model

        context = get_current_context()
        settings = Settings.from_env()
        config = RollbackConfig.from_params(context["params"], settings)
        published = rollback_model(
            settings.served_model_dir,
            config.version,
            actor=f"dag_run:{context['run_id']}",
            reason=config.reason,
            keep_versions=config.keep_versions,
        )
        announce_served_version(context, published)  # the asset event's extra: version served again, metrics
        return published

    rollback()


movie_genre_rollback()
