"""Train on real overviews, export, and evaluate through the serving signature."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.config import DEFAULT_GENRES
from tasks.embedding_cache import EmbeddingCache
from tasks.evaluate import compute_metrics, evaluate_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> EmbeddingCache:
    return EmbeddingCache(tmp_path_factory.mktemp("cache"), "glove")


def _config(glove_module: str):
    from tasks.train import TrainConfig

    return TrainConfig(
        embedding_module=glove_module, epochs=3, batch_size=32, hidden_units=16, learning_rate=0.01, seed=1
    )


@pytest.fixture(scope="module")
def trained(prepared_sample: Path, glove_module: str, cache, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from tasks.train import train_model

    return train_model(prepared_sample, tmp_path_factory.mktemp("run") / "model", _config(glove_module), cache)


def test_export_serves_raw_strings(trained: dict) -> None:
    from tasks.tensorflow_runtime import tf

    model_dir = Path(trained["model_path"])
    assert (model_dir / "assets" / "labels.txt").read_text().splitlines() == list(DEFAULT_GENRES)
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    assert serve.structured_input_signature[1]["descriptions"].dtype == tf.string
    outputs = serve(tf.constant(["A detective hunts a killer.", "", "Ein Film über Liebe"]))
    probabilities = outputs["probabilities"].numpy()
    assert probabilities.shape == (3, 9) and probabilities.dtype == np.float32
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert (model_dir.parent / "training.json").is_file()


def test_evaluate_writes_metrics(trained: dict, prepared_sample: Path, glove_module: str, cache, tmp_path) -> None:
    summary = evaluate_model(
        Path(trained["model_path"]), prepared_sample, tmp_path / "metrics.json", glove_module, cache
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.5 < summary["auc_micro"] <= 1 and metrics["auc_micro"] == summary["auc_micro"]
    assert metrics["embeddings"]["texts"] == summary["test_rows"]
    assert set(metrics["per_genre"]) == set(DEFAULT_GENRES)
    assert {"precision", "recall", "f1", "support", "auc"} <= set(metrics["per_genre"]["Comedy"])


def test_same_seed_same_model(prepared_sample: Path, glove_module: str, trained: dict, cache, tmp_path) -> None:
    from tasks.train import train_model

    again = train_model(prepared_sample, tmp_path / "model", _config(glove_module), cache)
    assert again["final_loss"] == pytest.approx(trained["final_loss"], rel=1e-4)
    assert again["embeddings"]["computed"] == 0, "the second training reads every vector from the cache"


def test_stale_cache_is_caught_by_the_serving_parity_check(
    trained: dict, prepared_sample: Path, glove_module: str, tmp_path: Path
) -> None:
    """Vectors that do not match the module (a cache keyed to the wrong module) must not be scored."""
    from tasks.embedding_cache import text_key
    from tasks.errors import ExportError
    from tasks.prepare import read_split

    wrong = EmbeddingCache(tmp_path, "wrong")
    texts, _, _ = read_split(prepared_sample, "test")
    wrong.add([text_key(t) for t in dict.fromkeys(texts)], np.ones((len(dict.fromkeys(texts)), 50), "float32"))
    with pytest.raises(ExportError, match="serving_default differs"):
        evaluate_model(Path(trained["model_path"]), prepared_sample, tmp_path / "metrics.json", glove_module, wrong)


def test_genre_without_positives_has_no_auc_and_no_crash() -> None:
    labels = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], dtype="float32")
    probabilities = np.array([[0.9, 0.1], [0.2, 0.3], [0.7, 0.2], [0.4, 0.1]], dtype="float32")
    metrics = compute_metrics(labels, probabilities, ["Comedy", "Documentary"])
    assert metrics["per_genre"]["Documentary"]["auc"] is None
    assert metrics["genres_without_auc"] == ["Documentary"]
    assert metrics["auc_macro"] == pytest.approx(1.0)
    assert metrics["per_genre"]["Comedy"]["precision"] == 1.0
