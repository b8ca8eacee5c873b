"""Roll back: re-publish an earlier version as the new highest one, so TensorFlow Serving switches to it.

The old folder is copied, not renamed: versions only increase, and the history stays a true record.

Contract of `rollback_model`:
- `to_version=None` means the previous version: the highest present version below the served one.
- Refused with `ConfigError`, with nothing published and the history untouched, when there is nothing
  to roll back to (no version, or only one), when the version is not present, or when it is already
  served: it is the served version, or the served version is a rollback copy of it (directly or through
  other rollbacks), or both are copies of the same version.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError
from tasks.registry.versions import ModelRegistry
from tasks.results import RollbackResult

log = logging.getLogger(__name__)


def rollback_model(
    served_dir: Path, to_version: int | None, *, actor: str, reason: str, keep_versions: int
) -> RollbackResult:
    """Serve `to_version` (None: the previous version) again as the newest version."""
    registry = ModelRegistry(served_dir)
    if not registry.versions():  # before locking, which would create the folder and its lock file
        raise ConfigError(f"nothing to roll back to: {empty_registry_message(served_dir)}")
    with registry.locked():
        present = registry.versions()
        served = present[-1] if present else None
        target = previous_version(served_dir, present) if to_version is None else to_version
        if target not in present:
            raise ConfigError(f"cannot roll back to version {target}: present versions are {present or 'none'}")
        refused = already_served(registry, target, served)
        if refused is not None:
            raise ConfigError(refused)
        manifest = {**registry.manifest(target), "rollback_of": target}
        event = {"event": "rollback", "from_version": target, "by": actor, "reason": reason}
        number = registry.publish(registry.version_dir(target), manifest, event)
        retired = registry.retire_old_versions(keep_versions, actor)
    log.info("rolled back from version %s to version %d, now served as version %d", served, target, number)
    return {"version": number, "rollback_of": target, "previously_served": served, "retired": retired}


def previous_version(served_dir: Path, present: list[int]) -> int:
    """The version served before the current one: the highest present below the served (highest)."""
    if not present:
        raise ConfigError(f"nothing to roll back to: {empty_registry_message(served_dir)}")
    if len(present) == 1:
        raise ConfigError(f"nothing to roll back to: version {present[0]} is the only promoted version")
    return present[-2]


def lineage(registry: ModelRegistry, version: int) -> list[int]:
    """`version`, then the version it is a rollback copy of, and so on back to the original."""
    chain = [version]
    while True:
        source = registry.manifest(chain[-1]).get("rollback_of")
        # A source is always an older number; anything else is a hand-edited manifest: stop there.
        if not isinstance(source, int) or source >= chain[-1]:
            return chain
        chain.append(source)


def run_actor(run_id: str, user: str | None) -> str:
    """Who a DAG run's rollback is recorded as: the run, and the person who triggered it when Airflow knows
    one (a REST API or UI trigger; `dag.test()` says "dag_test"). The run id comes first, so the history
    still names the run the way promotions do (`dag_run:<run id>`)."""
    actor = f"dag_run:{run_id}"
    return f"{actor} (triggered by {user})" if user else actor


def already_served(registry: ModelRegistry, target: int, served: int | None) -> str | None:
    """Why serving `target` again would change nothing but the numbers, or None when it would not: it is
    the served version, the served version is a rollback copy of it (through any number of rollbacks),
    or both are copies of the same version. The page hides its button where this says why."""
    if served is None:
        return None
    if target == served:
        return f"version {target} is already served"
    served_chain = lineage(registry, served)
    if target in served_chain:
        links = [*(f"version {v}" for v in served_chain[1 : served_chain.index(target)]), "it"]
        return (
            f"version {target} is already served (as version {served}, a rollback of "
            + ", which is a rollback of ".join(links)
            + ")"
        )
    original = lineage(registry, target)[-1]
    if original == served_chain[-1]:
        return f"version {target} is already served (as version {served}: both are copies of version {original})"
    return None


def empty_registry_message(served_dir: Path) -> str:
    """Why `served_dir` lists no version, naming the folder (a wrong GENRE_MODEL_DIR shows at once)."""
    if not served_dir.exists():
        why = "the folder does not exist"
    elif not served_dir.is_dir():
        why = "it is not a folder"
    elif not [p for p in served_dir.iterdir() if not p.name.startswith(".")]:  # the lock file is hidden
        why = "the folder is empty"
    else:
        why = "the folder holds no numbered version folder"
    return f"no promoted versions in {served_dir} ({why})"


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
