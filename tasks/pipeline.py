"""The retrain pipeline's steps, wired once, without Airflow.

A step is what one task of the retrain DAG does: it takes the run's context and its upstream steps'
summaries, calls its stage function (the module under `tasks/` that does the work, imported only when
the step runs, so this module stays light enough for a DAG file), and returns the stage's summary with
the step's duration (`seconds`). `dags/movie_genre_retrain.py` calls one step per task, and
`bench/pipeline.py` calls the same steps in order in one process, so the two cannot drift apart.

The retrain DAG's tasks and their order are declared once, in `RETRAIN_TASKS`: the DAG's tests, `make
run`'s console and the benchmark read it from here. `STEPS` are those that call a step of this module;
the others are Airflow's own (the short-circuit, the approval, the gate's alert). The rollback DAG's one
task is the step `rollback`, the batch predict DAG's `batch_predict`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from tasks.config import EXPECTATIONS_DIR, RollbackConfig, RunConfig, Settings
from tasks.results import (
    DownloadResult,
    EmbeddingModuleResult,
    EmbedResult,
    EvaluateResult,
    FingerprintResult,
    GateDecision,
    PrepareResult,
    PromoteResult,
    ReportResult,
    RollbackResult,
    SelectResult,
    ServingCheckResult,
    TrainResult,
    ValidateResult,
)
from tasks.run_folder import RunFolder

StepParams = ParamSpec("StepParams")
Result = TypeVar("Result", bound=Mapping[str, Any])

# The retrain DAG's tasks in the order they run (embedding_module beside download; train once per
# candidate; report and gate_alert whatever happened before them).
RETRAIN_TASKS = (
    "embedding_module",
    "download",
    "prepare",
    "fingerprint",
    "retrain_needed",  # a run with nothing new ends here
    "embed",
    "validate",
    "candidates",
    "train",
    "select_model",
    "evaluate",
    "gate",
    "serving_check",
    "approval",
    "promote",
    "report",
    "gate_alert",
)
# The tasks that are Airflow's own, with no step here: the short-circuit, the approval operator, the alert.
AIRFLOW_TASKS = frozenset({"retrain_needed", "approval", "gate_alert"})
STEPS = tuple(task for task in RETRAIN_TASKS if task not in AIRFLOW_TASKS)
# The summaries a promoted version's manifest records: {name in the manifest: step that wrote it}.
MANIFEST_STAGES = {
    "embedding_module": "embedding_module",
    "download": "download",
    "prepare": "prepare",
    "fingerprint": "fingerprint",
    "embed": "embed",
    "validate": "validate",
    "train": "select_model",
    "evaluate": "evaluate",
    "gate": "gate",
    "serving_check": "serving_check",
}


@dataclass(frozen=True)
class RunContext:
    """One run: its id, where things live, its checked params, and its artifact folder."""

    run_id: str
    settings: Settings
    config: RunConfig

    @classmethod
    def from_params(cls, run_id: str, params: Mapping[str, Any], settings: Settings) -> RunContext:
        return cls(run_id, settings, RunConfig.from_params(params, settings))

    @property
    def folder(self) -> RunFolder:
        return self.settings.run_folder(self.run_id)

    def embedding_cache(self, embedding: EmbeddingModuleResult) -> Any:
        from tasks.embedding.cache import EmbeddingCache

        return EmbeddingCache(self.settings.embedding_cache_dir, embedding["fingerprint"])


def timed(step: Callable[StepParams, Result]) -> Callable[StepParams, Result]:
    """Add the step's wall-clock duration to its summary as `seconds` (the one place it is measured)."""

    @functools.wraps(step)
    def run(*args: StepParams.args, **kwargs: StepParams.kwargs) -> Result:
        started = time.monotonic()
        summary = step(*args, **kwargs)
        # Every result type declares `seconds`; a dict display of it is the same type again.
        return cast(Result, {**summary, "seconds": round(time.monotonic() - started, 2)})

    return run


@timed
def embedding_module(run: RunContext) -> EmbeddingModuleResult:
    from tasks.embedding.modules import ensure_default_module, module_fingerprint

    handle = run.config.embedding_module
    if handle:
        return {"path": handle, "fingerprint": module_fingerprint(handle)}
    return ensure_default_module(run.settings.embedding_modules_dir)


@timed
def download(run: RunContext) -> DownloadResult:
    from tasks.data.download import DownloadPolicy, download_dataset, parse_allowed_hosts

    policy = DownloadPolicy(
        data_root=run.settings.data_root,
        max_bytes=run.config.max_download_bytes,
        allowed_hosts=parse_allowed_hosts(run.settings.download_allowed_hosts),
    )
    return download_dataset(run.config.dataset_url, run.folder.raw, policy)


