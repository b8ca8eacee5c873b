"""Weekly retrain of the movie-genre classifier.

download → prepare → validate (data gate) → embed → candidates → train (one mapped task per
candidate: every configuration from scratch, or the served model fine-tuned, see `tasks.candidates`) →
select_model (best on validation) → evaluate → gate (model gate) → serving_check → promote; report
(report.html) runs after the gate whatever it decided.

`embedding_module` (the project's own module, built once and cached, unless a module is given) feeds
embed, train and evaluate. Wiring only: each task calls one stage function from `tasks/`, which imports
its heavy libraries (TensorFlow, Great Expectations, pandas) itself, so this file parses fast.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import TriggerRule, dag, task

from orchestration.wiring import DEFAULT_TASK_ARGS, run_context, stage, trigger_form
from tasks.config import EXPECTATIONS_DIR


@dag(
    dag_id="movie_genre_retrain",
    description="Retrain the movie-genre classifier, gate it on data and AUC, promote it for TF Serving",
    schedule="@weekly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=trigger_form(),
    default_args=DEFAULT_TASK_ARGS,
    tags=["ml", "movie-genre"],
    doc_md=__doc__,
)
def movie_genre_retrain() -> None:
    @task
    @stage
    def embedding_module() -> dict[str, Any]:
        from tasks.embedding_module import ensure_default_module, module_fingerprint

        run = run_context()
        if run.config.embedding_module:
            handle = run.config.embedding_module
            return {"path": handle, "fingerprint": module_fingerprint(handle)}
        return ensure_default_module(run.settings.embedding_modules_dir)

    @task
    @stage
    def download() -> dict[str, Any]:
        from tasks.download import DownloadPolicy, download_dataset

        run = run_context()
        policy = DownloadPolicy(data_root=run.settings.data_root, max_bytes=run.config.max_download_bytes)
        return download_dataset(run.config.dataset_url, run.dir / "raw", policy)

    @task
    @stage
    def prepare(downloaded: dict[str, Any]) -> dict[str, Any]:
        from tasks.prepare import prepare_dataset

        run = run_context()
        return prepare_dataset(
            Path(downloaded["path"]),
            run.dir / "prepared",
            run.config.genres,
            run.config.test_fraction,
            run.config.validation_fraction,
        )

    @task(retries=0)
    @stage
    def validate(prepared: dict[str, Any]) -> dict[str, Any]:
        from tasks.validate import validate_dataset

        run = run_context()
        return validate_dataset(
            Path(prepared["path"]), EXPECTATIONS_DIR, run.dir / "validation", {"min_rows": run.config.min_rows}
        )

    @task
    @stage
    def embed(prepared: dict[str, Any], embedding: dict[str, Any]) -> dict[str, Any]:
        from tasks.embed import embed_dataset

        run = run_context()
        return embed_dataset(Path(prepared["path"]), embedding["path"], run.embedding_cache(embedding))

    @task
    def candidates(embedding: dict[str, Any]) -> list[dict[str, Any]]:
        from tasks.candidates import plan_candidates

        run = run_context()
        return plan_candidates(run.config, run.settings.served_model_dir, embedding["fingerprint"])

    @task
    @stage
    def train(candidate: dict[str, Any], prepared: dict[str, Any], embedding: dict[str, Any]) -> dict[str, Any]:
        from tasks.train import train_candidate

        run = run_context()
        return train_candidate(
            Path(prepared["path"]),
            run.dir / "candidates",
            run.config,
            candidate,
            embedding["path"],
            run.embedding_cache(embedding),
        )

    @task
    @stage
    def select_model(trained: list[dict[str, Any]]) -> dict[str, Any]:
        from tasks.candidates import best_candidate

        return best_candidate(list(trained))

    @task
    @stage
    def evaluate(trained: dict[str, Any], prepared: dict[str, Any], embedding: dict[str, Any]) -> dict[str, Any]:
        from tasks.evaluate import evaluate_model

        run = run_context()
        return evaluate_model(
            Path(trained["model_path"]),
            Path(prepared["path"]),
            run.dir,
            embedding["path"],
            run.embedding_cache(embedding),
        )

    @task(retries=0)
    @stage
    def gate(evaluation: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
        from tasks.gate import check_model_gate

        run = run_context()
        return check_model_gate(
            Path(evaluation["path"]),
            Path(prepared["path"]),
            run.settings.served_model_dir,
            metric=run.config.gate_metric,
            threshold=run.config.auc_threshold,
            max_drop=run.config.max_auc_drop,
        )

    @task(trigger_rule=TriggerRule.ALL_DONE)
    @stage
    def report(selected: dict[str, Any] | None) -> dict[str, Any]:
        from tasks.report import write_report

        run = run_context()
        model_dir = Path(selected["model_path"]) if selected else None
        return write_report(run.dir, model_dir, run.settings.served_model_dir)

    @task(retries=0)
    @stage
    def serving_check(trained: dict[str, Any]) -> dict[str, Any]:
        from tasks.serving_check import check_serving

        return check_serving(Path(trained["model_path"]))

    @task
    @stage
    def promote(trained: dict[str, Any], decision: dict[str, Any], stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
        from tasks.promote import build_manifest, promote_model

        run = run_context()
        manifest = build_manifest(run.run_id, asdict(run.config), stages)
        return promote_model(
            Path(trained["model_path"]),
            run.settings.served_model_dir,
            manifest,
            actor=f"dag_run:{run.run_id}",
            reason=decision["reason"],
            keep_versions=run.config.keep_versions,
        )

    embedding = embedding_module()
    downloaded = download()
    prepared = prepare(downloaded)
    validated = validate(prepared)
    embedded = embed(prepared, embedding)
    trained_candidates = train.partial(prepared=prepared, embedding=embedding).expand(candidate=candidates(embedding))
    validated >> embedded >> trained_candidates
    trained = select_model(trained_candidates)
    evaluation = evaluate(trained, prepared, embedding)
    decision = gate(evaluation, prepared)
    decision >> report(trained)
    checked = serving_check(trained)
    decision >> checked
    stages = {
        "embedding_module": embedding,
        "download": downloaded,
        "prepare": prepared,
        "validate": validated,
        "embed": embedded,
        "train": trained,
        "evaluate": evaluation,
        "gate": decision,
        "serving_check": checked,
    }
    promote(trained, decision, stages)


movie_genre_retrain()
