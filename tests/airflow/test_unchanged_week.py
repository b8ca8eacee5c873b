"""A weekly retrain that knows what changed, through real Airflow (`dag.test()`): the same file twice is
skipped (nothing promoted, no alert, the registry byte-identical), and under a stricter gate says how to
be gated again; one changed row retrains and promotes; `force` retrains the same file."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from tasks.pipeline import STEPS
from tests.airflow.dag_runs import run_dag
from tests.sample_data import quick_conf, snapshot, write_rows

pytestmark = pytest.mark.slow

# Every step after the fingerprint but the report, a teardown that runs whatever happened.
SKIPPED_BELOW_THE_SHORT_CIRCUIT = tuple(step for step in STEPS[STEPS.index("fingerprint") + 1 :] if step != "report")


def with_one_overview_changed(source: Path, target: Path) -> Path:
    with source.open(encoding="utf-8", newline="") as handle:
        header, *records = list(csv.reader(handle))
    column = header.index("overview")
    first = next(record for record in records if len(record) == len(header) and record[column].strip())
    first[column] += " Restored in 4K for its anniversary."
    return write_rows(target, header, records)


def test_unchanged_data_is_skipped_a_changed_row_retrains_and_force_retrains(
    dag, dirs, inbox, sample_csv: Path, glove_module: str, caplog: pytest.LogCaptureFixture
) -> None:
    served = dirs["models"] / "movie_genre"
    conf = quick_conf(sample_csv, embedding_module=glove_module)
    assert run_dag(dag, conf)["run"] == "success"
    manifest = json.loads((served / "1" / "manifest.json").read_text())
    assert set(manifest["training_fingerprint"]["components"]) == {"data", "embedding_module", "params", "code"}
    before = snapshot(served)

    # A stricter gate is no reason to retrain (the fingerprint leaves gates out), but the skip says so.
    with caplog.at_level(logging.INFO, logger="orchestration.wiring"):
        states = run_dag(dag, {**conf, "auc_threshold": 0.99})
    assert states["run"] == "success", states
    assert states["fingerprint"] == states["retrain_needed"] == "success"
    assert {task: states[task] for task in SKIPPED_BELOW_THE_SHORT_CIRCUIT} == dict.fromkeys(
        SKIPPED_BELOW_THE_SHORT_CIRCUIT, "skipped"
    )
    assert snapshot(served) == before, "the served versions and history.jsonl are byte-identical"
    assert (
        "unchanged since version 1: nothing to retrain; this run's model gate (auc_threshold 0.99) differs from "
        'the one version 1 passed (auc_threshold 0.5): trigger with {"force": true} to retrain and gate again'
    ) in caplog.text
    assert inbox.messages == [], "a skipped week alerts nobody"

    changed = with_one_overview_changed(sample_csv, sample_csv.parent / "movies_one_row_changed.csv")
    states = run_dag(dag, {**conf, "dataset_url": str(changed)})
    assert states["run"] == "success" and states["promote"] == "success", states
    assert sorted(int(p.name) for p in served.iterdir() if p.name.isdigit()) == [1, 2]

    states = run_dag(dag, {**conf, "dataset_url": str(changed), "force": True})
    assert states["run"] == "success" and states["promote"] == "success", "forced: the same file retrains"
    history = [json.loads(line) for line in (served / "history.jsonl").read_text().splitlines()]
    assert [(e["event"], e["version"]) for e in history] == [("promote", 1), ("promote", 2), ("promote", 3)]
    assert inbox.messages == []
