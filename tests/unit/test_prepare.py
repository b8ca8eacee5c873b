from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.config import DEFAULT_GENRES
from tasks.data.prepare import MOVIES_FILE, RECORDS_FILE, prepare_dataset, read_split, split_bucket
from tasks.errors import ConfigError, DataError
from tests.sample_data import write_rows

HEADER = ["adult", "genres", "id", "overview", "title"]
COMEDY = "[{'id': 35, 'name': 'Comedy'}]"


def _prepare(tmp_path: Path, rows: list[list[str]], header: list[str] = HEADER) -> dict:
    raw = write_rows(tmp_path / "raw.csv", header, rows)
    return prepare_dataset(raw, tmp_path / "prepared", DEFAULT_GENRES, 0.2, 0.1)


def test_keeps_good_rows_and_counts_every_drop(tmp_path: Path) -> None:
    summary = _prepare(
        tmp_path,
        [
            ["False", "[{'id': 35, 'name': 'Comedy'}, {'id': 27, 'name': 'Horror'}]", "10", "A scary comedy.", "A"],
            ["False", '[{"id": 878, "name": "Science Fiction"}]', "11", "Robots.", "B"],
            ["False", "[{'id': 18, 'name': 'Drama'}]", "12", "Only drama.", "C"],
            ["False", COMEDY, "13", "   ", "D"],
            ["False", "[{'id': 35, 'name'", "14", "Broken genres.", "E"],
            ["False", COMEDY, "1997-08-20", "Shifted id.", "F"],
            ["False", COMEDY, "10", "Duplicate of 10.", "G"],
            ["- Written by Ørnås", "/ff9qCepilowshEtG2GYWwzt2bs4.jpg", "1"],  # a shifted, short record
        ],
    )
    assert summary["records"] == 8
    assert summary["kept"] == 2
    assert summary["dropped"] == {
        "duplicate_id": 1,
        "invalid_id": 1,
        "malformed_row": 1,
        "no_overview": 1,
        "no_target_genre": 1,
        "unparseable_genres": 1,
    }
    movies = pq.read_table(tmp_path / "prepared" / MOVIES_FILE).to_pylist()
    by_id = {m["id"]: m for m in movies}
    assert by_id[10]["Comedy"] == by_id[10]["Horror"] == 1 and by_id[10]["Thriller"] == 0
    assert by_id[11]["Science Fiction"] == 1
    assert by_id[10]["overview"] == "A scary comedy."
    records = pq.read_table(tmp_path / "prepared" / RECORDS_FILE)
    assert records.num_rows == 8


def test_labels_follow_the_configured_genre_order(tmp_path: Path) -> None:
    _prepare(tmp_path, [["False", COMEDY, str(i), f"Movie {i}.", "T"] for i in range(20)])
    table = pq.read_table(tmp_path / "prepared" / MOVIES_FILE)
    assert table.column_names == ["id", "overview", "split", *DEFAULT_GENRES]


def test_split_is_stable_across_files(tmp_path: Path) -> None:
    """A movie never moves between train and test when other movies come and go."""
    ids = list(range(1, 400))
    _prepare(tmp_path / "a", [["", COMEDY, str(i), "x" * 20, ""] for i in ids])
    _prepare(tmp_path / "b", [["", COMEDY, str(i), "x" * 20, ""] for i in ids[::3]])

    def splits(folder: Path) -> dict[int, str]:
        rows = pq.read_table(folder / "prepared" / MOVIES_FILE, columns=["id", "split"]).to_pylist()
        return {row["id"]: row["split"] for row in rows}

    first, second = splits(tmp_path / "a"), splits(tmp_path / "b")
    assert all(first[movie_id] == split for movie_id, split in second.items())
    assert 0.1 < sum(s == "test" for s in first.values()) / len(first) < 0.3
    assert 0.03 < sum(s == "validation" for s in first.values()) / len(first) < 0.17
    assert all(0 <= split_bucket(i) < 1 for i in ids)


