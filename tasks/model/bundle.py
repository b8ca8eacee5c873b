"""The exported model's on-disk contract: the one place that names what `train` writes into a model
folder and how every other stage reads it back.

    <model>/saved_model.pb, variables/   the SavedModel TensorFlow Serving loads
    <model>/assets/labels.txt            the genres, one a line, in the order of the outputs
    <model>/assets/thresholds.json       {genre: decision threshold tuned on the validation split}
    <model>/assets.extra/head.keras      the head alone, for the next run's warm start
    <model>/assets.extra/training.json   the training record: genres, embedding fingerprint,
                                         architecture, warm starts in a row

`serving_default` maps a 1-D `tf.string` tensor `descriptions` to `probabilities` (float32,
`[batch, genres]`). TensorFlow Serving ignores `assets.extra/`.

`head_probabilities` maps descriptions and their cached embedding vectors (float32, `[batch, dimension]`)
to the same probabilities without running the embedding module: evaluate, the gate and batch predict
score cached vectors through it.

Light on purpose: no TensorFlow at import, so the gate, the serving check, `predict` and the candidate
planner can name these files without paying seconds and hundreds of MB for it. The functions that call
the SavedModel or load the head import TensorFlow when they run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.artifacts import read_json

ASSETS_DIR = "assets"  # the SavedModel's own asset folder: TensorFlow Serving copies it with the model
LABELS_FILE = "labels.txt"
THRESHOLDS_FILE = "thresholds.json"
EXTRA_DIR = "assets.extra"  # beside the SavedModel; TensorFlow Serving ignores it
HEAD_FILE = "head.keras"
TRAINING_RECORD_FILE = "training.json"
SERVING_SIGNATURE = "serving_default"
SIGNATURE_INPUT = "descriptions"
SIGNATURE_OUTPUT = "probabilities"
SERVING_BATCH_SIZE = 256
HEAD_SIGNATURE = "head_probabilities"  # (descriptions, their cached vectors) -> probabilities
HEAD_BATCH_SIZE = 256


def labels_path(model_dir: Path) -> Path:
    return model_dir / ASSETS_DIR / LABELS_FILE


def thresholds_path(model_dir: Path) -> Path:
    return model_dir / ASSETS_DIR / THRESHOLDS_FILE


def head_path(model_dir: Path) -> Path:
    return model_dir / EXTRA_DIR / HEAD_FILE


def training_record_path(model_dir: Path) -> Path:
    return model_dir / EXTRA_DIR / TRAINING_RECORD_FILE


def read_labels(model_dir: Path) -> list[str]:
    """The genres the model predicts, in the order of its outputs."""
    return labels_path(model_dir).read_text(encoding="utf-8").splitlines()


def read_thresholds(model_dir: Path) -> dict[str, float]:
    """Each genre's tuned decision threshold; raises FileNotFoundError for a model exported without them."""
    thresholds: dict[str, float] = read_json(thresholds_path(model_dir))
    return thresholds


def read_training_record(model_dir: Path) -> dict[str, Any]:
    """What the model was trained with (see `train.train_model`); OSError or ValueError if unreadable."""
    record: dict[str, Any] = read_json(training_record_path(model_dir))
    return record


def write_assets(folder: Path, genres: Sequence[str], thresholds: Mapping[str, float]) -> tuple[Path, Path]:
    """Write labels.txt and thresholds.json into `folder` (an export turns them into SavedModel assets,
    which keep their file names); return their paths."""
    labels = folder / LABELS_FILE
    labels.write_text("".join(f"{genre}\n" for genre in genres), encoding="utf-8")
    tuned = folder / THRESHOLDS_FILE
    tuned.write_text(json.dumps(dict(thresholds), indent=2) + "\n", encoding="utf-8")
    return labels, tuned


def serving_probabilities(exported: Any, texts: list[str]) -> np.ndarray:
    """Probabilities of a loaded SavedModel for `texts`, through `serving_default` as TensorFlow Serving
    calls it, in batches."""
    from tasks.tensorflow_runtime import tf

    serve = exported.signatures[SERVING_SIGNATURE]
    batches = [
        serve(tf.constant(texts[start : start + SERVING_BATCH_SIZE]))[SIGNATURE_OUTPUT].numpy()
        for start in range(0, len(texts), SERVING_BATCH_SIZE)
    ]
    return np.concatenate(batches)


def head_probabilities(
    exported: Any, texts: Sequence[str], vectors: np.ndarray, batch_size: int = HEAD_BATCH_SIZE
) -> np.ndarray:
    """Probabilities of a loaded SavedModel for `texts` through its `head_probabilities` signature, given
    their embedding vectors (row for row, e.g. from the embedding cache), `batch_size` rows a call."""
    from tasks.tensorflow_runtime import tf

    head = getattr(exported, HEAD_SIGNATURE)
    batches = [
        head(tf.constant(texts[start : start + batch_size]), tf.constant(vectors[start : start + batch_size])).numpy()
        for start in range(0, len(texts), batch_size)
    ]
    return np.concatenate(batches)


def load_head(model_dir: Path) -> Any:
    """The Keras head saved beside the SavedModel (`head_path`), with its vectorizer's vocabulary and IDF
    as they were served: only Keras gives the layers back with their config. OSError or ValueError if
    the file is missing or unreadable."""
    from tasks.tensorflow_runtime import tf_keras

    return tf_keras.models.load_model(head_path(model_dir), compile=False, safe_mode=True)


def predict_probabilities(model_dir: Path, texts: list[str]) -> np.ndarray:
    """Probabilities from the SavedModel in `model_dir`, through its serving signature."""
    from tasks.tensorflow_runtime import tf

    return serving_probabilities(tf.saved_model.load(str(model_dir)), texts)
