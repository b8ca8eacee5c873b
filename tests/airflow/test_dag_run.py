"""The whole DAG through real Airflow (`dag.test()`), real GX and real TensorFlow on real movies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.model.evaluate import ARTICLE_DESCRIPTIONS
from tests.airflow.dag_runs import alert_texts as _alert_texts
from tests.airflow.dag_runs import run_dag as _run
from tests.sample_data import PROJECT_ROOT
from tests.sample_data import quick_conf as _quick

PREDICTED = "  predicted genres (probability >= the genre's tuned threshold): "  # `python -m tasks predict`

pytestmark = pytest.mark.slow


def test_run_promotes_a_model_that_serves_raw_strings(dag, dirs, sample_csv: Path) -> None:
    states = _run(dag, _quick(sample_csv, candidates=[{"wide": True}, {"wide": False, "hidden_units": 64}]))
    assert states["run"] == "success", states
    version_dir = dirs["models"] / "movie_genre" / "1"
    assert (version_dir / "saved_model.pb").is_file()
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["dataset"]["sha256"] and manifest["data"]["split_fingerprint"]
    assert manifest["metrics"]["auc_micro"] >= 0.5 and manifest["packages"]["tensorflow"]
    assert "judged on the threshold alone" in manifest["champion_comparison"]["reason"]
    assert set(manifest["timings"]) >= {"download", "train", "serving_check"}
    selected = manifest["stages"]["train"]
    assert len(selected["candidates"]) == 2, "both candidates trained, the best on validation carried on"
    assert selected["validation_auc_micro"] == max(c["validation_auc_micro"] for c in selected["candidates"])
    assert Path(manifest["embedding_module"]["path"]).is_relative_to(dirs["artifacts"]), "default module built"

    from tasks.tensorflow_runtime import tf

    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    probabilities = serve(tf.constant(["A detective hunts a serial killer.", "Two friends fall in love."]))
    assert probabilities["probabilities"].shape == (2, 9)
    assert np.all(np.isfinite(probabilities["probabilities"].numpy()))

    run_dir = next((dirs["artifacts"] / "runs").iterdir())
    for artifact in (
        "raw/movies_metadata.csv",
        "prepared/movies.parquet",
        "validation/data_docs/index.html",
        "metrics.json",
        "report.html",
        "candidates/0/model/assets/labels.txt",
        "candidates/1/model/assets/labels.txt",
    ):
        assert (run_dir / artifact).exists(), artifact

    training = json.loads((run_dir / "candidates" / "0" / "training.json").read_text())
    assert training["embeddings"]["computed"] == 0, "train reads the vectors the embed task cached"

    predicted = subprocess.run(
        [sys.executable, "-m", "tasks", "predict", "Aliens invade Earth and a soldier fights back."],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GENRE_MODEL_DIR": str(dirs["models"])},
    ).stdout
    description, top, chosen = predicted.splitlines()
    assert description == "Aliens invade Earth and a soldier fights back."
    assert re.fullmatch(r"  most probable: [A-Z][\w ]+ 0\.\d{3}, [A-Z][\w ]+ 0\.\d{3}", top), top
    assert chosen.startswith(PREDICTED), chosen

    by_default = subprocess.run(  # what `make run` prints at its end
        [sys.executable, "-m", "tasks", "predict"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GENRE_MODEL_DIR": str(dirs["models"])},
    ).stdout.splitlines()
    assert len(by_default) == 9 and by_default[::3] == list(ARTICLE_DESCRIPTIONS), "the blog post's three"
    assert all(line.startswith(PREDICTED) for line in by_default[2::3]), "each with its verdict"


def test_weekly_life_champion_challenger_and_rollback(dag, dirs, inbox, sample_csv: Path, glove_module: str):
    """Week 1 promotes; week 2 on the same data (forced) embeds nothing, fine-tunes the champion and improves on it;
    week 3 trains a worse model from scratch, which the champion gate refuses (nothing promoted, the alert
    after the report); then the rollback DAG serves week 1 again."""
    served = dirs["models"] / "movie_genre"
    conf = _quick(sample_csv, embedding_module=glove_module)
    assert _run(dag, conf)["run"] == "success"
    shards = sorted((dirs["artifacts"] / "embedding_cache").rglob("*.npz"))

    assert _run(dag, {**conf, "force": True})["run"] == "success", "the same data again: retrained as forced"
    assert sorted((dirs["artifacts"] / "embedding_cache").rglob("*.npz")) == shards, "nothing new was embedded"
    week_2 = json.loads((served / "2" / "manifest.json").read_text())
    comparison = week_2["champion_comparison"]
    assert comparison["passed"] and comparison["champion"]["version"] == 1
    assert comparison["champion"]["scoring"]["path"] == "head_probabilities", "same module: scored on cached vectors"
    assert comparison["challenger"] >= comparison["champion"]["value"], "five more epochs from the champion's weights"
    assert week_2["stages"]["train"]["warm_start_from"] == str(served / "1")
    assert week_2["stages"]["train"]["warm_starts"] == 1
    week_2_metrics = json.loads(Path(week_2["metrics"]["path"]).read_text())
    assert week_2_metrics["baselines_started_from"] == str(served / "1" / "baselines.npz"), "published with week 1"
    assert all(fit["warm_start"] for fit in week_2_metrics["baseline_fits"].values()), "same vocabulary and module"

    worse = _run(dag, {**conf, "epochs": 1, "learning_rate": 1e-5, "auc_threshold": 0.0, "max_warm_starts": 0})
    assert worse["run"] == "failed" and worse["gate"] == "failed" and worse["promote"] == "upstream_failed"
    runs = sorted((dirs["artifacts"] / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    gate = json.loads((runs[-1] / "gate.json").read_text())
    assert "worse than the champion (version 2" in gate["reason"]
    assert "Model gate: FAILED" in (runs[-1] / "report.html").read_text()
    assert sorted(int(p.name) for p in served.iterdir() if p.name.isdigit()) == [1, 2]
    assert worse["report"] == "success" and worse["gate_alert"] == "success", "the teardowns ran"
    (alert,) = _alert_texts(inbox)
    assert "The DAG run failed at the model gate." in alert and "worse than the champion (version 2" in alert
    assert "DAG: movie_genre_retrain" in alert and "Failed: model gate (task gate)" in alert and "Figure: " in alert
    assert f"Report: {runs[-1] / 'report.html'}" in alert, "the alert went out after the report"
    assert f"Data Docs: {runs[-1] / 'validation' / 'data_docs' / 'index.html'}" in alert

    from airflow.dag_processing.dagbag import DagBag

    rollback = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).dags["movie_genre_rollback"]
    assert str(rollback.test(run_conf={"version": 1, "reason": "week 2 misbehaves"}).state) == "success"
    manifest = json.loads((served / "3" / "manifest.json").read_text())
    assert manifest["rollback_of"] == 1
    assert (served / "3" / "baselines.npz").is_file(), "the rollback copy brings version 1's baselines"
    history = [json.loads(line) for line in (served / "history.jsonl").read_text().splitlines()]
    assert [(e["event"], e["version"]) for e in history] == [("promote", 1), ("promote", 2), ("rollback", 3)]
    assert history[-1]["reason"] == "week 2 misbehaves" and history[-1]["by"].startswith("dag_run:")


def test_data_gate_failure_stops_before_training(dag, dirs, inbox, sample_csv: Path, glove_module: str) -> None:
    states = _run(dag, _quick(sample_csv, min_rows=100_000, embedding_module=glove_module))
    assert states["run"] == "failed"
    assert states["validate"] == "failed" and states["train"] == "upstream_failed"
    run_dir = next((dirs["artifacts"] / "runs").iterdir())
    assert (run_dir / "validation" / "data_docs" / "index.html").is_file(), "Data Docs kept for diagnosis"
    assert not (dirs["models"] / "movie_genre").exists()
    (alert,) = _alert_texts(inbox)
    assert "failed at the data gate" in alert and "Failed: data gate (task validate)" in alert
    assert "expect_table_row_count_to_be_between" in alert and "100000" in alert
    assert f"Data Docs: {run_dir / 'validation' / 'data_docs' / 'index.html'}" in alert
    assert f"Report: {run_dir / 'report.html'}" in alert and (run_dir / "report.html").is_file()


def test_cli_predict_without_a_model_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tasks", "predict", "anything"],
        capture_output=True,
        text=True,
        env={**os.environ, "GENRE_MODEL_DIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "no promoted model" in result.stderr
