"""Weekly retrain of the movie-genre classifier.

download → prepare → fingerprint → retrain_needed → embed → validate (data gate, with drift against the
served version's training data) → candidates → train (one mapped task per candidate: every
configuration from scratch, or the served model fine-tuned, see `tasks.model.candidates`) →
select_model (best on validation) → evaluate (the challenger, the baselines and the served model on the
test split) → gate (model gate) → serving_check → approval (a person's
Approve or Reject, asked only when the `require_approval` param is true; see `orchestration.approval`)
→ promote. Then, whatever happened, report (report.html) and gate_alert (the alert of a failed quality
gate, which points at that report). Both are teardown tasks, so the run's state is the pipeline's, not theirs.

`retrain_needed` is a short-circuit: when the served version was trained on exactly this data,
embedding module, params and code (its training fingerprint), every task below it is skipped and the
run succeeds, with nothing promoted and no alert. The `force` param retrains anyway.

`embedding_module` (the project's own module, built once and cached, unless a module is given) feeds
embed, validate, train and evaluate. Wiring only: each task calls its step in `tasks.pipeline`,
which imports its stage's heavy libraries (TensorFlow, Great Expectations, pandas) itself, so this file
parses fast.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, get_current_context, task

from orchestration.approval import PromotionApproval
from orchestration.assets import SERVED_MODEL, announce_served_version
from orchestration.wiring import (
    DEFAULT_TASK_ARGS,
    finished_summary,
    recorded,
    retrain_wanted,
    run_context,
    stage_summaries,
    step_task,
    trigger_form,
)
from tasks import pipeline as steps
from tasks.config import PARAM_SCHEMAS


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
    @step_task()
    def embedding_module() -> dict[str, Any]:
        return steps.embedding_module(run_context())

    @step_task()
    def download() -> dict[str, Any]:
        return steps.download(run_context())

    @step_task()
    def prepare(downloaded: dict[str, Any]) -> dict[str, Any]:
        return steps.prepare(run_context(), downloaded)

    @step_task()
    def fingerprint(prepared: dict[str, Any], embedding: dict[str, Any]) -> dict[str, Any]:
        return steps.fingerprint(run_context(), prepared, embedding)

    @task.short_circuit
    @recorded
    def retrain_needed(fingerprinted: dict[str, Any]) -> bool:
        return retrain_wanted(fingerprinted)

    @step_task(retries=0)
    def validate(prepared: dict[str, Any], embedding: dict[str, Any]) -> dict[str, Any]:
        return steps.validate(run_context(), prepared, embedding)

    @step_task()
    def embed(prepared: dict[str, Any], embedding: dict[str, Any]) -> dict[str, Any]:
        return steps.embed(run_context(), prepared, embedding)

    @step_task()
    def candidates(embedding: dict[str, Any]) -> list[dict[str, Any]]:
        return steps.candidates(run_context(), embedding)

    @step_task()
    def train(candidate: dict[str, Any], prepared: dict[str, Any], embedding: dict[str, Any]) -> dict[str, Any]:
        return steps.train(run_context(), candidate, prepared, embedding)

    @step_task()
    def select_model(trained: list[dict[str, Any]]) -> dict[str, Any]:
        # A slice is one request for every mapped result; iterating asks item after item until a 404,
        # which the task SDK logs at ERROR.
        return steps.select_model(run_context(), trained[:])

    @step_task()
    def evaluate(trained: dict[str, Any], prepared: dict[str, Any], embedding: dict[str, Any]) -> dict[str, Any]:
        return steps.evaluate(run_context(), trained, prepared, embedding)

    @step_task(retries=0)
    def gate(evaluation: dict[str, Any]) -> dict[str, Any]:
        return steps.gate(run_context(), evaluation)

    @step_task(retries=0)
    def serving_check(trained: dict[str, Any]) -> dict[str, Any]:
        return steps.serving_check(run_context(), trained)

    # A skipped approval (not required) must not skip promote; a rejection skips promote itself.
    @step_task(outlets=[SERVED_MODEL], trigger_rule="none_failed_min_one_success")
    def promote(trained: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
        promoted = steps.promote(run_context(), trained, decision, stage_summaries(steps.MANIFEST_STAGES))
        announce_served_version(get_current_context(), promoted)  # the asset event's extra: version, metrics
        return promoted

    @step_task()
    def report() -> dict[str, Any]:
        selected, promoted = finished_summary("select_model"), finished_summary("promote")
        return steps.report(run_context(), selected, promoted, dag_id=get_current_context()["dag"].dag_id)

    @task(multiple_outputs=False)
    @recorded
    def gate_alert() -> dict[str, Any]:
        from orchestration.alerts import alert_failed_gate

        return alert_failed_gate(get_current_context(), run_context().folder)

    embedding = embedding_module()
    downloaded = download()
    prepared = prepare(downloaded)
    # Nothing new since the served version: everything below is skipped, and the run succeeds.
    needed = retrain_needed(fingerprint(prepared, embedding))
    embedded = embed(prepared, embedding)
    validated = validate(prepared, embedding)
    planned = candidates(embedding)
    needed >> embedded >> validated >> planned
    trained_candidates = train.partial(prepared=prepared, embedding=embedding).expand(candidate=planned)
    trained = select_model(trained_candidates)
    evaluation = evaluate(trained, prepared, embedding)
    decision = gate(evaluation)
    checked = serving_check(trained)
    decision >> checked
    approval = PromotionApproval(task_id="approval", retries=0)
    promoted = promote(trained, decision)
    checked >> approval >> promoted
    # Teardowns: they run whatever happened upstream, and the run's state stays the pipeline's.
    promoted >> report().as_teardown() >> gate_alert().as_teardown()


movie_genre_retrain()
