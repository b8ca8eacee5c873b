"""The served model as an Airflow asset: what a version change announces, and what the batch predict DAG
is scheduled on.

`SERVED_MODEL` is the served model folder (`Settings.served_model_dir`, TensorFlow Serving's base path)
as `Asset("movie_genre_served_model")`. The retrain's `promote` and the rollback's `rollback` declare it
as an outlet, so Airflow records an asset event each time one of them succeeds, and only then: a failed
gate, a refused rollback or a skipped run (nothing new to train on) publishes no version and emits no
event. `announce_served_version` fills that event's `extra` with the version now served, its test
metrics and its folder; `announced_version` reads it back in the run it triggered.

The asset's identity is a constant name (its URI is the name), not the folder's `file://` URI: Airflow
keeps one active asset per name, and refuses to run a task whose outlet is not the active one. With the
folder in the URI, pointing GENRE_MODEL_DIR elsewhere would make every `promote` fail ("inactive assets
in its inlets or outlets") until a scheduler's orphan clean-up ran, which `airflow dags test` (`make
run`) never runs, and so would every test that gives a run a model folder of its own. The folder is in
each event's extra (`path`) instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset

from tasks.config import Settings

log = logging.getLogger(__name__)

SERVED_MODEL_ASSET = "movie_genre_served_model"
# The manifest's metrics (the evaluate summary) minus what is not a metric.
NOT_METRICS = ("path", "seconds")

SERVED_MODEL = Asset(name=SERVED_MODEL_ASSET)


def served_version_extra(published: Mapping[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """The asset event's extra for the version `published` (a promote or rollback summary): the version,
    what it is a rollback of (None for a promotion), its test metrics from its manifest, and its folder."""
    from tasks.registry.versions import ModelRegistry

    registry = ModelRegistry((settings or Settings.from_env()).served_model_dir)
    version = int(published["version"])
    manifest = registry.manifest(version)
    metrics = manifest.get("metrics") or {}
    return {
        "version": version,
        "rollback_of": manifest.get("rollback_of"),
        "metrics": {key: value for key, value in metrics.items() if key not in NOT_METRICS},
        "dag_run_id": manifest.get("dag_run_id"),
        "path": str(registry.version_dir(version)),
    }


def announce_served_version(context: Mapping[str, Any], published: Mapping[str, Any]) -> dict[str, Any]:
    """Put the published version and its metrics in the extra of the asset event this task emits when
    it succeeds; the extra. Call it after the version is published: it never raises, since failing now
    would retry a promotion that already happened (a manifest it cannot read gives an extra without
    metrics, and a warning)."""
    try:
        extra = served_version_extra(published)
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("version %s: its manifest is unreadable (%s); announced without metrics", published, err)
        extra = {"version": published.get("version"), "rollback_of": published.get("rollback_of"), "metrics": {}}
    outlet = _outlet(context)
    if outlet is None:
        log.error(
            "task %s has no %s outlet: no asset event announces version %s",
            context["task"].task_id,
            SERVED_MODEL_ASSET,
            extra["version"],
        )
        return extra
    context["outlet_events"][outlet].extra.update(extra)
    log.info("announcing served version %s on asset %s: %s", extra["version"], SERVED_MODEL_ASSET, extra)
    return extra


def announced_version(context: Mapping[str, Any]) -> int | None:
    """The version the newest triggering event of the served-model asset named; None for a run that no
    event triggered (a manual one)."""
    events = [
        event
        for asset_events in (context.get("triggering_asset_events") or {}).values()
        for event in asset_events
        if event.asset.name == SERVED_MODEL_ASSET
    ]
    if not events:
        return None
    version = max(events, key=lambda event: event.timestamp).extra.get("version")
    return version if isinstance(version, int) else None


def _outlet(context: Mapping[str, Any]) -> Asset | None:
    """The task's own served-model outlet: the asset as this task declared it, so the extra goes with
    the event Airflow records for it."""
    for outlet in context["task"].outlets:
        if isinstance(outlet, Asset) and outlet.name == SERVED_MODEL_ASSET:
            return outlet
    return None
