"""Stage 6, the model gate: the run goes on to promotion only if the model is good enough."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.errors import ModelGateError


def check_model_gate(metrics: Mapping[str, Any], metric: str, threshold: float) -> dict[str, Any]:
    """Pass if `metrics[metric] >= threshold`; otherwise raise `ModelGateError` giving both numbers."""
    value = metrics.get(metric)
    if value is None:
        raise ModelGateError(f"model gate failed: {metric} could not be computed on the test split")
    decision = {"metric": metric, "value": float(value), "threshold": float(threshold)}
    if value < threshold:
        raise ModelGateError(f"model gate failed: {metric} {value:.4f} < auc_threshold {threshold:.4f}")
    return {**decision, "passed": True}
