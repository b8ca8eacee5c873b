"""Stage, the model gate: the challenger goes on to promotion only if it is good enough.

Two tests, both on the gate metric over this run's test split:
- threshold: the challenger's value is at least `auc_threshold`;
- champion: the challenger is not worse than the served model (scored now, on the same split, through
  its own serving signature) by more than `max_auc_drop`. With no served model, or one that predicts
  other genres, the threshold alone decides, and the decision says so.

The decision, with both scores, is added to `metrics.json`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.artifacts import read_json, write_json
from tasks.data.prepare import read_split
from tasks.errors import ChampionError, ModelGateError
from tasks.model.bundle import read_labels, serving_probabilities
from tasks.registry.versions import ModelRegistry

log = logging.getLogger(__name__)


def check_model_gate(
    metrics_path: Path, prepared_dir: Path, served_dir: Path, *, metric: str, threshold: float, max_drop: float
) -> dict[str, Any]:
    """Decide on the challenger whose metrics are in `metrics_path`; raise `ModelGateError` if it fails."""
    metrics = read_json(metrics_path)
    champion = score_champion(ModelRegistry(served_dir), prepared_dir, metric)
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


def score_champion(registry: ModelRegistry, prepared_dir: Path, metric: str) -> dict[str, Any] | None:
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
        probabilities = serving_probabilities(tf.saved_model.load(str(folder)), texts)
    except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
        raise ChampionError(
            f"the served model, version {version} in {folder}, cannot be loaded or called ({err}); "
            "promotion is blocked until it is repaired or rolled back"
        ) from err
    return {"version": version, "value": compute_metrics(labels, probabilities, genres)[metric]}
