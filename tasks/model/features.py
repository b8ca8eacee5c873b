"""The wide branch's TF-IDF features, computed once per text instead of once per training epoch.

The serving model takes raw strings, so its wide branch is Keras `TextVectorization` (word 1-2-grams,
TF-IDF, adapted on the train split) → L2 normalisation → times WIDE_INPUT_SCALE, inside the model
(`wide_inputs`). Training runs that branch's tokenisation once, before the first epoch
(`tfidf_matrix`): a scipy CSR matrix with the same values, which the head is trained on as a
`tf.SparseTensor` (about 100 non-zeros a row instead of a dense 20,000-wide vector a row, every epoch).
tests/unit/test_features.py checks that both give the same probabilities.

The TF-IDF baseline reuses that vocabulary and IDF (`baseline_tfidf`), reweighted for a linear model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from scipy import sparse

from tasks.tensorflow_runtime import tf, tf_keras

WIDE_INPUT_SCALE = 20.0  # the best of 10, 20 and 30 on the shared sample: bench/FINDINGS.md, "TF-IDF features"
VECTORIZER = "tfidf"  # the layer's name in the head: warm starts find the served vocabulary by it
# Counting 1-2-grams in batches of 2,048: faster than 256 or 8,192 (bench/FINDINGS.md, "Training speed"); the
# vocabulary and IDF are the same whatever the batch.
ADAPT_BATCH_SIZE = 2048
CHUNK_TEXTS = 4096  # texts tokenised at a time
# TextVectorization's "[UNK]": every word outside the vocabulary counts there (index 0 in every output
# mode but "int", which puts the mask there first).
OOV_COLUMN = 0
L2_EPSILON = 1e-12  # tf.math.l2_normalize's floor, so an empty text's row stays zero on both sides


def adapt_vectorizer(texts: Sequence[str], vocabulary_size: int) -> tf_keras.layers.TextVectorization:
    """A TF-IDF vectorizer of word 1-2-grams whose vocabulary and IDF come from `texts` (the train split)."""
    vectorizer = tf_keras.layers.TextVectorization(
        max_tokens=vocabulary_size, ngrams=2, output_mode="tf_idf", name=VECTORIZER
    )
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(list(texts)).batch(ADAPT_BATCH_SIZE))
    return vectorizer


def wide_inputs(text: tf.Tensor, vectorizer: tf_keras.layers.Layer) -> tf.Tensor:
    """The wide branch's input inside the model: what `tfidf_matrix` computes ahead of training."""
    tfidf = tf_keras.layers.UnitNormalization(name="tfidf_l2")(vectorizer(text))
    # Scaled up so the linear wide weights reach logistic-regression size in a few epochs of Adam.
    return tf_keras.layers.Rescaling(WIDE_INPUT_SCALE, name="tfidf_scaled")(tfidf)


def tfidf_matrix(vectorizer: tf_keras.layers.TextVectorization, texts: Sequence[str]) -> sparse.csr_matrix:
    """`wide_inputs` of every text as a float32 CSR matrix (rows in the order of `texts`)."""
    matrix = _count_times_idf(vectorizer, texts)
    norms = np.sqrt(np.maximum(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel(), L2_EPSILON))
    scaled = sparse.csr_matrix(sparse.diags((WIDE_INPUT_SCALE / norms).astype(np.float32)) @ matrix, dtype=np.float32)
    scaled.sort_indices()  # a SparseTensor's indices must be in row-major order
    return scaled


def baseline_tfidf(vectorizer: tf_keras.layers.TextVectorization, texts: Sequence[str]) -> sparse.csr_matrix:
    """The TF-IDF baseline's rows, from the vectorizer's vocabulary and IDF: (1 + log count) · idf of every
    1-2-gram in the vocabulary, L2-normalised (float32 CSR, rows in the order of `texts`)."""
    # The out-of-vocabulary column (every word outside the vocabulary, with a high IDF) outweighs the
    # words themselves, and raw counts weigh a repeated name linearly: without that column and with sublinear
    # counts, a logistic regression scores about as on sklearn's own TF-IDF, which this replaces
    # (bench/FINDINGS.md, "TF-IDF features").
    matrix = _count_times_idf(vectorizer, texts)
    idf = vectorizer.get_weights()[0][matrix.indices]
    counts = np.rint(matrix.data / idf)  # whole numbers, up to float32 rounding
    matrix.data = ((1.0 + np.log(counts)) * idf).astype(np.float32)
    matrix.data[matrix.indices == OOV_COLUMN] = 0.0
    matrix.eliminate_zeros()
    norms = np.sqrt(np.maximum(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel(), L2_EPSILON))
    return sparse.csr_matrix(sparse.diags((1.0 / norms).astype(np.float32)) @ matrix, dtype=np.float32)


def vocabulary_digest(vectorizer: tf_keras.layers.TextVectorization) -> str:
    """A digest of the vectorizer's vocabulary, in order: two TF-IDF matrices with the same digest have
    columns that mean the same 1-2-grams."""
    vocabulary = "\n".join(vectorizer.get_vocabulary(include_special_tokens=True))
    return hashlib.sha256(vocabulary.encode("utf-8")).hexdigest()[:16]


def head_vectorizer(head: tf_keras.Model) -> tf_keras.layers.TextVectorization | None:
    """The head's TF-IDF vectorizer, or None for a deep-only head."""
    return next((layer for layer in head.layers if layer.name == VECTORIZER), None)


def _count_times_idf(vectorizer: tf_keras.layers.TextVectorization, texts: Sequence[str]) -> sparse.csr_matrix:
    """The vectorizer's output for `texts` (count · idf of each vocabulary entry) as a float32 CSR matrix."""
    # A twin of the vectorizer (same config, vocabulary and IDF, through the public weights) that
    # returns a SparseTensor: much faster than the dense 20,000-wide rows the model computes
    # (bench/FINDINGS.md, "Training speed").
    twin = tf_keras.layers.TextVectorization.from_config({**vectorizer.get_config(), "sparse": True})
    twin.set_weights(vectorizer.get_weights())
    width = int(vectorizer.vocabulary_size())
    chunks = [sparse.csr_matrix((0, width), dtype=np.float32)]
    for start in range(0, len(texts), CHUNK_TEXTS):
        batch = twin(tf.constant(list(texts[start : start + CHUNK_TEXTS])))
        rows, columns = batch.indices.numpy().T
        chunks.append(sparse.csr_matrix((batch.values.numpy(), (rows, columns)), shape=tuple(batch.dense_shape)))
    return sparse.vstack(chunks, format="csr", dtype=np.float32)
