"""Stage: score the exported model on the test split.

The test descriptions' vectors come from the embedding cache and go through the exported model's head
(`head_probabilities`). A sample of raw descriptions also goes through `serving_default`, exactly as
TensorFlow Serving will call it, and must give the same probabilities: what was scored is what will be
served. Writes `metrics.json`: micro and macro ROC AUC, and per genre the AUC and precision / recall /
F1 at 0.5.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from tasks.artifacts import write_json
from tasks.embed import ModuleEmbedder
from tasks.embedding_cache import EmbeddingCache, embed_with_cache
from tasks.errors import ExportError
from tasks.prepare import read_split

log = logging.getLogger(__name__)

DECISION_THRESHOLD = 0.5
BATCH_SIZE = 256
PARITY_SAMPLE = 64
PARITY_TOLERANCE = 1e-4


def evaluate_model(
    model_dir: Path, prepared_dir: Path, metrics_path: Path, embedding_module: str, cache: EmbeddingCache
) -> dict[str, Any]:
    """Score `model_dir` on the test split of `prepared_dir`; write and return the metrics."""
    from tasks.tensorflow_runtime import tf

    texts, labels, genres = read_split(prepared_dir, "test")
    if not texts:
        raise ValueError(f"no test rows in {prepared_dir}")
    vectors, embedding_stats = embed_with_cache(texts, ModuleEmbedder(embedding_module), cache)
    exported = tf.saved_model.load(str(model_dir))
    probabilities = np.concatenate(
        [
            exported.head_probabilities(tf.constant(vectors[start : start + BATCH_SIZE])).numpy()
            for start in range(0, len(vectors), BATCH_SIZE)
        ]
    )
    check_serving_parity(exported, texts[:PARITY_SAMPLE], probabilities[:PARITY_SAMPLE])
    metrics = compute_metrics(labels, probabilities, genres) | {"embeddings": embedding_stats}
    write_json(metrics_path, metrics)
    log.info("auc_micro %.4f, auc_macro %s on %d test rows", metrics["auc_micro"], metrics["auc_macro"], len(texts))
    return {key: metrics[key] for key in ("auc_micro", "auc_macro", "test_rows")} | {"path": str(metrics_path)}


def predict_probabilities(model_dir: Path, texts: list[str]) -> np.ndarray:
    """Probabilities from the SavedModel in `model_dir`, through its serving signature."""
    from tasks.tensorflow_runtime import tf

    return serving_probabilities(tf.saved_model.load(str(model_dir)), texts)


def serving_probabilities(exported: Any, texts: list[str]) -> np.ndarray:
    from tasks.tensorflow_runtime import tf
    from tasks.train import SIGNATURE_OUTPUT

    serve = exported.signatures["serving_default"]
    batches = [
        serve(tf.constant(texts[start : start + BATCH_SIZE]))[SIGNATURE_OUTPUT].numpy()
        for start in range(0, len(texts), BATCH_SIZE)
    ]
    return np.concatenate(batches)


def check_serving_parity(exported: Any, texts: list[str], expected: np.ndarray) -> None:
    """Raw strings through `serving_default` must give what the head gave on cached vectors."""
    served = serving_probabilities(exported, texts)
    worst = float(np.max(np.abs(served - expected))) if len(texts) else 0.0
    if worst > PARITY_TOLERANCE:
        raise ExportError(
            f"serving_default differs from the evaluated model by up to {worst:.2e} on {len(texts)} test "
            f"descriptions (tolerance {PARITY_TOLERANCE:.0e}): the embedding cache or the export is stale"
        )


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray, genres: list[str]) -> dict[str, Any]:
    """AUCs and per-genre precision / recall / F1. A genre without both classes in the test split
    has no AUC: it is reported as null and left out of the macro average."""
    predicted = (probabilities >= DECISION_THRESHOLD).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, average=None, zero_division=0)
    per_genre: dict[str, dict[str, Any]] = {}
    for index, genre in enumerate(genres):
        column = labels[:, index]
        has_both = 0 < column.sum() < len(column)
        per_genre[genre] = {
            "auc": float(roc_auc_score(column, probabilities[:, index])) if has_both else None,
            "precision": float(precision[index]),
            "recall": float(recall[index]),
            "f1": float(f1[index]),
            "support": int(support[index]),
        }
    aucs = [m["auc"] for m in per_genre.values() if m["auc"] is not None]
    return {
        "auc_micro": float(roc_auc_score(labels.ravel(), probabilities.ravel())),
        "auc_macro": float(np.mean(aucs)) if aucs else None,
        "genres_without_auc": [g for g, m in per_genre.items() if m["auc"] is None],
        "decision_threshold": DECISION_THRESHOLD,
        "test_rows": int(labels.shape[0]),
        "per_genre": per_genre,
    }