@timed
def prepare(run: RunContext, downloaded: DownloadResult) -> PrepareResult:
    from tasks.data.prepare import prepare_dataset

    config = run.config
    return prepare_dataset(
        Path(downloaded["path"]), run.folder.prepared, config.genres, config.test_fraction, config.validation_fraction
    )


@timed
def fingerprint(run: RunContext, prepared: PrepareResult, embedding: EmbeddingModuleResult) -> FingerprintResult:
    """The run's training fingerprint, and whether to retrain: `retrain` is false when the served version
    was trained on exactly this (same data, module, params and code) and the run is not forced."""
    from tasks.registry.fingerprint import gate_again_words, gate_changes, training_fingerprint, unchanged_since

    served_dir = run.settings.served_model_dir
    summary = training_fingerprint(Path(prepared["path"]), embedding["fingerprint"], run.config)
    same_as = unchanged_since(served_dir, summary["fingerprint"])
    gate_again = None  # set when the run is skipped: how to have a model gated after all
    if same_as is None:
        reason = "the data, embedding module, params or code changed since the served version (or none is served)"
    elif run.config.force:
        reason = f"unchanged since version {same_as}, retraining anyway (force)"
    else:
        gate_again = gate_again_words(same_as, gate_changes(served_dir, same_as, run.config))
        reason = f"unchanged since version {same_as}: nothing to retrain; {gate_again}"
    retrain = same_as is None or run.config.force
    return {
        "fingerprint": summary["fingerprint"],
        "components": summary["components"],
        "unchanged_since": same_as,
        "retrain": retrain,
        "reason": reason,
        "gate_again": gate_again,
    }


@timed
def validate(run: RunContext, prepared: PrepareResult, embedding: EmbeddingModuleResult) -> ValidateResult:
    """The data gate, with drift checks against the served version's training data. `embedding` is the
    embedding_module summary (as embed and train take it): embed ran first, so its cache holds every
    overview's vector."""
    import numpy as np

    from tasks.artifacts import read_json
    from tasks.data.drift import TOLERANCE_PARAMS, ServedProfile
    from tasks.data.profile import EmbeddingSource
    from tasks.data.validate import validate_dataset
    from tasks.embedding.cache import text_key
    from tasks.registry.versions import ModelRegistry
    from tasks.run_folder import PROFILE_FILE

    registry = ModelRegistry(run.settings.served_model_dir)
    version = registry.serving_version()
    profile_file = registry.version_dir(version) / PROFILE_FILE if version is not None else None
    served = ServedProfile(version, read_json(profile_file) if profile_file and profile_file.is_file() else None)
    cache = run.embedding_cache(embedding)

    def vectors_of(texts: list[str]) -> np.ndarray:
        # Only these texts' vectors, read a shard at a time: the profile asks a batch of rows at a time,
        # so memory holds one batch's vectors and one shard, not the whole cache.
        keys = [text_key(text) for text in texts]
        vectors = cache.lookup(keys)
        missing = sum(key not in vectors for key in keys)
        if missing:  # embed did not run, or a cache shard was set aside since: embed again, then validate
            raise RuntimeError(f"the embedding cache lacks {missing} of {len(texts)} overviews: run embed first")
        return np.stack([vectors[key] for key in keys])

    parameters = {"min_rows": run.config.min_rows, **{name: getattr(run.config, name) for name in TOLERANCE_PARAMS}}
    return validate_dataset(
        Path(prepared["path"]),
        EXPECTATIONS_DIR,
        run.folder.validation,
        parameters,
        embeddings=EmbeddingSource(embedding["fingerprint"], vectors_of),
        served=served,
        force=run.config.force,
        run_name=run.run_id,  # GX's run and its Data Docs are named after the Airflow run
    )


@timed
def embed(run: RunContext, prepared: PrepareResult, embedding: EmbeddingModuleResult) -> EmbedResult:
    from tasks.embedding.embed import embed_dataset

    return embed_dataset(Path(prepared["path"]), embedding["path"], run.embedding_cache(embedding))


def candidates(run: RunContext, embedding: EmbeddingModuleResult) -> list[dict[str, Any]]:
    """The candidates to train: a list, one mapped `train` task each (so no summary of its own)."""
    from tasks.model.candidates import plan_candidates

    return plan_candidates(run.config, run.settings.served_model_dir, embedding["fingerprint"])


@timed
def train(
    run: RunContext, candidate: dict[str, Any], prepared: PrepareResult, embedding: EmbeddingModuleResult
) -> TrainResult:
    from tasks.model.train import train_candidate

    cache = run.embedding_cache(embedding)
    return train_candidate(
        Path(prepared["path"]), run.folder.candidates, run.config, candidate, embedding["path"], cache
    )


