"""The training fingerprint: what changes it, what does not, and how a run compares it with the served version."""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import pytest

from tasks.config import DEFAULT_GENRES, RunConfig, Settings
from tasks.data.prepare import prepare_dataset
from tasks.model.gate import decide
from tasks.registry.fingerprint import (
    MANIFEST_KEY,
    gate_again_words,
    gate_changes,
    training_fingerprint,
    unchanged_since,
)
from tasks.registry.versions import ModelRegistry
from tests.sample_data import write_head, write_rows

HEADER = ["genres", "id", "overview"]
ROWS = [
    ["[{'id': 35, 'name': 'Comedy'}]", "1", "A funny film."],
    ["[{'id': 27, 'name': 'Horror'}]", "2", "A scary film."],
    ["[{'id': 28, 'name': 'Action'}, {'id': 35, 'name': 'Comedy'}]", "3", "An action comedy."],
]


def _config(**params: object) -> RunConfig:
    return RunConfig.from_params({"dataset_url": "/data/movies.csv", **params}, Settings.from_env())


def _fingerprint(tmp_path: Path, rows: list[list[str]], module: str = "use-m3", **params: object) -> dict:
    folder = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    raw = write_rows(folder / "raw.csv", HEADER, rows)
    prepare_dataset(raw, folder / "prepared", DEFAULT_GENRES, 0.2, 0.1)
    return training_fingerprint(folder / "prepared", module, _config(**params))


def test_the_same_movies_in_another_order_give_the_same_fingerprint(tmp_path: Path) -> None:
    first = _fingerprint(tmp_path, ROWS)
    assert first == _fingerprint(tmp_path, list(reversed(ROWS)))
    assert len(first["fingerprint"]) == 64


@pytest.mark.parametrize(
    "change, component",
    [
        ({"rows": [*ROWS[:2], [ROWS[2][0], "3", "An action comedy!"]]}, "data"),  # one overview
        ({"rows": [*ROWS[:2], ["[{'id': 28, 'name': 'Action'}]", "3", "An action comedy."]]}, "data"),  # labels
        ({"rows": ROWS[:2]}, "data"),  # a movie gone
        ({"module": "glove-6b"}, "embedding_module"),
        ({"epochs": 7}, "params"),
        ({"genres": ["Comedy", "Horror"]}, "params"),
        ({"validation_fraction": 0.2}, "params"),
    ],
)
def test_what_shapes_the_model_changes_the_fingerprint(tmp_path: Path, change: dict, component: str) -> None:
    before = _fingerprint(tmp_path, ROWS)
    after = _fingerprint(tmp_path, change.pop("rows", ROWS), change.pop("module", "use-m3"), **change)
    assert after["fingerprint"] != before["fingerprint"]
    changed = {name for name, value in after["components"].items() if before["components"][name] != value}
    assert component in changed


def test_gates_retention_and_force_do_not_change_it(tmp_path: Path) -> None:
    before = _fingerprint(tmp_path, ROWS)
    after = _fingerprint(tmp_path, ROWS, auc_threshold=0.95, keep_versions=2, min_rows=1, force=True)
    assert after == before


def test_a_real_file_reordered_keeps_its_fingerprint(shared_csv: Path, tmp_path: Path) -> None:
    head = write_head(shared_csv, tmp_path / "head.csv", 300)
    with head.open(encoding="utf-8", newline="") as handle:
        header, *records = list(csv.reader(handle))
    random.Random(1).shuffle(records)
    shuffled = write_rows(tmp_path / "shuffled.csv", header, records)
    prints = []
    for name, raw in (("head", head), ("shuffled", shuffled)):
        prepare_dataset(raw, tmp_path / name, DEFAULT_GENRES, 0.2, 0.1)
        prints.append(training_fingerprint(tmp_path / name, "use-m3", _config()))
    assert prints[0] == prints[1]


def test_unchanged_since_names_the_served_version_trained_on_the_same(tmp_path: Path, glove_export: Path) -> None:
    served = tmp_path / "models"
    registry = ModelRegistry(served)
    assert unchanged_since(served, "abc") is None  # nothing served
    with registry.locked():
        registry.publish(glove_export, {MANIFEST_KEY: {"fingerprint": "abc"}}, {"event": "promote"})
        registry.publish(glove_export, {}, {"event": "promote"})  # an old version without a fingerprint
    assert unchanged_since(served, "abc") is None  # version 2 is served, and records none
    with registry.locked():
        registry.publish(glove_export, {MANIFEST_KEY: {"fingerprint": "abc"}}, {"event": "promote"})
    assert unchanged_since(served, "abc") == 3
    assert unchanged_since(served, "def") is None
    shutil.rmtree(served)


def test_a_skipped_run_names_the_gate_params_it_sets_otherwise_than_the_served_version_passed(
    tmp_path: Path, glove_export: Path
) -> None:
    served = tmp_path / "models"
    registry = ModelRegistry(served)
    passed = decide("auc_micro", 0.84, 0.8, None, 0.005)  # the decision the gate records, defaults' values
    with registry.locked():
        registry.publish(glove_export, {"champion_comparison": passed}, {"event": "promote"})
        registry.publish(glove_export, {}, {"event": "promote"})  # an old version without a gate decision
    assert gate_changes(served, 1, _config()) == {}
    changes = gate_changes(served, 1, _config(auc_threshold=0.99, gate_metric="auc_macro"))
    assert changes == {"gate_metric": ("auc_macro", "auc_micro"), "auc_threshold": (0.99, 0.8)}
    assert gate_changes(served, 2, _config(auc_threshold=0.99)) == {}, "nothing recorded, nothing to compare"

    force = 'trigger with {"force": true} to retrain and gate again'
    assert gate_again_words(1, {}) == force
    assert gate_again_words(1, changes) == (
        "this run's model gate (gate_metric auc_macro, auc_threshold 0.99) differs from the one version 1 passed "
        f"(gate_metric auc_micro, auc_threshold 0.8): {force}"
    )
    shutil.rmtree(served)
