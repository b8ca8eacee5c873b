"""Train on real overviews, export, and evaluate through the serving signature."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.config import DEFAULT_GENRES
from tasks.embedding.cache import EmbeddingCache
from tasks.model.evaluate import evaluate_model
from tasks.model.metrics import compute_metrics
from tasks.run_folder import RunFolder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> EmbeddingCache:
    return EmbeddingCache(tmp_path_factory.mktemp("cache"), "glove")


def _config(glove_module: str):
    from tasks.model.train import TrainConfig

    return TrainConfig(
        embedding_module=glove_module, epochs=3, batch_size=32, hidden_units=16, learning_rate=0.01, seed=1
    )


@pytest.fixture(scope="module")
def trained(prepared_sample: Path, glove_module: str, cache, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from tasks.model.train import train_model

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
    thresholds = json.loads((model_dir / "assets" / "thresholds.json").read_text())
    assert set(thresholds) == set(DEFAULT_GENRES) and all(0 < t < 1 for t in thresholds.values())
    assert trained["validation_rows"] > 0 and 1 <= trained["best_epoch"] <= trained["epochs_run"]


def test_the_export_holds_its_signatures_without_kerass_layer_traces(trained: dict) -> None:
    """Saved with save_traces=False: no `*_layer_call_fn` per layer (only Keras's loader reads them, and
    they doubled the export's time), while both signatures are there."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(trained["model_path"]) / "saved_model.pb").read_bytes())
    (meta_graph,) = proto.meta_graphs
    functions = [function.signature.name for function in meta_graph.graph_def.library.function]
    assert functions and not [name for name in functions if "layer_call" in name]
    assert set(meta_graph.signature_def) == {"serving_default", "__saved_model_init_op"}
    assert any("head_probabilities" in name for name in functions)


def test_evaluate_writes_metrics(trained: dict, prepared_sample: Path, glove_module: str, cache, tmp_path) -> None:
    (tmp_path / "gate.json").write_text('{"passed": false, "reason": "an earlier evaluation\'s"}')
    summary = evaluate_model(Path(trained["model_path"]), prepared_sample, RunFolder(tmp_path), glove_module, cache)
    assert not (tmp_path / "gate.json").exists(), "a re-run evaluate voids the decision on the earlier one"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.5 < summary["auc_micro"] <= 1 and metrics["auc_micro"] == summary["auc_micro"]
    from tasks.data.prepare import read_split

    train_rows = len(read_split(prepared_sample, "train")[0])
    assert metrics["embeddings"]["texts"] == summary["test_rows"] + train_rows, "test and train vectors, one pass"
    assert set(metrics["per_genre"]) == set(DEFAULT_GENRES)
    assert {"precision", "recall", "f1", "support", "auc", "tuned"} <= set(metrics["per_genre"]["Comedy"])
    assert set(metrics["baselines"]) == {"tfidf_logreg", "embedding_logreg", "baseline_average"}
    assert 0.5 < metrics["baselines"]["tfidf_logreg"]["auc_micro"] < 1
    margin = metrics["margin_over_best_baseline"]
    best = max(b["auc_micro"] for b in metrics["baselines"].values())
    assert margin["auc_micro"] == pytest.approx(metrics["auc_micro"] - best)
    with np.load(tmp_path / "predictions.npz") as predictions:
        assert predictions["model"].shape == predictions["tfidf_logreg"].shape == (summary["test_rows"], 9)
        genres = [str(genre) for genre in predictions["genres"]]
    from tasks.model.bundle import predict_probabilities
    from tasks.model.evaluate import ARTICLE_DESCRIPTIONS

    served = predict_probabilities(Path(trained["model_path"]), list(ARTICLE_DESCRIPTIONS))
    articles = metrics["article_predictions"]
    assert [a["description"] for a in articles] == list(ARTICLE_DESCRIPTIONS), "the report's samples, scored here"
    for article, row in zip(articles, served, strict=True):
        assert article["probabilities"] == pytest.approx(dict(zip(genres, row.tolist(), strict=True)), abs=1e-6)


def test_evaluate_streams_the_test_split_in_chunks(
    trained: dict, prepared_sample: Path, glove_module: str, cache, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.model import evaluate

    whole = evaluate_model(
        Path(trained["model_path"]), prepared_sample, RunFolder(tmp_path / "whole"), glove_module, cache
    )
    monkeypatch.setattr(evaluate, "CHUNK_ROWS", 37)  # the sample's test split in several chunks
    chunked = evaluate_model(
        Path(trained["model_path"]), prepared_sample, RunFolder(tmp_path / "chunked"), glove_module, cache
    )
    assert chunked == {**whole, "path": str(tmp_path / "chunked" / "metrics.json")}
    with np.load(tmp_path / "whole" / "predictions.npz") as a, np.load(tmp_path / "chunked" / "predictions.npz") as b:
        assert set(a.files) == set(b.files) and list(a["genres"]) == list(b["genres"])
        for name in set(a.files) - {"genres"}:
            np.testing.assert_allclose(a[name], b[name], atol=1e-6)


def test_a_deep_only_model_gets_the_baseline_a_wide_one_gets(
    trained: dict, prepared_sample: Path, glove_module: str, cache, tmp_path
) -> None:
    """Without a vectorizer of its own, evaluate adapts one on the same train split: same baselines."""
    from dataclasses import replace

    from tasks.model.train import train_model

    deep = train_model(prepared_sample, tmp_path / "deep" / "model", replace(_config(glove_module), wide=False), cache)
    deep_summary = evaluate_model(
        Path(deep["model_path"]), prepared_sample, RunFolder(tmp_path / "d"), glove_module, cache
    )
    wide_summary = evaluate_model(
        Path(trained["model_path"]), prepared_sample, RunFolder(tmp_path / "w"), glove_module, cache
    )
    assert deep_summary["baselines_auc_micro"] == wide_summary["baselines_auc_micro"]


def test_report_opens_from_disk(trained: dict, prepared_sample: Path, glove_module: str, cache, tmp_path) -> None:
    import shutil

    from tasks.model.evaluate import ARTICLE_DESCRIPTIONS
    from tasks.model.report import write_report

    run_dir = tmp_path / "run"
    shutil.copytree(Path(trained["model_path"]), run_dir / "model")
    evaluate_model(run_dir / "model", prepared_sample, RunFolder(run_dir), glove_module, cache)
    report = write_report(
        RunFolder(run_dir), run_dir / "model", tmp_path / "served", dag_id="dag", run_id="run", version=None
    )
    page = Path(report["path"]).read_text()
    assert page.count("data:image/png;base64,") == 3, "ROC, precision-recall and version history plots"
    assert "tfidf_logreg" in page and "The model beats the best baseline" in page
    assert all(text[:40] in page for text in ARTICLE_DESCRIPTIONS)
    assert "did not reach the model gate" in page


def test_same_seed_same_model(prepared_sample: Path, glove_module: str, trained: dict, cache, tmp_path) -> None:
    from tasks.model.train import train_model

    again = train_model(prepared_sample, tmp_path / "model", _config(glove_module), cache)
    assert again["validation_auc_micro"] == pytest.approx(trained["validation_auc_micro"], abs=1e-6)
    assert again["embeddings"]["computed"] == 0, "the second training reads every vector from the cache"


def test_stale_cache_is_caught_by_the_serving_parity_check(
    trained: dict, prepared_sample: Path, glove_module: str, tmp_path: Path
) -> None:
    """Vectors that do not match the module (a cache keyed to the wrong module) must not be scored."""
    from tasks.data.prepare import read_split
    from tasks.embedding.cache import text_key
    from tasks.errors import ExportError

    wrong = EmbeddingCache(tmp_path, "wrong")
    texts, _, _ = read_split(prepared_sample, "test")
    texts += read_split(prepared_sample, "train")[0]
    wrong.add([text_key(t) for t in dict.fromkeys(texts)], np.ones((len(dict.fromkeys(texts)), 50), "float32"))
    with pytest.raises(ExportError, match="serving_default differs"):
        evaluate_model(Path(trained["model_path"]), prepared_sample, RunFolder(tmp_path), glove_module, wrong)


def test_genre_without_positives_has_no_auc_and_no_crash() -> None:
    labels = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], dtype="float32")
    probabilities = np.array([[0.9, 0.1], [0.2, 0.3], [0.7, 0.2], [0.4, 0.1]], dtype="float32")
    metrics = compute_metrics(labels, probabilities, ["Comedy", "Documentary"])
    assert metrics["per_genre"]["Documentary"]["auc"] is None
    assert metrics["genres_without_auc"] == ["Documentary"]
    assert metrics["auc_macro"] == pytest.approx(1.0)
    assert metrics["per_genre"]["Comedy"]["precision"] == 1.0


