"""Stage 2: turn the raw CSV into typed training data.

Streams the CSV record by record and writes Parquet a chunk of records at a time, so memory holds one
chunk and the set of kept ids whatever the file's size. Keeps movies with a numeric id, a non-empty
overview and at least one target genre, and writes to `prepared/`:

- `movies.parquet`: `id`, `overview`, `split` ("train", "validation" or "test"), `original_language`
  (nullable; only when the CSV has that column, for the data profile's language shares) and one 0/1
  column per genre, in the configured order;
- `records.parquet`: one row per CSV record with what parsing found (the data gate checks it);
- `genre_coverage.parquet`: positives per genre and split (the data gate checks it).

Malformed records (wrong field count, non-numeric id, unparseable genres) are counted and dropped.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.artifacts import atomic_dir, write_json
from tasks.data.genres import GenreParseError, parse_genres
from tasks.errors import ConfigError, DataError
from tasks.results import PreparedSummary, PrepareResult

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "overview", "genres")
# Carried into movies.parquet when the CSV has them (an empty field becomes null); never required.
OPTIONAL_COLUMNS = ("original_language",)
# The columns of movies.parquet that are not genres.
NON_GENRE_COLUMNS = ("id", "overview", "split", *OPTIONAL_COLUMNS)
MOVIES_FILE = "movies.parquet"
RECORDS_FILE = "records.parquet"
COVERAGE_FILE = "genre_coverage.parquet"
SUMMARY_FILE = "summary.json"


class DropReason:
    MALFORMED_ROW = "malformed_row"
    INVALID_ID = "invalid_id"
    UNPARSEABLE_GENRES = "unparseable_genres"
    NO_OVERVIEW = "no_overview"
    NO_TARGET_GENRE = "no_target_genre"
    DUPLICATE_ID = "duplicate_id"


SPLITS = ("train", "validation", "test")
CHUNK_ROWS = 20_000  # records buffered before they are written out: bounds memory on any file size


RECORDS_SCHEMA = pa.schema(
    [
        ("record", pa.int64()),
        ("id", pa.string()),
        ("overview_length", pa.int64()),
        ("genres_parsed", pa.bool_()),
        ("target_genres", pa.int64()),
        ("drop_reason", pa.string()),
    ]
)


@dataclass
class _Chunk:
    """Records parsed since the last write, as columns."""

    movies: dict[str, list[Any]] = field(
        default_factory=lambda: {name: [] for name in ("id", "overview", "split", "labels", *OPTIONAL_COLUMNS)}
    )
    records: dict[str, list[Any]] = field(default_factory=lambda: {name: [] for name in RECORDS_SCHEMA.names})


@dataclass
class _Totals:
    """What the summary and the coverage table need, counted as the records stream by."""

    records: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    split_rows: Counter[str] = field(default_factory=Counter)
    positives: Counter[tuple[int, str]] = field(default_factory=Counter)  # (genre index, split) → movies
    seen_ids: set[int] = field(default_factory=set)  # one int per kept movie: all that grows with the file


def split_bucket(movie_id: int) -> float:
    """A stable number in [0, 1) from the movie id: the split never moves a movie between retrains."""
    digest = hashlib.sha256(f"movie:{movie_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(movie_id: int, test_fraction: float, validation_fraction: float) -> str:
    """test for buckets below `test_fraction`, validation for the next `validation_fraction`, else train."""
    bucket = split_bucket(movie_id)
    if bucket < test_fraction:
        return "test"
    return "validation" if bucket < test_fraction + validation_fraction else "train"


def prepare_dataset(
    raw_csv: Path, out_dir: Path, genres: Sequence[str], test_fraction: float, validation_fraction: float
) -> PrepareResult:
    """Parse `raw_csv` into `out_dir` (replaced as a whole); return the counts."""
    with atomic_dir(out_dir) as tmp:
        totals = _write_tables(raw_csv, tmp, genres, (test_fraction, validation_fraction))
        pq.write_table(_coverage_table(totals, genres), tmp / COVERAGE_FILE)
        summary = _summary(totals, genres, test_fraction, validation_fraction, _split_fingerprint(tmp / MOVIES_FILE))
        write_json(tmp / SUMMARY_FILE, summary)
    log.info("prepared %s", summary)
    return {**summary, "path": str(out_dir)}


def read_split(prepared_dir: Path, split: str) -> tuple[list[str], Any, list[str]]:
    """(overviews, labels as a float32 [n, genres] array, genre names) of one split; `DataError` when
    the split has no movie."""
    import numpy as np

    table = pq.read_table(prepared_dir / MOVIES_FILE, filters=[("split", "=", split)])
    if table.num_rows == 0:
        # Retrying cannot fill it: too few movies, or a split fraction too small for them.
        raise DataError(
            f"the {split} split of {prepared_dir / MOVIES_FILE} is empty: give the run more movies "
            "or a larger test_fraction / validation_fraction"
        )
    genres = genre_columns(table.column_names)
    labels = np.stack([table.column(g).to_numpy() for g in genres], axis=1).astype("float32")
    texts = table.column("overview").to_pylist()
    del table
    # Arrow's allocator keeps the pages it decoded the whole file into (bench/FINDINGS.md, "Data preparation
    # and memory") for reuse that never comes in the stages reading a split: hand them back.
    pa.default_memory_pool().release_unused()
    return texts, labels, genres


def genre_columns(names: Sequence[str]) -> list[str]:
    """The genre columns among movies.parquet's column `names`, in order."""
    return [name for name in names if name not in NON_GENRE_COLUMNS]


