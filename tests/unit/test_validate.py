"""The data gate, with real Great Expectations on real prepared rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.config import EXPECTATIONS_DIR, PARAM_SCHEMAS
from tasks.data.drift import TOLERANCE_PARAMS, ServedProfile
from tasks.data.validate import load_suites, reduced_frame, validate_dataset
from tasks.errors import ConfigError, DataGateError
from tasks.run_folder import ValidationFolder


def test_suites_are_data_and_name_their_tables() -> None:
    suites = load_suites(EXPECTATIONS_DIR)
    assert {s.meta["dataset"] for s in suites} == {"records", "movies", "genre_coverage", "drift", "drift_genres"}
    assert all(s.expectations for s in suites)


def test_real_rows_pass_and_leave_results_and_data_docs(prepared_sample: Path, tmp_path: Path) -> None:
    summary = validate_dataset(
        prepared_sample, EXPECTATIONS_DIR, ValidationFolder(tmp_path / "validation"), {"min_rows": 200}
    )
    assert summary["success"] and summary["failed_expectations"] == []
    results = json.loads(Path(summary["results_path"]).read_text())
    assert set(results) == {"records", "movies", "genre_coverage"}, "nothing served: no drift suites"
    docs = Path(summary["data_docs_path"])
    assert docs.is_file() and "records" in docs.read_text()
    assert summary["drift"] == {"checked": False, "reason": "no served version"}
    assert json.loads((tmp_path / "validation" / "drift.json").read_text()) == summary["drift"]
    profile = json.loads(Path(summary["profile_path"]).read_text())
    assert profile["rows"] == len(reduced_frame(prepared_sample / "movies.parquet"))


def test_data_like_the_served_versions_passes_the_drift_suites_with_no_drift(
    prepared_sample: Path, tmp_path: Path
) -> None:
    first = validate_dataset(prepared_sample, EXPECTATIONS_DIR, ValidationFolder(tmp_path / "first"), {"min_rows": 200})
    served = ServedProfile(7, json.loads(Path(first["profile_path"]).read_text()))
    parameters = {"min_rows": 200, **{name: PARAM_SCHEMAS[name]["default"] for name in TOLERANCE_PARAMS}}
    summary = validate_dataset(
        prepared_sample, EXPECTATIONS_DIR, ValidationFolder(tmp_path / "again"), parameters, served=served
    )
    assert set(summary["suites"]) == {"records", "movies", "genre_coverage", "drift", "drift_genres"}
    drift = summary["drift"]
    assert drift["checked"] and drift["passed"] and drift["served_version"] == 7
    measures = drift["measures"]
    assert measures["embedding_drift"] is None, "no vectors given: not measured, and the suite lets it pass"
    assert {k: v for k, v in measures.items() if k not in ("embedding_drift", "genre_share_change")} == {
        "length_distance": 0.0,
        "language_distance": 0.0,
        "new_share": 0.0,
        "gone_share": 0.0,
        "changed_share": 0.0,
    }
    with pytest.raises(ConfigError, match="max_genre_share_change, max_length_distance"):
        validate_dataset(
            prepared_sample, EXPECTATIONS_DIR, ValidationFolder(tmp_path / "bare"), {"min_rows": 200}, served=served
        )


def test_failed_expectations_are_named_and_artifacts_kept(prepared_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "validation"
    with pytest.raises(DataGateError) as raised:
        validate_dataset(prepared_sample, EXPECTATIONS_DIR, ValidationFolder(out), {"min_rows": 1_000_000})
    message = str(raised.value)
    assert "expect_table_row_count_to_be_between(min_value=1000000)" in message
    assert "records:" in message and "movies:" in message
    assert "data_docs/index.html" in message
    assert len(raised.value.failed_expectations) == 2
    assert (out / "results.json").is_file() and (out / "data_docs" / "index.html").is_file()


def test_unparseable_genres_fail_the_gate(prepared_sample: Path, tmp_path: Path) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    broken = tmp_path / "prepared"
    shutil.copytree(prepared_sample, broken)
    records = pq.read_table(broken / "records.parquet")
    records = records.set_column(
        records.column_names.index("genres_parsed"),
        "genres_parsed",
        pc.equal(pc.modulo(records.column("record"), 2), 0),  # half the file's genres unparseable
    )
    pq.write_table(records, broken / "records.parquet")
    with pytest.raises(DataGateError, match="genres_parsed"):
        validate_dataset(broken, EXPECTATIONS_DIR, ValidationFolder(tmp_path / "validation"), {"min_rows": 200})


def test_invalid_suite_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"name": "bad", "expectations": [], "meta": {}}))
    with pytest.raises(ConfigError, match=r"bad\.json has no meta\.dataset"):
        load_suites(tmp_path)
    with pytest.raises(ConfigError, match="no expectation suites"):
        load_suites(tmp_path / "empty")


def _prepare_rows(tmp_path: Path, genres_of: list[str]) -> Path:
    from tasks.config import DEFAULT_GENRES
    from tasks.data.prepare import prepare_dataset
    from tests.sample_data import write_rows

    rows = [[str(i), f"Movie number {i} has a plot worth telling.", genres_of[i % len(genres_of)]] for i in range(300)]
    raw = write_rows(tmp_path / "raw.csv", ["id", "overview", "genres"], rows)
    prepare_dataset(raw, tmp_path / "prepared", DEFAULT_GENRES, 0.2, 0.1)
    return tmp_path / "prepared"


def test_genres_unparseable_everywhere_fail_the_gate_by_name(tmp_path: Path) -> None:
    prepared = _prepare_rows(tmp_path, ["[{'id': 35, 'name'", "Comedy|Drama"])
    with pytest.raises(DataGateError) as raised:
        validate_dataset(prepared, EXPECTATIONS_DIR, ValidationFolder(tmp_path / "validation"), {"min_rows": 100})
    assert "genres_parsed" in str(raised.value)
    assert (tmp_path / "validation" / "data_docs" / "index.html").is_file(), "kept for diagnosis"


def test_a_header_only_file_fails_the_gate_without_crashing(tmp_path: Path) -> None:
    from tasks.config import DEFAULT_GENRES
    from tasks.data.prepare import prepare_dataset
    from tests.sample_data import write_rows

    raw = write_rows(tmp_path / "raw.csv", ["id", "overview", "genres"], [])
    prepare_dataset(raw, tmp_path / "prepared", DEFAULT_GENRES, 0.2, 0.1)
    with pytest.raises(DataGateError, match=r"expect_table_row_count_to_be_between\(min_value=10\)"):
        validate_dataset(
            tmp_path / "prepared", EXPECTATIONS_DIR, ValidationFolder(tmp_path / "validation"), {"min_rows": 10}
        )


def test_a_few_unparseable_genres_are_dropped_and_tolerated(sample_csv: Path, tmp_path: Path) -> None:
    """Real rows with five genres fields broken: those rows are dropped and counted, the gate passes."""
    import csv

    import pyarrow.parquet as pq

    from tasks.config import DEFAULT_GENRES
    from tasks.data.prepare import prepare_dataset

    with sample_csv.open(encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    for row in rows[10:15]:
        row[header.index("genres")] = row[header.index("genres")][:-5]  # cut off mid-literal
    raw = tmp_path / "raw.csv"
    with raw.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    summary = prepare_dataset(raw, tmp_path / "prepared", DEFAULT_GENRES, 0.2, 0.1)
    assert summary["dropped"]["unparseable_genres"] == 5
    dropped = pq.read_table(tmp_path / "prepared" / "records.parquet").column("drop_reason").to_pylist()
    assert dropped[10:15] == ["unparseable_genres"] * 5
    assert validate_dataset(
        tmp_path / "prepared", EXPECTATIONS_DIR, ValidationFolder(tmp_path / "validation"), {"min_rows": 200}
    )["success"]


def test_text_columns_reach_the_gate_as_their_lengths(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [1, 2, 3], "overview": ["Amélie", "", "東京物語"]}), tmp_path / "movies.parquet")
    frame = reduced_frame(tmp_path / "movies.parquet")
    assert list(frame.columns) == ["id", "overview_length"]
    assert frame["overview_length"].tolist() == [6, 0, 4], "characters, not bytes"


def test_a_drift_expectation_gx_cannot_evaluate_fails_as_gx_states_it(prepared_sample: Path, tmp_path: Path) -> None:
    """Not blamed on a measure: a suite checking a column the drift table lacks is named as GX ran it."""
    suites = tmp_path / "expectations"
    shutil.copytree(EXPECTATIONS_DIR, suites)
    drift_suite = json.loads((suites / "drift.json").read_text())
    drift_suite["expectations"].append(
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "no_such_measure", "max_value": 1}}
    )
    (suites / "drift.json").write_text(json.dumps(drift_suite))
    first = validate_dataset(prepared_sample, suites, ValidationFolder(tmp_path / "first"), {"min_rows": 200})
    served = ServedProfile(7, json.loads(Path(first["profile_path"]).read_text()))
    parameters = {"min_rows": 200, **{name: PARAM_SCHEMAS[name]["default"] for name in TOLERANCE_PARAMS}}
    with pytest.raises(DataGateError) as raised:
        validate_dataset(prepared_sample, suites, ValidationFolder(tmp_path / "again"), parameters, served=served)
    assert raised.value.failed_expectations == [
        "drift: expect_column_values_to_be_between(column='no_such_measure', max_value=1.0)"
    ]
    drift = json.loads((tmp_path / "again" / "drift.json").read_text())
    assert drift["passed"] is False and drift["failures"] == [], "no measure is said to have failed"
