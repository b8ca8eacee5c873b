"""The training fingerprint: what a model learned from, as one hash, so a run can tell it has nothing new.

It covers everything that shapes the trained model:
- the prepared data's content: id, overview, split and labels of every movie, in id order (so a file
  whose rows only moved gives the same fingerprint);
- the embedding module's fingerprint;
- the params that shape the model (`MODEL_PARAMS`: genres, candidates, training params, splits);
- the code that prepares and trains (`TRAINING_CODE`: a hash of those source files, which also holds
  in a Docker image without git).

Every promoted version records its fingerprint in its manifest. A run whose fingerprint equals the
served version's has nothing to learn and ends early (unless forced). The model gate's params are not
part of it, so such a run also says how to be gated again, and whether its gate differs from the one
the served version passed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.config import PROJECT_ROOT, RunConfig
from tasks.data.prepare import MOVIES_FILE
from tasks.registry.versions import ModelRegistry

MANIFEST_KEY = "training_fingerprint"
MODEL_PARAMS = (
    "genres",
    "candidates",
    "epochs",
    "batch_size",
    "hidden_units",
    "learning_rate",
    "seed",
    "max_warm_starts",
    "test_fraction",
    "validation_fraction",
)
TRAINING_CODE = (
    "tasks/data/prepare.py",
    "tasks/data/genres.py",
    "tasks/model/candidates.py",
    "tasks/model/train.py",
    "tasks/model/bundle.py",
    "tasks/tensorflow_runtime.py",
)
HASH_BATCH_ROWS = 20_000
# The run params of the model gate, by the key its decision records them under (`tasks.model.gate.decide`),
# which a version's manifest keeps as `champion_comparison`.
GATE_PARAMS = {"gate_metric": "metric", "auc_threshold": "threshold", "max_auc_drop": "max_auc_drop"}
GATE_DECISION_KEY = "champion_comparison"


def training_fingerprint(prepared_dir: Path, module_fingerprint: str, config: RunConfig) -> dict[str, Any]:
    """{"fingerprint": the hash of the components, "components": each component's own hash}."""
    components = {
        "data": data_fingerprint(prepared_dir / MOVIES_FILE, config.genres),
        "embedding_module": module_fingerprint,
        "params": _sha256(json.dumps(model_params(config), sort_keys=True).encode()),
        "code": code_fingerprint(PROJECT_ROOT, TRAINING_CODE),
    }
    return {"fingerprint": _sha256(json.dumps(components, sort_keys=True).encode()), "components": components}


def model_params(config: RunConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in MODEL_PARAMS}


def data_fingerprint(movies_file: Path, genres: Sequence[str]) -> str:
    """A hash of every movie's id, overview, split and labels, in id order. Each batch of each column is
    hashed as JSON, which is unambiguous whatever the texts hold."""
    columns = ["id", "overview", "split", *genres]
    table = pq.read_table(movies_file, columns=columns)
    table = table.take(pc.sort_indices(table, sort_keys=[("id", "ascending")])).combine_chunks()
    digest = hashlib.sha256(json.dumps(columns).encode())
    for batch in table.to_batches(max_chunksize=HASH_BATCH_ROWS):
        for name in columns:
            digest.update(json.dumps(batch.column(name).to_pylist()).encode())
    return digest.hexdigest()


def code_fingerprint(root: Path, files: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in files:
        source = (root / name).read_bytes()
        digest.update(name.encode() + b"\0" + len(source).to_bytes(8, "big") + source)
    return digest.hexdigest()


def unchanged_since(served_dir: Path, fingerprint: str) -> int | None:
    """The served version if it was trained on exactly this (same fingerprint), else None."""
    registry = ModelRegistry(served_dir)
    served = registry.serving_version()
    if served is None:
        return None
    recorded = registry.manifest(served).get(MANIFEST_KEY)
    return served if isinstance(recorded, Mapping) and recorded.get("fingerprint") == fingerprint else None


def gate_changes(served_dir: Path, version: int, config: RunConfig) -> dict[str, tuple[Any, Any]]:
    """The model gate params this run sets otherwise than the gate `version` passed: {param: (this run's,
    that gate's)}. Empty for a version whose manifest records no gate decision."""
    passed = ModelRegistry(served_dir).manifest(version).get(GATE_DECISION_KEY) or {}
    changes = {}
    for param, key in GATE_PARAMS.items():
        ours = getattr(config, param)
        if key in passed and passed[key] != ours:
            changes[param] = (ours, passed[key])
    return changes


def gate_again_words(version: int, changes: Mapping[str, tuple[Any, Any]]) -> str:
    """How an unchanged run gets its model gated again; first, when they differ, how its gate params
    differ from those `version` passed (a skipped run never applies them)."""
    force = 'trigger with {"force": true} to retrain and gate again'
    if not changes:
        return force
    ours = ", ".join(f"{param} {this}" for param, (this, _) in changes.items())
    theirs = ", ".join(f"{param} {passed}" for param, (_, passed) in changes.items())
    return f"this run's model gate ({ours}) differs from the one version {version} passed ({theirs}): {force}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
