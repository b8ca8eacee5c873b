"""Stage: tag a catalogue of movies with the served model's genres (the batch predict DAG's one task).

Which model: the version TensorFlow Serving serves when the stage runs (the highest). A caller may pass
the version it was told about (the asset event's); when the two differ, both are logged and the served
one is scored.

Input: a CSV with at least `id` and `overview` (`movies_metadata.csv` has both; plain or gzip), fetched
with the retrain's download stage, so a bad source fails the same clear way (an HTML page, an empty or
too large body, a missing file, a local file outside the data root, an HTTP 4xx). The download goes to
a hidden scratch folder beside the predictions and is deleted afterwards: no copy of the data is kept.

Rows: the CSV is streamed with prepare's record reader and scored CHUNK_ROWS movies at a time, so memory
holds one chunk (plus one int per movie id seen, to drop duplicates). A movie is scored when it has a
numeric id, a non-empty overview (stripped, as prepare stores it) and an id not seen before in the file;
every other record is skipped and counted by reason, with prepare's names: `malformed_row`,
`invalid_id`, `no_overview`, `duplicate_id`. A movie without an overview is skipped rather than scored:
the model would tag an empty text with the genres of no movie in particular. A file with no scorable
movie at all is a `DataError`.

Probabilities: each chunk's overviews get their vectors from the embedding cache of the served
version's module (its manifest's `embedding_module`: path and fingerprint); only texts the cache lacks
are embedded, and added to it. They then go through the exported model's `head_probabilities`. The
first texts also go through `serving_default`, as TensorFlow Serving calls it, and must agree: a stale
cache fails the stage rather than tagging the catalogue wrongly. A version whose manifest names no
module, or whose module folder is gone, is scored through `serving_default` alone (same
probabilities, no cache).

Output, in `<predictions_dir>/<version>/`, written in a temporary folder renamed when complete (a
failed run leaves nothing; a rerun for the same version replaces the folder whole):

- `predictions.parquet`: `id` (int64), `genres` (list of the genres at or above their tuned threshold,
  in the model's output order) and `p_<genre>` (float32 probability) for every genre; the file's
  metadata holds the version, the genres and the thresholds;
- `summary.json`: the returned summary (version, source, counts, embedding statistics).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.artifacts import atomic_dir, write_json
from tasks.data.download import DownloadPolicy, download_dataset
from tasks.data.prepare import DropReason, iter_records, parse_movie_id
from tasks.embedding.cache import EmbeddingCache, embed_with_cache
from tasks.embedding.embed import ModuleEmbedder
from tasks.errors import ConfigError, DataError, ExportError
from tasks.model.bundle import head_probabilities, read_labels, read_thresholds, serving_probabilities
from tasks.model.metrics import DECISION_THRESHOLD
from tasks.registry.versions import ModelRegistry

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.parquet"
SUMMARY_FILE = "summary.json"
SCORED_COLUMNS = ("id", "overview")
PROBABILITY_PREFIX = "p_"
CHUNK_ROWS = 20_000  # movies scored at a time: bounds memory on any file size
PARITY_SAMPLE = 16
PARITY_TOLERANCE = 1e-4


@dataclass
class _Counts:
    records: int = 0
    scored: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    embeddings: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Model:
    """The served version, loaded: its SavedModel, genres, thresholds and where its vectors come from."""

    version: int
    exported: Any
    genres: list[str]
    thresholds: dict[str, float]
    embedder: ModuleEmbedder | None  # both None: score through serving_default
    cache: EmbeddingCache | None


def batch_predict(
    source_url: str,
    served_dir: Path,
    predictions_dir: Path,
    cache_root: Path,
    policy: DownloadPolicy,
    *,
    announced_version: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, Any]:
    """Score the movies at `source_url` with the served version; write `<predictions_dir>/<version>/`."""
    if not source_url:
        raise ConfigError("no movies to score: set GENRE_SCORING_URL to a CSV with id and overview columns")
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be at least 1, not {chunk_rows}")
    registry = ModelRegistry(served_dir)
    version = registry.serving_version()
    if version is None:
        raise ConfigError(f"no promoted model in {served_dir}: nothing to score with")
    if announced_version is not None and announced_version != version:
        log.warning(
            "announced version %s is not the served one: scoring the served version %s", announced_version, version
        )
    else:
        log.info("scoring with the served version %s (announced: %s)", version, announced_version)
    predictions_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=predictions_dir) as scratch:
        downloaded = download_dataset(source_url, Path(scratch), policy)
        model = _load(registry, version, cache_root)
        out = predictions_dir / str(version)
        with atomic_dir(out) as tmp:
            counts = _write_predictions(Path(downloaded["path"]), tmp / PREDICTIONS_FILE, model, chunk_rows)
            summary = _summary(model, announced_version, downloaded, counts, chunk_rows)
            write_json(tmp / SUMMARY_FILE, summary)
    log.info(
        "version %d tagged %d movies of %d records (skipped %s) into %s",
        version,
        counts.scored,
        counts.records,
        dict(counts.skipped) or "none",
        out,
    )
    return {**summary, "path": str(out / PREDICTIONS_FILE)}


def read_predictions(path: Path) -> tuple[pa.Table, dict[str, Any]]:
    """A predictions file and its metadata (version, genres, thresholds)."""
    table = pq.read_table(path)
    return table, json.loads(table.schema.metadata[b"movie_genre"])


def _load(registry: ModelRegistry, version: int, cache_root: Path) -> _Model:
    from tasks.tensorflow_runtime import tf

    model_dir = registry.version_dir(version)
    genres = read_labels(model_dir)
    try:
        tuned = read_thresholds(model_dir)
    except FileNotFoundError:  # exported before thresholds were tuned: predict's default then
        tuned = {}
    thresholds = {genre: float(tuned.get(genre, DECISION_THRESHOLD)) for genre in genres}
    module = registry.manifest(version).get("embedding_module") or {}
    handle, fingerprint = module.get("path"), module.get("fingerprint")
    embedder = cache = None
    if handle and fingerprint and (handle.startswith(("http://", "https://")) or Path(handle).exists()):
        embedder, cache = ModuleEmbedder(handle), EmbeddingCache(cache_root, fingerprint)
    else:
        log.warning(
            "version %d: embedding module %s is not available; scoring through serving_default without the cache",
            version,
            handle or "(not in its manifest)",
        )
    log.info("loading version %d from %s", version, model_dir)
    exported = tf.saved_model.load(str(model_dir))
    return _Model(version, exported, genres, thresholds, embedder, cache)


def _write_predictions(csv_path: Path, target: Path, model: _Model, chunk_rows: int) -> _Counts:
    counts = _Counts()
    schema = _schema(model)
    # Compared in float64, as `predict` compares each probability with its threshold.
    threshold_row = np.array([model.thresholds[genre] for genre in model.genres], dtype=np.float64)
    with pq.ParquetWriter(target, schema) as writer:
        for ids, texts in _movie_chunks(csv_path, chunk_rows, counts):
            probabilities = _probabilities(model, texts, counts)
            if counts.scored == 0:
                _check_parity(model, texts[:PARITY_SAMPLE], probabilities[:PARITY_SAMPLE])
            chosen = probabilities.astype(np.float64) >= threshold_row
            columns: dict[str, Any] = {
                "id": ids,
                "genres": [[g for g, on in zip(model.genres, row, strict=True) if on] for row in chosen],
            }
            for index, genre in enumerate(model.genres):
                columns[PROBABILITY_PREFIX + genre] = probabilities[:, index]
            writer.write_table(pa.Table.from_pydict(columns, schema=schema))
            counts.scored += len(ids)
            log.info("scored %d movies so far", counts.scored)
    if counts.scored == 0:
        raise DataError(
            f"{csv_path.name}: no movie to score in {counts.records} records "
            f"(skipped: {dict(counts.skipped) or 'none'}); each needs a numeric id and an overview"
        )
    return counts


def _movie_chunks(csv_path: Path, chunk_rows: int, counts: _Counts) -> Iterator[tuple[list[int], list[str]]]:
    """(ids, overviews) of the scorable movies, `chunk_rows` at a time; skipped records counted."""
    seen: set[int] = set()
    ids: list[int] = []
    texts: list[str] = []
    for row in iter_records(csv_path, SCORED_COLUMNS):
        counts.records += 1
        reason = None
        if row is None:
            reason = DropReason.MALFORMED_ROW
        elif (movie_id := parse_movie_id(row["id"])) is None:
            reason = DropReason.INVALID_ID
        elif not (overview := row["overview"].strip()):
            reason = DropReason.NO_OVERVIEW
        elif movie_id in seen:
            reason = DropReason.DUPLICATE_ID
        if reason is not None:
            counts.skipped[reason] += 1
            continue
        assert movie_id is not None  # a record without a numeric id has its reason above
        seen.add(movie_id)
        ids.append(movie_id)
        texts.append(overview)
        if len(ids) >= chunk_rows:
            yield ids, texts
            ids, texts = [], []
    if ids:
        yield ids, texts


def _probabilities(model: _Model, texts: list[str], counts: _Counts) -> np.ndarray:
    if model.embedder is None or model.cache is None:
        return serving_probabilities(model.exported, texts)
    vectors, stats = embed_with_cache(texts, model.embedder, model.cache)
    counts.embeddings.update(stats)
    return head_probabilities(model.exported, texts, vectors)


def _check_parity(model: _Model, texts: list[str], expected: np.ndarray) -> None:
    """Cached vectors through the head must give what `serving_default` gives on the raw texts."""
    if model.cache is None:
        return
    worst = float(np.max(np.abs(serving_probabilities(model.exported, texts) - expected)))
    if worst > PARITY_TOLERANCE:
        raise ExportError(
            f"version {model.version}: probabilities from the embedding cache differ from serving_default by up "
            f"to {worst:.2e} (tolerance {PARITY_TOLERANCE:.0e}): the cache of module "
            f"{model.cache.module_fingerprint} is stale"
        )


def _schema(model: _Model) -> pa.Schema:
    metadata = {"version": model.version, "genres": model.genres, "thresholds": model.thresholds}
    return pa.schema(
        [("id", pa.int64()), ("genres", pa.list_(pa.string()))]
        + [(PROBABILITY_PREFIX + genre, pa.float32()) for genre in model.genres],
        metadata={"movie_genre": json.dumps(metadata)},
    )


def _summary(
    model: _Model,
    announced_version: int | None,
    downloaded: Mapping[str, Any],
    counts: _Counts,
    chunk_rows: int,
) -> dict[str, Any]:
    return {
        "version": model.version,
        "announced_version": announced_version,
        "source": {key: downloaded[key] for key in ("url", "sha256", "size_bytes", "csv_bytes", "gzip")},
        "records": counts.records,
        "scored": counts.scored,
        "skipped": dict(sorted(counts.skipped.items())),
        "genres": model.genres,
        "thresholds": model.thresholds,
        "embeddings": dict(counts.embeddings) if model.embedder is not None else "serving_default",
        "chunk_rows": chunk_rows,
    }
