"""Stage: train the genre classifier and export it as a serving SavedModel.

The model is a frozen TF Hub text embedding (`hub.KerasLayer`) followed by a small dense head with one
sigmoid output per genre, trained with binary cross-entropy. The embedding is frozen, so the head is
trained on cached vectors (see `embedding_cache`); the export composes module and head and takes raw
strings: `serving_default` maps a 1-D `tf.string` tensor `descriptions` to `probabilities` (float32,
`[batch, genres]`), and `assets/labels.txt` names the outputs in order. The export also keeps the head
alone as `head_probabilities(embeddings)`, which evaluation calls on cached vectors.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.artifacts import atomic_dir, write_json
from tasks.embed import ModuleEmbedder
from tasks.embedding_cache import EmbeddingCache, embed_with_cache
from tasks.prepare import read_split
from tasks.tensorflow_runtime import hub, tf, tf_keras

log = logging.getLogger(__name__)

LABELS_FILE = "labels.txt"
SIGNATURE_INPUT = "descriptions"
SIGNATURE_OUTPUT = "probabilities"


@dataclass(frozen=True)
class TrainConfig:
    embedding_module: str
    epochs: int
    batch_size: int
    hidden_units: int
    learning_rate: float
    seed: int
    dropout: float = 0.2


def train_model(prepared_dir: Path, out_dir: Path, config: TrainConfig, cache: EmbeddingCache) -> dict[str, Any]:
    """Train on the train split of `prepared_dir`; export to `out_dir` (replaced as a whole)."""
    started = time.monotonic()
    texts, labels, genres = read_split(prepared_dir, "train")
    if not texts:
        raise ValueError(f"no training rows in {prepared_dir}")
    embedder = ModuleEmbedder(config.embedding_module)
    vectors, embedding_stats = embed_with_cache(texts, embedder, cache)
    tf_keras.utils.set_random_seed(config.seed)
    head = build_head(config, vectors.shape[1], len(genres))
    dataset = (
        tf.data.Dataset.from_tensor_slices((vectors, labels))
        .shuffle(len(texts), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    history = head.fit(dataset, epochs=config.epochs, verbose=2)
    with atomic_dir(out_dir) as tmp:
        export_serving_model(config.embedding_module, head, genres, tmp)
    summary = {
        "model_path": str(out_dir),
        "train_rows": len(texts),
        "embeddings": embedding_stats,
        "genres": genres,
        "epochs": config.epochs,
        "final_loss": float(history.history["loss"][-1]),
        "history": {name: [float(v) for v in values] for name, values in history.history.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(out_dir.parent / "training.json", summary)
    return {key: value for key, value in summary.items() if key != "history"}


def build_head(config: TrainConfig, dimensions: int, n_genres: int) -> tf_keras.Model:
    """The trainable part: embedding vector → one probability per genre."""
    embedding = tf_keras.Input(shape=(dimensions,), dtype=tf.float32, name="embedding")
    hidden = tf_keras.layers.Dense(config.hidden_units, activation="relu", name="hidden")(embedding)
    hidden = tf_keras.layers.Dropout(config.dropout, name="dropout")(hidden)
    probabilities = tf_keras.layers.Dense(n_genres, activation="sigmoid", name=SIGNATURE_OUTPUT)(hidden)
    head = tf_keras.Model(embedding, probabilities, name="genre_head")
    head.compile(
        optimizer=tf_keras.optimizers.Adam(config.learning_rate),
        loss="binary_crossentropy",
        metrics=[tf_keras.metrics.AUC(name="auc_micro")],
    )
    return head


def export_serving_model(embedding_module: str, head: tf_keras.Model, genres: Sequence[str], out_dir: Path) -> None:
    """Write a SavedModel whose `serving_default` takes raw descriptions; genres go to assets/labels.txt."""
    description = tf_keras.Input(shape=(), dtype=tf.string, name=SIGNATURE_INPUT)
    embedding = hub.KerasLayer(embedding_module, trainable=False, name="embedding")(description)
    model = tf_keras.Model(description, head(embedding), name="movie_genre_classifier")
    serving = tf.Module(name="movie_genre_serving")
    serving.model = model
    serving.head = head

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SIGNATURE_INPUT)])
    def serve(descriptions: tf.Tensor) -> dict[str, tf.Tensor]:
        return {SIGNATURE_OUTPUT: model(descriptions, training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None, head.input_shape[1]], tf.float32)])
    def head_probabilities(embeddings: tf.Tensor) -> tf.Tensor:
        return head(embeddings, training=False)

    serving.serve = serve
    serving.head_probabilities = head_probabilities
    # An asset keeps its file name, so the labels are written as labels.txt in a scratch folder.
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as scratch:
        labels_path = Path(scratch) / LABELS_FILE
        labels_path.write_text("".join(f"{genre}\n" for genre in genres), encoding="utf-8")
        serving.labels = tf.saved_model.Asset(str(labels_path))
        tf.saved_model.save(serving, str(out_dir), signatures={"serving_default": serve})
