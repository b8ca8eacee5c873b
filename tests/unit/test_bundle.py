"""The model folder's contract (`tasks.model.bundle`): its readers, on files in its layout and on a real
export; and the stages that only read a model folder import no TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.config import DEFAULT_GENRES
from tasks.model.bundle import (
    ASSETS_DIR,
    EXTRA_DIR,
    TRAINING_RECORD_FILE,
    head_path,
    load_head,
    read_labels,
    read_thresholds,
    read_training_record,
    thresholds_path,
    write_assets,
)
from tests.sample_data import PROJECT_ROOT

GENRES = ["Comedy", "Science Fiction", "Drame policier"]
THRESHOLDS = {"Comedy": 0.31, "Science Fiction": 0.5, "Drame policier": 0.07}
# Stages and helpers that read or plan around a model folder; none may load TensorFlow to do so.
LIGHT_MODULES = (
    "tasks.model.bundle",
    "tasks.model.metrics",
    "tasks.model.candidates",
    "tasks.model.gate",
    "tasks.model.serving_check",
    "tasks.model.predict",
    "tasks.model.report",
)
TENSORFLOW_MODULES = ("tensorflow", "tf_keras", "tensorflow_hub", "tensorflow_text", "tasks.tensorflow_runtime")


def _model_with_assets(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    (model / ASSETS_DIR).mkdir(parents=True)
    write_assets(model / ASSETS_DIR, GENRES, THRESHOLDS)
    return model


def test_assets_read_back_as_written(tmp_path: Path) -> None:
    model = _model_with_assets(tmp_path)
    assert read_labels(model) == GENRES
    assert read_thresholds(model) == THRESHOLDS


def test_asset_files_keep_their_format(tmp_path: Path) -> None:
    """Served models on disk were written in this format: a reader of any version must find it."""
    model = _model_with_assets(tmp_path)
    labels = (model / "assets" / "labels.txt").read_text(encoding="utf-8")
    assert labels == "Comedy\nScience Fiction\nDrame policier\n"
    assert (model / "assets" / "thresholds.json").read_text(encoding="utf-8") == json.dumps(THRESHOLDS, indent=2) + "\n"


def test_a_model_without_thresholds_says_so_by_file_not_found(tmp_path: Path) -> None:
    model = _model_with_assets(tmp_path)
    thresholds_path(model).unlink()
    with pytest.raises(FileNotFoundError):
        read_thresholds(model)


def test_training_record_reads_back_and_a_broken_one_raises(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / EXTRA_DIR).mkdir(parents=True)
    with pytest.raises(FileNotFoundError):
        read_training_record(model)
    record = {"genres": GENRES, "embedding_fingerprint": "glove", "architecture": {"wide": True}, "warm_starts": 1}
    (model / "assets.extra" / "training.json").write_text(json.dumps(record), encoding="utf-8")
    assert read_training_record(model) == record
    (model / EXTRA_DIR / TRAINING_RECORD_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError):
        read_training_record(model)


def test_model_folder_readers_import_no_tensorflow() -> None:
    """A fresh interpreter, as the CLI's `predict` and the gate and serving-check tasks start."""
    probe = (
        "import sys;"
        + "".join(f"import {module};" for module in LIGHT_MODULES)
        + f"print(','.join(m for m in {TENSORFLOW_MODULES!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, check=True, capture_output=True, text=True, timeout=120
    )
    loaded = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert loaded == "", f"importing {', '.join(LIGHT_MODULES)} loaded {loaded}"


def test_a_missing_or_broken_head_raises_os_error(tmp_path: Path) -> None:
    """train wraps this in its own error (warm start); evaluate lets it fail the stage."""
    with pytest.raises(OSError):
        load_head(tmp_path)
    head_path(tmp_path).parent.mkdir()
    head_path(tmp_path).write_bytes(b"not a Keras file")
    with pytest.raises(OSError):
        load_head(tmp_path)


