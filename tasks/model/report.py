"""Stage: the run report, `report.html`, a single page that opens from disk without a server; and the
outcome of the run's quality gates, for alerts.

`write_report` runs after promotion, whatever happened before (the registry then already holds the
version this run promoted, if any). It writes a page for every run that reached the data gate:
- title: the DAG, the run id and the version this run promoted ("not promoted" when none);
- the data gate: "passed" in one line, or each failed expectation with its observed value against its
  bounds, from `validation/results.json`; a relative link to the Data Docs;
- drift from the served version's training data, from `validation/drift.json`: each measure now, then,
  its tolerance and the gate's verdict, and one figure of the genre shares and overview lengths then and
  now; or why the drift checks were skipped;
- only when the run evaluated a model (`metrics.json` and the model exist): the model gate's decision,
  the metrics of the model against the baselines, ROC and precision-recall curves per genre, the micro
  AUC of every promoted version, and the model's predictions for the blog post's three descriptions
  (scored by evaluate, so the report needs no TensorFlow).
Plots are matplotlib PNGs embedded in the page. A run with neither validation results nor metrics has
nothing to report: `{"path": None, "note": ...}`.

`gate_failure(run_dir)` reads the same files and says which gate failed and why, figure by figure, or
None when no quality gate failed (a run that failed elsewhere, or a champion that could not be scored,
leaves no gate decision).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.artifacts import atomic_path, read_json
from tasks.registry.versions import ModelRegistry

REPORT_FILE = "report.html"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.npz"
# Written by tasks/data/validate.py, relative to the run folder (so the report can link them relatively).
VALIDATION_RESULTS = "validation/results.json"
DATA_DOCS_INDEX = "validation/data_docs/index.html"
DRIFT_RESULTS = "validation/drift.json"
# The AUC axis shows at least this much either side of the data: differences of a few thousandths stay
# visible, and a single point does not get matplotlib's meaningless default range.
AUC_AXIS_MIN_PAD = 0.02
# Expectation arguments that are plumbing, not bounds.
NOT_BOUNDS = frozenset({"batch_id", "result_format", "column", "include_config", "catch_exceptions"})


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation the data gate found unmet, in words."""

    suite: str
    expectation: str  # its type, e.g. expect_table_row_count_to_be_between
    column: str | None
    observed: str  # empty when GX reported no value (e.g. expect_column_to_exist)
    expected: str  # the bounds, e.g. "at least 1000"; empty when it has none
    why: str | None  # the suite's meta.why: what the expectation protects against

    @property
    def figure(self) -> str:
        """One line that reads on its own, e.g. in an alert."""
        target = f" on column {self.column}" if self.column else ""
        pairs = (("observed", self.observed), ("expected", self.expected))
        found = [f"{label} {text}" for label, text in pairs if text]
        return f"suite {self.suite}, {self.expectation}{target}: {', '.join(found) or 'not met'}"


def write_report(
    run_dir: Path, model_dir: Path | None, served_dir: Path, *, dag_id: str, run_id: str, version: int | None
) -> dict[str, Any]:
    """Build `run_dir/report.html`; `version` is the version this run promoted, None if it promoted none."""
    validation = _read_if_present(run_dir / VALIDATION_RESULTS)
    metrics = _read_if_present(run_dir / METRICS_FILE)
    if validation is None and metrics is None:
        return {"path": None, "note": "no report: the run stopped before the data gate"}
    title = report_title(dag_id, run_id, version)
    sections = [
        _data_gate_section(validation, (run_dir / DATA_DOCS_INDEX).is_file()),
        _drift_section(_read_if_present(run_dir / DRIFT_RESULTS)),
    ]
    if metrics is not None and model_dir is not None:
        sections += _model_sections(run_dir, served_dir, metrics, version)
    else:
        sections.append(_no_model_section(validation))
    page = _PAGE.format(title=html.escape(title), body="\n".join(sections))
    path = run_dir / REPORT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {"path": str(path), "title": title}


def report_title(dag_id: str, run_id: str, version: int | None) -> str:
    outcome = f"version {version}" if version is not None else "not promoted"
    return f"{dag_id} · run {run_id} · {outcome}"


def gate_failure(run_dir: Path) -> dict[str, Any] | None:
    """Which quality gate failed in this run, its reason and its figures; None when none failed."""
    failed = failed_expectations(_read_if_present(run_dir / VALIDATION_RESULTS) or {})
    if failed:
        suites = sorted({f.suite for f in failed})
        # A drift failure reads better as the drift check words it (field, now, then, tolerance).
        drift = _read_if_present(run_dir / DRIFT_RESULTS) or {}
        worded = set(drift.get("suites", [])) if drift.get("failures") else set()
        return {
            "gate": "data gate",
            "reason": f"{len(failed)} expectation(s) not met in suite(s) {', '.join(suites)}",
            "figures": [f.figure for f in failed if f.suite not in worded]
            + [f"drift: {failure}" for failure in drift.get("failures", [])],
        }
    decision = (_read_if_present(run_dir / METRICS_FILE) or {}).get("gate")
    if decision is not None and not decision.get("passed", False):
        return {"gate": "model gate", "reason": decision["reason"], "figures": model_gate_figures(decision)}
    return None


