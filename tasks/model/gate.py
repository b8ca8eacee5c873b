"""Stage, the model gate: the challenger goes on to promotion only if it is good enough.

Two tests, both on the gate metric over this run's test split:
- threshold: the challenger's value is at least `auc_threshold`;
- champion: the challenger is not worse than the served model (scored now, on the same split) by more
  than `max_auc_drop`. With no served model, or one that predicts other genres, the threshold alone
  decides, and the decision says so.

The champion is scored the cheap way when it is safe: a served model trained on this run's embedding
module (its training record's `embedding_fingerprint`) gets the test split's vectors from the run's
embedding cache (the embed stage cached every overview's) through its `head_probabilities` signature,
a chunk of the split at a time. The module is frozen, so that is what `serving_default` computes
(evaluate checked that parity when the champion was a challenger), without embedding every test
description again, which cost 15 s of a 50k-row warm run. Any other served model (no training record,
another module, exported before `head_probabilities` existed) goes through `serving_default` on the raw
descriptions, as TensorFlow Serving calls it. The champion's entry in the decision names the path taken and why.

The decision, with both scores, is added to `metrics.json`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tasks.artifacts import read_json, write_json
from tasks.data.prepare import read_split
from tasks.embedding.cache import SHARD_TEXTS, EmbeddingCache, text_key
from tasks.errors import ChampionError, ModelGateError
from tasks.model.bundle import (
    HEAD_SIGNATURE,
    head_probabilities,
    read_labels,
    read_training_record,
    serving_probabilities,
)
from tasks.registry.versions import ModelRegistry

log = logging.getLogger(__name__)

CACHED_PATH = HEAD_SIGNATURE  # cached vectors through the head
SERVING_PATH = "serving_default"  # raw descriptions through the module and the head
CHUNK_ROWS = SHARD_TEXTS  # test rows whose vectors are in memory at once: a shard's worth, as embed holds


def check_model_gate(
    metrics_path: Path,
    prepared_dir: Path,
    served_dir: Path,
    *,
    metric: str,
    threshold: float,
    max_drop: float,
    cache: EmbeddingCache | None = None,
) -> dict[str, Any]:
    """Decide on the challenger whose metrics are in `metrics_path`; raise `ModelGateError` if it fails.
    `cache`: this run's embedding cache, to score the champion on its vectors when it was trained on the
    same module."""
    metrics = read_json(metrics_path)
    champion = score_champion(ModelRegistry(served_dir), prepared_dir, metric, cache)
    decision = decide(metric, metrics.get(metric), threshold, champion, max_drop)
    write_json(metrics_path, {**metrics, "gate": decision})
    log.info("model gate: %s", decision["reason"])
    if not decision["passed"]:
        raise ModelGateError(f"model gate failed: {decision['reason']}")
    return decision


def decide(
    metric: str, value: float | None, threshold: float, champion: dict[str, Any] | None, max_drop: float
) -> dict[str, Any]:
    """The gate's verdict and its reason, in words a person acts on."""
    decision: dict[str, Any] = {
        "metric": metric,
        "challenger": value,
        "threshold": threshold,
        "max_auc_drop": max_drop,
        "champion": champion,
    }
    if value is None:
        return {**decision, "passed": False, "reason": f"{metric} could not be computed on the test split"}
    failures = []
    if value < threshold:
        failures.append(f"{metric} {value:.4f} < auc_threshold {threshold:.4f}")
    if champion is None:
        comparison = "no model in production: judged on the threshold alone"
    elif champion.get("value") is None:
        comparison = f"champion version {champion['version']} not comparable ({champion['note']}): threshold alone"
    else:
        floor = champion["value"] - max_drop
        comparison = f"champion version {champion['version']} {metric} {champion['value']:.4f}"
        if value < floor:
            failures.append(
                f"{metric} {value:.4f} is worse than the champion (version {champion['version']}: "
                f"{champion['value']:.4f}) by more than max_auc_drop {max_drop:.4f}"
            )
    if failures:
        return {**decision, "passed": False, "reason": "; ".join(failures) + f" ({comparison})"}
    return {**decision, "passed": True, "reason": f"{metric} {value:.4f} >= {threshold:.4f}; {comparison}"}


def score_champion(
    registry: ModelRegistry, prepared_dir: Path, metric: str, cache: EmbeddingCache | None = None
) -> dict[str, Any] | None:
    """The served model's gate metric on this run's test split, or None if nothing is served."""
    version = registry.serving_version()
    if version is None:
        return None
    # Only now: TensorFlow (hundreds of MB) and scikit-learn, under metrics, take seconds to import, and a
    # first run needs neither.
    from tasks.model.metrics import compute_metrics
    from tasks.tensorflow_runtime import tf

    folder = registry.version_dir(version)
    texts, labels, genres = read_split(prepared_dir, "test")
    try:
        champion_genres = read_labels(folder)
        if champion_genres != genres:
            return {"version": version, "value": None, "note": f"it predicts {champion_genres}"}
        exported = tf.saved_model.load(str(folder))
        probabilities, scoring = champion_probabilities(folder, exported, texts, cache)
    except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
        raise ChampionError(
            f"the served model, version {version} in {folder}, cannot be loaded or called ({err}); "
            "promotion is blocked until it is repaired or rolled back"
        ) from err
    log.info("champion version %s scored with %s (%s)", version, scoring["path"], scoring["why"])
    return {"version": version, "value": compute_metrics(labels, probabilities, genres)[metric], "scoring": scoring}


def champion_probabilities(
    folder: Path, exported: Any, texts: list[str], cache: EmbeddingCache | None
) -> tuple[np.ndarray, dict[str, str]]:
    """The loaded champion's probabilities for `texts`, and which path gave them and why."""
    if cache is None:
        why_not = "no embedding cache given"
    else:
        why_not = cached_path_refused(folder, exported, cache.module_fingerprint)
        if why_not is None:
            probabilities = cached_head_probabilities(exported, texts, cache)
            if probabilities is not None:
                return probabilities, {
                    "path": CACHED_PATH,
                    "why": f"trained on this run's module {cache.module_fingerprint}",
                }
            why_not = "the embedding cache lacks some test overviews"
    return serving_probabilities(exported, texts), {"path": SERVING_PATH, "why": why_not}


def cached_path_refused(folder: Path, exported: Any, module_fingerprint: str) -> str | None:
    """Why the champion cannot be scored on cached vectors of `module_fingerprint`, or None if it can."""
    try:
        fingerprint = read_training_record(folder).get("embedding_fingerprint")
    except (OSError, ValueError):
        return "no readable training record"
    if fingerprint != module_fingerprint:
        return f"trained on module {fingerprint}, this run embeds with {module_fingerprint}"
    if not hasattr(exported, HEAD_SIGNATURE):
        return f"exported without {HEAD_SIGNATURE}"
    return None


def cached_head_probabilities(exported: Any, texts: list[str], cache: EmbeddingCache) -> np.ndarray | None:
    """`exported.head_probabilities` on the cached vectors of `texts`, CHUNK_ROWS at a time (memory holds
    one chunk's vectors, not the split's); None if the cache lacks any of them."""
    chunks = []
    for start in range(0, len(texts), CHUNK_ROWS):
        chunk = texts[start : start + CHUNK_ROWS]
        keys = [text_key(text) for text in chunk]
        found = cache.lookup(keys)
        if len(found) < len(set(keys)):  # a shard set aside since embed ran: the serving path still works
            return None
        chunks.append(head_probabilities(exported, chunk, np.stack([found[key] for key in keys])))
    return np.concatenate(chunks)
