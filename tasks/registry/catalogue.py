"""What the "Genre models" page shows: every present version of the served model and the history.

A plain function over the model folder (`tasks.registry.versions`) and the run artifacts
(`Settings.run_dir`), so the page, its JSON and its tests need no Airflow. Each version says whether
TensorFlow Serving serves it, its test AUCs, the model gate's champion comparison, its data rows, the
drift summary of its validate stage (when the run measured one), when it was published, the run it
came from, whether that run's report.html and Data Docs are still in the artifacts folder, and why it
cannot be served again (`already_served`, the rollback's own refusal) or None.

`inside(root, relative)` is the one check that a path taken from a URL stays below a folder.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from tasks.config import Settings
from tasks.errors import ConfigError
from tasks.registry.rollback import already_served
from tasks.registry.versions import ModelRegistry
from tasks.run_folder import RunFolder

PUBLISHING_EVENTS = ("promote", "rollback")


def catalogue(settings: Settings) -> dict[str, Any]:
    """{"served_version", "versions" (newest first), "history" (newest first)} of the served model."""
    registry = ModelRegistry(settings.served_model_dir)
    served = registry.serving_version()
    history = registry.history()
    published = {e["version"]: e for e in history if e.get("event") in PUBLISHING_EVENTS and "version" in e}
    versions = [
        _version_row(settings, registry, number, served, published.get(number, {}))
        for number in reversed(registry.versions())
    ]
    return {"served_version": served, "versions": versions, "history": list(reversed(history))}


def _version_row(
    settings: Settings, registry: ModelRegistry, number: int, served: int | None, event: dict[str, Any]
) -> dict[str, Any]:
    manifest = registry.manifest(number)
    metrics = manifest.get("metrics") or {}
    data = manifest.get("data") or {}
    champion = manifest.get("champion_comparison") or {}
    drift = ((manifest.get("stages") or {}).get("validate") or {}).get("drift")
    run_id = manifest.get("dag_run_id")
    folder = run_folder(settings, run_id)
    return {
        "version": number,
        "served": number == served,
        "already_served": already_served(registry, number, served),
        "rollback_of": manifest.get("rollback_of"),
        "auc_micro": metrics.get("auc_micro"),
        "auc_macro": metrics.get("auc_macro"),
        "champion": {key: champion.get(key) for key in ("passed", "reason", "metric", "value") if key in champion},
        "rows": {key: data.get(key) for key in ("records", "kept", "train_rows", "validation_rows", "test_rows")},
        "drift": drift,
        "published_at": event.get("at"),
        "published_by": event.get("by"),
        "reason": event.get("reason"),
        "dag_run_id": run_id,
        "run_folder": folder.path.name if folder else None,
        "has_report": bool(folder and folder.report.is_file()),
        "has_data_docs": bool(folder and folder.validation.data_docs_index.is_file()),
    }


def run_folder(settings: Settings, run_id: Any) -> RunFolder | None:
    """The artifact folder of run `run_id` (None for a manifest without a usable run id)."""
    if not isinstance(run_id, str) or not run_id:
        return None
    try:
        return settings.run_folder(run_id)
    except ConfigError:
        return None


def inside(root: Path, relative: str) -> Path | None:
    """`root / relative` if that names an existing file below `root`, else None. Refuses absolute paths,
    `..` and `.` parts, backslashes, NUL and empty parts, and anything whose real path (after
    symbolic links) leaves `root`."""
    if not relative or "\\" in relative or "\x00" in relative or relative.startswith("/"):
        return None
    if any(part in ("", ".", "..") for part in relative.split("/")):
        return None
    parts = PurePosixPath(relative).parts
    base = root.resolve()
    candidate = (base / Path(*parts)).resolve()
    if not candidate.is_relative_to(base) or not candidate.is_file():
        return None
    return candidate