@pytest.mark.slow
def test_a_real_export_is_in_the_layout_bundle_reads(glove_export: Path) -> None:
    assert read_labels(glove_export) == list(DEFAULT_GENRES)
    thresholds = read_thresholds(glove_export)
    assert list(thresholds) == list(DEFAULT_GENRES) and all(0 < t < 1 for t in thresholds.values())
    record = read_training_record(glove_export)
    assert record["genres"] == list(DEFAULT_GENRES)
    assert record["embedding_fingerprint"] == "glove" and record["warm_starts"] == 0
    assert set(record["architecture"]) == {"wide", "hidden_units", "dropout", "vocabulary_size"}
    assert head_path(glove_export).is_file()


@pytest.mark.slow
def test_serving_probabilities_cover_every_batch(glove_export: Path) -> None:
    """More descriptions than one serving batch: every row comes back, each as if called alone."""
    from tasks.model.bundle import SERVING_BATCH_SIZE, predict_probabilities

    texts = [f"Movie {i}: a detective story with a twist." for i in range(SERVING_BATCH_SIZE + 3)]
    probabilities = predict_probabilities(glove_export, texts)
    assert probabilities.shape == (len(texts), len(DEFAULT_GENRES)) and probabilities.dtype == np.float32
    alone = predict_probabilities(glove_export, texts[-1:])
    np.testing.assert_allclose(probabilities[-1:], alone, atol=1e-6)


@pytest.mark.slow
def test_head_probabilities_on_vectors_give_what_serving_gives_in_any_batch_size(
    glove_export: Path, glove_module: str
) -> None:
    """The cached-vector path (evaluate, the gate, batch predict): every row comes back, the same whatever
    the batch size, and equal to `serving_default` on the raw descriptions."""
    from tasks.embedding.embed import ModuleEmbedder
    from tasks.model.bundle import HEAD_BATCH_SIZE, head_probabilities, serving_probabilities
    from tasks.tensorflow_runtime import tf

    exported = tf.saved_model.load(str(glove_export))
    texts = [f"Movie {i}: a detective story with a twist." for i in range(HEAD_BATCH_SIZE + 3)]
    vectors = ModuleEmbedder(glove_module)(texts)
    probabilities = head_probabilities(exported, texts, vectors)
    assert probabilities.shape == (len(texts), len(DEFAULT_GENRES)) and probabilities.dtype == np.float32
    np.testing.assert_array_equal(head_probabilities(exported, texts, vectors, batch_size=len(texts)), probabilities)
    np.testing.assert_allclose(probabilities, serving_probabilities(exported, texts), atol=1e-5)


@pytest.mark.slow
def test_the_head_loads_with_its_vectorizer(glove_export: Path) -> None:
    from tasks.model.features import head_vectorizer

    wide = read_training_record(glove_export)["architecture"]["wide"]
    assert (head_vectorizer(load_head(glove_export)) is not None) == wide


@pytest.mark.slow
def test_predict_uses_the_tuned_thresholds_or_half_without_them(glove_export: Path, tmp_path: Path) -> None:
    from tasks.model.predict import predict_genres
    from tasks.registry.promote import promote_model

    served = tmp_path / "served"
    description = ["A detective hunts a killer through the rainy streets of a city that never sleeps."]
    every_genre = tmp_path / "every_genre"
    shutil.copytree(glove_export, every_genre)
    write_assets(every_genre / ASSETS_DIR, DEFAULT_GENRES, dict.fromkeys(DEFAULT_GENRES, 0.0))
    promote_model(every_genre, served, {"dag_run_id": "zero"}, actor="test", reason="test", keep_versions=5)
    [prediction] = predict_genres(description, served, top=len(DEFAULT_GENRES))
    assert prediction.genres == [genre for genre, _ in prediction.top], "a threshold of 0 takes every genre"
    untuned = tmp_path / "untuned"
    shutil.copytree(glove_export, untuned)
    thresholds_path(untuned).unlink()
    promote_model(untuned, served, {"dag_run_id": "untuned"}, actor="test", reason="test", keep_versions=5)
    [prediction] = predict_genres(description, served, top=len(DEFAULT_GENRES))
    assert prediction.genres == [genre for genre, p in prediction.top if p >= 0.5]
    assert len(prediction.genres) < len(DEFAULT_GENRES), "one epoch leaves some genre below 0.5"