def test_candidate_overrides_the_run_params(prepared_sample: Path, glove_module: str, cache, tmp_path) -> None:
    from tasks.config import RunConfig, Settings
    from tasks.model.candidates import best_candidate
    from tasks.model.train import train_candidate

    settings = Settings(model_dir=tmp_path, artifacts_dir=tmp_path, dataset_url="x", data_root=tmp_path)
    run_config = RunConfig.from_params({"epochs": 2}, settings)
    summaries = [
        train_candidate(prepared_sample, tmp_path, run_config, {"index": i, **overrides}, glove_module, cache)
        for i, overrides in enumerate([{"wide": False, "hidden_units": 8}, {"hidden_units": 32, "dropout": 0.1}])
    ]
    assert [Path(s["model_path"]) for s in summaries] == [tmp_path / "0" / "model", tmp_path / "1" / "model"]
    best = best_candidate(summaries)
    assert best["validation_auc_micro"] == max(s["validation_auc_micro"] for s in summaries)
    assert [c["candidate"]["index"] for c in best["candidates"]] == [0, 1]


def test_report_of_a_run_that_stopped_early(tmp_path: Path) -> None:
    from tasks.model.report import write_report

    assert (
        write_report(RunFolder(tmp_path), None, tmp_path / "served", dag_id="dag", run_id="run", version=None)["path"]
        is None
    )
