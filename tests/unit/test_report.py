"""report.html and the gate outcome for alerts, from real runs of the stages on real rows."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.artifacts import write_json
from tasks.config import EXPECTATIONS_DIR
from tasks.data.validate import validate_dataset
from tasks.errors import DataGateError, ModelGateError
from tasks.model.gate import check_model_gate
from tasks.model.gate_outcome import DATA_GATE_TASK, MODEL_GATE_TASK, GateFailure, gate_failure
from tasks.model.report import write_report
from tasks.model.report_figures import auc_axis_limits, history_figure
from tasks.run_folder import RunFolder
from tests.sample_data import PROJECT_ROOT

DAG_ID = "movie_genre_retrain"
RUN_ID = "manual__2026-12-02T03:00:00+00:00"
# A run id a person may type in the trigger form: the page shows it as text, never as markup.
HOSTILE_RUN_ID = """manual__<script>alert('x & "y"')</script>"""
GENRES = ["Comedy", "Drama", "Science Fiction", "Horror"]
FIGURE_TITLES = (
    "Genre shares and overview lengths: version 2&#x27;s training data and now",
    "ROC curves per genre (test split)",
    "Precision-recall curves per genre (test split)",
    "Micro AUC of every promoted version",
)


def _validate(prepared: Path, run_dir: Path, min_rows: int) -> None:
    """The data gate as the DAG runs it: its results land in the run's validation/ folder."""
    with contextlib.suppress(DataGateError):  # the results are written first; the report and the alert read them
        validate_dataset(prepared, EXPECTATIONS_DIR, RunFolder(run_dir).validation, {"min_rows": min_rows})


def _gate(run_dir: Path, served: Path, auc: float, threshold: float, champion: dict | None = None) -> None:
    """The model gate as the DAG runs it, on a challenger whose metrics.json holds `auc` and evaluate's
    `champion` entry."""
    folder = RunFolder(run_dir)
    folder.metrics.write_text(json.dumps({"auc_micro": auc, "champion": champion}))
    with contextlib.suppress(ModelGateError):  # the decision is written to gate.json first
        check_model_gate(folder.metrics, folder.gate, served, metric="auc_micro", threshold=threshold, max_drop=0.005)


def _rows(prepared: Path, table: str) -> int:
    return pq.read_metadata(prepared / f"{table}.parquet").num_rows


