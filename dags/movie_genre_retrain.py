"""Weekly retrain of the movie-genre classifier.

download → prepare → validate (data gate) → embed → train → evaluate → gate (model gate) → promote
embedding_module (built once and cached when no module is given) feeds embed, train and evaluate.

Wiring only: each task calls one stage function from `tasks/`, which imports its heavy libraries
(TensorFlow, Great Expectations, pandas) itself, so this file parses fast. A stage raising
`PermanentError` (bad input, failed gate) fails its task without retries; anything else is retried.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from tasks.config import EXPECTATIONS_DIR, PARAM_SCHEMAS, RunConfig, Settings
from tasks.errors import PermanentError

Stage = TypeVar("Stage", bound=Callable[..., Any])


def fail_without_retry(stage: Stage) -> Stage:
    """Turn a stage's `PermanentError` into Airflow's no-retry failure."""

    @functools.wraps(stage)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return stage(*args, **kwargs)
        except PermanentError as err:
            raise AirflowFailException(f"{type(err).__name__}: {err}") from err

    return run  # type: ignore[return-value]


def run_context() -> tuple[Settings, RunConfig, Path]:
    """This run's settings, checked params and artifact folder."""
    context = get_current_context()
    settings = Settings.from_env()
    config = RunConfig.from_params(context["params"], settings)
    return settings, config, settings.run_dir(context["run_id"])


def _params() -> dict[str, Param]:
    """The trigger form: one typed, described field per run param; dataset_url defaults to the environment's."""
    defaults = {"dataset_url": Settings.from_env().dataset_url}
    return {
        name: Param(schema.get("default", defaults.get(name)), **{k: v for k, v in schema.items() if k != "default"})
        for name, schema in PARAM_SCHEMAS.items()
    }


@dag(
    dag_id="movie_genre_retrain",
    description="Retrain the movie-genre classifier, gate it on data and AUC, promote it for TF Serving",
    schedule="@weekly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=_params(),
    default_args={
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
    tags=["ml", "movie-genre"],
    doc_md=__doc__,
)
def movie_genre_retrain() -> None:
    @task
    @fail_without_retry
    def embedding_module() -> dict[str, Any]:
        from tasks.embedding_module import ensure_default_module, module_fingerprint

        settings, config, _ = run_context()
        if config.embedding_module:
            return {"path": config.embedding_module, "fingerprint": module_fingerprint(config.embedding_module)}
        return ensure_default_module(settings.embedding_modules_dir)

    @task
    @fail_without_retry
    def download() -> dict[str, Any]:
        from tasks.download import download_dataset

        _, config, run_dir = run_context()
        return download_dataset(config.dataset_url, run_dir / "raw")

    @task
    @fail_without_retry
    def prepare(downloaded: dict[str, Any]) -> dict[str, Any]:
        from tasks.prepare import prepare_dataset

        _, config, run_dir = run_context()
        return prepare_dataset(Path(downloaded["path"]), run_dir / "prepared", config.genres, config.test_fraction)

    @task(retries=0)
    @fail_without_retry
    def validate(prepared: dict[str, Any]) -> dict[str, Any]:
        from tasks.validate import validate_dataset

        _, config, run_dir = run_context()
        return validate_dataset(
            Path(prepared["path"]), EXPECTATIONS_DIR, run_dir / "validation", {"min_rows": config.min_rows}
        )

    @task
    @fail_without_retry
    def embed(prepared: dict[str, Any], embedding: dict[str, Any]) -> dict[str, Any]:
        from tasks.embed import embed_dataset
        from tasks.embedding_cache import EmbeddingCache

        settings, _, _ = run_context()
        cache = EmbeddingCache(settings.embedding_cache_dir, embedding["fingerprint"])
        return embed_dataset(Path(prepared["path"]), embedding["path"], cache)

    @task
    @fail_without_retry
    def train(prepared: dict[str, Any], embedding: dict[str, Any]) -> dict[str, Any]:
        from tasks.embedding_cache import EmbeddingCache
        from tasks.train import TrainConfig, train_model

        settings, config, run_dir = run_context()
        train_config = TrainConfig(
            embedding_module=embedding["path"],
            epochs=config.epochs,
            batch_size=config.batch_size,
            hidden_units=config.hidden_units,
            learning_rate=config.learning_rate,
            seed=config.seed,
        )
        cache = EmbeddingCache(settings.embedding_cache_dir, embedding["fingerprint"])
        return train_model(Path(prepared["path"]), run_dir / "model", train_config, cache)

    @task
    @fail_without_retry
    def evaluate(trained: dict[str, Any], prepared: dict[str, Any], embedding: dict[str, Any]) -> dict[str, Any]:
        from tasks.embedding_cache import EmbeddingCache
        from tasks.evaluate import evaluate_model

        settings, _, run_dir = run_context()
        cache = EmbeddingCache(settings.embedding_cache_dir, embedding["fingerprint"])
        return evaluate_model(
            Path(trained["model_path"]), Path(prepared["path"]), run_dir / "metrics.json", embedding["path"], cache
        )

    @task(retries=0)
    @fail_without_retry
    def gate(evaluation: dict[str, Any]) -> dict[str, Any]:
        from tasks.gate import check_model_gate

        _, config, _ = run_context()
        return check_model_gate(evaluation, config.gate_metric, config.auc_threshold)

    @task
    @fail_without_retry
    def promote(
        trained: dict[str, Any],
        decision: dict[str, Any],
        downloaded: dict[str, Any],
        prepared: dict[str, Any],
        evaluation: dict[str, Any],
        embedding: dict[str, Any],
    ) -> dict[str, Any]:
        from tasks.promote import promote_model

        settings, config, _ = run_context()
        manifest = {
            "dag_run_id": get_current_context()["run_id"],
            "params": asdict(config),
            "dataset": downloaded,
            "data": prepared,
            "metrics": evaluation,
            "gate": decision,
            "embedding_module": embedding,
        }
        return promote_model(Path(trained["model_path"]), settings.served_model_dir, manifest)

    embedding = embedding_module()
    downloaded = download()
    prepared = prepare(downloaded)
    validated = validate(prepared)
    embedded = embed(prepared, embedding)
    trained = train(prepared, embedding)
    validated >> embedded >> trained
    evaluation = evaluate(trained, prepared, embedding)
    decision = gate(evaluation)
    promote(trained, decision, downloaded, prepared, evaluation, embedding)


movie_genre_retrain()
