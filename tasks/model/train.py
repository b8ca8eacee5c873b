"""Stage: train the genre classifier and export it as a serving SavedModel.

Wide & deep, on top of a frozen TF Hub text embedding:
- deep: the embedding's vector (`hub.KerasLayer`) → Dense(ReLU) → Dropout → one logit per genre;
- wide (optional): TF-IDF of word 1-2-grams (Keras `TextVectorization`, adapted on the train split and
  saved inside the model) → one logit per genre.
The logits add up; a sigmoid per genre gives its probability; binary cross-entropy; early stopping on
the validation split keeps the best epoch. Per-genre decision thresholds are then tuned on the
validation split for F1.

The embedding is frozen, so training reads the vectors from the embedding cache; the wide branch's
TF-IDF is computed once per text before the first epoch (`features`), and the head is trained on those
sparse rows through the same layers (`sparse_trainer`). The export composes
module and head and takes raw strings: `serving_default` maps a 1-D `tf.string` tensor `descriptions`
to `probabilities` (float32, `[batch, genres]`); `assets/labels.txt` names the outputs in order and
`assets/thresholds.json` holds the tuned thresholds. The export also keeps the head alone as
`head_probabilities(texts, embeddings)`, which evaluation calls with cached vectors. The file and
signature names are `bundle`'s, the module every reader of a model folder uses.

Warm start: `assets.extra/` (which TensorFlow Serving ignores) holds the head as a Keras file and a
record of what it was trained with, so the next weekly run can fine-tune the served model for a few
epochs instead of training every candidate from scratch (see `candidates`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tasks.artifacts import atomic_dir, write_json
from tasks.config import RunConfig
from tasks.data.prepare import read_split
from tasks.embedding.cache import EmbeddingCache, embed_with_cache
from tasks.embedding.embed import ModuleEmbedder
from tasks.errors import ChampionError
from tasks.model.bundle import (
    EXTRA_DIR,
    SERVING_SIGNATURE,
    SIGNATURE_INPUT,
    SIGNATURE_OUTPUT,
    head_path,
    load_head,
    training_record_path,
    write_assets,
)
from tasks.model.features import adapt_vectorizer, head_vectorizer, tfidf_matrix, wide_inputs
from tasks.model.metrics import tune_thresholds
from tasks.results import TrainResult
from tasks.tensorflow_runtime import hub, tf, tf_keras

log = logging.getLogger(__name__)

ARCHITECTURE_FIELDS = ("wide", "hidden_units", "dropout", "vocabulary_size")
WIDE_INPUT = "tfidf"  # the trainer's sparse input: the head's vectorizer output, computed ahead
PREDICT_BATCH_SIZE = 1024
WARM_START_PATIENCE = 2  # a fine-tuned head starts near its best: stop soon after it stops improving
# Steps per call into Keras's compiled functions (training, validation, prediction): the same steps on the
# same batches, with Keras's per-call work paid once per 16: shorter epochs on an AMD EPYC, no gain on a Xeon
# with AMX (bench/FINDINGS.md, "Training speed").
STEPS_PER_EXECUTION = 16


@dataclass(frozen=True)
class TrainConfig:
    embedding_module: str
    epochs: int
    batch_size: int
    hidden_units: int
    learning_rate: float
    seed: int
    wide: bool = True
    dropout: float = 0.5
    vocabulary_size: int = 20_000
    # With batch 512 and learning rate 0.003 (see config's batch_size) the wide candidate's best epoch comes
    # soon before the next best; a longer patience only added epochs to the deep candidate, which never wins,
    # for no better test AUC. Why 3: bench/FINDINGS.md, "Training defaults".
    patience: int = 3
    warm_start_from: str = ""  # a served model folder whose head to fine-tune (see `candidates`)
    warm_starts_before: int = 0  # warm starts in a row that led to that model


class FittedHead(NamedTuple):
    head: tf_keras.Model
    warm_starts: int
    history: dict[str, list[float]]  # per epoch, as Keras names them
    valid_probabilities: np.ndarray
    embedding_stats: dict[str, int]
    fit_seconds: float


def train_model(prepared_dir: Path, out_dir: Path, config: TrainConfig, cache: EmbeddingCache) -> TrainResult:
    """Train on the train split of `prepared_dir`, stop early on its validation split; export to `out_dir`."""
    started = time.monotonic()
    train_texts, train_labels, genres = read_split(prepared_dir, "train")
    valid_texts, valid_labels, _ = read_split(prepared_dir, "validation")
    if not train_texts or not valid_texts:
        raise ValueError(
            f"{prepared_dir} needs train and validation rows, has {len(train_texts)} and {len(valid_texts)}"
        )
    fitted = fit_head(config, (train_texts, train_labels), (valid_texts, valid_labels), cache)
    thresholds = tune_thresholds(valid_labels, fitted.valid_probabilities, genres)
    record = {
        "genres": genres,
        "embedding_fingerprint": cache.module_fingerprint,
        "architecture": {name: getattr(config, name) for name in ARCHITECTURE_FIELDS},
        "warm_starts": fitted.warm_starts,
    }
    with atomic_dir(out_dir) as tmp:
        export_serving_model(config.embedding_module, fitted.head, genres, thresholds, tmp)
        (tmp / EXTRA_DIR).mkdir()
        fitted.head.save(head_path(tmp))
        write_json(training_record_path(tmp), record)
    auc_history = fitted.history["val_auc_micro"]
    summary: TrainResult = {
        "model_path": str(out_dir),
        "train_rows": len(train_texts),
        "validation_rows": len(valid_texts),
        "validation_auc_micro": float(max(auc_history)),
        "best_epoch": int(np.argmax(auc_history)) + 1,
        "epochs_run": len(auc_history),
        "thresholds": thresholds,
        "warm_start_from": config.warm_start_from or None,
        "warm_starts": fitted.warm_starts,
        "embeddings": fitted.embedding_stats,
        "genres": genres,
        "fit_seconds": round(fitted.fit_seconds, 1),
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(out_dir.parent / "training.json", {**summary, "history": fitted.history})  # the epochs too
    return summary


def fit_head(
    config: TrainConfig,
    train_split: tuple[list[str], np.ndarray],
    valid_split: tuple[list[str], np.ndarray],
    cache: EmbeddingCache,
) -> FittedHead:
    """Build (or load, to warm-start) the head and fit it on the splits' (texts, labels), stopping early on
    the validation split. The splits' vectors and TF-IDF rows live only in here: they are freed before
    the export loads the embedding module."""
    (train_texts, train_labels), (valid_texts, valid_labels) = train_split, valid_split
    # One pass over the cache (it reads every shard) for both splits.
    embedder = ModuleEmbedder(config.embedding_module)
    both, embedding_stats = embed_with_cache([*train_texts, *valid_texts], embedder, cache)
    train_vectors, valid_vectors = both[: len(train_texts)], both[len(train_texts) :]
    tf_keras.utils.set_random_seed(config.seed)
    if config.warm_start_from:
        head, warm_starts = warm_start_head(Path(config.warm_start_from)), config.warm_starts_before + 1
    else:
        vectorizer = adapt_vectorizer(train_texts, config.vocabulary_size) if config.wide else None
        head, warm_starts = build_head(config, both.shape[1], train_labels.shape[1], vectorizer), 0
    trainer = sparse_trainer(head, config.learning_rate)
    with (
        SplitRows(training_features(head, train_texts, train_vectors), train_labels) as train_rows,
        SplitRows(training_features(head, valid_texts, valid_vectors), valid_labels) as valid_rows,
    ):
        fit_started = time.monotonic()
        history = trainer.fit(
            train_rows.dataset(config.batch_size, shuffle_seed=config.seed),
            validation_data=valid_rows.dataset(PREDICT_BATCH_SIZE),
            epochs=config.epochs,
            callbacks=[
                tf_keras.callbacks.EarlyStopping(
                    monitor="val_auc_micro",
                    mode="max",
                    patience=WARM_START_PATIENCE if config.warm_start_from else config.patience,
                    restore_best_weights=True,
                )
            ],
            verbose=2,
        )
        fit_seconds = time.monotonic() - fit_started
        valid_inputs = valid_rows.dataset(PREDICT_BATCH_SIZE).map(lambda inputs, _: inputs)
        valid_probabilities = trainer.predict(valid_inputs, verbose=0)
    return FittedHead(
        head,
        warm_starts,
        {name: [float(value) for value in values] for name, values in history.history.items()},
        valid_probabilities,
        embedding_stats,
        fit_seconds,
    )


def train_candidate(
    prepared_dir: Path,
    candidates_dir: Path,
    run_config: RunConfig,
    candidate: Mapping[str, Any],
    embedding_module: str,
    cache: EmbeddingCache,
) -> TrainResult:
    """Train one candidate: the run's training params with the candidate's overrides."""
    base: dict[str, Any] = {
        "embedding_module": embedding_module,
        "epochs": run_config.epochs,
        "batch_size": run_config.batch_size,
        "hidden_units": run_config.hidden_units,
        "learning_rate": run_config.learning_rate,
        "seed": run_config.seed,
    }
    config = TrainConfig(**(base | {key: value for key, value in candidate.items() if key != "index"}))
    summary = train_model(prepared_dir, candidates_dir / str(candidate["index"]) / "model", config, cache)
    summary["candidate"] = dict(candidate)
    return summary


def training_features(head: tf_keras.Model, texts: list[str], vectors: np.ndarray) -> dict[str, Any]:
    """The trainer's inputs: the cached vectors, and the wide branch's TF-IDF rows (a CSR matrix with sorted
    indices) if the head has one."""
    features: dict[str, Any] = {"embedding": vectors}
    vectorizer = head_vectorizer(head)
    if vectorizer is not None:
        features[WIDE_INPUT] = tfidf_matrix(vectorizer, texts)
    return features


class SplitRows:
    """A split's training inputs (`training_features`) and labels as they are in memory, fed to Keras a
    batch of rows at a time (`dataset`).

    A batch is gathered by row number: shuffling reorders the row numbers, not the rows. A shuffle
    buffer of the rows held a second copy of the split, converting the arrays to tensors a third, and
    tf.data paid its cost per row. The same seed gives the same batches as shuffling the rows did.

    A context manager: `tf.numpy_function` keeps its Python function, and so the arrays, alive for the
    rest of the process, so leaving the block drops them (before the export loads the embedding module).
    """

    def __init__(self, features: dict[str, Any], labels: np.ndarray):
        self.rows, self.columns = len(labels), (features["embedding"].shape[1], labels.shape[1])
        self.tfidf_width = features[WIDE_INPUT].shape[1] if WIDE_INPUT in features else None
        self._arrays: dict[str, Any] | None = {**features, "labels": labels}

    def __enter__(self) -> SplitRows:
        return self

    def __exit__(self, *_: object) -> None:
        self._arrays = None

    def dataset(self, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
        """Batches of (features, labels); reshuffled every epoch if given a seed."""
        rows = tf.data.Dataset.range(self.rows)
        if shuffle_seed is not None:
            rows = rows.shuffle(self.rows, seed=shuffle_seed, reshuffle_each_iteration=True)
        return rows.batch(batch_size).map(self._gather).prefetch(tf.data.AUTOTUNE)

    def _take(self, rows: np.ndarray) -> list[np.ndarray]:
        if self._arrays is None:
            raise RuntimeError("the split's rows were released")
        taken = [self._arrays["embedding"][rows], self._arrays["labels"][rows]]
        if self.tfidf_width is not None:
            batch = self._arrays[WIDE_INPUT][rows]  # CSR rows keep their sorted columns: row-major order
            row_of_entry = np.repeat(np.arange(len(rows)), np.diff(batch.indptr))
            taken += [np.stack([row_of_entry, batch.indices], axis=1).astype(np.int64), batch.data]
        return taken

    def _gather(self, rows: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        wide = self.tfidf_width is not None
        taken = tf.numpy_function(self._take, [rows], [tf.float32, tf.float32] + [tf.int64, tf.float32] * wide)
        taken[0].set_shape([None, self.columns[0]])
        taken[1].set_shape([None, self.columns[1]])
        batch = {"embedding": taken[0]}
        if wide:
            shape = tf.stack([tf.size(rows, out_type=tf.int64), self.tfidf_width])
            batch[WIDE_INPUT] = tf.SparseTensor(tf.reshape(taken[2], [-1, 2]), taken[3], shape)
        return batch, taken[1]


def build_head(
    config: TrainConfig, dimensions: int, n_genres: int, vectorizer: tf_keras.layers.Layer | None
) -> tf_keras.Model:
    """The exported head: (text, embedding vector) → one probability per genre; wide if given a vectorizer."""
    text = tf_keras.Input(shape=(), dtype=tf.string, name="text")
    embedding = tf_keras.Input(shape=(dimensions,), dtype=tf.float32, name="embedding")
    hidden = tf_keras.layers.Dense(config.hidden_units, activation="relu", name="hidden")(embedding)
    hidden = tf_keras.layers.Dropout(config.dropout, name="dropout")(hidden)
    logits = tf_keras.layers.Dense(n_genres, name="deep_logits")(hidden)
    if vectorizer is not None:
        wide_logits = tf_keras.layers.Dense(n_genres, name="wide_logits")(wide_inputs(text, vectorizer))
        logits = tf_keras.layers.Add(name="logits")([logits, wide_logits])
    probabilities = tf_keras.layers.Activation("sigmoid", name=SIGNATURE_OUTPUT)(logits)
    return tf_keras.Model({"text": text, "embedding": embedding}, probabilities, name="genre_head")


def sparse_trainer(head: tf_keras.Model, learning_rate: float) -> tf_keras.Model:
    """The head's own layers (so training it trains the head) on precomputed inputs: the embedding vector
    and, when wide, the TF-IDF row as a sparse tensor instead of the raw text."""
    embedding = tf_keras.Input(shape=head.input["embedding"].shape[1:], dtype=tf.float32, name="embedding")
    hidden = head.get_layer("dropout")(head.get_layer("hidden")(embedding))
    logits = head.get_layer("deep_logits")(hidden)
    inputs = {"embedding": embedding}
    if head_vectorizer(head) is not None:
        width = head.get_layer("wide_logits").kernel.shape[0]
        inputs[WIDE_INPUT] = tf_keras.Input(shape=(width,), sparse=True, dtype=tf.float32, name=WIDE_INPUT)
        logits = head.get_layer("logits")([logits, head.get_layer("wide_logits")(inputs[WIDE_INPUT])])
    probabilities = head.get_layer(SIGNATURE_OUTPUT)(logits)
    trainer = tf_keras.Model(inputs, probabilities, name="genre_head_trainer")
    trainer.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[tf_keras.metrics.AUC(name="auc_micro")],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return trainer


def warm_start_head(model_dir: Path) -> tf_keras.Model:
    """The served head to fine-tune, with its vectorizer (vocabulary and IDF) as it was served."""
    try:
        return load_head(model_dir)
    except (OSError, ValueError) as err:
        raise ChampionError(
            f"cannot warm-start from {head_path(model_dir)}: {err}. "
            "Trigger the run with max_warm_starts=0 to train from scratch"
        ) from err


def export_serving_model(
    embedding_module: str, head: tf_keras.Model, genres: Sequence[str], thresholds: Mapping[str, float], out_dir: Path
) -> None:
    """Write a SavedModel whose `serving_default` takes raw descriptions; genres and thresholds go to assets/."""
    # tf-keras's own switch for what `Model.save(save_traces=False)` does; it has no public path. Imported
    # here, after tasks.tensorflow_runtime has set up TensorFlow.
    from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope

    description = tf_keras.Input(shape=(), dtype=tf.string, name=SIGNATURE_INPUT)
    embedding = hub.KerasLayer(embedding_module, trainable=False, name="embedding")(description)
    model = tf_keras.Model(description, head({"text": description, "embedding": embedding}), name="movie_genre")
    serving = tf.Module(name="movie_genre_serving")
    serving.model = model
    serving.head = head

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SIGNATURE_INPUT)])
    def serve(descriptions: tf.Tensor) -> dict[str, tf.Tensor]:
        return {SIGNATURE_OUTPUT: model(descriptions, training=False)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string),
            tf.TensorSpec([None, head.input["embedding"].shape[1]], tf.float32),
        ]
    )
    def head_probabilities(texts: tf.Tensor, embeddings: tf.Tensor) -> tf.Tensor:
        return head({"text": texts, "embedding": embeddings}, training=False)

    serving.serve = serve
    serving.head_probabilities = head_probabilities
    # An asset keeps its file name, so the files are written under their final names in a scratch folder.
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as scratch:
        labels_path, thresholds_path = write_assets(Path(scratch), genres, thresholds)
        serving.labels = tf.saved_model.Asset(str(labels_path))
        serving.thresholds = tf.saved_model.Asset(str(thresholds_path))
        # Without Keras's traces of every layer's call functions, which only Keras's loader reads: the export
        # is faster (bench/FINDINGS.md, "Training speed"); the signatures and their probabilities are the
        # same (TensorFlow Serving and tf.saved_model.load read only those).
        with keras_option_scope(save_traces=False):
            tf.saved_model.save(serving, str(out_dir), signatures={SERVING_SIGNATURE: serve})
