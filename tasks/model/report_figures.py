"""The run report's figures: matplotlib figures, and each as a base64 PNG to embed in `report.html`.

Plotting only: the report reads the run's files and passes their contents in. matplotlib is imported
inside the functions, with the Agg backend (no display), so importing this module loads none of it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# The AUC axis shows at least this much either side of the data: differences of a few thousandths stay
# visible, and a single point does not get matplotlib's meaningless default range.
AUC_AXIS_MIN_PAD = 0.02
CURVE_COLUMNS = 3


def png_base64(figure: Any) -> str:
    """`figure` as a PNG in base64 (for a data: URL); the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def drift_figure(drift: Mapping[str, Any]) -> Any:
    """Genre shares (left) and the overview-length distribution (right), then and now."""
    plt = _pyplot()
    version = drift["served_version"]
    figure, (genres_axis, lengths_axis) = plt.subplots(1, 2, figsize=(12, 4))
    genres = drift["genres"]
    positions = np.arange(len(genres))
    for offset, key, label in ((-0.2, "share_then", f"version {version}'s training data"), (0.2, "share_now", "now")):
        shares = [g[key] if g[key] is not None else 0.0 for g in genres]
        genres_axis.barh(positions + offset, shares, height=0.4, label=label)
    genres_axis.set_yticks(positions, [g["genre"] for g in genres])
    genres_axis.invert_yaxis()
    genres_axis.set_xlabel("share of movies")
    genres_axis.legend(fontsize=8)
    lengths = drift["lengths"]
    for key, label in (("then", f"version {version}'s training data"), ("now", "now")):
        counts = np.asarray(lengths[key], dtype=float)
        lengths_axis.stairs(counts / max(counts.sum(), 1.0), np.arange(len(counts) + 1), label=label, linewidth=2)
    filled = [i for i, (a, b) in enumerate(zip(lengths["then"], lengths["now"], strict=True)) if a or b]
    last_bin = (max(filled) if filled else len(lengths["edges"]) - 1) + 1  # no empty bins beyond the data
    lengths_axis.set_xlim(0, last_bin)
    ticks = np.arange(0, min(last_bin + 1, len(lengths["edges"])), 2)
    lengths_axis.set_xticks(ticks, [str(lengths["edges"][i]) for i in ticks])
    lengths_axis.set_xlabel("overview length in characters (bins from this length, each √2 wider)")
    lengths_axis.set_ylabel("share of movies")
    lengths_axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def curves_figure(
    labels: np.ndarray, predictions: Mapping[str, np.ndarray], genres: Sequence[str], kind: str, highlight: str
) -> Any:
    """One panel per genre with every model's ROC (`kind` "roc") or precision-recall ("pr") curve on the
    test split; the curve of `highlight` (the model, beside the baselines) drawn thicker."""
    plt = _pyplot()
    from sklearn.metrics import precision_recall_curve, roc_curve

    rows = -(-len(genres) // CURVE_COLUMNS)
    figure, axes = plt.subplots(rows, CURVE_COLUMNS, figsize=(4 * CURVE_COLUMNS, 3.4 * rows), squeeze=False)
    for index, genre in enumerate(genres):
        axis = axes[index // CURVE_COLUMNS][index % CURVE_COLUMNS]
        truth = labels[:, index]
        if 0 < truth.sum() < len(truth):
            for name, probabilities in predictions.items():
                if kind == "roc":
                    x, y, _ = roc_curve(truth, probabilities[:, index])
                else:
                    y, x, _ = precision_recall_curve(truth, probabilities[:, index], drop_intermediate=True)
                axis.plot(x, y, label=name, linewidth=2 if name == highlight else 1)
        else:
            axis.text(0.5, 0.5, "no positives in the test split", ha="center")
        axis.set_title(genre)
        axis.set_xlabel("false positive rate" if kind == "roc" else "recall")
        axis.set_ylabel("true positive rate" if kind == "roc" else "precision")
    for index in range(len(genres), rows * CURVE_COLUMNS):
        axes[index // CURVE_COLUMNS][index % CURVE_COLUMNS].axis("off")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def auc_axis_limits(values: Sequence[float]) -> tuple[float, float]:
    """A y range around `values`: at least AUC_AXIS_MIN_PAD either side, never beyond [0, 1]."""
    low, high = min(values), max(values)
    pad = max(AUC_AXIS_MIN_PAD, 0.1 * (high - low))
    return max(0.0, low - pad), min(1.0, high + pad)


def history_figure(points: Sequence[tuple[int, float]], run_auc: float | None, run_version: int | None) -> Any:
    """Micro AUC per promoted version; this run's version highlighted, or its AUC as a line if not promoted."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    figure, axis = plt.subplots(figsize=(7, 3))
    by_version = dict(points)
    if points:
        versions = [v for v, _ in points]
        axis.plot(versions, [auc for _, auc in points], marker="o", label="promoted versions")
        for v, auc in points:
            axis.annotate(f"{auc:.4f}", (v, auc), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        axis.set_xlim(min(versions) - 0.5, max(versions) + 0.5)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if run_version in by_version:
        axis.plot([run_version], [by_version[run_version]], "o", color="tab:orange", markersize=10, label="this run")
    elif run_auc is not None:
        axis.axhline(run_auc, color="tab:orange", linestyle="--", label="this run (not promoted)")
    shown = [auc for _, auc in points] + ([run_auc] if run_auc is not None else [])
    if shown:
        axis.set_ylim(*auc_axis_limits(shown))
        axis.legend()
    else:
        axis.text(0.5, 0.5, "no micro AUC recorded", ha="center", transform=axis.transAxes)
    axis.set_xlabel("version")
    axis.set_ylabel("micro AUC (own test split)")
    figure.tight_layout()
    return figure


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to PNG only
    import matplotlib.pyplot as plt

    return plt
