"""Which models a run trains (every candidate configuration from scratch, or the served model
fine-tuned), and which one goes on. Light on purpose: the tasks that call it import no TensorFlow.

A weekly retrain mostly sees last week's movies plus a few new ones. Fine-tuning the served model's head
for a few epochs costs a fraction of a full candidate search and ends at the same quality, so a run
warm-starts when the served model allows it:
- it was exported with its head and training record (`assets.extra/`);
- it predicts the same genres, in the same order, from the same embedding module;
- fewer than `max_warm_starts` warm starts in a row led to it. The run after that trains every candidate
  from scratch, with a TF-IDF vocabulary fitted anew, so new words and better configurations get in.

The warm-started model goes through the same gates as any other: the champion gate compares it with the
model it started from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.config import RunConfig
from tasks.model.bundle import read_training_record
from tasks.registry.versions import ModelRegistry
from tasks.results import SelectResult, TrainResult

log = logging.getLogger(__name__)


def plan_candidates(config: RunConfig, served_dir: Path, embedding_fingerprint: str) -> list[dict[str, Any]]:
    """The candidates to train: the served model's own configuration to fine-tune, or all of the run's."""
    source = warm_start_source(config, served_dir, embedding_fingerprint)
    if source is not None:
        log.info("fine-tuning served version %d (warm start %d in a row)", source["version"], source["warm_starts"] + 1)
        # The record's count travels with the candidate: training does not read the record again.
        warm = {"warm_start_from": source["path"], "warm_starts_before": source["warm_starts"]}
        return [{"index": 0, **source["architecture"], **warm}]
    return [{"index": index, **overrides} for index, overrides in enumerate(config.candidates)]


def warm_start_source(config: RunConfig, served_dir: Path, embedding_fingerprint: str) -> dict[str, Any] | None:
    """The served model's training record (with its version and path) if this run may fine-tune it."""
    if config.max_warm_starts == 0:
        return None
    registry = ModelRegistry(served_dir)
    version = registry.serving_version()
    if version is None:
        log.info("training from scratch: no model is served yet")
        return None
    path = registry.version_dir(version)
    try:
        record = read_training_record(path)
    except (OSError, ValueError) as err:
        log.info("training from scratch: served version %d has no readable training record (%s)", version, err)
        return None
    reasons = []
    if record.get("genres") != list(config.genres):
        reasons.append("it predicts other genres")
    if record.get("embedding_fingerprint") != embedding_fingerprint:
        reasons.append("it was trained on another embedding module")
    if record.get("warm_starts", config.max_warm_starts) >= config.max_warm_starts:
        reasons.append(f"{record.get('warm_starts')} warm starts in a row led to it (max_warm_starts)")
    if not isinstance(record.get("architecture"), dict):
        reasons.append("its record names no architecture")
    if reasons:
        log.info("training from scratch, not from served version %d: %s", version, "; ".join(reasons))
        return None
    return {**record, "version": version, "path": str(path)}


def best_candidate(summaries: Sequence[TrainResult]) -> SelectResult:
    """The candidate with the best validation micro-AUC (the test split stays unseen until evaluation),
    with every candidate's ranking and training time: selecting takes milliseconds, so this summary
    carries what training cost (`training_seconds`: each train step's own `seconds`, and their sum, the
    machine time spent even when the candidates ran side by side)."""
    best = max(summaries, key=lambda summary: summary["validation_auc_micro"])
    ranking = [
        {"candidate": s["candidate"], "validation_auc_micro": s["validation_auc_micro"], "seconds": s.get("seconds")}
        for s in summaries
    ]
    log.info("selected candidate %s of %s", best["candidate"], ranking)
    seconds = [s.get("seconds") or 0.0 for s in summaries]
    return {
        **best,
        "candidates": ranking,
        "training_seconds": {"total": round(sum(seconds), 2), "per_candidate": seconds},
    }