def _write_tables(raw_csv: Path, out_dir: Path, genres: Sequence[str], fractions: tuple[float, float]) -> _Totals:
    """Stream the CSV's records into movies.parquet and records.parquet, a chunk at a time."""
    totals = _Totals()
    wanted = {name: index for index, name in enumerate(genres)}
    optional = [name for name in OPTIONAL_COLUMNS if name in csv_header(raw_csv)]
    movies_schema = _movies_schema(genres, optional)
    chunk = _Chunk()
    with (
        pq.ParquetWriter(out_dir / MOVIES_FILE, movies_schema) as movies,
        pq.ParquetWriter(out_dir / RECORDS_FILE, RECORDS_SCHEMA) as records,
    ):
        for row in iter_records(raw_csv, optional=optional):
            _add_record(row, chunk, totals, wanted, fractions)
            if len(chunk.records["record"]) >= CHUNK_ROWS:
                _write_chunk(chunk, movies, records, genres)
                chunk = _Chunk()
        _write_chunk(chunk, movies, records, genres)
    return totals


def _add_record(
    row: dict[str, str] | None,
    chunk: _Chunk,
    totals: _Totals,
    wanted: dict[str, int],
    fractions: tuple[float, float],
) -> None:
    totals.records += 1
    if row is None:
        _note_record(chunk, totals, "", None, None, 0, DropReason.MALFORMED_ROW)
        return
    raw_id, overview, genres_text = (row[c] for c in REQUIRED_COLUMNS)
    overview = overview.strip()
    try:
        names = parse_genres(genres_text)
    except GenreParseError:
        names = None
    labels = [0] * len(wanted)
    for name in names or ():
        if name in wanted:
            labels[wanted[name]] = 1
    movie_id = parse_movie_id(raw_id)
    reason = _drop_reason(movie_id, overview, names, labels, totals.seen_ids)
    _note_record(chunk, totals, raw_id, len(overview), names is not None, sum(labels), reason)
    if reason is None and movie_id is not None:  # (an unparseable id always has its reason)
        split = assign_split(movie_id, *fractions)
        totals.seen_ids.add(movie_id)
        totals.split_rows[split] += 1
        totals.positives.update((index, split) for index, flag in enumerate(labels) if flag)
        for name, value in (("id", movie_id), ("overview", overview), ("split", split), ("labels", labels)):
            chunk.movies[name].append(value)
        for name in OPTIONAL_COLUMNS:
            chunk.movies[name].append(row.get(name, "").strip() or None)


def _note_record(
    chunk: _Chunk,
    totals: _Totals,
    raw_id: str,
    overview_length: int | None,
    genres_parsed: bool | None,
    target_genres: int,
    drop_reason: str | None,
) -> None:
    """One row of records.parquet: what parsing found in this CSV record."""
    values = (totals.records, raw_id[:64], overview_length, genres_parsed, target_genres, drop_reason)
    for name, value in zip(RECORDS_SCHEMA.names, values, strict=True):
        chunk.records[name].append(value)
    if drop_reason is not None:
        totals.dropped[drop_reason] += 1


def parse_movie_id(raw_id: str) -> int | None:
    """A record's movie id: its digits (ASCII, surrounding spaces allowed) as an int, else None."""
    return int(raw_id) if raw_id.strip().isascii() and raw_id.strip().isdigit() else None


def _drop_reason(
    movie_id: int | None, overview: str, names: list[str] | None, labels: list[int], seen_ids: set[int]
) -> str | None:
    if movie_id is None:
        return DropReason.INVALID_ID
    if names is None:
        return DropReason.UNPARSEABLE_GENRES
    if not overview:
        return DropReason.NO_OVERVIEW
    if not any(labels):
        return DropReason.NO_TARGET_GENRE
    if movie_id in seen_ids:
        return DropReason.DUPLICATE_ID
    return None


