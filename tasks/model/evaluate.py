"""Stage: score the exported model on the test split, beside the baselines.

The test descriptions' vectors come from the embedding cache and go through the exported model's head
(`head_probabilities`). A sample of raw descriptions also goes through `serving_default`, exactly as
TensorFlow Serving will call it, and must give the same probabilities: what was scored is what will be
served. The baselines (see `baselines`) are fitted on the same train split and scored on the same test
split.

Writes `metrics.json` (micro and macro ROC AUC; per genre the AUC and precision / recall / F1 at 0.5
and at the model's tuned threshold; the baselines' AUCs and the model's margin over the best) and
`predictions.npz` (test labels and every model's probabilities, for the report).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, precision_recall_fscore_support, roc_auc_score

from tasks.artifacts import atomic_path, write_json
from tasks.data.prepare import read_split
from tasks.embedding.cache import EmbeddingCache, embed_with_cache
from tasks.embedding.embed import ModuleEmbedder
from tasks.errors import ExportError

log = logging.getLogger(__name__)

DECISION_THRESHOLD = 0.5
BATCH_SIZE = 256
PARITY_SAMPLE = 64
PARITY_TOLERANCE = 1e-4
MODEL = "model"


def evaluate_model(
    model_dir: Path, prepared_dir: Path, out_dir: Path, embedding_module: str, cache: EmbeddingCache
) -> dict[str, Any]:
    """Score `model_dir` and the baselines on the test split; write metrics.json and predictions.npz."""
    from tasks.model.baselines import baseline_probabilities
    from tasks.model.train import THRESHOLDS_FILE
    from tasks.tensorflow_runtime import tf

    texts, labels, genres = read_split(prepared_dir, "test")
    train_texts, train_labels, _ = read_split(prepared_dir, "train")
    if not texts:
        raise ValueError(f"no test rows in {prepared_dir}")
    embedder = ModuleEmbedder(embedding_module)
    # One pass over the cache (it reads every shard) for both splits.
    both, embedding_stats = embed_with_cache([*texts, *train_texts], embedder, cache)
    vectors, train_vectors = both[: len(texts)], both[len(texts) :]
    exported = tf.saved_model.load(str(model_dir))
    probabilities = np.concatenate(
        [
            exported.head_probabilities(
                tf.constant(texts[start : start + BATCH_SIZE]), tf.constant(vectors[start : start + BATCH_SIZE])
            ).numpy()
            for start in range(0, len(texts), BATCH_SIZE)
        ]
    )
    check_serving_parity(exported, texts[:PARITY_SAMPLE], probabilities[:PARITY_SAMPLE])
    thresholds = json.loads((model_dir / "assets" / THRESHOLDS_FILE).read_text(encoding="utf-8"))
    baselines = baseline_probabilities(train_texts, train_vectors, train_labels, texts, vectors)
    metrics = compute_metrics(labels, probabilities, genres, thresholds)
    metrics["baselines"] = {
        name: {key: value for key, value in compute_metrics(labels, p, genres).items() if key.startswith("auc_")}
        for name, p in baselines.items()
    }
    best = max(metrics["baselines"].items(), key=lambda item: item[1]["auc_micro"])
    metrics["margin_over_best_baseline"] = {
        "baseline": best[0],
        "auc_micro": metrics["auc_micro"] - best[1]["auc_micro"],
    }
    metrics["embeddings"] = embedding_stats
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", metrics)
    with atomic_path(out_dir / "predictions.npz") as tmp, tmp.open("wb") as handle:
        np.savez(handle, labels=labels, genres=np.array(genres), **{MODEL: probabilities}, **baselines)
    log.info(
        "auc_micro %.4f (best baseline %s %+.4f), auc_macro %s on %d test rows",
        metrics["auc_micro"],
        best[0],
        metrics["margin_over_best_baseline"]["auc_micro"],
        metrics["auc_macro"],
        len(texts),
    )
    return {
        "auc_micro": metrics["auc_micro"],
        "auc_macro": metrics["auc_macro"],
        "test_rows": metrics["test_rows"],
        "baselines_auc_micro": {name: m["auc_micro"] for name, m in metrics["baselines"].items()},
        "path": str(out_dir / "metrics.json"),
    }


def predict_probabilities(model_dir: Path, texts: list[str]) -> np.ndarray:
    """Probabilities from the SavedModel in `model_dir`, through its serving signature."""
    from tasks.tensorflow_runtime import tf

    return serving_probabilities(tf.saved_model.load(str(model_dir)), texts)


def serving_probabilities(exported: Any, texts: list[str]) -> np.ndarray:
    from tasks.model.train import SIGNATURE_OUTPUT
    from tasks.tensorflow_runtime import tf

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


def tune_thresholds(labels: np.ndarray, probabilities: np.ndarray, genres: Sequence[str]) -> dict[str, float]:
    """Per genre, the decision threshold with the best F1 on these rows (0.5 for a genre without
    positives, where F1 is undefined)."""
    thresholds = {}
    for index, genre in enumerate(genres):
        if labels[:, index].sum() == 0:
            thresholds[genre] = DECISION_THRESHOLD
            continue
        precision, recall, cutoffs = precision_recall_curve(labels[:, index], probabilities[:, index])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        thresholds[genre] = float(cutoffs[int(np.argmax(f1))])
    return thresholds


def compute_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    genres: Sequence[str],
    thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """AUCs and per-genre precision / recall / F1 at 0.5 and, if given, at each genre's tuned threshold.
    A genre without both classes in the test split has no AUC: it is reported as null and left out of
    the macro average."""
    per_genre: dict[str, dict[str, Any]] = {}
    at_half = _precision_recall_f1(labels, probabilities, np.full(len(genres), DECISION_THRESHOLD))
    tuned = (
        _precision_recall_f1(labels, probabilities, np.array([thresholds[g] for g in genres])) if thresholds else None
    )
    for index, genre in enumerate(genres):
        column = labels[:, index]
        has_both = 0 < column.sum() < len(column)
        per_genre[genre] = {
            "auc": float(roc_auc_score(column, probabilities[:, index])) if has_both else None,
            "support": int(column.sum()),
            **at_half[index],
        }
        if tuned:
            per_genre[genre]["tuned"] = {"threshold": thresholds[genre], **tuned[index]}
    aucs = [m["auc"] for m in per_genre.values() if m["auc"] is not None]
    return {
        "auc_micro": float(roc_auc_score(labels.ravel(), probabilities.ravel())),
        "auc_macro": float(np.mean(aucs)) if aucs else None,
        "genres_without_auc": [g for g, m in per_genre.items() if m["auc"] is None],
        "decision_threshold": DECISION_THRESHOLD,
        "test_rows": int(labels.shape[0]),
        "per_genre": per_genre,
    }


def _precision_recall_f1(labels: np.ndarray, probabilities: np.ndarray, cutoffs: np.ndarray) -> list[dict[str, float]]:
    predicted = (probabilities >= cutoffs).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average=None, zero_division=0)
    return [
        {"precision": float(p), "recall": float(r), "f1": float(f)}
        for p, r, f in zip(precision, recall, f1, strict=True)
    ]
