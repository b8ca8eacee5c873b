"""The data gate, with real Great Expectations on real prepared rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.config import EXPECTATIONS_DIR
from tasks.errors import ConfigError, DataGateError
from tasks.validate import load_suites, validate_dataset


def test_suites_are_data_and_name_their_tables() -> None:
    suites = load_suites(EXPECTATIONS_DIR)
    assert {s.meta["dataset"] for s in suites} == {"records", "movies", "genre_coverage"}
    assert all(s.expectations for s in suites)


def test_real_rows_pass_and_leave_results_and_data_docs(prepared_sample: Path, tmp_path: Path) -> None:
    summary = validate_dataset(prepared_sample, EXPECTATIONS_DIR, tmp_path / "validation", {"min_rows": 200})
    assert summary["success"] and summary["failed_expectations"] == []
    results = json.loads(Path(summary["results_path"]).read_text())
    assert set(results) == {"records", "movies", "genre_coverage"}
    docs = Path(summary["data_docs_path"])
    assert docs.is_file() and "records" in docs.read_text()


def test_failed_expectations_are_named_and_artifacts_kept(prepared_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "validation"
    with pytest.raises(DataGateError) as raised:
        validate_dataset(prepared_sample, EXPECTATIONS_DIR, out, {"min_rows": 1_000_000})
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
        validate_dataset(broken, EXPECTATIONS_DIR, tmp_path / "validation", {"min_rows": 200})


def test_invalid_suite_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"name": "bad", "expectations": [], "meta": {}}))
    with pytest.raises(ConfigError, match=r"bad\.json has no meta\.dataset"):
        load_suites(tmp_path)
    with pytest.raises(ConfigError, match="no expectation suites"):
        load_suites(tmp_path / "empty")
