"""Property-based tests: whatever a row holds, it yields valid labels or is counted as dropped; nothing
escapes as a crash."""

from __future__ import annotations

import ast
import csv
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.config import DEFAULT_GENRES
from tasks.data.genres import GenreParseError, parse_genres
from tasks.data.prepare import MOVIES_FILE, prepare_dataset

genre_dict = st.fixed_dictionaries(
    {"id": st.integers(), "name": st.one_of(st.sampled_from(DEFAULT_GENRES), st.text(max_size=20))}
)
genre_field = st.one_of(
    st.text(max_size=200),
    st.lists(genre_dict, max_size=5).map(repr),  # the file's Python literals
    st.lists(genre_dict, max_size=5).map(lambda g: str(g).replace("'", '"')),  # JSON
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5), st.lists, max_leaves=20).map(repr),
)


@given(genre_field)
def test_genre_parser_returns_names_or_a_parse_error(text: str) -> None:
    try:
        names = parse_genres(text)
    except GenreParseError:
        return
    assert all(isinstance(name, str) and name and name == name.strip() for name in names)


@given(st.lists(genre_dict, max_size=5))
def test_the_files_own_literals_read_as_literal_eval_reads_them(genres: list[dict]) -> None:
    # The regex path for Python's repr of the list must agree with the general one on every name repr writes.
    names = [str(genre["name"]).strip() for genre in genres]
    if not all(names):
        with pytest.raises(GenreParseError):
            parse_genres(repr(genres))
    else:
        assert parse_genres(repr(genres)) == names


@given(st.text(max_size=20))
def test_any_name_in_the_files_shape_reads_as_literal_eval_reads_it(name: str) -> None:
    # Not only what repr writes: a raw newline, NUL or quote in the name must not read differently either.
    text = "[{'id': 7, 'name': '" + name + "'}]"
    try:
        expected = _literal_eval_names(text)
    except Exception:  # whatever the general path refuses, parse_genres must refuse too
        with pytest.raises(GenreParseError):
            parse_genres(text)
        return
    assert parse_genres(text) == expected


def _literal_eval_names(text: str) -> list[str]:
    names = [item["name"] if isinstance(item, dict) else item for item in ast.literal_eval(text)]
    if not all(isinstance(name, str) and name.strip() for name in names):
        raise ValueError("not a name")
    return [name.strip() for name in names]


row = st.tuples(
    st.one_of(st.integers(min_value=0, max_value=10**9).map(str), st.text(max_size=12)),  # id
    st.text(max_size=300),  # overview
    genre_field,  # genres
    st.integers(min_value=-1, max_value=1),  # field count: short, right, long
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row, max_size=40))
def test_prepare_keeps_or_counts_every_record(rows: list[tuple[str, str, str, int]]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "raw.csv"
        with raw.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "overview", "genres", "title"])
            for movie_id, overview, genres, shift in rows:
                writer.writerow([movie_id, overview, genres, "t", *(["x"] * shift)][: 4 + shift])
        summary = prepare_dataset(raw, Path(scratch) / "prepared", DEFAULT_GENRES, 0.2, 0.1)
        movies = pq.read_table(Path(scratch) / "prepared" / MOVIES_FILE)
    assert summary["kept"] + sum(summary["dropped"].values()) == summary["records"]
    assert summary["kept"] == movies.num_rows
    labels = [movies.column(g).to_pylist() for g in DEFAULT_GENRES]
    for index in range(movies.num_rows):
        assert any(column[index] for column in labels), "a kept movie has at least one target genre"
        assert movies.column("overview")[index].as_py().strip()
    assert len(set(movies.column("id").to_pylist())) == movies.num_rows


field_bytes = st.binary(max_size=60) | st.sampled_from([b"\xff\xfe", b"\x00", b'"', b"\r", b"\n", b",", b"\xc3"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(field_bytes, min_size=0, max_size=6), max_size=30))
def test_prepare_survives_arbitrary_bytes(rows: list[list[bytes]]) -> None:
    """Raw bytes after a good header (invalid UTF-8, NUL, stray quotes, bare CR): every record is kept or
    counted, and nothing escapes as a crash."""
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "raw.csv"
        raw.write_bytes(b"id,overview,genres\n" + b"\n".join(b",".join(fields) for fields in rows))
        summary = prepare_dataset(raw, Path(scratch) / "prepared", DEFAULT_GENRES, 0.2, 0.1)
    assert summary["kept"] + sum(summary["dropped"].values()) == summary["records"]
