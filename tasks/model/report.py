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
The page is the Jinja2 template `templates/report.html`, which escapes every value it prints; the plots
(`report_figures`) are matplotlib PNGs embedded in it. A run with neither validation results nor metrics
has nothing to report: `{"path": None, "note": ...}`.

Which gate refused a run, for the alerts, is `tasks.model.gate_outcome`'s; the page lists the failed
expectations the way it words them.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from tasks.artifacts import atomic_path, read_json
from tasks.model.gate_outcome import FailedExpectation, failed_expectations
from tasks.model.report_figures import curves_figure, drift_figure, history_figure, png_base64
from tasks.registry.versions import ModelRegistry
from tasks.results import ReportResult
from tasks.run_folder import RunFolder

TEMPLATE = "report.html"
SAMPLE_TOP_GENRES = 3


@dataclass(frozen=True)
class DataGatePage:
    """What the page shows of the data gate."""

    failed: list[FailedExpectation]
    evaluated: int  # expectations evaluated, over all suites
    suites: int


@dataclass(frozen=True)
class GenreRow:
    genre: str
    support: int
    auc: float | None
    f1: float | None
    tuned_threshold: float | None
    tuned_f1: float | None


@dataclass(frozen=True)
class Sample:
    """A blog post description and the model's likeliest genres for it, likeliest first."""

    description: str
    top: list[tuple[str, float]]


@dataclass(frozen=True)
class ModelPage:
    """What the page shows of an evaluated model."""

    gate: Mapping[str, Any] | None  # the model gate's decision (gate.json); None if it did not run
    version: int | None  # the version this run promoted
    test_rows: int
    scores: list[tuple[str, float, float]]  # name, micro and macro AUC: the model, then the baselines
    best_baseline: tuple[str, float] | None  # its name and the model's micro-AUC margin over it
    per_genre: list[GenreRow]
    figures: list[tuple[str, str]]  # title and base64 PNG
    samples: list[Sample]


def write_report(
    folder: RunFolder, model_dir: Path | None, served_dir: Path, *, dag_id: str, run_id: str, version: int | None
) -> ReportResult:
    """Build the run's report.html; `version` is the version this run promoted, None if it promoted none."""
    validation = _read_if_present(folder.validation.results)
    metrics = _read_if_present(folder.metrics)
    if validation is None and metrics is None:
        return {"path": None, "note": "no report: the run stopped before the data gate"}
    title = report_title(dag_id, run_id, version)
    drift = _read_if_present(folder.validation.drift)
    evaluated = metrics is not None and model_dir is not None
    data_docs = folder.validation.data_docs_index
    page = _TEMPLATES.get_template(TEMPLATE).render(
        title=title,
        data_gate=_data_gate(validation),
        data_docs=folder.relative(data_docs) if data_docs.is_file() else None,  # relative: opens from disk too
        drift=drift,
        drift_png=png_base64(drift_figure(drift)) if drift is not None and drift.get("checked") else None,
        model=_model_page(folder, served_dir, metrics, version) if evaluated else None,
    )
    path = folder.report
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {"path": str(path), "title": title}


def report_title(dag_id: str, run_id: str, version: int | None) -> str:
    outcome = f"version {version}" if version is not None else "not promoted"
    return f"{dag_id} · run {run_id} · {outcome}"


def _read_if_present(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def _data_gate(validation: Mapping[str, Any] | None) -> DataGatePage | None:
    if validation is None:
        return None
    evaluated = sum(r.get("statistics", {}).get("evaluated_expectations", 0) for r in validation.values())
    return DataGatePage(failed_expectations(validation), evaluated, len(validation))


def _model_page(folder: RunFolder, served_dir: Path, metrics: Mapping[str, Any], version: int | None) -> ModelPage:
    with np.load(folder.predictions, allow_pickle=False) as data:
        predictions = {name: data[name] for name in data.files}
    genres = [str(g) for g in predictions.pop("genres")]
    labels = predictions.pop("labels")
    registry = ModelRegistry(served_dir)
    points = [(v, registry.manifest(v).get("metrics", {}).get("auc_micro")) for v in registry.versions()]
    history = history_figure([(v, auc) for v, auc in points if auc is not None], metrics.get("auc_micro"), version)
    scores = _scores(metrics)
    best = max(scores[1:], key=lambda row: row[1], default=None)
    return ModelPage(
        gate=_read_if_present(folder.gate),
        version=version,
        test_rows=metrics["test_rows"],
        scores=scores,
        best_baseline=(best[0], scores[0][1] - best[1]) if best else None,
        per_genre=[_genre_row(genre, metrics["per_genre"][genre]) for genre in genres],
        figures=[
            ("ROC curves per genre (test split)", _curves_png(labels, predictions, genres, "roc")),
            ("Precision-recall curves per genre (test split)", _curves_png(labels, predictions, genres, "pr")),
            ("Micro AUC of every promoted version", png_base64(history)),
        ],
        samples=_samples(metrics.get("article_predictions", [])),
    )


def _curves_png(labels: np.ndarray, predictions: Mapping[str, np.ndarray], genres: Sequence[str], kind: str) -> str:
    """Every model's `kind` curves per genre; the model's (not a baseline's) drawn thicker."""
    from tasks.model.evaluate import MODEL  # evaluate's imports are heavy; alerts import this module

    return png_base64(curves_figure(labels, predictions, genres, kind, highlight=MODEL))


def _scores(metrics: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """(name, micro AUC, macro AUC) of the model, then of each baseline."""
    baselines = metrics.get("baselines", {})
    return [("model", metrics["auc_micro"], metrics["auc_macro"])] + [
        (name, m["auc_micro"], m["auc_macro"]) for name, m in baselines.items()
    ]


def _genre_row(genre: str, metrics: Mapping[str, Any]) -> GenreRow:
    tuned = metrics.get("tuned", {})
    return GenreRow(genre, metrics["support"], metrics["auc"], metrics["f1"], tuned.get("threshold"), tuned.get("f1"))


def _samples(predictions: Sequence[Mapping[str, Any]]) -> list[Sample]:
    """The model's likeliest genres for each of the blog post's descriptions (scored by evaluate)."""
    return [
        Sample(
            p["description"],
            sorted(p["probabilities"].items(), key=lambda pair: pair[1], reverse=True)[:SAMPLE_TOP_GENRES],
        )
        for p in predictions
    ]


def _escaped(value: Any) -> Markup:
    """Every value the template prints, escaped by html.escape: its entities (&quot;, &#x27;) are the ones
    report.html has always had, where autoescape's markupsafe would write &#34; and &#39;. Markup (a
    macro's output) is HTML already."""
    return value if isinstance(value, Markup) else Markup(html.escape(str(value)))


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    finalize=_escaped,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_TEMPLATES.filters["num"] = _num
