"""Stage: score the exported model on the test split, beside the baselines.

The test descriptions' vectors come from the embedding cache and go through the exported model's head
(`head_probabilities`). A sample of raw descriptions also goes through `serving_default`, exactly as
TensorFlow Serving will call it, and must give the same probabilities: what was scored is what will be
served. The baselines (see `baselines`) are fitted on the same train split and scored on the same test
split.

Writes `metrics.json` (scored by `metrics`: micro and macro ROC AUC; per genre the AUC and precision /
recall / F1 at 0.5 and at the model's tuned threshold; the baselines' AUCs and the model's margin over
the best) and `predictions.npz` (test labels and every model's probabilities, for the report).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tasks.artifacts import atomic_path, write_json
from tasks.data.prepare import read_split
from tasks.embedding.cache import EmbeddingCache, embed_with_cache
from tasks.embedding.embed import ModuleEmbedder
from tasks.errors import ExportError
from tasks.model.bundle import read_thresholds, serving_probabilities
from tasks.model.metrics import compute_metrics

log = logging.getLogger(__name__)

BATCH_SIZE = 256
PARITY_SAMPLE = 64
PARITY_TOLERANCE = 1e-4
MODEL = "model"


def evaluate_model(
    model_dir: Path, prepared_dir: Path, out_dir: Path, embedding_module: str, cache: EmbeddingCache
) -> dict[str, Any]:
    """Score `model_dir` and the baselines on the test split; write metrics.json and predictions.npz."""
    from tasks.model.baselines import baseline_probabilities
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
    thresholds = read_thresholds(model_dir)
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


def check_serving_parity(exported: Any, texts: list[str], expected: np.ndarray) -> None:
    """Raw strings through `serving_default` must give what the head gave on cached vectors."""
    served = serving_probabilities(exported, texts)
    worst = float(np.max(np.abs(served - expected))) if len(texts) else 0.0
    if worst > PARITY_TOLERANCE:
        raise ExportError(
            f"serving_default differs from the evaluated model by up to {worst:.2e} on {len(texts)} test "
            f"descriptions (tolerance {PARITY_TOLERANCE:.0e}): the embedding cache or the export is stale"
        )
