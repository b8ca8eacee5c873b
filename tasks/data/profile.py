"""The profile of a prepared dataset: a few KB of JSON that say what the data looked like, so that a later
run can measure how far its data drifted from the data a served model learned from (`tasks.data.drift`).

The data gate writes it on every run as `validation/data_profile.json`; promotion keeps it beside the
version's manifest (`tasks.run_folder.PROFILE_FILE`). It is built a batch of rows at a time, so memory
does not grow with the file, and its size does not grow with the rows either (its size: bench/FINDINGS.md,
"Data preparation and memory"):

- `rows`, and `genres`: movies per genre;
- `overview_lengths`: movies per overview length in characters, in fixed log-spaced bins (`LENGTH_EDGES`:
  each bin √2 times as wide as the one before, so a change of typical length shows whatever the scale),
  and their mean;
- `languages`: movies per `original_language` for the TOP_LANGUAGES most common values, the rest as
  "(other)", missing ones as "(none)"; absent when the prepared data has no such column;
- `sketch`: a consistent hash sample of about SKETCH_IDS movies: every movie whose id hashes below
  `threshold` (sized from the row count), as the id's hash and a short hash of its overview and genres.
  Two profiles' samples hold the same ids wherever both thresholds admit them, so comparing them on
  the smaller threshold tells new, gone and changed movies apart;
- `embeddings` (when the caller gives vectors): for each genre, the direction from the mean of all
  movies' L2-normalised vectors to the mean of the genre's: what the genre means in the embedding space.
  Stored int8-quantised (cosines stay within about 1e-3), with the module's fingerprint, since vectors of
  different modules cannot be compared.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.data.prepare import OPTIONAL_COLUMNS, genre_columns

PROFILE_FORMAT = 1
PROFILE_BATCH_ROWS = 20_000  # rows (and vectors) held at once while profiling
# Lower bin edges in characters: 0, then 8·√2^k up to 8192; the last bin is open-ended.
LENGTH_EDGES = (0, *(round(8 * 2 ** (k / 2)) for k in range(21)))
LANGUAGE_COLUMN = "original_language"
TOP_LANGUAGES = 20
OTHER_LANGUAGES, NO_LANGUAGE = "(other)", "(none)"
SKETCH_IDS = 1000  # movies the sketch aims to hold: shares it estimates are within ±3 points or so
SKETCH_KEY_BYTES = 5  # an id's hash: 40 bits, so two ids in ~2,000 sampled collide once in ~10^6 runs
SKETCH_DIGEST_BYTES = 3  # a movie's content hash: a change goes unseen once in 16 million
KEY_SPACE = 1 << (8 * SKETCH_KEY_BYTES)

VectorsOf = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class EmbeddingSource:
    """The run's text vectors: `vectors_of(overviews)` is one vector per overview, in order, from the
    module whose fingerprint is `module_fingerprint`."""

    module_fingerprint: str
    vectors_of: VectorsOf


def build_profile(movies_file: Path, embeddings: EmbeddingSource | None = None) -> dict[str, Any]:
    """The profile of a prepared `movies.parquet` (see the module docstring)."""
    parquet = pq.ParquetFile(movies_file)
    names = parquet.schema_arrow.names
    genres = genre_columns(names)
    profile = _Profiler(genres, sketch_threshold(parquet.metadata.num_rows), embeddings)
    columns = ["id", "overview", *genres, *(c for c in OPTIONAL_COLUMNS if c in names)]
    for batch in parquet.iter_batches(batch_size=PROFILE_BATCH_ROWS, columns=columns):
        profile.add(batch)
    return profile.result(has_languages=LANGUAGE_COLUMN in names)


def sketch_threshold(rows: int) -> float:
    """The share of ids the sketch keeps: about SKETCH_IDS of `rows`, all of them in a smaller file."""
    return min(1.0, SKETCH_IDS / rows) if rows else 1.0


def id_key(movie_id: int) -> int:
    """The id's hash, an int below KEY_SPACE; the sketch keeps ids whose key is below threshold·KEY_SPACE.
    Salted apart from the split's hash, so the sample is not one split's movies."""
    digest = hashlib.sha256(f"sketch:{movie_id}".encode()).digest()
    return int.from_bytes(digest[:SKETCH_KEY_BYTES], "big")


def content_digest(overview: str, genres: Iterable[str]) -> int:
    """A short hash of what the model learns from a movie: its overview and its genres."""
    text = json.dumps([overview, sorted(genres)], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:SKETCH_DIGEST_BYTES], "big")


def sketch_entries(sketch: Mapping[str, Any]) -> dict[int, int]:
    """{id key: content digest} of a profile's sketch."""
    keys = _unpack(sketch["keys"], SKETCH_KEY_BYTES)
    digests = _unpack(sketch["digests"], SKETCH_DIGEST_BYTES)
    return dict(zip(keys, digests, strict=True))


