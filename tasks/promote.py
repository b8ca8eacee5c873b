"""Stage 7: publish the exported SavedModel as the next version for TensorFlow Serving.

Layout: `<model_dir>/movie_genre/<N>/` with N the next integer (TensorFlow Serving serves the highest).
The model is copied to a hidden staging folder on the same filesystem, then renamed into place, so a
reader (or TensorFlow Serving's poller) never sees a partial version. A file lock makes promotions
take turns; staging leftovers of a crashed promotion are removed by the next one.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from tasks.artifacts import write_json

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
LOCK_FILE = ".promote.lock"
MANIFEST_FILE = "manifest.json"


def promote_model(model_dir: Path, served_dir: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Copy `model_dir` to the next version under `served_dir`; `manifest` is written beside it."""
    served_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(served_dir / LOCK_FILE)):
        _remove_staging_leftovers(served_dir)
        version = (max(versions(served_dir), default=0)) + 1
        staging = served_dir / f"{STAGING_PREFIX}{version}"
        try:
            shutil.copytree(model_dir, staging)
            write_json(staging / MANIFEST_FILE, {**manifest, "version": version})
            os.rename(staging, served_dir / str(version))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    path = served_dir / str(version)
    log.info("promoted %s as version %d: %s", model_dir, version, path)
    return {"version": version, "path": str(path)}


def versions(served_dir: Path) -> list[int]:
    """Version numbers present under `served_dir`, ascending."""
    if not served_dir.is_dir():
        return []
    return sorted(int(p.name) for p in served_dir.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version_dir(served_dir: Path) -> Path | None:
    found = versions(served_dir)
    return served_dir / str(found[-1]) if found else None


def _remove_staging_leftovers(served_dir: Path) -> None:
    for leftover in served_dir.glob(f"{STAGING_PREFIX}*"):
        log.warning("removing leftover of an interrupted promotion: %s", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
