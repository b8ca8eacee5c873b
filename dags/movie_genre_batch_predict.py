"""Tag the movie catalogue with the served model's genres, each time the served version changes.

Scheduled on the served-model asset (`orchestration.assets.SERVED_MODEL`): a promotion by the retrain
or a rollback emits an event, and the scheduler then starts a run. Its one task scores the movies at
$GENRE_SCORING_URL (a CSV with `id` and `overview`) with the version served when it runs, and writes
`$GENRE_ARTIFACTS_DIR/predictions/<version>/predictions.parquet`: each movie's id, the genres at or above
their tuned thresholds, and every genre's probability (see `tasks.model.batch_predict`). Trigger it by
hand to score the served version again. Wiring only: the step imports TensorFlow when it runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, get_current_context

from orchestration.assets import SERVED_MODEL, announced_version
from orchestration.wiring import DEFAULT_TASK_ARGS, step_task
from tasks import pipeline as steps
from tasks.config import Settings


@dag(
    dag_id="movie_genre_batch_predict",
    description="Tag the movie catalogue with the served movie-genre model, when the served version changes",
    schedule=[SERVED_MODEL],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_TASK_ARGS,
    tags=["ml", "movie-genre"],
    doc_md=__doc__,
)
def movie_genre_batch_predict() -> None:
    @step_task()
    def batch_predict() -> dict[str, Any]:
        return steps.batch_predict(Settings.from_env(), announced_version(get_current_context()))

    batch_predict()


movie_genre_batch_predict()
