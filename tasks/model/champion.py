"""The served model (the champion), scored by evaluate on the same test chunks as the challenger, so the
gate judges from `metrics.json` without TensorFlow (an import of seconds and hundreds of MB in a task
of its own).

The champion is scored the cheap way when it is safe: a served model trained on this run's embedding
module (its training record's `embedding_fingerprint`) gets each chunk's vectors, the ones the
challenger was scored on, through its `head_probabilities` signature. The module is frozen, so that is
what `serving_default` computes (evaluate checked that parity when the champion was a challenger),
without embedding every test description again. Any other served model (no training record, another
module, exported before `head_probabilities` existed) goes through `serving_default` on the raw
descriptions, as TensorFlow Serving calls it. The entry names the path taken and why.

A champion that cannot be loaded or called is recorded as such, and the gate blocks promotion on it
(`ChampionError`) rather than judge on the threshold alone, which would let a promotion replace a
served model nobody could compare with.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.model.bundle import (
    HEAD_SIGNATURE,
    head_probabilities,
    read_labels,
    read_training_record,
    serving_probabilities,
)
from tasks.model.metrics import compute_metrics
from tasks.registry.versions import ModelRegistry

log = logging.getLogger(__name__)

CACHED_PATH = HEAD_SIGNATURE  # cached vectors through the head
SERVING_PATH = "serving_default"  # raw descriptions through the module and the head


class ChampionScorer:
    """The served version, loaded once, scored a test chunk at a time (`add`); `entry` gives what evaluate
    records under `metrics.json` `champion` for the gate: None when nothing is served, else the version
    with its AUCs and scoring path, a `note` (it predicts other genres: not comparable) or an `error`."""

    def __init__(self, registry: ModelRegistry, genres: Sequence[str], module_fingerprint: str) -> None:
        self.version = registry.serving_version()
        self.genres = list(genres)
        self.exported: Any = None
        self.scoring: dict[str, str] = {}
        self.note: str | None = None
        self.error: str | None = None
        self.chunks: list[np.ndarray] = []
        if self.version is not None:
            self._load(registry.version_dir(self.version), module_fingerprint)

    def _load(self, folder: Path, module_fingerprint: str) -> None:
        from tasks.tensorflow_runtime import tf

        try:
            served_genres = read_labels(folder)
            if served_genres != self.genres:
                self.note = f"it predicts {served_genres}"
                return
            self.exported = tf.saved_model.load(str(folder))
        except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
            self._failed(folder, err)
            return
        why_not = cached_path_refused(folder, self.exported, module_fingerprint)
        self.scoring = (
            {"path": SERVING_PATH, "why": why_not}
            if why_not
            else {"path": CACHED_PATH, "why": f"trained on this run's module {module_fingerprint}"}
        )

    def add(self, texts: list[str], vectors: np.ndarray) -> None:
        """Score one test chunk: its descriptions and their vectors, row for row."""
        if self.exported is None:
            return
        from tasks.tensorflow_runtime import tf

        try:
            if self.scoring["path"] == CACHED_PATH:
                self.chunks.append(head_probabilities(self.exported, texts, vectors))
            else:
                self.chunks.append(serving_probabilities(self.exported, texts))
        except (TypeError, ValueError, tf.errors.OpError) as err:  # TypeError: the signature refused the inputs
            self._failed(None, err)

    def _failed(self, folder: Path | None, err: Exception) -> None:
        where = f" in {folder}" if folder else ""
        self.error = (
            f"the served model, version {self.version}{where}, cannot be loaded or called ({err}); "
            "promotion is blocked until it is repaired or rolled back, then evaluate is cleared to score it again"
        )
        self.exported, self.chunks = None, []
        log.error("%s", self.error)

    def entry(self, labels: np.ndarray) -> dict[str, Any] | None:
        """What the gate needs, given the test labels of every chunk added, in order."""
        if self.version is None:
            return None
        if self.error is not None:
            return {"version": self.version, "error": self.error}
        if self.note is not None:
            return {"version": self.version, "note": self.note}
        metrics = compute_metrics(labels, np.concatenate(self.chunks), self.genres)
        log.info("champion version %s scored with %s (%s)", self.version, self.scoring["path"], self.scoring["why"])
        aucs = {name: value for name, value in metrics.items() if name.startswith("auc_")}
        return {"version": self.version, **aucs, "scoring": self.scoring}


def cached_path_refused(folder: Path, exported: Any, module_fingerprint: str) -> str | None:
    """Why the champion cannot be scored on cached vectors of `module_fingerprint`, or None if it can."""
    try:
        fingerprint = read_training_record(folder).get("embedding_fingerprint")
    except (OSError, ValueError):
        return "no readable training record"
    if fingerprint != module_fingerprint:
        return f"trained on module {fingerprint}, this run embeds with {module_fingerprint}"
    if not hasattr(exported, HEAD_SIGNATURE):
        return f"exported without {HEAD_SIGNATURE}"
    return None
