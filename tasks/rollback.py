"""Roll back: re-publish an earlier version as the new highest one, so TensorFlow Serving switches to it.

The old folder is copied, not renamed: versions only increase, and the history stays a true record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError
from tasks.registry import ModelRegistry

log = logging.getLogger(__name__)


def rollback_model(served_dir: Path, to_version: int, *, actor: str, reason: str, keep_versions: int) -> dict[str, Any]:
    registry = ModelRegistry(served_dir)
    with registry.locked():
        present = registry.versions()
        if to_version not in present:
            raise ConfigError(f"cannot roll back to version {to_version}: present versions are {present or 'none'}")
        manifest = {**registry.manifest(to_version), "rollback_of": to_version}
        event = {"event": "rollback", "from_version": to_version, "by": actor, "reason": reason}
        number = registry.publish(registry.version_dir(to_version), manifest, event)
        retired = registry.retire_old_versions(keep_versions, actor)
    log.info("rolled back to version %d, now served as version %d", to_version, number)
    return {"version": number, "rollback_of": to_version, "retired": retired}


def list_models(served_dir: Path) -> list[dict[str, Any]]:
    """Every present version with its gate metric, origin and whether it is served."""
    registry = ModelRegistry(served_dir)
    serving = registry.serving_version()
    published = {e["version"]: e for e in registry.history() if e.get("event") in ("promote", "rollback")}
    rows = []
    for number in registry.versions():
        manifest = registry.manifest(number)
        metrics = manifest.get("metrics", {})
        rows.append(
            {
                "version": number,
                "serving": number == serving,
                "auc_micro": metrics.get("auc_micro"),
                "auc_macro": metrics.get("auc_macro"),
                "rollback_of": manifest.get("rollback_of"),
                "dag_run_id": manifest.get("dag_run_id"),
                "published_at": published.get(number, {}).get("at"),
            }
        )
    return rows