@timed
def select_model(run: RunContext, trained: Sequence[TrainResult]) -> SelectResult:
    from tasks.model.candidates import best_candidate

    return best_candidate(list(trained))


@timed
def evaluate(
    run: RunContext, trained: TrainResult, prepared: PrepareResult, embedding: EmbeddingModuleResult
) -> EvaluateResult:
    """The challenger, the baselines and the served model (for the gate) on the test split."""
    from tasks.model.evaluate import evaluate_model

    return evaluate_model(
        Path(trained["model_path"]),
        Path(prepared["path"]),
        run.folder,
        embedding["path"],
        run.embedding_cache(embedding),
        served_dir=run.settings.served_model_dir,
    )


@timed
def gate(run: RunContext, evaluation: EvaluateResult) -> GateDecision:
    from tasks.model.gate import check_model_gate

    return check_model_gate(
        Path(evaluation["path"]),
        run.folder.gate,
        run.settings.served_model_dir,
        metric=run.config.gate_metric,
        threshold=run.config.auc_threshold,
        max_drop=run.config.max_auc_drop,
    )


@timed
def serving_check(run: RunContext, trained: TrainResult) -> ServingCheckResult:
    from tasks.model.serving_check import check_serving

    return check_serving(Path(trained["model_path"]))


@timed
def promote(
    run: RunContext, trained: TrainResult, decision: GateDecision, stages: Mapping[str, Mapping[str, Any] | None]
) -> PromoteResult:
    """Publish the model, with the profile of its training data for the next runs' drift checks and its
    baselines' weights for the next runs' fits; `stages` are the summaries of MANIFEST_STAGES, for its
    manifest."""
    from tasks.registry.promote import build_manifest, promote_model
    from tasks.run_folder import BASELINES_FILE, PROFILE_FILE

    folder = run.folder
    extras = {PROFILE_FILE: folder.validation.profile}
    if folder.baselines.is_file():  # only a start for the next fit: a run evaluated before it existed
        extras[BASELINES_FILE] = folder.baselines  # still promotes
    return promote_model(
        Path(trained["model_path"]),
        run.settings.served_model_dir,
        build_manifest(run.run_id, asdict(run.config), dict(stages)),
        actor=f"dag_run:{run.run_id}",
        reason=decision["reason"],
        keep_versions=run.config.keep_versions,
        extras=extras,
        once_per_actor=True,
    )


@timed
def report(
    run: RunContext, selected: TrainResult | None, promoted: PromoteResult | None, *, dag_id: str
) -> ReportResult:
    """report.html for whatever the run reached: `selected` and `promoted` are None when it did not."""
    from tasks.model.report import write_report

    return write_report(
        run.folder,
        Path(selected["model_path"]) if selected else None,
        run.settings.served_model_dir,
        dag_id=dag_id,
        run_id=run.run_id,
        version=promoted["version"] if promoted else None,
    )


@timed
def rollback(settings: Settings, config: RollbackConfig, *, run_id: str, triggered_by: str | None) -> RollbackResult:
    """The rollback DAG's one step: serve `config.version` (None: the one served before the current) again,
    recorded as run `run_id`, triggered by the person `triggered_by` (None when Airflow knows none)."""
    from tasks.registry.rollback import rollback_model, run_actor

    return rollback_model(
        settings.served_model_dir,
        config.version,
        actor=run_actor(run_id, triggered_by),
        reason=config.reason,
        keep_versions=config.keep_versions,
    )


@timed
def batch_predict(settings: Settings, announced_version: int | None = None) -> dict[str, Any]:
    """The batch predict DAG's one step: tag the movies at GENRE_SCORING_URL with the served version's
    genres, into `predictions/<version>/` (`announced_version`: the version the asset event named).
    Downloads are capped by max_download_bytes' default (the site's, from GENRE_PARAM_DEFAULTS, if set)."""
    from tasks.config import PARAM_SCHEMAS
    from tasks.data.download import DownloadPolicy, parse_allowed_hosts
    from tasks.model.batch_predict import batch_predict as score_catalogue

    limit = settings.param_defaults({"max_download_bytes": PARAM_SCHEMAS["max_download_bytes"]})
    policy = DownloadPolicy(
        data_root=settings.data_root,
        max_bytes=limit["max_download_bytes"],
        allowed_hosts=parse_allowed_hosts(settings.download_allowed_hosts),
    )
    return score_catalogue(
        settings.scoring_url,
        settings.served_model_dir,
        settings.predictions_dir,
        settings.embedding_cache_dir,
        policy,
        announced_version=announced_version,
    )
