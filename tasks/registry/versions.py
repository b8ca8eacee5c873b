"""The served model folder: TensorFlow Serving's versions, their manifests, and the history.

Layout of `<model_dir>/movie_genre/`:

    1/ 2/ 3/ …        SavedModels; TensorFlow Serving serves the highest number
    N/manifest.json   where version N came from (run, data, params, metrics, …)
    history.jsonl     append-only: every promotion, rollback and retirement
    .promote.lock     one change at a time
    .staging-*        a version being written; renamed to N when complete

Versions only increase, even after retention removed the highest ones once held: the next number is
above every version the history has seen.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from tasks.artifacts import read_json, write_json
from tasks.errors import ConfigError

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
LOCK_FILE = ".promote.lock"
MANIFEST_FILE = "manifest.json"
HISTORY_FILE = "history.jsonl"
LOCK_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class ModelRegistry:
    root: Path

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One change at a time; leftovers of a change that crashed are removed first."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / LOCK_FILE), timeout=LOCK_TIMEOUT_SECONDS):
            for leftover in self.root.glob(f"{STAGING_PREFIX}*"):
                log.warning("removing leftover of an interrupted change: %s", leftover)
                shutil.rmtree(leftover, ignore_errors=True)
            yield

    def versions(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.is_dir() and p.name.isdigit())

    def serving_version(self) -> int | None:
        """The version TensorFlow Serving serves: the highest."""
        found = self.versions()
        return found[-1] if found else None

    def version_dir(self, version: int) -> Path:
        return self.root / str(version)

    def serving_file(self, name: str) -> Path | None:
        """The file `name` published beside the serving version (`publish`'s extras), if it has one."""
        version = self.serving_version()
        path = self.version_dir(version) / name if version is not None else None
        return path if path is not None and path.is_file() else None

    def manifest(self, version: int) -> dict[str, Any]:
        path = self.version_dir(version) / MANIFEST_FILE
        return read_json(path) if path.is_file() else {}

    def history(self) -> list[dict[str, Any]]:
        path = self.root / HISTORY_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def publish(
        self, source: Path, manifest: Mapping[str, Any], event: Mapping[str, Any], extras: Mapping[str, Path] = {}
    ) -> int:
        """Copy `source` in as the next version, with `extras` ({name: file}) beside its manifest, and record
        `event`. Call while `locked()`."""
        version = max([*self.versions(), *(e.get("version", 0) for e in self.history())], default=0) + 1
        staging = self.root / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        try:
            shutil.copytree(source, staging, ignore=shutil.ignore_patterns(MANIFEST_FILE))
            write_json(staging / MANIFEST_FILE, {**manifest, "version": version})
            for name, path in extras.items():
                shutil.copyfile(path, staging / name)
            _fsync_tree(staging)
            os.rename(staging, self.version_dir(version))
            try:
                self.record({**event, "version": version})
            except BaseException:
                # No history line, no version: take it back out of view (then removed below).
                os.rename(self.version_dir(version), staging)
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return version

    def record(self, event: Mapping[str, Any]) -> None:
        """Append one event to the history, durably."""
        line = json.dumps({"at": datetime.now(UTC).isoformat(), **event}, sort_keys=True, default=str)
        data = (line + "\n").encode("utf-8")
        fd = os.open(self.root / HISTORY_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            try:
                while data:
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, end)  # never leave half a line (a full disk, say) to break every later read
                raise
        finally:
            os.close(fd)

    def retire_old_versions(self, keep: int, actor: str) -> list[int]:
        """Delete all but the newest `keep` versions, never the served one nor a rollback's source
        while the version republished from it is present. Call while `locked()`."""
        if keep < 1:
            raise ConfigError(f"keep_versions must be at least 1, not {keep}")
        present = self.versions()
        protected = set(present[-keep:])
        protected |= {
            e["from_version"] for e in self.history() if e.get("event") == "rollback" and e.get("version") in present
        }
        retired = [v for v in present if v not in protected]
        for version in retired:
            shutil.rmtree(self.version_dir(version))
            self.record({"event": "retire", "version": version, "by": actor, "reason": f"retention keeps {keep}"})
        return retired


def _fsync_tree(folder: Path) -> None:
    """Flush every file of a version to disk before it is renamed into view."""
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
