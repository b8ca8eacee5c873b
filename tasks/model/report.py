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

`gate_failure(run_dir)` reads the same files and says which gate failed and why, figure by figure, or
None when no quality gate failed (a run that failed elsewhere, or a champion that could not be scored,
leaves no gate decision).
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
from tasks.model.report_figures import curves_figure, drift_figure, history_figure, png_base64
from tasks.registry.versions import ModelRegistry

REPORT_FILE = "report.html"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.npz"
# Written by tasks/data/validate.py, relative to the run folder (so the report can link them relatively).
VALIDATION_RESULTS = "validation/results.json"
DATA_DOCS_INDEX = "validation/data_docs/index.html"
DRIFT_RESULTS = "validation/drift.json"
# Expectation arguments that are plumbing, not bounds.
NOT_BOUNDS = frozenset({"batch_id", "result_format", "column", "include_config", "catch_exceptions"})
SAMPLE_TOP_GENRES = 3


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

    gate: Mapping[str, Any] | None  # the model gate's decision in metrics.json; None if it did not run
    version: int | None  # the version this run promoted
    test_rows: int
    scores: list[tuple[str, float, float]]  # name, micro and macro AUC: the model, then the baselines
    best_baseline: tuple[str, float] | None  # its name and the model's micro-AUC margin over it
    per_genre: list[GenreRow]
    figures: list[tuple[str, str]]  # title and base64 PNG
    samples: list[Sample]


def write_report(
    run_dir: Path, model_dir: Path | None, served_dir: Path, *, dag_id: str, run_id: str, version: int | None
) -> dict[str, Any]:
    """Build `run_dir/report.html`; `version` is the version this run promoted, None if it promoted none."""
    validation = _read_if_present(run_dir / VALIDATION_RESULTS)
    metrics = _read_if_present(run_dir / METRICS_FILE)
    if validation is None and metrics is None:
        return {"path": None, "note": "no report: the run stopped before the data gate"}
    title = report_title(dag_id, run_id, version)
    drift = _read_if_present(run_dir / DRIFT_RESULTS)
    evaluated = metrics is not None and model_dir is not None
    page = _TEMPLATES.get_template(REPORT_FILE).render(
        title=title,
        data_gate=_data_gate(validation),
        data_docs=DATA_DOCS_INDEX if (run_dir / DATA_DOCS_INDEX).is_file() else None,
        drift=drift,
        drift_png=png_base64(drift_figure(drift)) if drift is not None and drift.get("checked") else None,
        model=_model_page(run_dir, served_dir, metrics, version) if evaluated else None,
    )
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


def _data_gate(validation: Mapping[str, Any] | None) -> DataGatePage | None:
    if validation is None:
        return None
    evaluated = sum(r.get("statistics", {}).get("evaluated_expectations", 0) for r in validation.values())
    return DataGatePage(failed_expectations(validation), evaluated, len(validation))


def _model_page(run_dir: Path, served_dir: Path, metrics: Mapping[str, Any], version: int | None) -> ModelPage:
    with np.load(run_dir / PREDICTIONS_FILE, allow_pickle=False) as data:
        predictions = {name: data[name] for name in data.files}
    genres = [str(g) for g in predictions.pop("genres")]
    labels = predictions.pop("labels")
    registry = ModelRegistry(served_dir)
    points = [(v, registry.manifest(v).get("metrics", {}).get("auc_micro")) for v in registry.versions()]
    history = history_figure([(v, auc) for v, auc in points if auc is not None], metrics.get("auc_micro"), version)
    scores = _scores(metrics)
    best = max(scores[1:], key=lambda row: row[1], default=None)
    return ModelPage(
        gate=metrics.get("gate"),
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
