"""Stage: the run report, `report.html`, a single page that opens from disk without a server.

It shows the gate's decision (threshold and champion), the metrics table of the model against the
baselines, ROC and precision-recall curves per genre, the metric over every promoted version, and the
model's predictions for the blog post's three sample descriptions. Plots are matplotlib PNGs embedded
in the page.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.artifacts import atomic_path, read_json
from tasks.evaluate import MODEL
from tasks.registry import ModelRegistry

REPORT_FILE = "report.html"
# The three descriptions the TensorFlow blog post predicts at its end (a food documentary, an
# eighth-grade comedy, an IMF mission).
ARTICLE_DESCRIPTIONS = (
    "An examination of our dietary choices and the food we put in our bodies. Based on Jonathan Safran Foer's memoir.",
    "A teenager tries to survive the last week of her disastrous eighth-grade year before leaving to start high "
    "school.",
    "Ethan Hunt and his IMF team, along with some familiar allies, race against time after a mission gone wrong.",
)


def write_report(run_dir: Path, model_dir: Path | None, served_dir: Path) -> dict[str, Any]:
    """Build `run_dir/report.html` from the run's metrics, predictions and model, and the served history.
    A run that stopped before evaluation (no model or no metrics) has nothing to report."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to PNG only

    from tasks.evaluate import predict_probabilities

    if model_dir is None or not (run_dir / "metrics.json").is_file():
        return {"path": None, "note": "no report: the run stopped before evaluation"}
    metrics = read_json(run_dir / "metrics.json")
    with np.load(run_dir / "predictions.npz", allow_pickle=False) as data:
        predictions = {name: data[name] for name in data.files}
    genres = [str(g) for g in predictions.pop("genres")]
    labels = predictions.pop("labels")
    samples = predict_probabilities(model_dir, list(ARTICLE_DESCRIPTIONS))
    sections = [
        _decision_section(metrics.get("gate")),
        _metrics_table(metrics, genres),
        _figure("ROC curves per genre (test split)", _curves(labels, predictions, genres, "roc")),
        _figure("Precision-recall curves per genre (test split)", _curves(labels, predictions, genres, "pr")),
        _history_section(ModelRegistry(served_dir), metrics),
        _samples_section(samples, genres),
    ]
    page = _PAGE.format(title=html.escape(f"Run report: {run_dir.name}"), body="\n".join(sections))
    path = run_dir / REPORT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {"path": str(path)}


def _decision_section(gate: dict[str, Any] | None) -> str:
    if gate is None:
        return "<h2>Model gate</h2><p>The run did not reach the model gate.</p>"
    verdict = "passed" if gate["passed"] else "FAILED"
    return f"<h2>Model gate: {verdict}</h2><p>{html.escape(gate['reason'])}</p>"


def _metrics_table(metrics: dict[str, Any], genres: Sequence[str]) -> str:
    rows = [("model", metrics["auc_micro"], metrics["auc_macro"])]
    rows += [(name, m["auc_micro"], m["auc_macro"]) for name, m in metrics.get("baselines", {}).items()]
    best = max(rows[1:], key=lambda row: row[1], default=None)
    margin = (
        f"<p>The model beats the best baseline ({best[0]}) by {rows[0][1] - best[1]:+.4f} micro-AUC.</p>"
        if best
        else ""
    )
    table = "".join(
        f"<tr><td>{name}</td><td>{_num(micro)}</td><td>{_num(macro)}</td></tr>" for name, micro, macro in rows
    )
    per_genre = "".join(
        f"<tr><td>{html.escape(g)}</td><td>{m['support']}</td><td>{_num(m['auc'])}</td><td>{_num(m['f1'])}</td>"
        f"<td>{_num(m.get('tuned', {}).get('threshold'))}</td><td>{_num(m.get('tuned', {}).get('f1'))}</td></tr>"
        for g, m in ((g, metrics["per_genre"][g]) for g in genres)
    )
    return (
        f"<h2>Test metrics ({metrics['test_rows']} movies)</h2>{margin}"
        f"<table><tr><th>model</th><th>micro AUC</th><th>macro AUC</th></tr>{table}</table>"
        "<h3>Per genre</h3><table><tr><th>genre</th><th>positives</th><th>AUC</th><th>F1 at 0.5</th>"
        f"<th>tuned threshold</th><th>F1 at tuned</th></tr>{per_genre}</table>"
    )


def _curves(labels: np.ndarray, predictions: dict[str, np.ndarray], genres: Sequence[str], kind: str) -> str:
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    columns = 3
    rows = -(-len(genres) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.4 * rows), squeeze=False)
    for index, genre in enumerate(genres):
        axis = axes[index // columns][index % columns]
        truth = labels[:, index]
        if 0 < truth.sum() < len(truth):
            for name, probabilities in predictions.items():
                if kind == "roc":
                    x, y, _ = roc_curve(truth, probabilities[:, index])
                else:
                    y, x, _ = precision_recall_curve(truth, probabilities[:, index])
                axis.plot(x, y, label=name, linewidth=2 if name == MODEL else 1)
        else:
            axis.text(0.5, 0.5, "no positives in the test split", ha="center")
        axis.set_title(genre)
        axis.set_xlabel("false positive rate" if kind == "roc" else "recall")
        axis.set_ylabel("true positive rate" if kind == "roc" else "precision")
    for index in range(len(genres), rows * columns):
        axes[index // columns][index % columns].axis("off")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    return _png(figure)


def _history_section(registry: ModelRegistry, metrics: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    points = [(v, registry.manifest(v).get("metrics", {}).get("auc_micro")) for v in registry.versions()]
    points = [(v, auc) for v, auc in points if auc is not None]
    figure, axis = plt.subplots(figsize=(7, 3))
    if points:
        axis.plot([v for v, _ in points], [auc for _, auc in points], marker="o", label="promoted versions")
    axis.axhline(metrics["auc_micro"], color="tab:orange", linestyle="--", label="this run")
    axis.set_xlabel("version")
    axis.set_ylabel("micro AUC (own test split)")
    axis.legend()
    figure.tight_layout()
    return _figure("Micro AUC of every promoted version", _png(figure))


def _samples_section(probabilities: np.ndarray, genres: Sequence[str]) -> str:
    rows = []
    for text, row in zip(ARTICLE_DESCRIPTIONS, probabilities, strict=True):
        top = sorted(zip(genres, row, strict=True), key=lambda pair: pair[1], reverse=True)[:3]
        shown = ", ".join(f"{html.escape(g)} {p:.2f}" for g, p in top)
        rows.append(f"<tr><td>{html.escape(text)}</td><td>{shown}</td></tr>")
    return (
        "<h2>Sample predictions</h2><table><tr><th>description</th><th>top genres</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _figure(title: str, png_base64: str) -> str:
    return f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="data:image/png;base64,{png_base64}">'


def _png(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 75em; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }}
img {{ max-width: 100%; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""
