"""What each stage returns: its summary, a typed, JSON-able dict (a task's XCom, a manifest's `stages`).

Stages build these and readers (the next steps, `make run`'s console, the approval request, the
manifest) read them by key; the type checker holds both sides to the same keys, so renaming one fails
`make test`'s mypy instead of a run. The pipeline's steps add `seconds`, their wall-clock time
(`tasks.pipeline.timed`), read only through the summaries' plain mappings (the manifest's timings).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class EmbeddingModuleResult(TypedDict):
    path: str  # a TF Hub handle or a local SavedModel folder
    fingerprint: str


class DownloadResult(TypedDict):
    url: str  # without user:password
    path: str
    size_bytes: int
    sha256: str
    gzip: bool
    csv_bytes: int
    rows: int


class PreparedSummary(TypedDict):
    """The prepared data's counts, as prepare keeps them beside its tables (`summary.json`)."""

    records: int
    kept: int
    dropped: dict[str, int]  # reason → records
    train_rows: int
    validation_rows: int
    test_rows: int
    test_fraction: float
    validation_fraction: float
    genres: list[str]
    positives: dict[str, int]  # genre → kept movies
    split_fingerprint: str


class PrepareResult(PreparedSummary):
    path: str  # the prepared folder


class FingerprintResult(TypedDict):
    fingerprint: str
    components: dict[str, str]
    unchanged_since: int | None  # the served version trained on exactly this, if any
    retrain: bool
    reason: str
    gate_again: str | None  # for a skipped run: how to have a model gated after all


class EmbedResult(TypedDict):
    texts: int
    from_cache: int
    computed: int
    module_fingerprint: str


class ValidateResult(TypedDict):
    success: bool
    suites: dict[str, dict[str, Any]]  # suite → {success, evaluated}
    failed_expectations: list[str]
    drift: dict[str, Any]  # checked, and the measures or why not
    results_path: str
    profile_path: str
    data_docs_path: str


class TrainResult(TypedDict):
    model_path: str
    train_rows: int
    validation_rows: int
    validation_auc_micro: float
    best_epoch: int
    epochs_run: int
    thresholds: dict[str, float]
    warm_start_from: str | None
    warm_starts: int
    embeddings: dict[str, int]
    genres: list[str]
    fit_seconds: float
    seconds: float
    candidate: NotRequired[dict[str, Any]]  # the planned candidate it trained (train_candidate)


class SelectResult(TrainResult):
    candidates: list[dict[str, Any]]  # each candidate, its validation micro-AUC and seconds
    training_seconds: dict[str, Any]  # total and per candidate


class EvaluateResult(TypedDict):
    auc_micro: float
    auc_macro: float | None
    test_rows: int
    baselines_auc_micro: dict[str, float]
    path: str  # metrics.json


class GateDecision(TypedDict):
    metric: str
    challenger: float | None
    threshold: float
    max_auc_drop: float
    champion: dict[str, Any] | None  # version and value (or note), None when nothing is served
    passed: bool
    reason: str


class ServingCheckResult(TypedDict):
    model_dir: str
    passed: bool
    shapes: dict[str, list[int]]


class PromoteResult(TypedDict):
    version: int
    path: str
    retired: list[int]


class ReportResult(TypedDict):
    path: str | None  # None: the run stopped before the data gate
    title: NotRequired[str]
    note: NotRequired[str]


class RollbackResult(TypedDict):
    version: int
    rollback_of: int
    previously_served: int | None
    retired: list[int]
