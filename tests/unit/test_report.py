"""report.html and the gate outcome for alerts, from real runs of the stages on real rows."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tasks.config import EXPECTATIONS_DIR
from tasks.data.validate import validate_dataset
from tasks.errors import DataGateError, ModelGateError
from tasks.model.gate import check_model_gate
from tasks.model.report import auc_axis_limits, gate_failure, history_figure, write_report

DAG_ID = "movie_genre_retrain"
RUN_ID = "manual__2026-12-02T03:00:00+00:00"


def _validate(prepared: Path, run_dir: Path, min_rows: int) -> None:
    """The data gate as the DAG runs it: its results land in the run's validation/ folder."""
    with contextlib.suppress(DataGateError):  # the results are written first; the report and the alert read them
        validate_dataset(prepared, EXPECTATIONS_DIR, run_dir / "validation", {"min_rows": min_rows})


def _gate(run_dir: Path, served: Path, auc: float, threshold: float, champion: dict | None = None) -> None:
    """The model gate as the DAG runs it, on a challenger whose metrics.json holds `auc` and evaluate's
    `champion` entry."""
    metrics = run_dir / "metrics.json"
    metrics.write_text(json.dumps({"auc_micro": auc, "champion": champion}))
    with contextlib.suppress(ModelGateError):  # the decision is written into metrics.json first
        check_model_gate(metrics, served, metric="auc_micro", threshold=threshold, max_drop=0.005)


def _rows(prepared: Path, table: str) -> int:
    return pq.read_metadata(prepared / f"{table}.parquet").num_rows


def _report(run_dir: Path, version: int | None = None, model_dir: Path | None = None) -> tuple[dict, str]:
    summary = write_report(run_dir, model_dir, run_dir / "served", dag_id=DAG_ID, run_id=RUN_ID, version=version)
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
    summary = write_report(tmp_path, None, tmp_path / "served", dag_id=DAG_ID, run_id=RUN_ID, version=None)
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
    failure = gate_failure(data_gate_failed)
    assert failure == {
        "gate": "data gate",
        "reason": "2 expectation(s) not met in suite(s) movies, records",
        "figures": [
            f"suite movies, expect_table_row_count_to_be_between: observed {_rows(prepared_sample, 'movies')}, "
            "expected at least 1000000",
            f"suite records, expect_table_row_count_to_be_between: observed {_rows(prepared_sample, 'records')}, "
            "expected at least 1000000",
        ],
    }


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
    failure = gate_failure(tmp_path / "run")
    false_count = records.num_rows - pc.sum(unparsed).as_py()
    assert failure is not None and failure["gate"] == "data gate"
    assert (
        f"suite records, expect_column_values_to_be_in_set on column genres_parsed: observed {false_count} of "
        f"{records.num_rows} values unexpected ({100 * false_count / records.num_rows:.2f}%), "
        "e.g. [False, False, False, False, False], expected values in [True] for at least 99% of values"
    ) in failure["figures"]


def test_gate_failure_reads_the_model_gate_decision(prepared_sample: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _validate(prepared_sample, run_dir, 200)
    assert gate_failure(run_dir) is None, "the data gate passed and no model gate ran"
    _gate(run_dir, tmp_path / "served", auc=0.7, threshold=0.99)
    assert gate_failure(run_dir) == {
        "gate": "model gate",
        "reason": "auc_micro 0.7000 < auc_threshold 0.9900 (no model in production: judged on the threshold alone)",
        "figures": ["auc_micro 0.7000 < auc_threshold 0.9900", "no model in production: judged on the threshold alone"],
    }
    _gate(run_dir, tmp_path / "served", auc=0.7, threshold=0.5)
    assert gate_failure(run_dir) is None, "the gate passed on a retry"


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
    evaluation = evaluate_model(model_dir, prepared_sample, run_dir, glove_module, cache, served_dir=served)
    check_model_gate(run_dir / "metrics.json", served, metric="auc_micro", threshold=0.5, max_drop=0.005)
    assert gate_failure(run_dir) is None
    promoted = promote_model(
        model_dir, served, {"dag_run_id": RUN_ID, "metrics": evaluation}, actor="test", reason="test", keep_versions=5
    )
    summary, page = _report(run_dir, promoted["version"], model_dir)
    assert summary["title"] == f"{DAG_ID} · run {RUN_ID} · version 1"
    assert "Data gate: passed" in page and "Model gate: passed" in page and "Promoted as version 1." in page
    assert page.count("data:image/png;base64,") == 3, "ROC, precision-recall and version history plots"

    challenger = tmp_path / "challenger"
    evaluate_model(model_dir, prepared_sample, challenger, glove_module, cache, served_dir=served)
    scored = json.loads((challenger / "metrics.json").read_text())["champion"]
    assert scored["auc_micro"] == pytest.approx(evaluation["auc_micro"], abs=1e-6), "the same model, served"
    _gate(challenger, served, auc=evaluation["auc_micro"] - 0.05, threshold=0.1, champion=scored)
    failure = gate_failure(challenger)
    champion = json.loads((challenger / "metrics.json").read_text())["gate"]["champion"]["value"]
    assert failure is not None and failure["gate"] == "model gate"
    assert failure["figures"] == [
        f"auc_micro {evaluation['auc_micro'] - 0.05:.4f} >= auc_threshold 0.1000",
        f"served version 1: auc_micro {champion:.4f}, max_auc_drop 0.0050 "
        f"(a challenger needs at least {champion - 0.005:.4f})",
    ]