def model_gate_figures(decision: Mapping[str, Any]) -> list[str]:
    """The model gate's decision (as tasks/model/gate.py writes it), one comparison per line."""
    metric, value, threshold = decision["metric"], decision["challenger"], decision["threshold"]
    if value is None:
        figures = [f"{metric} could not be computed on the test split"]
    else:
        relation = "<" if value < threshold else ">="
        figures = [f"{metric} {value:.4f} {relation} auc_threshold {threshold:.4f}"]
    champion = decision.get("champion")
    if champion is None:
        figures.append("no model in production: judged on the threshold alone")
    elif champion.get("value") is None:
        figures.append(
            f"served version {champion['version']} not comparable ({champion.get('note')}): "
            "judged on the threshold alone"
        )
    else:
        drop = decision["max_auc_drop"]
        figures.append(
            f"served version {champion['version']}: {metric} {champion['value']:.4f}, max_auc_drop {drop:.4f} "
            f"(a challenger needs at least {champion['value'] - drop:.4f})"
        )
    return figures


def failed_expectations(results: Mapping[str, Any]) -> list[FailedExpectation]:
    """Every unmet expectation in a `validation/results.json` (suite name → GX validation result)."""
    return [
        _failed_expectation(suite, result)
        for suite, suite_result in sorted(results.items())
        for result in suite_result.get("results", [])
        if not result.get("success", False)
    ]


def _failed_expectation(suite: str, result: Mapping[str, Any]) -> FailedExpectation:
    config = result.get("expectation_config", {})
    kwargs = config.get("kwargs", {})
    return FailedExpectation(
        suite=suite,
        expectation=str(config.get("type", "unknown expectation")),
        column=kwargs.get("column"),
        observed=_observed(result),
        expected=_bounds(str(config.get("type", "")), kwargs),
        why=config.get("meta", {}).get("why"),
    )


def _observed(result: Mapping[str, Any]) -> str:
    """What GX saw: an aggregate's value, or how many values broke a per-value expectation."""
    exception = result.get("exception_info", {})
    if exception.get("raised_exception"):
        return f"an error ({exception.get('exception_message')})"
    found = result.get("result", {})
    if "observed_value" in found:
        return _value(found["observed_value"])
    if "unexpected_count" in found:
        examples = found.get("partial_unexpected_list") or []
        sample = f", e.g. {_value(examples[:5])}" if examples else ""
        return (
            f"{found['unexpected_count']} of {found.get('element_count', '?')} values unexpected "
            f"({found.get('unexpected_percent') or 0:.2f}%){sample}"
        )
    return ""


def _bounds(expectation: str, kwargs: Mapping[str, Any]) -> str:
    """The expectation's bounds in words: "between 10 and 5000 for at least 98% of values"."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    parts = []
    if low is not None and high is not None:
        parts.append(f"between {_value(low)} and {_value(high)}")
    elif low is not None:
        parts.append(f"at least {_value(low)}")
    elif high is not None:
        parts.append(f"at most {_value(high)}")
    if "value_set" in kwargs:
        relation = "not in" if "not_be_in_set" in expectation else "in"
        parts.append(f"values {relation} {_value(kwargs['value_set'])}")
    rest = {k: v for k, v in kwargs.items() if k not in NOT_BOUNDS | {"min_value", "max_value", "value_set", "mostly"}}
    parts += [f"{name}={_value(value)}" for name, value in sorted(rest.items())]
    if "mostly" in kwargs:
        parts.append(f"for at least {kwargs['mostly'] * 100:.4g}% of values")
    return " ".join(parts)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _read_if_present(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def _data_gate_section(validation: Mapping[str, Any] | None, data_docs: bool) -> str:
    link = f' <a href="{DATA_DOCS_INDEX}">Data Docs</a>' if data_docs else ""
    if validation is None:
        return "<h2>Data gate</h2><p>No data gate results in this run's folder.</p>"
    failed = failed_expectations(validation)
    if not failed:
        evaluated = sum(r.get("statistics", {}).get("evaluated_expectations", 0) for r in validation.values())
        return f"<h2>Data gate: passed</h2><p>{evaluated} expectations in {len(validation)} suites met.{link}</p>"
    rows = "".join(
        f"<tr><td>{html.escape(f.suite)}</td><td>{html.escape(f.expectation)}</td>"
        f"<td>{html.escape(f.column or '(table)')}</td><td>{html.escape(f.observed or '-')}</td>"
        f"<td>{html.escape(f.expected or '-')}</td><td>{html.escape(f.why or '')}</td></tr>"
        for f in failed
    )
    return (
        f"<h2>Data gate: FAILED</h2><p>{len(failed)} expectation(s) not met.{link}</p>"
        "<table><tr><th>suite</th><th>expectation</th><th>column</th><th>observed</th><th>expected</th>"
        f"<th>why it matters</th></tr>{rows}</table>"
    )


def _drift_section(drift: Mapping[str, Any] | None) -> str:
    """The drift checks' table and figure, or why they were skipped."""
    if drift is None:
        return "<h2>Drift</h2><p>No drift results in this run's folder.</p>"
    if not drift.get("checked"):
        return f"<h2>Drift</h2><p>Drift checks skipped: {html.escape(str(drift.get('reason')))}.</p>"
    version = drift["served_version"]
    verdicts = {True: "passed", False: "FAILED", None: "not checked"}
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(row[key]))}</td>" for key in ("field", "now", "then", "measure", "tolerance"))
        + f"<td>{verdicts[row['passed']]}</td></tr>"
        for row in drift["rows"]
    )
    failures = "".join(f"<li>{html.escape(failure)}</li>" for failure in drift["failures"])
    return (
        f"<h2>Drift from version {version}'s training data: {'passed' if drift['passed'] else 'FAILED'}</h2>"
        + (f"<ul>{failures}</ul>" if failures else "")
        + f"<table><tr><th>field</th><th>now</th><th>version {version}'s training data</th>"
        f"<th>change or distance</th><th>tolerance</th><th>result</th></tr>{rows}</table>"
        + _figure(
            f"Genre shares and overview lengths: version {version}'s training data and now", _png(drift_figure(drift))
        )
    )