def _report(run_dir: Path, version: int | None = None, model_dir: Path | None = None) -> tuple[dict, str]:
    summary = write_report(
        RunFolder(run_dir), model_dir, run_dir / "served", dag_id=DAG_ID, run_id=RUN_ID, version=version
    )
    return summary, Path(summary["path"]).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def data_gate_failed(prepared_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder whose data gate failed: fewer rows than min_rows in both row-counting suites."""
    run_dir = tmp_path_factory.mktemp("run") / "failed"
    _validate(prepared_sample, run_dir, 1_000_000)
    return run_dir


@pytest.fixture(scope="module")
def data_gate_passed(prepared_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run") / "passed"
    _validate(prepared_sample, run_dir, 200)
    return run_dir


def test_a_run_failed_at_the_data_gate_gets_a_page(data_gate_failed: Path, prepared_sample: Path) -> None:
    summary, page = _report(data_gate_failed)
    title = f"{DAG_ID} · run {RUN_ID} · not promoted"
    assert summary == {"path": str(data_gate_failed / "report.html"), "title": title}
    assert f"<title>{title}</title>" in page and f"<h1>{title}</h1>" in page
    assert "Data gate: FAILED" in page and "2 expectation(s) not met" in page
    for suite, table in (("movies", "movies"), ("records", "records")):
        row = (
            f"<tr><td>{suite}</td><td>expect_table_row_count_to_be_between</td><td>(table)</td>"
            f"<td>{_rows(prepared_sample, table)}</td><td>at least 1000000</td>"
        )
        assert row in page
    links = re.findall(r'href="([^"]+)"', page)
    assert links == ["validation/data_docs/index.html"] and (data_gate_failed / links[0]).is_file()
    assert "no model was trained" in page and "Test metrics" not in page and "<img" not in page


def test_a_run_past_the_data_gate_shows_it_briefly(data_gate_passed: Path) -> None:
    _, page = _report(data_gate_passed)
    assert re.search(r"<h2>Data gate: passed</h2><p>\d+ expectations in 3 suites met\.", page)
    assert "<table>" not in page and "stopped before evaluation" in page
    assert "<h2>Drift</h2><p>Drift checks skipped: no served version.</p>" in page


def test_a_run_that_stopped_before_the_data_gate_has_no_report(tmp_path: Path) -> None:
    summary = write_report(RunFolder(tmp_path), None, tmp_path / "served", dag_id=DAG_ID, run_id=RUN_ID, version=None)
    assert summary["path"] is None and "before the data gate" in summary["note"]
    assert not (tmp_path / "report.html").exists()


def test_one_version_gets_a_narrow_auc_axis_around_it() -> None:
    import matplotlib.pyplot as plt

    figure = history_figure([(1, 0.8914)], 0.8914, 1)
    axis = figure.axes[0]
    assert axis.get_ylim() == pytest.approx((0.8714, 0.9114))
    assert axis.get_xlim() == pytest.approx((0.5, 1.5))
    assert [t for t in axis.get_xticks() if 0.5 <= t <= 1.5] == [1.0], "versions are whole numbers"
    plt.close(figure)


def test_an_unpromoted_run_stays_in_view_beside_the_versions() -> None:
    import matplotlib.pyplot as plt

    figure = history_figure([(1, 0.88), (2, 0.89)], 0.70, None)
    low, high = figure.axes[0].get_ylim()
    assert low == pytest.approx(0.68) and high == pytest.approx(0.91)
    assert [line.get_label() for line in figure.axes[0].get_lines()] == ["promoted versions", "this run (not promoted)"]
    plt.close(figure)


def test_auc_axis_limits_pad_and_clip() -> None:
    assert auc_axis_limits([0.99, 1.0]) == pytest.approx((0.97, 1.0))
    assert auc_axis_limits([0.01]) == pytest.approx((0.0, 0.03))
    assert auc_axis_limits([0.5, 0.9]) == pytest.approx((0.46, 0.94)), "a tenth of a wide range either side"


def test_gate_failure_names_each_failed_expectation(data_gate_failed: Path, prepared_sample: Path) -> None:
    failure = gate_failure(RunFolder(data_gate_failed))
    assert failure == GateFailure(
        task_id=DATA_GATE_TASK,
        reason="2 expectation(s) not met in suite(s) movies, records",
        figures=[
            f"suite movies, expect_table_row_count_to_be_between: observed {_rows(prepared_sample, 'movies')}, "
            "expected at least 1000000",
            f"suite records, expect_table_row_count_to_be_between: observed {_rows(prepared_sample, 'records')}, "
            "expected at least 1000000",
        ],
    )


def test_gate_failure_reads_column_expectations_with_their_share(prepared_sample: Path, tmp_path: Path) -> None:
    """Half of the real records' genres made unparseable: the figure gives the count, the share and the bound."""
    import pyarrow.compute as pc

    broken = tmp_path / "prepared"
    shutil.copytree(prepared_sample, broken)
    records = pq.read_table(broken / "records.parquet")
    unparsed = pc.equal(pc.modulo(records.column("record"), 2), 0)
    records = records.set_column(records.column_names.index("genres_parsed"), "genres_parsed", unparsed)
    pq.write_table(records, broken / "records.parquet")
    _validate(broken, tmp_path / "run", 200)
    failure = gate_failure(RunFolder(tmp_path / "run"))
    false_count = records.num_rows - pc.sum(unparsed).as_py()
    assert failure is not None and failure.task_id == DATA_GATE_TASK
    assert (
        f"suite records, expect_column_values_to_be_in_set on column genres_parsed: observed {false_count} of "
        f"{records.num_rows} values unexpected ({100 * false_count / records.num_rows:.2f}%), "
        "e.g. [False, False, False, False, False], expected values in [True] for at least 99% of values"
    ) in failure.figures


def test_gate_failure_reads_the_model_gate_decision(prepared_sample: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _validate(prepared_sample, run_dir, 200)
    assert gate_failure(RunFolder(run_dir)) is None, "the data gate passed and no model gate ran"
    _gate(run_dir, tmp_path / "served", auc=0.7, threshold=0.99)
    assert gate_failure(RunFolder(run_dir)) == GateFailure(
        task_id=MODEL_GATE_TASK,
        reason="auc_micro 0.7000 < auc_threshold 0.9900 (no model in production: judged on the threshold alone)",
        figures=["auc_micro 0.7000 < auc_threshold 0.9900", "no model in production: judged on the threshold alone"],
    )
    _gate(run_dir, tmp_path / "served", auc=0.7, threshold=0.5)
    assert gate_failure(RunFolder(run_dir)) is None, "the gate passed on a retry"


@pytest.mark.slow
def test_a_promoted_run_reports_its_version_and_the_champion_figures(
    prepared_sample: Path, glove_module: str, tmp_path: Path
) -> None:
    """Train, evaluate, gate and promote a real model; then a weaker challenger fails against it."""
    from tasks.embedding.cache import EmbeddingCache
    from tasks.model.evaluate import evaluate_model
    from tasks.model.train import TrainConfig, train_model
    from tasks.registry.promote import promote_model

    run_dir, served = tmp_path / "run", tmp_path / "run" / "served"
    cache = EmbeddingCache(tmp_path / "cache", "glove")
    config = TrainConfig(
        embedding_module=glove_module, epochs=2, batch_size=32, hidden_units=16, learning_rate=0.01, seed=1
    )
    model_dir = Path(train_model(prepared_sample, run_dir / "model", config, cache)["model_path"])
    _validate(prepared_sample, run_dir, 200)
    folder = RunFolder(run_dir)
    evaluation = evaluate_model(model_dir, prepared_sample, folder, glove_module, cache, served_dir=served)
    check_model_gate(folder.metrics, folder.gate, served, metric="auc_micro", threshold=0.5, max_drop=0.005)
    assert gate_failure(folder) is None
    promoted = promote_model(
        model_dir, served, {"dag_run_id": RUN_ID, "metrics": evaluation}, actor="test", reason="test", keep_versions=5
    )
    summary, page = _report(run_dir, promoted["version"], model_dir)
    assert summary["title"] == f"{DAG_ID} · run {RUN_ID} · version 1"
    assert "Data gate: passed" in page and "Model gate: passed" in page and "Promoted as version 1." in page
    assert page.count("data:image/png;base64,") == 3, "ROC, precision-recall and version history plots"

    challenger = tmp_path / "challenger"
    evaluate_model(model_dir, prepared_sample, RunFolder(challenger), glove_module, cache, served_dir=served)
    scored = json.loads((challenger / "metrics.json").read_text())["champion"]
    assert scored["auc_micro"] == pytest.approx(evaluation["auc_micro"], abs=1e-6), "the same model, served"
    _gate(challenger, served, auc=evaluation["auc_micro"] - 0.05, threshold=0.1, champion=scored)
    failure = gate_failure(RunFolder(challenger))
    champion = json.loads((challenger / "gate.json").read_text())["champion"]["value"]
    assert failure is not None and failure.task_id == MODEL_GATE_TASK
    assert failure.figures == [
        f"auc_micro {evaluation['auc_micro'] - 0.05:.4f} >= auc_threshold 0.1000",
        f"served version 1: auc_micro {champion:.4f}, max_auc_drop 0.0050 "
        f"(a challenger needs at least {champion - 0.005:.4f})",
    ]


# Fixed run folders, written by hand in the formats validate, evaluate and promote write, so a page's
# every byte is known: each scenario writes its files and returns (run id, promoted version, model folder).


def _expectation(
    kind: str, kwargs: dict, result: dict, why: str | None = None, success: bool = False, error: str | None = None
) -> dict:
    """One GX expectation result as validation/results.json holds it."""
    return {
        "success": success,
        "expectation_config": {"type": kind, "kwargs": kwargs, "meta": {"why": why} if why else {}},
        "result": result,
        "exception_info": {"raised_exception": error is not None, "exception_message": error},
    }


def _suite(*results: dict) -> dict:
    return {
        "success": all(r["success"] for r in results),
        "results": list(results),
        "statistics": {"evaluated_expectations": len(results)},
    }


def _passed_validation(run_dir: Path) -> None:
    row_count = _expectation(
        "expect_table_row_count_to_be_between", {"min_value": 200}, {"observed_value": 800}, success=True
    )
    write_json(
        run_dir / "validation" / "results.json", {"movies": _suite(row_count, row_count), "records": _suite(row_count)}
    )


def _failed_validation(run_dir: Path) -> None:
    movies = _suite(
        _expectation(
            "expect_table_row_count_to_be_between",
            {"min_value": 1_000_000, "batch_id": "b"},
            {"observed_value": 800},
            why="a truncated download <b>& friends</b> trains on too little",
        ),
        _expectation("expect_column_to_exist", {"column": "overview"}, {}),
    )
    records = _suite(
        _expectation(
            "expect_column_values_to_be_in_set",
            {"column": "genres_parsed", "value_set": [True], "mostly": 0.99, "result_format": "SUMMARY"},
            {
                "unexpected_count": 400,
                "element_count": 800,
                "unexpected_percent": 50.0,
                "partial_unexpected_list": [False] * 6,
            },
            why="unparsed genres are labels lost",
        ),
        _expectation(
            "expect_column_mean_to_be_between",
            {"column": "year", "min_value": 1990.5, "max_value": 2030},
            {"observed_value": 1975.25},
        ),
        _expectation(
            "expect_column_values_to_match_regex", {"column": "id", "regex": "^[0-9]+$"}, {}, error="boom <x>"
        ),
        _expectation("expect_table_row_count_to_be_between", {"min_value": 1}, {"observed_value": 800}, success=True),
    )
    write_json(
        run_dir / "validation" / "results.json",
        {
            "movies": movies,
            "records": records,
            "genre_drift": _suite(
                _expectation(
                    "expect_column_values_to_be_between",
                    {"column": "abs_change", "max_value": 0.05},
                    {
                        "unexpected_count": 1,
                        "element_count": 4,
                        "unexpected_percent": 25.0,
                        "partial_unexpected_list": [0.123456],
                    },
                )
            ),
        },
    )


def _drift_row(field: str, now: str, then: str, measure: str, tolerance: str, passed: bool | None) -> dict:
    return {"field": field, "now": now, "then": then, "measure": measure, "tolerance": tolerance, "passed": passed}


def _checked_drift(passed: bool) -> dict:
    """drift.json of a run checked against served version 2: its table rows, failures and the figure's data."""
    failures = [] if passed else ["Drama share 41.0% vs 30.0% in version 2's training data (max change 5 points)"]
    return {
        "checked": True,
        "served_version": 2,
        "passed": passed,
        "suites": ["genre_drift"],
        "rows": [
            _drift_row("Comedy share", "30.0%", "31.0%", "-1.0 points", "5 points", True),
            _drift_row("Drama share", "41.0%", "30.0%", "+11.0 points", "5 points", passed),
            _drift_row("Horror share", "-", "2.0%", "-", "not checked", None),
            _drift_row("languages <top>", "en 90%", "en 88%", "0.0213", "0.1", True),
        ],
        "failures": failures,
        "genres": [
            {"genre": "Comedy", "share_now": 0.30, "share_then": 0.31},
            {"genre": "Drama", "share_now": 0.41, "share_then": 0.30},
            {"genre": "Horror", "share_now": None, "share_then": 0.02},
        ],
        "lengths": {
            "edges": [0, 10, 14, 20, 28, 40, 57, 80],
            "now": [0, 3, 10, 25, 30, 12, 0, 0],
            "then": [1, 4, 12, 20, 28, 15, 2, 0],
        },
    }


def _evaluated(run_dir: Path, gate: dict | None, no_positives: bool = False) -> None:
    """metrics.json and predictions.npz as evaluate writes them, and `gate` as the model gate writes it."""
    rng = np.random.default_rng(7)
    labels = (rng.random((60, len(GENRES))) < 0.3).astype(np.int8)
    if no_positives:
        labels[:, -1] = 0
    scores = {
        name: np.clip(labels * weight + rng.random(labels.shape) * (1 - weight), 0, 1)
        for name, weight in (("model", 0.5), ("tfidf", 0.3))
    }
    np.savez(run_dir / "predictions.npz", labels=labels, genres=np.array(GENRES), **scores)
    per_genre = {
        genre: {
            "support": int(labels[:, i].sum()),
            "auc": 0.75 + i / 100,
            "f1": 0.4 + i / 50,
            "tuned": {"threshold": 0.3125, "f1": 0.51234},
        }
        for i, genre in enumerate(GENRES)
    }
    if no_positives:
        per_genre["Horror"] = {"support": 0, "auc": None, "f1": 0.0}
    metrics = {
        "test_rows": 60,
        "auc_micro": 0.853214,
        "auc_macro": 0.80046,
        "baselines": {
            "tfidf": {"auc_micro": 0.8012, "auc_macro": 0.79},
            "embedding <lr>": {"auc_micro": 0.83, "auc_macro": 0.7},
        },
        "per_genre": per_genre,
        "article_predictions": [
            {
                "description": "An examination of our dietary choices & the food we put in our bodies.",
                "probabilities": {"Comedy": 0.1, "Drama": 0.455, "Science Fiction": 0.02, "Horror": 0.3},
            },
            {
                "description": "Ethan Hunt's <IMF> team",
                "probabilities": {"Comedy": 0.5, "Drama": 0.5, "Science Fiction": 0.9, "Horror": 0.0},
            },
        ],
    }
    write_json(run_dir / "metrics.json", metrics)
    if gate is not None:
        write_json(run_dir / "gate.json", gate)


def _served_versions(served: Path, aucs: dict[int, float | None]) -> None:
    """A registry with these versions; a version with no AUC has a manifest without metrics."""
    for version, auc in aucs.items():
        write_json(
            served / str(version) / "manifest.json",
            {"version": version, "metrics": {} if auc is None else {"auc_micro": auc}},
        )


def _data_gate_failed(run_dir: Path) -> tuple[str, int | None, Path | None]:
    _failed_validation(run_dir)
    (run_dir / "validation" / "data_docs").mkdir(parents=True)
    (run_dir / "validation" / "data_docs" / "index.html").write_text("<html></html>")
    write_json(run_dir / "validation" / "drift.json", _checked_drift(passed=False))
    return HOSTILE_RUN_ID, None, None


def _drift_skipped(run_dir: Path) -> tuple[str, int | None, Path | None]:
    _passed_validation(run_dir)
    write_json(run_dir / "validation" / "drift.json", {"checked": False, "reason": "no served <version>"})
    return RUN_ID, None, None


def _promoted_with_champion(run_dir: Path) -> tuple[str, int | None, Path | None]:
    _passed_validation(run_dir)
    (run_dir / "validation" / "data_docs").mkdir(parents=True)
    (run_dir / "validation" / "data_docs" / "index.html").write_text("<html></html>")
    write_json(run_dir / "validation" / "drift.json", _checked_drift(passed=True))
    champion = {"version": 2, "value": 0.8412, "scoring": "served"}
    gate = {
        "passed": True,
        "reason": "auc_micro 0.8532 >= 0.8362 (served version 2's 0.8412 - 0.005)",
        "champion": champion,
    }
    _evaluated(run_dir, gate)
    _served_versions(run_dir / "served", {1: 0.8123, 2: 0.8412, 3: 0.853214, 4: None})
    return RUN_ID, 3, run_dir / "model"


def _model_gate_failed(run_dir: Path) -> tuple[str, int | None, Path | None]:
    _passed_validation(run_dir)
    _evaluated(
        run_dir, {"passed": False, "reason": "auc_micro 0.8532 < auc_threshold 0.9900 & more"}, no_positives=True
    )
    _served_versions(run_dir / "served", {1: 0.9})
    return RUN_ID, None, run_dir / "model"


def _evaluated_before_the_gate(run_dir: Path) -> tuple[str, int | None, Path | None]:
    """Metrics but no gate decision, no validation results and no served version."""
    run_dir.mkdir(parents=True)
    _evaluated(run_dir, None)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    write_json(run_dir / "metrics.json", {**metrics, "baselines": {}})
    return RUN_ID, None, run_dir / "model"


SCENARIOS = {
    "data_gate_failed": _data_gate_failed,
    "drift_skipped": _drift_skipped,
    "promoted_with_champion": _promoted_with_champion,
    "model_gate_failed": _model_gate_failed,
    "evaluated_before_the_gate": _evaluated_before_the_gate,
}


def _fixed_report(run_dir: Path, scenario: str) -> str:
    run_id, version, model_dir = SCENARIOS[scenario](run_dir)
    write_report(RunFolder(run_dir), model_dir, run_dir / "served", dag_id=DAG_ID, run_id=run_id, version=version)
    return (run_dir / "report.html").read_text(encoding="utf-8")


def _headings(page: str) -> list[str]:
    return re.findall(r"<h[23]>(.*?)</h[23]>", page)


@pytest.mark.parametrize(
    ("scenario", "headings"),
    [
        (
            "data_gate_failed",
            [
                "Data gate: FAILED",
                "Drift from version 2's training data: FAILED",
                "Genre shares and overview lengths: version 2&#x27;s training data and now",
            ],
        ),
        ("drift_skipped", ["Data gate: passed", "Drift", "Model"]),
        (
            "promoted_with_champion",
            [
                "Data gate: passed",
                "Drift from version 2's training data: passed",
                "Genre shares and overview lengths: version 2&#x27;s training data and now",
                "Model gate: passed",
                "Test metrics (60 movies)",
                "Per genre",
                "ROC curves per genre (test split)",
                "Precision-recall curves per genre (test split)",
                "Micro AUC of every promoted version",
                "Sample predictions",
            ],
        ),
        (
            "model_gate_failed",
            [
                "Data gate: passed",
                "Drift",
                "Model gate: FAILED",
                "Test metrics (60 movies)",
                "Per genre",
                "ROC curves per genre (test split)",
                "Precision-recall curves per genre (test split)",
                "Micro AUC of every promoted version",
                "Sample predictions",
            ],
        ),
        (
            "evaluated_before_the_gate",
            [
                "Data gate",
                "Drift",
                "Model gate",
                "Test metrics (60 movies)",
                "Per genre",
                "ROC curves per genre (test split)",
                "Precision-recall curves per genre (test split)",
                "Micro AUC of every promoted version",
                "Sample predictions",
            ],
        ),
    ],
)
def test_every_section_is_one_line_of_the_page(tmp_path: Path, scenario: str, headings: list[str]) -> None:
    page = _fixed_report(tmp_path / "run", scenario)
    head, body = page.split("<body>")
    assert head.startswith('<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>')
    assert page.endswith("\n</body></html>\n")
    lines = body.removesuffix("\n</body></html>\n").split("\n")
    assert lines[0].startswith("<h1>") and lines[0].endswith("</h1>")
    assert all(line.startswith(("<h2>", "<p>")) for line in lines[1:]), "a section a line, each from its start"
    assert _headings(body) == headings
    figures = re.findall(r'<h2>([^<]*)</h2><img alt="([^"]*)" src="data:image/png;base64,[A-Za-z0-9+/]+=*">', body)
    assert [title for title, _ in figures] == [alt for _, alt in figures] == [h for h in headings if h in FIGURE_TITLES]
    assert body.count("<img") == len(figures)


def test_a_run_id_with_markup_is_text(tmp_path: Path) -> None:
    page = _fixed_report(tmp_path / "run", "data_gate_failed")
    run_id = "manual__&lt;script&gt;alert(&#x27;x &amp; &quot;y&quot;&#x27;)&lt;/script&gt;"
    title = f"movie_genre_retrain · run {run_id} · not promoted"
    assert f"<title>{title}</title>" in page and f"<h1>{title}</h1>" in page
    assert "<script" not in page


def test_failed_expectations_are_rows_of_escaped_text(tmp_path: Path) -> None:
    page = _fixed_report(tmp_path / "run", "data_gate_failed")
    assert '<p>6 expectation(s) not met. <a href="validation/data_docs/index.html">Data Docs</a></p><table>' in page
    for row in (
        "<td>movies</td><td>expect_table_row_count_to_be_between</td><td>(table)</td><td>800</td>"
        "<td>at least 1000000</td><td>a truncated download &lt;b&gt;&amp; friends&lt;/b&gt; trains on too little</td>",
        "<td>movies</td><td>expect_column_to_exist</td><td>overview</td><td>-</td><td>-</td><td></td>",
        "<td>records</td><td>expect_column_values_to_be_in_set</td><td>genres_parsed</td>"
        "<td>400 of 800 values unexpected (50.00%), e.g. [False, False, False, False, False]</td>"
        "<td>values in [True] for at least 99% of values</td><td>unparsed genres are labels lost</td>",
        "<td>records</td><td>expect_column_mean_to_be_between</td><td>year</td><td>1975</td>"
        "<td>between 1990 and 2030</td><td></td>",
        "<td>records</td><td>expect_column_values_to_match_regex</td><td>id</td><td>an error (boom &lt;x&gt;)</td>"
        "<td>regex=^[0-9]+$</td><td></td>",
    ):
        assert f"<tr>{row}</tr>" in page
    assert "<p>The run stopped at the data gate: no model was trained.</p>" in page


def test_drift_rows_give_each_verdict(tmp_path: Path) -> None:
    failed = _fixed_report(tmp_path / "failed", "data_gate_failed")
    assert (
        "<ul><li>Drama share 41.0% vs 30.0% in version 2&#x27;s training data (max change 5 points)</li></ul>"
        "<table><tr><th>field</th><th>now</th><th>version 2's training data</th>"
    ) in failed
    for row in (
        "<td>Comedy share</td><td>30.0%</td><td>31.0%</td><td>-1.0 points</td><td>5 points</td><td>passed</td>",
        "<td>Drama share</td><td>41.0%</td><td>30.0%</td><td>+11.0 points</td><td>5 points</td><td>FAILED</td>",
        "<td>Horror share</td><td>-</td><td>2.0%</td><td>-</td><td>not checked</td><td>not checked</td>",
        "<td>languages &lt;top&gt;</td><td>en 90%</td><td>en 88%</td><td>0.0213</td><td>0.1</td><td>passed</td>",
    ):
        assert f"<tr>{row}</tr>" in failed
    skipped = _fixed_report(tmp_path / "skipped", "drift_skipped")
    assert "<h2>Drift</h2><p>Drift checks skipped: no served &lt;version&gt;.</p>" in skipped
    assert "<h2>Data gate: passed</h2><p>3 expectations in 2 suites met.</p>" in skipped, "no Data Docs, no link"


def test_metrics_read_to_four_places(tmp_path: Path) -> None:
    promoted = _fixed_report(tmp_path / "promoted", "promoted_with_champion")
    assert (
        "<h2>Model gate: passed</h2><p>auc_micro 0.8532 &gt;= 0.8362 (served version 2&#x27;s 0.8412 - 0.005)</p>"
        "<p>Promoted as version 3.</p>"
    ) in promoted
    assert (
        "<h2>Test metrics (60 movies)</h2><p>The model beats the best baseline (embedding &lt;lr&gt;) by +0.0232 "
        "micro-AUC.</p><table><tr><th>model</th><th>micro AUC</th><th>macro AUC</th></tr>"
        "<tr><td>model</td><td>0.8532</td><td>0.8005</td></tr><tr><td>embedding &lt;lr&gt;</td><td>0.8300</td>"
        "<td>0.7000</td></tr><tr><td>tfidf</td><td>0.8012</td><td>0.7900</td></tr></table>"
    ) in promoted
    assert "<tr><td>Drama</td><td>17</td><td>0.7600</td><td>0.4200</td><td>0.3125</td><td>0.5123</td></tr>" in promoted
    assert (
        "<tr><td>An examination of our dietary choices &amp; the food we put in our bodies.</td>"
        "<td>Drama 0.46, Horror 0.30, Comedy 0.10</td></tr>"
        "<tr><td>Ethan Hunt&#x27;s &lt;IMF&gt; team</td><td>Science Fiction 0.90, Comedy 0.50, Drama 0.50</td></tr>"
    ) in promoted

    failed = _fixed_report(tmp_path / "failed", "model_gate_failed")
    assert "<p>auc_micro 0.8532 &lt; auc_threshold 0.9900 &amp; more</p><p>Not promoted.</p>" in failed
    assert "<tr><td>Horror</td><td>0</td><td>-</td><td>0.0000</td><td>-</td><td>-</td></tr>" in failed, "no AUC"

    before = _fixed_report(tmp_path / "before", "evaluated_before_the_gate")
    assert "<h2>Model gate</h2><p>The run did not reach the model gate.</p>" in before
    assert "<h2>Test metrics (60 movies)</h2><table>" in before, "no baselines, no margin"


def test_the_template_is_package_data() -> None:
    """A non-editable install copies only the files pyproject.toml names beside the code."""
    patterns = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = PROJECT_ROOT / "tasks" / "model"
    templates = [p.relative_to(package) for p in (package / "templates").iterdir()]
    assert templates and all(any(t.match(glob) for glob in patterns["tasks.model"]) for t in templates)