def iter_records(
    raw_csv: Path, columns: Sequence[str] = REQUIRED_COLUMNS, optional: Sequence[str] = ()
) -> Iterator[dict[str, str] | None]:
    """The `columns` of each CSV record, and those of `optional` the header has, streamed, or None for a
    record with the wrong field count; `DataError` naming the missing ones when the header lacks any of
    `columns`."""
    csv.field_size_limit(sys.maxsize)
    # Undecodable bytes become U+FFFD rather than failing the whole file.
    with raw_csv.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        header = _header(reader)
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"{raw_csv.name}: {_header_problem(header, missing)}")
        positions = {c: header.index(c) for c in (*columns, *(c for c in optional if c in header))}
        for fields_ in reader:
            if len(fields_) != len(header):
                yield None
            else:
                yield {c: fields_[i] for c, i in positions.items()}


def csv_header(raw_csv: Path) -> list[str]:
    """The column names of a CSV file (an empty list for an empty file)."""
    with raw_csv.open(encoding="utf-8", errors="replace", newline="") as handle:
        return _header(csv.reader(handle))


def _header_problem(header: list[str], missing: list[str]) -> str:
    """What is wrong with a header that lacks required columns, in words: never its text, which for a file
    that is not the movies CSV (a service's JSON answer, an error page) would land in logs and alerts."""
    if not header:
        found = "the file is empty"
    elif header[0].startswith(("{", "[")):
        found = "the file looks like JSON, not a CSV"
    else:
        found = f"the header has {len(header)} column(s)"
    return f"missing required column(s) {', '.join(missing)}; {found}"


def _header(reader: Iterator[list[str]]) -> list[str]:
    return [name.strip().lstrip("\ufeff") for name in next(reader, [])]


def _movies_schema(genres: Sequence[str], optional: Sequence[str]) -> pa.Schema:
    clash = [genre for genre in genres if genre in NON_GENRE_COLUMNS]
    if clash:
        # Read back, the column would be taken for the other (read_split tells genres by name).
        raise ConfigError(f"genre {clash[0]!r} has the name of a prepared column: rename it")
    return pa.schema(
        [("id", pa.int64()), ("overview", pa.string()), ("split", pa.string())]
        + [(name, pa.string()) for name in optional]
        + [(genre, pa.int8()) for genre in genres]
    )


def _write_chunk(chunk: _Chunk, movies: pq.ParquetWriter, records: pq.ParquetWriter, genres: Sequence[str]) -> None:
    labels = chunk.movies["labels"]
    columns = [chunk.movies["id"], chunk.movies["overview"], chunk.movies["split"]]
    columns += [chunk.movies[name] for name in movies.schema.names if name in OPTIONAL_COLUMNS]
    columns += [[row[index] for row in labels] for index in range(len(genres))]
    movies.write_table(pa.Table.from_arrays(columns, schema=movies.schema))
    records.write_table(pa.Table.from_pydict(chunk.records, schema=RECORDS_SCHEMA))


def _coverage_table(totals: _Totals, genres: Sequence[str]) -> pa.Table:
    kept = max(totals.split_rows.total(), 1)
    rows: dict[str, list[Any]] = {"genre": list(genres)}
    for split in SPLITS:
        rows[f"{split}_positives"] = [totals.positives[index, split] for index in range(len(genres))]
    rows["share"] = [sum(totals.positives[index, split] for split in SPLITS) / kept for index in range(len(genres))]
    return pa.table(rows)


def _summary(
    totals: _Totals, genres: Sequence[str], test_fraction: float, validation_fraction: float, split_fingerprint: str
) -> PreparedSummary:
    return {
        "records": totals.records,
        "kept": totals.split_rows.total(),
        "dropped": dict(sorted(totals.dropped.items())),
        "train_rows": totals.split_rows["train"],
        "validation_rows": totals.split_rows["validation"],
        "test_rows": totals.split_rows["test"],
        "test_fraction": test_fraction,
        "validation_fraction": validation_fraction,
        "genres": list(genres),
        "positives": {
            genre: sum(totals.positives[index, split] for split in SPLITS) for index, genre in enumerate(genres)
        },
        "split_fingerprint": split_fingerprint,
    }


def _split_fingerprint(movies_file: Path) -> str:
    """sha256 of the sorted (id, split) pairs: equal fingerprints mean identical splits."""
    table = pq.read_table(movies_file, columns=["id", "split"])
    digest = hashlib.sha256()
    for movie_id, split in sorted(zip(table.column("id").to_pylist(), table.column("split").to_pylist(), strict=True)):
        digest.update(f"{movie_id}:{split}\n".encode())
    return digest.hexdigest()
