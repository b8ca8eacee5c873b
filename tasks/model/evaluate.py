"""Stage: score the exported model on the test split, beside the baselines and the served model.

The test descriptions' vectors come from the embedding cache and go through the exported model's head
(`head_probabilities`). A sample of raw descriptions also goes through `serving_default`, exactly as
TensorFlow Serving will call it, and must give the same probabilities: what was scored is what will be
served. The baselines (see `baselines`) are fitted on the same train split and scored on the same test
split; their TF-IDF uses the model's own vocabulary and IDF (`_baseline_vectorizer`), and their fit
starts from the served version's weights. The served model (the champion) is scored on the same chunks
for the model gate (`champion.ChampionScorer`).

Memory does not grow with the test split: it is read from the Parquet file and scored CHUNK_ROWS movies
at a time, each chunk's vectors read from the cache shard by shard (`EmbeddingCache.lookup`); only the
probabilities and labels (a few floats a movie) are kept for the metrics.

Writes `metrics.json` (scored by `metrics`: micro and macro ROC AUC; per genre the AUC and precision /
recall / F1 at 0.5 and at the model's tuned threshold; the baselines' AUCs, how each was fitted and
from which weights, and the model's margin over the best; the champion's AUCs; the model's predictions
for the blog post's three descriptions, which the report shows), `predictions.npz` (test labels and
every model's probabilities, for the report) and `baselines.npz` (the baselines' weights, which
promotion publishes with the version).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.artifacts import atomic_path, write_json
from tasks.data.prepare import MOVIES_FILE, genre_columns, read_split
from tasks.embedding.cache import EmbeddingCache, embed_with_cache
from tasks.embedding.embed import ModuleEmbedder
from tasks.errors import ExportError
from tasks.model.bundle import (
    head_probabilities,
    load_head,
    read_thresholds,
    read_training_record,
    serving_probabilities,
)
from tasks.model.metrics import compute_metrics
from tasks.registry.versions import ModelRegistry
from tasks.results import EvaluateResult
from tasks.run_folder import BASELINES_FILE, RunFolder

if TYPE_CHECKING:  # scikit-learn is imported when evaluate runs, not with this module
    from tasks.model.baselines import Baselines

log = logging.getLogger(__name__)

CHUNK_ROWS = 20_000  # test movies scored at a time: their texts and 40 MB of 512-d vectors
PARITY_SAMPLE = 64
PARITY_TOLERANCE = 1e-4
# The three descriptions the TensorFlow blog post predicts at its end (a food documentary, an
# eighth-grade comedy, an IMF mission).
ARTICLE_DESCRIPTIONS = (
    "An examination of our dietary choices and the food we put in our bodies. Based on Jonathan Safran Foer's memoir.",
    "A teenager tries to survive the last week of her disastrous eighth-grade year before leaving to start high "
    "school.",
    "Ethan Hunt and his IMF team, along with some familiar allies, race against time after a mission gone wrong.",
)
MODEL = "model"


def evaluate_model(
    model_dir: Path,
    prepared_dir: Path,
    out: RunFolder,
    embedding_module: str,
    cache: EmbeddingCache,
    served_dir: Path | None = None,
) -> EvaluateResult:
    """Score `model_dir`, the baselines and the model served from `served_dir` (the champion, for the
    gate) on the test split; write the run's metrics, predictions and baselines' weights into `out`. The
    baselines' fit starts from the served version's weights, as the next run's will start from these once
    this model is served."""
    from tasks.model.champion import ChampionScorer
    from tasks.model.features import baseline_tfidf
    from tasks.tensorflow_runtime import tf

    served = ModelRegistry(served_dir) if served_dir is not None else None
    embedder = ModuleEmbedder(embedding_module)
    embedding_stats: Counter[str] = Counter()
    last_baselines = served.serving_file(BASELINES_FILE) if served is not None else None
    baselines, vectorizer, genres = _fitted_baselines(
        model_dir, prepared_dir, embedder, cache, embedding_stats, last_baselines
    )
    exported = tf.saved_model.load(str(model_dir))
    champion = ChampionScorer(served, genres, cache.module_fingerprint) if served is not None else None
    scored: dict[str, list[np.ndarray]] = defaultdict(list)
    for texts, chunk_labels in _test_chunks(prepared_dir, genres):
        vectors = _vectors(texts, embedder, cache, embedding_stats)
        probabilities = head_probabilities(exported, texts, vectors)
        if not scored:
            check_serving_parity(exported, texts[:PARITY_SAMPLE], probabilities[:PARITY_SAMPLE])
        if champion is not None:
            champion.add(texts, vectors)
        scored["labels"].append(chunk_labels)
        scored[MODEL].append(probabilities)
        for name, baseline in baselines.probabilities(baseline_tfidf(vectorizer, texts), vectors).items():
            scored[name].append(baseline)
    if not scored:
        raise ValueError(f"no test rows in {prepared_dir}")
    labels, probabilities = np.concatenate(scored.pop("labels")), np.concatenate(scored.pop(MODEL))
    baseline_scores = {name: np.concatenate(parts) for name, parts in scored.items()}
    thresholds = read_thresholds(model_dir)
    metrics = compute_metrics(labels, probabilities, genres, thresholds)
    metrics["baselines"] = {
        name: {key: value for key, value in compute_metrics(labels, p, genres).items() if key.startswith("auc_")}
        for name, p in baseline_scores.items()
    }
    best = max(metrics["baselines"].items(), key=lambda item: item[1]["auc_micro"])
    metrics["margin_over_best_baseline"] = {
        "baseline": best[0],
        "auc_micro": metrics["auc_micro"] - best[1]["auc_micro"],
    }
    metrics["baseline_fits"] = baselines.fits
    metrics["baselines_started_from"] = str(last_baselines) if last_baselines else None
    metrics["champion"] = champion.entry(labels) if champion is not None else None
    metrics["embeddings"] = dict(embedding_stats)
    # Scored here, where the export is loaded, so the report needs no TensorFlow.
    metrics["article_predictions"] = [
        {"description": text, "probabilities": dict(zip(genres, map(float, row), strict=True))}
        for text, row in zip(
            ARTICLE_DESCRIPTIONS, serving_probabilities(exported, list(ARTICLE_DESCRIPTIONS)), strict=True
        )
    ]
    out.path.mkdir(parents=True, exist_ok=True)
    # A decision on an earlier evaluation (a cleared, re-run evaluate) must not stand for this one.
    out.gate.unlink(missing_ok=True)
    baselines.save(out.baselines, genres)
    write_json(out.metrics, metrics)
    with atomic_path(out.predictions) as tmp, tmp.open("wb") as handle:
        # Any: numpy's stubs would match the unpacked dict of arrays against savez's allow_pickle.
        arrays: dict[str, Any] = {"labels": labels, "genres": np.array(genres), MODEL: probabilities, **baseline_scores}
        np.savez(handle, **arrays)
    log.info(
        "auc_micro %.4f (best baseline %s %+.4f), auc_macro %s on %d test rows",
        metrics["auc_micro"],
        best[0],
        metrics["margin_over_best_baseline"]["auc_micro"],
        metrics["auc_macro"],
        len(labels),
    )
    return {
        "auc_micro": metrics["auc_micro"],
        "auc_macro": metrics["auc_macro"],
        "test_rows": metrics["test_rows"],
        "baselines_auc_micro": {name: m["auc_micro"] for name, m in metrics["baselines"].items()},
        "path": str(out.metrics),
    }


def _fitted_baselines(
    model_dir: Path,
    prepared_dir: Path,
    embedder: ModuleEmbedder,
    cache: EmbeddingCache,
    stats: Counter[str],
    last_baselines: Path | None,
) -> tuple[Baselines, Any, list[str]]:
    """The baselines fitted on the train split (from `last_baselines`' weights where they fit), the TF-IDF
    vectorizer they share with the model, and the genres. The split lives only in here: the baselines
    keep what they learned, not the texts."""
    from tasks.model.baselines import EMBEDDING, TFIDF, fit_baselines, load_start
    from tasks.model.features import baseline_tfidf, vocabulary_digest

    train_texts, train_labels, genres = read_split(prepared_dir, "train")
    vectorizer = _baseline_vectorizer(model_dir, train_texts)
    baselines = fit_baselines(
        lambda: baseline_tfidf(vectorizer, train_texts),
        lambda: _vectors(train_texts, embedder, cache, stats),
        train_labels,
        features={TFIDF: vocabulary_digest(vectorizer), EMBEDDING: cache.module_fingerprint},
        start=load_start(last_baselines, genres),
    )
    return baselines, vectorizer, genres


def _baseline_vectorizer(model_dir: Path, train_texts: list[str]) -> Any:
    """The TF-IDF vectorizer the baseline shares with the run: the evaluated head's own (its vocabulary and
    IDF, as served), or for a deep-only head the one a wide candidate of the same architecture adapts on
    this train split."""
    from tasks.model.features import adapt_vectorizer, head_vectorizer

    # The head file rather than the SavedModel just loaded: only Keras gives the layer back with its config.
    vectorizer = head_vectorizer(load_head(model_dir))
    if vectorizer is None:
        vocabulary_size = read_training_record(model_dir)["architecture"]["vocabulary_size"]
        vectorizer = adapt_vectorizer(train_texts, vocabulary_size)
    return vectorizer


def _test_chunks(prepared_dir: Path, genres: list[str]) -> Iterator[tuple[list[str], np.ndarray]]:
    """The test split's (overviews, labels), about CHUNK_ROWS movies at a time, in file order."""
    texts: list[str] = []
    labels: list[np.ndarray] = []
    movies = pq.ParquetFile(prepared_dir / MOVIES_FILE)
    if genre_columns(movies.schema_arrow.names) != genres:
        raise ValueError(f"{prepared_dir / MOVIES_FILE} changed its genres while being evaluated")
    for batch in movies.iter_batches(batch_size=CHUNK_ROWS, columns=["overview", "split", *genres]):
        test = batch.filter(pc.equal(batch.column("split"), "test"))
        texts += test.column("overview").to_pylist()
        labels.append(np.stack([test.column(genre).to_numpy() for genre in genres], axis=1).astype("float32"))
        if len(texts) >= CHUNK_ROWS:
            yield texts, np.concatenate(labels)
            texts, labels = [], []
    if texts:
        yield texts, np.concatenate(labels)


def _vectors(texts: list[str], embedder: ModuleEmbedder, cache: EmbeddingCache, stats: Counter[str]) -> np.ndarray:
    """The vectors of `texts` from the cache (the few it lacks, a shard set aside since embed ran, are
    embedded and cached again); `stats` adds up texts, from_cache and computed over the calls."""
    vectors, counts = embed_with_cache(texts, embedder, cache)
    stats.update(counts)
    return vectors


def check_serving_parity(exported: Any, texts: list[str], expected: np.ndarray) -> None:
    """Raw strings through `serving_default` must give what the head gave on cached vectors."""
    served = serving_probabilities(exported, texts)
    worst = float(np.max(np.abs(served - expected))) if len(texts) else 0.0
    if worst > PARITY_TOLERANCE:
        raise ExportError(
            f"serving_default differs from the evaluated model by up to {worst:.2e} on {len(texts)} test "
            f"descriptions (tolerance {PARITY_TOLERANCE:.0e}): the embedding cache or the export is stale"
        )
