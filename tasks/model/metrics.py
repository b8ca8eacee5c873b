"""Scores of multi-label genre probabilities against the truth: ROC AUC, precision / recall / F1 at a
decision threshold, and per-genre thresholds tuned for F1.

Light on purpose (numpy and scikit-learn, no TensorFlow): training tunes thresholds with it, evaluation
scores the challenger and the champion with it, and `predict` needs only the default threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, precision_recall_fscore_support, roc_auc_score

DECISION_THRESHOLD = 0.5


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
        if tuned and thresholds:
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
