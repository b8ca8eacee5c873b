"""Stage 2: turn the raw CSV into typed training data.

Streams the CSV record by record (memory grows with the kept text only), keeps movies with a numeric
id, a non-empty overview and at least one target genre, and writes to `prepared/`:

- `movies.parquet`: `id`, `overview`, `split` ("train", "validation" or "test") and one 0/1 column
  per genre, in the configured order;
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
from tasks.errors import DataError
from tasks.genres import GenreParseError, parse_genres

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "overview", "genres")
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


@dataclass
class _Collected:
    genres: Sequence[str]
    movie_ids: list[int] = field(default_factory=list)
    overviews: list[str] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    records: dict[str, list[Any]] = field(
        default_factory=lambda: {
            "record": [],
            "id": [],
            "overview_length": [],
            "genres_parsed": [],
            "target_genres": [],
            "drop_reason": [],
        }
    )

    def add_record(
        self,
        *,
        raw_id: str,
        overview_length: int | None,
        genres_parsed: bool | None,
        target_genres: int,
        drop_reason: str | None,
    ) -> None:
        rec = self.records
        rec["record"].append(len(rec["record"]) + 1)
        rec["id"].append(raw_id[:64])
        rec["overview_length"].append(overview_length)
        rec["genres_parsed"].append(genres_parsed)
        rec["target_genres"].append(target_genres)
        rec["drop_reason"].append(drop_reason)


SPLITS = ("train", "validation", "test")


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
) -> dict[str, Any]:
    """Parse `raw_csv` into `out_dir` (replaced as a whole); return the counts."""
    collected = _collect(raw_csv, genres)
    splits = [assign_split(i, test_fraction, validation_fraction) for i in collected.movie_ids]
    summary = _summary(collected, splits, test_fraction, validation_fraction)
    with atomic_dir(out_dir) as tmp:
        pq.write_table(_movies_table(collected, splits), tmp / MOVIES_FILE)
        pq.write_table(pa.table(collected.records), tmp / RECORDS_FILE)
        pq.write_table(_coverage_table(collected, splits), tmp / COVERAGE_FILE)
        write_json(tmp / SUMMARY_FILE, summary)
    log.info("prepared %s", summary)
    return {**summary, "path": str(out_dir)}


def read_split(prepared_dir: Path, split: str) -> tuple[list[str], Any, list[str]]:
    """(overviews, labels as a float32 [n, genres] array, genre names) of one split."""
    import numpy as np

    table = pq.read_table(prepared_dir / MOVIES_FILE, filters=[("split", "=", split)])
    genres = [name for name in table.column_names if name not in ("id", "overview", "split")]
    labels = np.stack([table.column(g).to_numpy() for g in genres], axis=1).astype("float32")
    return table.column("overview").to_pylist(), labels, genres


def _collect(raw_csv: Path, genres: Sequence[str]) -> _Collected:
    collected = _Collected(genres=genres)
    seen_ids: set[int] = set()
    wanted = {name: index for index, name in enumerate(genres)}
    for row in _records(raw_csv):
        if row is None:
            collected.add_record(
                raw_id="",
                overview_length=None,
                genres_parsed=None,
                target_genres=0,
                drop_reason=DropReason.MALFORMED_ROW,
            )
            continue
        raw_id, overview, genres_text = (row[c] for c in REQUIRED_COLUMNS)
        overview = overview.strip()
        try:
            names = parse_genres(genres_text)
        except GenreParseError:
            names = None
        labels = [0] * len(genres)
        for name in names or ():
            if name in wanted:
                labels[wanted[name]] = 1
        movie_id = int(raw_id) if raw_id.strip().isascii() and raw_id.strip().isdigit() else None
        reason = _drop_reason(movie_id, overview, names, labels, seen_ids)
        collected.add_record(
            raw_id=raw_id,
            overview_length=len(overview),
            genres_parsed=names is not None,
            target_genres=sum(labels),
            drop_reason=reason,
        )
        if reason is None:
            seen_ids.add(movie_id)
            collected.movie_ids.append(movie_id)
            collected.overviews.append(overview)
            collected.labels.append(labels)
    return collected


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


def _records(raw_csv: Path) -> Iterator[dict[str, str] | None]:
    """The required fields of each CSV record, or None for a record with the wrong field count."""
    csv.field_size_limit(sys.maxsize)
    # Undecodable bytes become U+FFFD rather than failing the whole file.
    with raw_csv.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lstrip("\ufeff") for name in next(reader, [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(
                f"{raw_csv.name}: missing required column(s) {', '.join(missing)}; "
                f"header has {', '.join(header) or 'nothing'}"
            )
        positions = {c: header.index(c) for c in REQUIRED_COLUMNS}
        for fields_ in reader:
            if len(fields_) != len(header):
                yield None
            else:
                yield {c: fields_[i] for c, i in positions.items()}


def _movies_table(collected: _Collected, splits: list[str]) -> pa.Table:
    columns: dict[str, pa.Array] = {
        "id": pa.array(collected.movie_ids, pa.int64()),
        "overview": pa.array(collected.overviews, pa.string()),
        "split": pa.array(splits, pa.string()),
    }
    for index, genre in enumerate(collected.genres):
        columns[genre] = pa.array([labels[index] for labels in collected.labels], pa.int8())
    return pa.table(columns)


def _coverage_table(collected: _Collected, splits: list[str]) -> pa.Table:
    rows: dict[str, list[Any]] = {"genre": [], **{f"{split}_positives": [] for split in SPLITS}, "share": []}
    total = max(len(splits), 1)
    for index, genre in enumerate(collected.genres):
        per_split = Counter(split for split, labels in zip(splits, collected.labels, strict=True) if labels[index])
        rows["genre"].append(genre)
        for split in SPLITS:
            rows[f"{split}_positives"].append(per_split[split])
        rows["share"].append(per_split.total() / total)
    return pa.table(rows)


def _summary(
    collected: _Collected, splits: list[str], test_fraction: float, validation_fraction: float
) -> dict[str, Any]:
    reasons = Counter(r for r in collected.records["drop_reason"] if r is not None)
    split_counts = Counter(splits)
    positives = {genre: sum(labels[i] for labels in collected.labels) for i, genre in enumerate(collected.genres)}
    return {
        "records": len(collected.records["record"]),
        "kept": len(collected.movie_ids),
        "dropped": dict(sorted(reasons.items())),
        **{f"{split}_rows": split_counts[split] for split in SPLITS},
        "test_fraction": test_fraction,
        "validation_fraction": validation_fraction,
        "genres": list(collected.genres),
        "positives": positives,
        "split_fingerprint": _split_fingerprint(collected.movie_ids, splits),
    }


def _split_fingerprint(movie_ids: list[int], splits: list[str]) -> str:
    """sha256 of the sorted (id, split) pairs: equal fingerprints mean identical splits."""
    digest = hashlib.sha256()
    for movie_id, split in sorted(zip(movie_ids, splits, strict=True)):
        digest.update(f"{movie_id}:{split}\n".encode())
    return digest.hexdigest()
