"""Stage: train the genre classifier and export it as a serving SavedModel.

Wide & deep, on top of a frozen TF Hub text embedding:
- deep: the embedding's vector (`hub.KerasLayer`) → Dense(ReLU) → Dropout → one logit per genre;
- wide (optional): TF-IDF of word 1-2-grams (Keras `TextVectorization`, adapted on the train split and
  saved inside the model) → one logit per genre.
The logits add up; a sigmoid per genre gives its probability; binary cross-entropy; early stopping on
the validation split keeps the best epoch. Per-genre decision thresholds are then tuned on the
validation split for F1.

The embedding is frozen, so training reads the vectors from the embedding cache. The export composes
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
from typing import Any

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
    training_record_path,
    write_assets,
)
from tasks.model.metrics import tune_thresholds
from tasks.tensorflow_runtime import hub, tf, tf_keras

log = logging.getLogger(__name__)

ARCHITECTURE_FIELDS = ("wide", "hidden_units", "dropout", "vocabulary_size")
WARM_START_PATIENCE = 2  # a fine-tuned head starts near its best: stop soon after it stops improving
WIDE_INPUT_SCALE = 20.0  # measured on the shared sample: 10 → 0.8907, 20 → 0.8910, 30 → 0.8903


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
    patience: int = 8
    warm_start_from: str = ""  # a served model folder whose head to fine-tune (see `candidates`)
    warm_starts_before: int = 0  # warm starts in a row that led to that model


def train_model(prepared_dir: Path, out_dir: Path, config: TrainConfig, cache: EmbeddingCache) -> dict[str, Any]:
    """Train on the train split of `prepared_dir`, stop early on its validation split; export to `out_dir`."""
    started = time.monotonic()
    embedder = ModuleEmbedder(config.embedding_module)
    train_texts, train_labels, genres = read_split(prepared_dir, "train")
    valid_texts, valid_labels, _ = read_split(prepared_dir, "validation")
    if not train_texts or not valid_texts:
        raise ValueError(
            f"{prepared_dir} needs train and validation rows, has {len(train_texts)} and {len(valid_texts)}"
        )
    # One pass over the cache (it reads every shard) for both splits.
    both, embedding_stats = embed_with_cache([*train_texts, *valid_texts], embedder, cache)
    train_vectors, valid_vectors = both[: len(train_texts)], both[len(train_texts) :]
    tf_keras.utils.set_random_seed(config.seed)
    if config.warm_start_from:
        head, warm_starts = load_head(Path(config.warm_start_from), config.learning_rate), config.warm_starts_before + 1
    else:
        head, warm_starts = build_head(config, train_vectors.shape[1], len(genres), train_texts), 0
    history = head.fit(
        _dataset(train_texts, train_vectors, train_labels, config.batch_size, shuffle_seed=config.seed),
        validation_data=_dataset(valid_texts, valid_vectors, valid_labels, config.batch_size),
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
    valid_probabilities = head.predict(_dataset(valid_texts, valid_vectors, None, 256), verbose=0)
    thresholds = tune_thresholds(valid_labels, valid_probabilities, genres)
    record = {
        "genres": genres,
        "embedding_fingerprint": cache.module_fingerprint,
        "architecture": {name: getattr(config, name) for name in ARCHITECTURE_FIELDS},
        "warm_starts": warm_starts,
    }
    with atomic_dir(out_dir) as tmp:
        export_serving_model(config.embedding_module, head, genres, thresholds, tmp)
        (tmp / EXTRA_DIR).mkdir()
        head.save(head_path(tmp))
        write_json(training_record_path(tmp), record)
    auc_history = history.history["val_auc_micro"]
    summary = {
        "model_path": str(out_dir),
        "train_rows": len(train_texts),
        "validation_rows": len(valid_texts),
        "validation_auc_micro": float(max(auc_history)),
        "best_epoch": int(np.argmax(auc_history)) + 1,
        "epochs_run": len(auc_history),
        "thresholds": thresholds,
        "warm_start_from": config.warm_start_from or None,
        "warm_starts": warm_starts,
        "embeddings": embedding_stats,
        "genres": genres,
        "history": {name: [float(v) for v in values] for name, values in history.history.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(out_dir.parent / "training.json", summary)
    return {key: value for key, value in summary.items() if key != "history"}


def train_candidate(
    prepared_dir: Path,
    candidates_dir: Path,
    run_config: RunConfig,
    candidate: Mapping[str, Any],
    embedding_module: str,
    cache: EmbeddingCache,
) -> dict[str, Any]:
    """Train one candidate: the run's training params with the candidate's overrides."""
    base = {
        "embedding_module": embedding_module,
        "epochs": run_config.epochs,
        "batch_size": run_config.batch_size,
        "hidden_units": run_config.hidden_units,
        "learning_rate": run_config.learning_rate,
        "seed": run_config.seed,
    }
    config = TrainConfig(**(base | {key: value for key, value in candidate.items() if key != "index"}))
    summary = train_model(prepared_dir, candidates_dir / str(candidate["index"]) / "model", config, cache)
    return {**summary, "candidate": dict(candidate)}


def _dataset(
    texts: list[str], vectors: np.ndarray, labels: np.ndarray | None, batch_size: int, shuffle_seed: int | None = None
) -> tf.data.Dataset:
    features = {"text": tf.constant(texts), "embedding": vectors}
    dataset = tf.data.Dataset.from_tensor_slices(features if labels is None else (features, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def build_head(config: TrainConfig, dimensions: int, n_genres: int, train_texts: list[str]) -> tf_keras.Model:
    """The trainable part: (text, embedding vector) → one probability per genre."""
    text = tf_keras.Input(shape=(), dtype=tf.string, name="text")
    embedding = tf_keras.Input(shape=(dimensions,), dtype=tf.float32, name="embedding")
    hidden = tf_keras.layers.Dense(config.hidden_units, activation="relu", name="hidden")(embedding)
    hidden = tf_keras.layers.Dropout(config.dropout, name="dropout")(hidden)
    logits = tf_keras.layers.Dense(n_genres, name="deep_logits")(hidden)
    if config.wide:
        vectorizer = tf_keras.layers.TextVectorization(
            max_tokens=config.vocabulary_size, ngrams=2, output_mode="tf_idf", name="tfidf"
        )
        vectorizer.adapt(tf.data.Dataset.from_tensor_slices(train_texts).batch(256))
        tfidf = tf_keras.layers.UnitNormalization(name="tfidf_l2")(vectorizer(text))
        # Scaled up so the linear wide weights reach logistic-regression size in a few epochs of Adam.
        tfidf = tf_keras.layers.Rescaling(WIDE_INPUT_SCALE, name="tfidf_scaled")(tfidf)
        wide_logits = tf_keras.layers.Dense(n_genres, name="wide_logits")(tfidf)
        logits = tf_keras.layers.Add(name="logits")([logits, wide_logits])
    probabilities = tf_keras.layers.Activation("sigmoid", name=SIGNATURE_OUTPUT)(logits)
    head = tf_keras.Model({"text": text, "embedding": embedding}, probabilities, name="genre_head")
    _compile(head, config.learning_rate)
    return head


def load_head(model_dir: Path, learning_rate: float) -> tf_keras.Model:
    """The head of an exported model, ready to train on (a fresh optimizer at `learning_rate`)."""
    path = head_path(model_dir)
    try:
        head = tf_keras.models.load_model(path, compile=False, safe_mode=True)
    except (OSError, ValueError) as err:
        raise ChampionError(
            f"cannot warm-start from {path}: {err}. Trigger the run with max_warm_starts=0 to train from scratch"
        ) from err
    _compile(head, learning_rate)
    return head


def _compile(head: tf_keras.Model, learning_rate: float) -> None:
    head.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[tf_keras.metrics.AUC(name="auc_micro")],
    )


def export_serving_model(
    embedding_module: str, head: tf_keras.Model, genres: Sequence[str], thresholds: Mapping[str, float], out_dir: Path
) -> None:
    """Write a SavedModel whose `serving_default` takes raw descriptions; genres and thresholds go to assets/."""
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
        tf.saved_model.save(serving, str(out_dir), signatures={SERVING_SIGNATURE: serve})