def drift_figure(drift: Mapping[str, Any]) -> Any:
    """Genre shares (left) and the overview-length distribution (right), then and now."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def _no_model_section(validation: Mapping[str, Any] | None) -> str:
    if validation is not None and failed_expectations(validation):
        return "<p>The run stopped at the data gate: no model was trained.</p>"
    return "<h2>Model</h2><p>No model was evaluated: the run stopped before evaluation (see the task logs).</p>"


def _model_sections(run_dir: Path, served_dir: Path, metrics: dict[str, Any], version: int | None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to PNG only

    with np.load(run_dir / PREDICTIONS_FILE, allow_pickle=False) as data:
        predictions = {name: data[name] for name in data.files}
    genres = [str(g) for g in predictions.pop("genres")]
    labels = predictions.pop("labels")
    registry = ModelRegistry(served_dir)
    points = [(v, registry.manifest(v).get("metrics", {}).get("auc_micro")) for v in registry.versions()]
    history = history_figure([(v, auc) for v, auc in points if auc is not None], metrics.get("auc_micro"), version)
    return [
        _decision_section(metrics.get("gate"), version),
        _metrics_table(metrics, genres),
        _figure("ROC curves per genre (test split)", _curves(labels, predictions, genres, "roc")),
        _figure("Precision-recall curves per genre (test split)", _curves(labels, predictions, genres, "pr")),
        _figure("Micro AUC of every promoted version", _png(history)),
        _samples_section(metrics.get("article_predictions", [])),
    ]


def _decision_section(gate: dict[str, Any] | None, version: int | None) -> str:
    if gate is None:
        return "<h2>Model gate</h2><p>The run did not reach the model gate.</p>"
    verdict = "passed" if gate["passed"] else "FAILED"
    if version is not None:
        promotion = f"Promoted as version {version}."
    elif gate["passed"]:
        promotion = "Not promoted: a later stage failed (see the task logs)."
    else:
        promotion = "Not promoted."
    return f"<h2>Model gate: {verdict}</h2><p>{html.escape(gate['reason'])}</p><p>{promotion}</p>"


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

    from tasks.model.evaluate import MODEL

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
                    y, x, _ = precision_recall_curve(truth, probabilities[:, index], drop_intermediate=True)
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


def auc_axis_limits(values: Sequence[float]) -> tuple[float, float]:
    """A y range around `values`: at least AUC_AXIS_MIN_PAD either side, never beyond [0, 1]."""
    low, high = min(values), max(values)
    pad = max(AUC_AXIS_MIN_PAD, 0.1 * (high - low))
    return max(0.0, low - pad), min(1.0, high + pad)


def history_figure(points: Sequence[tuple[int, float]], run_auc: float | None, run_version: int | None) -> Any:
    """Micro AUC per promoted version; this run's version highlighted, or its AUC as a line if not promoted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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


def _samples_section(predictions: Sequence[Mapping[str, Any]]) -> str:
    """The model's three likeliest genres for each of the blog post's descriptions (scored by evaluate)."""
    rows = []
    for prediction in predictions:
        top = sorted(prediction["probabilities"].items(), key=lambda pair: pair[1], reverse=True)[:3]
        shown = ", ".join(f"{html.escape(g)} {p:.2f}" for g, p in top)
        rows.append(f"<tr><td>{html.escape(prediction['description'])}</td><td>{shown}</td></tr>")
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
