"""The whole DAG through real Airflow (`dag.test()`), real GX and real TensorFlow on real movies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dag(airflow_db: Path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["movie_genre_retrain"]


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    paths = {"models": tmp_path / "models", "artifacts": tmp_path / "artifacts"}
    monkeypatch.setenv("GENRE_MODEL_DIR", str(paths["models"]))
    monkeypatch.setenv("GENRE_ARTIFACTS_DIR", str(paths["artifacts"]))
    return paths


def _run(dag, conf: dict) -> dict[str, str]:
    run = dag.test(run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    return {"run": str(run.state), **states}


def _quick(sample_csv: Path, **overrides: object) -> dict:
    return {"dataset_url": str(sample_csv), "min_rows": 200, "epochs": 5, "auc_threshold": 0.5, **overrides}


def test_run_promotes_a_model_that_serves_raw_strings(dag, dirs, sample_csv: Path) -> None:
    states = _run(dag, _quick(sample_csv))
    assert states["run"] == "success", states
    version_dir = dirs["models"] / "movie_genre" / "1"
    assert (version_dir / "saved_model.pb").is_file()
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["dataset"]["sha256"]
    assert manifest["metrics"]["auc_micro"] >= 0.5
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
        "model/assets/labels.txt",
    ):
        assert (run_dir / artifact).exists(), artifact

    training = json.loads((run_dir / "training.json").read_text())
    assert training["embeddings"]["computed"] == 0, "train reads the vectors the embed task cached"

    predicted = subprocess.run(
        [sys.executable, "-m", "tasks", "predict", "Aliens invade Earth and a soldier fights back."],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GENRE_MODEL_DIR": str(dirs["models"])},
    ).stdout
    assert predicted.splitlines()[0] == "Aliens invade Earth and a soldier fights back."
    assert len([line for line in predicted.splitlines() if line.startswith("  ")]) == 2


def test_second_run_on_the_same_data_embeds_nothing(dag, dirs, sample_csv: Path, glove_module: str) -> None:
    conf = _quick(sample_csv, embedding_module=glove_module)
    assert _run(dag, conf)["run"] == "success"
    shards = sorted((dirs["artifacts"] / "embedding_cache").rglob("*.npz"))
    assert _run(dag, conf)["run"] == "success"
    assert sorted((dirs["artifacts"] / "embedding_cache").rglob("*.npz")) == shards, "nothing new was embedded"
    assert sorted(p.name for p in (dirs["models"] / "movie_genre").iterdir() if p.name.isdigit()) == ["1", "2"]


def test_model_gate_failure_promotes_nothing(dag, dirs, sample_csv: Path, glove_module: str) -> None:
    states = _run(dag, _quick(sample_csv, auc_threshold=0.99, embedding_module=glove_module))
    assert states["run"] == "failed"
    assert states["evaluate"] == "success" and states["gate"] == "failed"
    assert states["promote"] == "upstream_failed"
    assert not (dirs["models"] / "movie_genre").exists() or not any((dirs["models"] / "movie_genre").iterdir())


def test_data_gate_failure_stops_before_training(dag, dirs, sample_csv: Path, glove_module: str) -> None:
    states = _run(dag, _quick(sample_csv, min_rows=100_000, embedding_module=glove_module))
    assert states["run"] == "failed"
    assert states["validate"] == "failed" and states["train"] == "upstream_failed"
    run_dir = next((dirs["artifacts"] / "runs").iterdir())
    assert (run_dir / "validation" / "data_docs" / "index.html").is_file(), "Data Docs kept for diagnosis"
    assert not (dirs["models"] / "movie_genre").exists()


def test_cli_predict_without_a_model_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tasks", "predict", "anything"],
        capture_output=True,
        text=True,
        env={**os.environ, "GENRE_MODEL_DIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "no promoted model" in result.stderr
