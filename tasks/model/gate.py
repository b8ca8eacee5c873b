"""Stage, the model gate: the challenger goes on to promotion only if it is good enough.

Two tests, both on the gate metric over this run's test split:
- threshold: the challenger's value is at least `auc_threshold`;
- champion: the challenger is not worse than the served model by more than `max_auc_drop`. With no
  served model, or one that predicts other genres, the threshold alone decides, and the decision says so.

Evaluate scored the champion on the same test chunks (`champion.ChampionScorer`, `metrics.json`
`champion`), so the gate reads numbers and imports no TensorFlow. It fails when the version evaluate
compared with is no longer the one served, and blocks promotion (`ChampionError`) when evaluate could
not load or call it; either way, clearing evaluate scores the served version again.

The decision, with both scores, is the gate's own file (`gate.json` in the run folder); evaluate's
`metrics.json` stays as evaluate wrote it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.artifacts import read_json, write_json
from tasks.errors import ChampionError, ModelGateError
from tasks.registry.versions import ModelRegistry
from tasks.results import GateDecision

log = logging.getLogger(__name__)


def check_model_gate(
    metrics_path: Path, decision_path: Path, served_dir: Path, *, metric: str, threshold: float, max_drop: float
) -> GateDecision:
    """Decide on the challenger whose metrics (and its champion's) are in `metrics_path`, and write the
    decision to `decision_path`; raise `ModelGateError` if it fails."""
    metrics = read_json(metrics_path)
    scored, value = metrics.get("champion"), metrics.get(metric)
    stale = stale_champion(scored, ModelRegistry(served_dir).serving_version())
    if stale is None:
        decision = decide(metric, value, threshold, champion_to_beat(scored, metric), max_drop)
    else:  # the same record as any decision, failed for that reason alone
        decision = decide(metric, value, threshold, None, max_drop)
        decision["passed"], decision["reason"] = False, stale
    write_json(decision_path, decision)
    log.info("model gate: %s", decision["reason"])
    if not decision["passed"]:
        raise ModelGateError(f"model gate failed: {decision['reason']}")
    return decision


def stale_champion(scored: dict[str, Any] | None, served_version: int | None) -> str | None:
    """Why evaluate's champion entry `scored` is not the served version's, or None if it is."""
    scored_version = scored["version"] if scored else None
    if scored_version == served_version:
        return None
    return (
        f"evaluate compared the challenger with served version {scored_version}, but version {served_version} "
        "is served now (published or rolled back since): clear evaluate to compare with it"
    )


def champion_to_beat(scored: dict[str, Any] | None, metric: str) -> dict[str, Any] | None:
    """The champion as the decision names it ({version, value, scoring} or {version, value: None, note}),
    from evaluate's entry `scored`; None if nothing is served. `ChampionError` if evaluate could not load
    or call it."""
    if scored is None:
        return None
    if "error" in scored:
        raise ChampionError(scored["error"])
    if "note" in scored:
        return {"version": scored["version"], "value": None, "note": scored["note"]}
    return {"version": scored["version"], "value": scored[metric], "scoring": scored["scoring"]}


def decide(
    metric: str, value: float | None, threshold: float, champion: dict[str, Any] | None, max_drop: float
) -> GateDecision:
    """The gate's verdict and its reason, in words a person acts on."""
    passed, reason = _verdict(metric, value, threshold, champion, max_drop)
    return {
        "metric": metric,
        "challenger": value,
        "threshold": threshold,
        "max_auc_drop": max_drop,
        "champion": champion,
        "passed": passed,
        "reason": reason,
    }


def _verdict(
    metric: str, value: float | None, threshold: float, champion: dict[str, Any] | None, max_drop: float
) -> tuple[bool, str]:
    if value is None:
        return False, f"{metric} could not be computed on the test split"
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
        return False, "; ".join(failures) + f" ({comparison})"
    return True, f"{metric} {value:.4f} >= {threshold:.4f}; {comparison}"
