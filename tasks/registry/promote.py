"""Stage: publish the checked model as the next version for TensorFlow Serving.

The model is copied into a hidden staging folder beside the versions (same filesystem), flushed, then
renamed to the next integer, under the registry's lock; the history records it and retention retires
old versions. A failure at any point leaves the served versions and the history as they were.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tasks.config import PROJECT_ROOT
from tasks.registry.fingerprint import MANIFEST_KEY
from tasks.registry.versions import ModelRegistry
from tasks.results import PromoteResult

log = logging.getLogger(__name__)

RECORDED_PACKAGES = (
    "tensorflow",
    "tf-keras",
    "tensorflow-hub",
    "tensorflow-text",
    "apache-airflow",
    "great-expectations",
    "scikit-learn",
    "pandas",
    "numpy",
)


def promote_model(
    model_dir: Path,
    served_dir: Path,
    manifest: Mapping[str, Any],
    *,
    actor: str,
    reason: str,
    keep_versions: int,
    extras: Mapping[str, Path] = {},
    once_per_actor: bool = False,
) -> PromoteResult:
    """Publish `model_dir` as the next version under `served_dir`; `manifest` and `extras` ({name: file},
    such as the training data's profile) are written beside it. With `once_per_actor` (a DAG run's
    promote), a version the actor published already is returned and nothing is published again: a try
    whose worker died after publishing, before Airflow heard of its success, is retried."""
    registry = ModelRegistry(served_dir)
    with registry.locked():
        published = _published_by(registry, actor) if once_per_actor else None
        if published is not None:
            log.warning("%s already published version %d (an earlier try was lost): not again", actor, published)
            return {"version": published, "path": str(registry.version_dir(published)), "retired": []}
        event = {"event": "promote", "by": actor, "reason": reason}
        number = registry.publish(model_dir, manifest, event, extras)
        retired = registry.retire_old_versions(keep_versions, actor)
    log.info("promoted %s as version %d; retired %s", model_dir, number, retired or "none")
    return {"version": number, "path": str(registry.version_dir(number)), "retired": retired}


def _published_by(registry: ModelRegistry, actor: str) -> int | None:
    """The version `actor` promoted, if any (even if retired since: the promotion happened)."""
    for event in reversed(registry.history()):
        if event.get("event") == "promote" and event.get("by") == actor:
            return int(event["version"])
    return None


def build_manifest(run_id: str, params: Mapping[str, Any], stages: Mapping[str, Any]) -> dict[str, Any]:
    """What a version records of its origin: the run, its params, each stage's summary and timing (None
    for a stage that did not run), the code's commit and the package versions."""
    return {
        "dag_run_id": run_id,
        "params": dict(params),
        "dataset": stages["download"],
        "data": stages["prepare"],
        "metrics": stages["evaluate"],
        "champion_comparison": stages["gate"],
        "embedding_module": stages["embedding_module"],
        MANIFEST_KEY: {key: stages["fingerprint"][key] for key in ("fingerprint", "components")},
        "stages": dict(stages),
        "timings": _timings(stages),
        "git_commit": _git_commit(),
        "packages": {name: _package_version(name) for name in RECORDED_PACKAGES},
    }


def _timings(stages: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each stage's seconds. The "train" summary is select_model's, which takes milliseconds: its
    `training_seconds` (every candidate's training, summed, and each one's) is what training cost."""
    timings = {name: summary.get("seconds") for name, summary in stages.items()}
    training = (stages.get("train") or {}).get("training_seconds")
    if training:
        timings["train"] = training["total"]
        timings["train_per_candidate"] = training["per_candidate"]
    return timings


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