@pytest.mark.parametrize("missing", ["id", "overview", "genres"])
def test_missing_required_column_is_named(tmp_path: Path, missing: str) -> None:
    header = [c for c in HEADER if c != missing]
    with pytest.raises(DataError, match=f"missing required column\\(s\\) {missing}"):
        _prepare(tmp_path, [["x"] * len(header)], header=header)


def test_other_columns_are_optional(tmp_path: Path) -> None:
    summary = _prepare(tmp_path, [[COMEDY, "5", "Just the three columns."]], header=["genres", "id", "overview"])
    assert summary["kept"] == 1


def test_empty_file_fails_clearly(tmp_path: Path) -> None:
    raw = tmp_path / "raw.csv"
    raw.write_text("")
    with pytest.raises(DataError, match=r"missing required column\(s\) id, overview, genres; the file is empty"):
        prepare_dataset(raw, tmp_path / "prepared", DEFAULT_GENRES, 0.2, 0.1)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"metadatabase": {"status": "healthy"}, "token": "s3cret-7f2e"}\n', "the file looks like JSON, not a CSV"),
        ('[{"status": "healthy", "token": "s3cret-7f2e"}]\n', "the file looks like JSON, not a CSV"),
        ("status,healthy,s3cret-7f2e\nok,yes,no\n", "the header has 3 column(s)"),
    ],
    ids=["json_object", "json_array", "other_csv"],
)
def test_a_file_that_is_not_the_movies_csv_is_described_never_repeated(
    tmp_path: Path, content: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the URL answered (an internal service's JSON, another CSV) lands in logs and alerts if
    the error repeats it: the error says what is wrong instead."""
    caplog.set_level(logging.DEBUG)
    raw = tmp_path / "raw.csv"
    raw.write_text(content)
    with pytest.raises(DataError) as raised:
        prepare_dataset(raw, tmp_path / "prepared", DEFAULT_GENRES, 0.2, 0.1)
    assert str(raised.value) == f"raw.csv: missing required column(s) id, overview, genres; {problem}"
    for text in ("healthy", "s3cret-7f2e", "status"):
        assert text not in str(raised.value) and text not in caplog.text


def test_real_file(shared_csv: Path, tmp_path: Path) -> None:
    summary = prepare_dataset(shared_csv, tmp_path / "prepared", DEFAULT_GENRES, 0.2, 0.1)
    # The shared file's README: 4,116 movies have an overview and a target genre; one id is duplicated.
    assert summary["records"] == 5000
    assert summary["kept"] == 4115
    assert summary["dropped"]["duplicate_id"] == 1
    assert summary["positives"]["Documentary"] == 138
    texts, labels, genres = read_split(tmp_path / "prepared", "train")
    assert labels.shape == (summary["train_rows"], 9) and genres == list(DEFAULT_GENRES)
    assert len(texts) == summary["train_rows"] and all(texts)
    languages = pq.read_table(tmp_path / "prepared" / MOVIES_FILE, columns=["id", "original_language"]).to_pylist()
    assert {"id": 862, "original_language": "en"} in languages, "Toy Story's language"


def test_header_only_yields_no_movies_and_no_crash(tmp_path: Path) -> None:
    summary = _prepare(tmp_path, [])
    assert (summary["records"], summary["kept"], summary["dropped"]) == (0, 0, {})
    assert pq.read_table(tmp_path / "prepared" / MOVIES_FILE).num_rows == 0


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_an_empty_split_is_a_permanent_data_error_naming_it(tmp_path: Path, split: str) -> None:
    """A header-only file leaves every split empty; a stage reading one fails at once (no retries)."""
    _prepare(tmp_path, [])
    with pytest.raises(DataError, match=f"the {split} split of .* is empty"):
        read_split(tmp_path / "prepared", split)


def test_non_utf8_bytes_are_replaced_not_fatal(tmp_path: Path) -> None:
    raw = tmp_path / "raw.csv"
    raw.write_bytes(
        b"id,overview,genres\n"
        b"1,\"Caf\xe9 society in Paris (Latin-1 bytes).\",\"[{'id': 35, 'name': 'Comedy'}]\"\n"
        b"2,\"A \xff\xfe broken \xc3 sequence.\",\"[{'id': 27, 'name': 'Horror'}]\"\n"
        b"3,\"Clean.\",\"[{'id': 27, 'name': 'Hor\xf6r'}]\"\n"
    )
    summary = prepare_dataset(raw, tmp_path / "prepared", DEFAULT_GENRES, 0.2, 0.1)
    assert summary["kept"] == 2 and summary["dropped"] == {"no_target_genre": 1}, "Hor\ufffdr is not Horror"
    overviews = pq.read_table(tmp_path / "prepared" / MOVIES_FILE).column("overview").to_pylist()
    assert "Caf\ufffd society in Paris (Latin-1 bytes)." in overviews


def test_a_100_kb_overview_is_kept_whole(tmp_path: Path) -> None:
    long = "A very long description of a movie. " * 2900  # about 104 KB
    summary = _prepare(tmp_path, [["False", COMEDY, "7", long, "Long"], ["False", COMEDY, "8", "Short.", "S"]])
    assert summary["kept"] == 2
    movies = {m["id"]: m for m in pq.read_table(tmp_path / "prepared" / MOVIES_FILE).to_pylist()}
    assert movies[7]["overview"] == long.strip() and len(movies[7]["overview"]) > 100_000


def test_duplicate_ids_with_conflicting_labels_keep_the_first_record(tmp_path: Path) -> None:
    """The first record of an id wins, whatever the later ones say; each later one is counted."""
    horror = "[{'id': 27, 'name': 'Horror'}]"
    summary = _prepare(
        tmp_path,
        [
            ["False", COMEDY, "42", "First: a comedy.", "A"],
            ["False", horror, "42", "Second: the same id as a horror film.", "B"],
            ["False", horror, "042", "Third: the same number, written differently.", "C"],
        ],
    )
    assert summary["kept"] == 1 and summary["dropped"] == {"duplicate_id": 2}
    (movie,) = pq.read_table(tmp_path / "prepared" / MOVIES_FILE).to_pylist()
    assert (movie["id"], movie["overview"], movie["Comedy"], movie["Horror"]) == (42, "First: a comedy.", 1, 0)
    records = pq.read_table(tmp_path / "prepared" / RECORDS_FILE).column("drop_reason").to_pylist()
    assert records == [None, "duplicate_id", "duplicate_id"]


def test_original_language_is_carried_when_the_csv_has_it(tmp_path: Path) -> None:
    header = [*HEADER, "original_language"]
    _prepare(
        tmp_path,
        [["False", COMEDY, "1", "A French comedy.", "A", "fr"], ["False", COMEDY, "2", "No language.", "B", " "]],
        header=header,
    )
    table = pq.read_table(tmp_path / "prepared" / MOVIES_FILE)
    assert table.column_names == ["id", "overview", "split", "original_language", *DEFAULT_GENRES]
    assert table.schema.field("original_language").type == pa.string()
    assert table.column("original_language").to_pylist() == ["fr", None], "an empty field is null"
    _, labels, genres = read_split(tmp_path / "prepared", table.column("split")[0].as_py())
    assert genres == list(DEFAULT_GENRES) and labels.shape[1] == 9, "the language is not taken for a genre"


def test_a_csv_without_original_language_gets_no_such_column(tmp_path: Path) -> None:
    _prepare(tmp_path, [["False", COMEDY, "1", "A comedy.", "A"]])
    assert "original_language" not in pq.read_table(tmp_path / "prepared" / MOVIES_FILE).column_names


def test_a_genre_named_like_a_prepared_column_is_refused(tmp_path: Path) -> None:
    raw = write_rows(tmp_path / "raw.csv", HEADER, [["False", COMEDY, "1", "A comedy.", "A"]])
    with pytest.raises(ConfigError, match="genre 'original_language' has the name of a prepared column"):
        prepare_dataset(raw, tmp_path / "prepared", ["Comedy", "original_language"], 0.2, 0.1)
