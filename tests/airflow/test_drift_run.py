"""Drift through real Airflow (`dag.test()`): a promoted version keeps the profile of its training data;
the next week's file with every overview cut to 40 characters fails the data gate, with no retry, an
alert naming the field, and the served model and history untouched; triggered again with `force`, a
person accepts the new data and it promotes."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import pytest

from tests.airflow.dag_runs import alert_texts, run_dag
from tests.sample_data import quick_conf, snapshot, write_rows

pytestmark = pytest.mark.slow


def with_overviews_cut(source: Path, target: Path, length: int) -> Path:
    with source.open(encoding="utf-8", newline="") as handle:
        header, *records = list(csv.reader(handle))
    column = header.index("overview")
    for record in records:
        if len(record) == len(header):
            record[column] = record[column][:length]
    return write_rows(target, header, records)


def test_a_truncated_export_fails_the_data_gate_by_name_until_forced(
    dag, dirs, inbox, sample_csv: Path, glove_module: str
) -> None:
    served = dirs["models"] / "movie_genre"
    conf = quick_conf(sample_csv, embedding_module=glove_module)
    assert run_dag(dag, conf)["run"] == "success"
    profile = json.loads((served / "1" / "data_profile.json").read_text())
    assert profile["rows"] > 600 and len((served / "1" / "data_profile.json").read_bytes()) < 20_000
    before = snapshot(served)

    truncated = with_overviews_cut(sample_csv, sample_csv.parent / "movies_cut_to_40.csv", 40)
    states = run_dag(dag, {**conf, "dataset_url": str(truncated)})
    assert states["run"] == "failed" and states["validate"] == "failed", states
    assert states["train"] == states["promote"] == "upstream_failed"
    assert snapshot(served) == before, "a drifted week touches neither the served model nor the history"
    alert = html.unescape(alert_texts(inbox)[0])
    assert len(alert_texts(inbox)) == 1 and "failed at the data gate" in alert
    assert "overview length distance (KS)" in alert and "in version 1's training data" in alert, alert
    run_dir = max((dirs["artifacts"] / "runs").iterdir(), key=lambda path: path.stat().st_mtime)
    report = (run_dir / "report.html").read_text()
    assert "Drift" in report and "overview length" in report

    # The model gate still compares with version 1 (on the truncated test split): not what is tested here.
    states = run_dag(dag, {**conf, "dataset_url": str(truncated), "force": True, "max_auc_drop": 1.0})
    assert states["run"] == "success" and states["promote"] == "success", "forced: the person accepts the data"
    assert len(alert_texts(inbox)) == 1
