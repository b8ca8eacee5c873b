"""Training on precomputed sparse TF-IDF rows is training the exported model: both give the same
probabilities, and a served folder gives back the same vectorizer for the next run's warm start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.data.prepare import read_split
from tasks.embedding.cache import EmbeddingCache, embed_with_cache
from tasks.embedding.embed import ModuleEmbedder

pytestmark = pytest.mark.slow

TOLERANCE = 1e-5
EDGE_TEXTS = ["", "!!!", "Ein Film über Liebe", "the the the the"]  # no token, punctuation, unseen words


@pytest.fixture(scope="module")
def trained(prepared_sample: Path, glove_module: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from tasks.model.train import TrainConfig, train_model

    cache = EmbeddingCache(tmp_path_factory.mktemp("cache"), "glove")
    config = TrainConfig(glove_module, epochs=2, batch_size=64, hidden_units=16, learning_rate=0.01, seed=1)
    summary = train_model(prepared_sample, tmp_path_factory.mktemp("run") / "model", config, cache)
    texts = read_split(prepared_sample, "test")[0][:200] + EDGE_TEXTS
    vectors, _ = embed_with_cache(texts, ModuleEmbedder(glove_module), cache)
    return {"model_dir": Path(summary["model_path"]), "texts": texts, "vectors": vectors}


def test_sparse_training_inputs_give_the_exported_probabilities(trained: dict) -> None:
    from tasks.model.bundle import load_head, serving_probabilities
    from tasks.model.train import sparse_trainer, training_features
    from tasks.tensorflow_runtime import tf

    texts, vectors = trained["texts"], trained["vectors"]
    head = load_head(trained["model_dir"])  # what the next run's warm start reads
    features = training_features(head, texts, vectors)
    assert "tfidf" in features, "the default candidate is wide"
    trained_on = sparse_trainer(head, 0.001).predict(features, batch_size=64, verbose=0)

    exported = tf.saved_model.load(str(trained["model_dir"]))
    head_probabilities = exported.head_probabilities(tf.constant(texts), tf.constant(vectors)).numpy()
    served = serving_probabilities(exported, texts)
    np.testing.assert_allclose(trained_on, head_probabilities, atol=TOLERANCE)
    np.testing.assert_allclose(trained_on, served, atol=TOLERANCE)


def test_sparse_rows_equal_the_models_own_wide_input(trained: dict) -> None:
    from tasks.model.bundle import load_head
    from tasks.model.features import VECTORIZER, WIDE_INPUT_SCALE, tfidf_matrix, wide_inputs
    from tasks.tensorflow_runtime import tf

    texts = trained["texts"]
    vectorizer = load_head(trained["model_dir"]).get_layer(VECTORIZER)
    matrix = tfidf_matrix(vectorizer, texts)
    dense = wide_inputs(tf.constant(texts), vectorizer).numpy()
    assert matrix.shape == dense.shape and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix.toarray(), dense, atol=TOLERANCE)
    norms = np.linalg.norm(dense, axis=1)
    assert norms[texts.index("")] == 0 and norms[texts.index("!!!")] == 0, "no token: a zero row on both sides"
    assert norms[0] == pytest.approx(WIDE_INPUT_SCALE, rel=1e-5)


def test_the_baselines_rows_are_sublinear_counts_of_the_vocabulary(trained: dict) -> None:
    from tasks.model.bundle import load_head
    from tasks.model.features import OOV_COLUMN, VECTORIZER, baseline_tfidf
    from tasks.tensorflow_runtime import tf

    texts = trained["texts"]
    vectorizer = load_head(trained["model_dir"]).get_layer(VECTORIZER)
    matrix = baseline_tfidf(vectorizer, texts)
    assert matrix.shape == (len(texts), vectorizer.vocabulary_size()) and matrix.dtype == np.float32
    idf = vectorizer.get_weights()[0]
    counts = np.rint(vectorizer(tf.constant(texts)).numpy() / idf)  # the layer's own count · idf
    assert counts[texts.index("the the the the"), vectorizer.get_vocabulary().index("the")] == 4
    expected = np.where(counts > 0, (1 + np.log(np.maximum(counts, 1))) * idf, 0.0)
    assert vectorizer.get_vocabulary()[OOV_COLUMN] == "[UNK]"
    expected[:, OOV_COLUMN] = 0.0
    norms = np.linalg.norm(expected, axis=1, keepdims=True)
    expected = np.divide(expected, norms, out=np.zeros_like(expected), where=norms > 0)
    np.testing.assert_allclose(matrix.toarray(), expected, atol=TOLERANCE)
    assert not matrix[texts.index("!!!")].nnz, "no token: a zero row"


def test_a_deep_only_head_needs_no_tfidf(prepared_sample: Path, glove_module: str, tmp_path: Path) -> None:
    from tasks.model.bundle import load_head
    from tasks.model.features import head_vectorizer
    from tasks.model.train import TrainConfig, train_model, training_features

    cache = EmbeddingCache(tmp_path / "cache", "glove")
    config = TrainConfig(glove_module, epochs=1, batch_size=64, hidden_units=8, learning_rate=0.01, seed=1, wide=False)
    summary = train_model(prepared_sample, tmp_path / "run" / "model", config, cache)
    head = load_head(Path(summary["model_path"]))
    assert set(training_features(head, ["a"], np.zeros((1, 50), np.float32))) == {"embedding"}
    assert head_vectorizer(head) is None


def test_split_rows_batches_are_the_shuffled_rows_and_released_after_use() -> None:
    """Gathering by shuffled row number gives the batches shuffling the rows themselves gave (so training
    is unchanged), sparse rows included; leaving the block drops the arrays."""
    from scipy import sparse

    from tasks.model.train import WIDE_INPUT, SplitRows
    from tasks.tensorflow_runtime import tf

    rng = np.random.default_rng(0)
    vectors = rng.random((50, 3), dtype=np.float32)
    labels = (rng.random((50, 2)) > 0.5).astype(np.float32)
    tfidf = sparse.random(50, 7, density=0.3, format="csr", dtype=np.float32, random_state=1)
    tfidf.sort_indices()
    rows_dataset = tf.data.Dataset.from_tensor_slices(
        ({"embedding": vectors, WIDE_INPUT: tf.SparseTensor(*_coo(tfidf))}, labels)
    )
    expected = list(rows_dataset.shuffle(50, seed=3, reshuffle_each_iteration=True).batch(16))

    with SplitRows({"embedding": vectors, WIDE_INPUT: tfidf}, labels) as split:
        gathered = list(split.dataset(16, shuffle_seed=3))
    assert len(gathered) == len(expected) == 4
    for (features, batch_labels), (want, want_labels) in zip(gathered, expected, strict=True):
        np.testing.assert_array_equal(features["embedding"], want["embedding"])
        np.testing.assert_array_equal(batch_labels, want_labels)
        np.testing.assert_array_equal(tf.sparse.to_dense(features[WIDE_INPUT]), tf.sparse.to_dense(want[WIDE_INPUT]))
    with pytest.raises(tf.errors.UnknownError, match="released"):
        list(split.dataset(16))


def _coo(matrix) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    coo = matrix.tocoo()
    return np.stack([coo.row, coo.col], axis=1).astype(np.int64), coo.data, coo.shape
