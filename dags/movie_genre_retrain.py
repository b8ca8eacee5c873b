"""Weekly retrain of the movie-genre classifier.

download → prepare → validate (data gate) → embed → candidates → train (one mapped task per
candidate: every configuration from scratch, or the served model fine-tuned, see `tasks.candidates`) →
select_model (best on validation) → evaluate → gate (model gate) → serving_check → promote. Then,
whatever happened, report (report.html) and gate_alert (the alert of a failed quality gate, which
points at that report). Both are teardown tasks, so the run's state is the pipeline's, not theirs.

`embedding_module` (the project's own module, built once and cached, unless a module is given) feeds
embed, train and evaluate. Wiring only: each task calls one stage function from `tasks/`, which imports
its heavy libraries (TensorFlow, Great Expectations, pandas) itself, so this file parses fast.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import dag, get_current_context, task

from orchestration.wiring import (
    DEFAULT_TASK_ARGS,
    finished_summary,
    run_context,
    stage_summaries,
    stage_task,
    trigger_form,
)
from tasks.config import EXPECTATIONS_DIR, PARAM_SCHEMAS

# The stage summaries a promoted version's manifest records: {stage: the task that wrote it}.
MANIFEST_STAGES = {
    "embedding_module": "embedding_module",
    "download": "download",
    "prepare": "prepare",
    "validate": "validate",
    "embed": "embed",
    "train": "select_model",
    "evaluate": "evaluate",
    "gate": "gate",
    "serving_check": "serving_check",
}


@dag(
    dag_id="movie_genre_retrain",
    description="Retrain the movie-genre classifier, gate it on data and AUC, promote it for TF Serving",
    schedule="@weekly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=trigger_form(PARAM_SCHEMAS),
    default_args=DEFAULT_TASK_ARGS,
    tags=["ml", "movie-genre"],
    doc_md=__doc__,
)
def movie_genre_retrain() -> None:
    @stage_task()
    def embedding_module() -> dict[str, Any]:
        from tasks.embedding_module import ensure_default_module, module_fingerprint

        run = run_context()
        if run.config.embedding_module:
            handle = run.config.embedding_module
            return {"path": handle, "fingerprint": module_fingerprint(handle)}
        return ensure_default_module(run.settings.embedding_modules_dir)

    @stage_task()
    def download() -> dict[str, Any]:
        from tasks.download import DownloadPolicy, download_dataset

        run = run_context()
        policy = DownloadPolicy(data_root=run.settings.data_root, max_bytes=run.config.max_download_bytes)
        return download_dataset(run.config.dataset_url, run.dir / "raw", policy)

    @stage_task()
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

    @stage_task(retries=0)
    def validate(prepared: dict[str, Any]) -> dict[str, Any]:
        from tasks.validate import validate_dataset

        run = run_context()
        return validate_dataset(
            Path(prepared["path"]), EXPECTATIONS_DIR, run.dir / "validation", {"min_rows": run.config.min_rows}
        )

    @stage_task()
    def embed(prepared: dict[str, Any], embedding: dict[str, Any]) -> dict[str, Any]:
        from tasks.embed import embed_dataset

        run = run_context()
        return embed_dataset(Path(prepared["path"]), embedding["path"], run.embedding_cache(embedding))

    @task
    def candidates(embedding: dict[str, Any]) -> list[dict[str, Any]]:
        from tasks.candidates import plan_candidates

        run = run_context()
        return plan_candidates(run.config, run.settings.served_model_dir, embedding["fingerprint"])

    @stage_task()
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

    @stage_task()
    def select_model(trained: list[dict[str, Any]]) -> dict[str, Any]:
        from tasks.candidates import best_candidate

        # A slice is one request for every mapped result; iterating asks item after item until a 404,
        # which the task SDK logs at ERROR.
        return best_candidate(trained[:])

    @stage_task()
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

    @stage_task(retries=0)
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

    @stage_task(retries=0)
    def serving_check(trained: dict[str, Any]) -> dict[str, Any]:
        from tasks.serving_check import check_serving

        return check_serving(Path(trained["model_path"]))

    @stage_task()
    def promote(trained: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
        from tasks.promote import build_manifest, promote_model

        run = run_context()
        manifest = build_manifest(run.run_id, asdict(run.config), stage_summaries(MANIFEST_STAGES))
        return promote_model(
            Path(trained["model_path"]),
            run.settings.served_model_dir,
            manifest,
            actor=f"dag_run:{run.run_id}",
            reason=decision["reason"],
            keep_versions=run.config.keep_versions,
        )

    @stage_task()
    def report() -> dict[str, Any]:
        from tasks.report import write_report

        run = run_context()
        selected, promoted = finished_summary("select_model"), finished_summary("promote")
        return write_report(
            run.dir,
            Path(selected["model_path"]) if selected else None,
            run.settings.served_model_dir,
            dag_id=get_current_context()["dag"].dag_id,
            run_id=run.run_id,
            version=promoted["version"] if promoted else None,
        )

    @task(multiple_outputs=False)
    def gate_alert() -> dict[str, Any]:
        from orchestration.alerts import alert_failed_gate

        return alert_failed_gate(get_current_context(), run_context().dir)

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
    checked = serving_check(trained)
    decision >> checked
    promoted = promote(trained, decision)
    checked >> promoted
    # Teardowns: they run whatever happened upstream, and the run's state stays the pipeline's.
    promoted >> report().as_teardown() >> gate_alert().as_teardown()


movie_genre_retrain()