def genre_directions(embeddings: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """{genre: its unit direction} of a profile's embeddings section."""
    return {
        genre: np.frombuffer(base64.b64decode(entry["direction"]), np.int8).astype(np.float64) * entry["scale"]
        for genre, entry in embeddings["genres"].items()
    }


class _Profiler:
    """Counts, sample and vector sums of the batches seen so far."""

    def __init__(self, genres: Sequence[str], threshold: float, embeddings: EmbeddingSource | None) -> None:
        self.genres = list(genres)
        self.threshold = threshold
        self.embeddings = embeddings
        self.rows = 0
        self.positives = np.zeros(len(genres), np.int64)
        self.length_counts = np.zeros(len(LENGTH_EDGES), np.int64)
        self.length_total = 0
        self.languages: Counter[str] = Counter()
        self.sketch: dict[int, int] = {}
        self.vector_total: np.ndarray | None = None  # sum of all normalised vectors
        self.genre_vector_totals: np.ndarray | None = None  # [genre, dimension]: sums over each genre's movies

    def add(self, batch: pa.RecordBatch) -> None:
        labels = np.stack([batch.column(g).to_numpy(zero_copy_only=False) for g in self.genres], axis=1)
        labels = labels.astype(np.float64).reshape(batch.num_rows, len(self.genres))
        self.rows += batch.num_rows
        self.positives += labels.sum(axis=0).astype(np.int64)
        self._add_lengths(pc.utf8_length(batch.column("overview")).to_numpy(zero_copy_only=False))
        if LANGUAGE_COLUMN in batch.schema.names:
            self._add_languages(batch.column(LANGUAGE_COLUMN))
        overviews = batch.column("overview").to_pylist()
        self._add_sketch(batch.column("id").to_pylist(), overviews, labels)
        if self.embeddings is not None and batch.num_rows:
            self._add_vectors(self.embeddings.vectors_of(overviews), labels)

    def _add_lengths(self, lengths: np.ndarray) -> None:
        bins = np.searchsorted(LENGTH_EDGES, lengths, side="right") - 1
        self.length_counts += np.bincount(bins, minlength=len(LENGTH_EDGES))
        self.length_total += int(lengths.sum())

    def _add_languages(self, column: pa.Array) -> None:
        for entry in pc.value_counts(column).to_pylist():
            self.languages[entry["values"] or NO_LANGUAGE] += entry["counts"]

    def _add_sketch(self, ids: list[int], overviews: list[str], labels: np.ndarray) -> None:
        limit = self.threshold * KEY_SPACE
        for movie_id, overview, flags in zip(ids, overviews, labels, strict=True):
            key = id_key(movie_id)
            if key < limit:
                self.sketch[key] = content_digest(overview, (g for g, f in zip(self.genres, flags, strict=True) if f))

    def _add_vectors(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        vectors = np.asarray(vectors, np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit = vectors / np.where(norms > 0, norms, 1.0)
        if self.vector_total is None or self.genre_vector_totals is None:
            self.vector_total = np.zeros(unit.shape[1])
            self.genre_vector_totals = np.zeros((len(self.genres), unit.shape[1]))
        self.vector_total += unit.sum(axis=0)
        self.genre_vector_totals += labels.T @ unit

    def result(self, has_languages: bool) -> dict[str, Any]:
        profile: dict[str, Any] = {
            "format": PROFILE_FORMAT,
            "rows": self.rows,
            "genres": {g: int(n) for g, n in zip(self.genres, self.positives, strict=True)},
            "overview_lengths": {
                "edges": list(LENGTH_EDGES),
                "counts": self.length_counts.tolist(),
                "mean": self.length_total / self.rows if self.rows else None,
            },
            "sketch": self._sketch_section(),
        }
        if has_languages:
            profile["languages"] = top_counts(self.languages, TOP_LANGUAGES)
        if self.embeddings is not None:
            profile["embeddings"] = self._embeddings_section()
        return profile

    def _sketch_section(self) -> dict[str, Any]:
        keys = sorted(self.sketch)
        return {
            "threshold": self.threshold,
            "keys": _pack(keys, SKETCH_KEY_BYTES),
            "digests": _pack([self.sketch[k] for k in keys], SKETCH_DIGEST_BYTES),
        }

    def _embeddings_section(self) -> dict[str, Any]:
        assert self.embeddings is not None
        section: dict[str, Any] = {"module": self.embeddings.module_fingerprint, "genres": {}}
        if self.vector_total is None or self.genre_vector_totals is None:
            return section
        overall = self.vector_total / self.rows
        for genre, movies, total in zip(self.genres, self.positives, self.genre_vector_totals, strict=True):
            if movies:
                section["genres"][genre] = _direction_entry(total / movies - overall)
        return section


def top_counts(counts: Counter[str], top: int) -> dict[str, int]:
    """The `top` most common values with their counts (ties by name), the rest summed as OTHER_LANGUAGES."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[:top])
    rest = sum(n for _, n in ranked[top:])
    return {**kept, OTHER_LANGUAGES: rest} if rest else kept


def _direction_entry(offset: np.ndarray) -> dict[str, Any]:
    """A genre's offset from the overall mean, as its length and its int8-quantised unit direction."""
    norm = float(np.linalg.norm(offset))
    unit = offset / norm if norm > 0 else offset
    scale = float(np.abs(unit).max()) / 127 if norm > 0 else 1.0
    quantised = np.round(unit / scale).astype(np.int8)
    return {"norm": norm, "scale": scale, "direction": base64.b64encode(quantised.tobytes()).decode("ascii")}


def _pack(values: Sequence[int], width: int) -> str:
    return base64.b64encode(b"".join(v.to_bytes(width, "big") for v in values)).decode("ascii")


def _unpack(text: str, width: int) -> list[int]:
    raw = base64.b64decode(text)
    return [int.from_bytes(raw[i : i + width], "big") for i in range(0, len(raw), width)]
