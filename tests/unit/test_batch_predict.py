"""Batch predict (`tasks.model.batch_predict`) on a real promoted model: the small GloVe export published
through `promote_model`, the real sample's movies, the real embedding cache and TensorFlow."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.config import Settings
from tasks.data.download import DownloadPolicy
from tasks.embedding.cache import EmbeddingCache, text_key
from tasks.embedding.modules import module_fingerprint
from tasks.errors import ConfigError, DataError, DownloadError, ExportError
from tasks.model.batch_predict import PREDICTIONS_FILE, SUMMARY_FILE, batch_predict, read_predictions
from tasks.model.bundle import read_labels, read_thresholds
from tasks.registry.promote import promote_model
from tasks.registry.versions import ModelRegistry
from tests.sample_data import write_head, write_rows

pytestmark = pytest.mark.slow

METRICS = {"auc_micro": 0.81, "auc_macro": 0.74, "test_rows": 160, "path": "/runs/x/metrics.json"}


def _publish(model: Path, served: Path, embedding_module: dict | None) -> int:
    manifest = {"dag_run_id": "test", "metrics": METRICS}
    if embedding_module is not None:
        manifest["embedding_module"] = embedding_module
    published = promote_model(model, served, manifest, actor="test", reason="test", keep_versions=5)
    return published["version"]


@pytest.fixture
def place(tmp_path: Path, glove_export: Path, glove_module: str, sample_csv: Path) -> dict:
    """A served folder with the GloVe export published as version 1 (its manifest naming the GloVe module
    as a retrain's does), a data root holding the 800-movie sample, and empty predictions and cache."""
    data = tmp_path / "data"
    data.mkdir()
    movies = write_head(sample_csv, data / "movies.csv", 800)
    served = tmp_path / "models" / "movie_genre"
    module = {"path": glove_module, "fingerprint": module_fingerprint(glove_module)}
    assert _publish(glove_export, served, module) == 1
    return {
        "movies": movies,
        "data": data,
        "served": served,
        "predictions": tmp_path / "artifacts" / "predictions",
        "cache": tmp_path / "artifacts" / "embedding_cache",
        "module": module,
    }


def _run(place: dict, url: str | None = None, **kwargs) -> dict:
    policy = DownloadPolicy(data_root=place["data"], max_bytes=kwargs.pop("max_bytes", 1 << 30))
    return batch_predict(
        url or str(place["movies"]), place["served"], place["predictions"], place["cache"], policy, **kwargs
    )


def _scorable(movies: Path) -> dict[int, str]:
    """What the stage must score, read independently with the csv module: the first record of each
    numeric id whose overview is not blank, its overview stripped."""
    kept: dict[int, str] = {}
    with movies.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            raw_id, overview = (row.get("id") or "").strip(), (row.get("overview") or "").strip()
            if raw_id.isdigit() and overview and int(raw_id) not in kept:
                kept[int(raw_id)] = overview
    return kept


def _probabilities(table) -> np.ndarray:
    """The `p_<genre>` columns as one [movies, genres] array."""
    return np.stack([table.column(name).to_numpy() for name in table.column_names if name.startswith("p_")], axis=1)


def test_scores_each_movie_as_the_serving_signature_does(place: dict, caplog: pytest.LogCaptureFixture) -> None:
    from tasks.model.bundle import predict_probabilities

    with caplog.at_level(logging.WARNING, logger="tasks.model.batch_predict"):
        summary = _run(place, announced_version=7)
    assert "announced version 7 is not the served one: scoring the served version 1" in caplog.text

    out = place["predictions"] / "1"
    assert summary["path"] == str(out / PREDICTIONS_FILE) and summary["version"] == 1
    assert sorted(p.name for p in out.iterdir()) == [PREDICTIONS_FILE, SUMMARY_FILE]
    assert [p.name for p in place["predictions"].iterdir()] == ["1"], "no scratch or temporary folder is left"

    table, metadata = read_predictions(out / PREDICTIONS_FILE)
    model_dir = ModelRegistry(place["served"]).version_dir(1)
    genres, thresholds = read_labels(model_dir), read_thresholds(model_dir)
    assert metadata == {"version": 1, "genres": genres, "thresholds": thresholds}
    assert table.column_names == ["id", "genres", *(f"p_{genre}" for genre in genres)]

    expected = _scorable(place["movies"])
    ids = table.column("id").to_pylist()
    assert ids == list(expected), "one row per scorable movie, in file order"
    assert summary["scored"] == len(ids) and summary["records"] == 800
    assert summary["records"] == summary["scored"] + sum(summary["skipped"].values())
    assert summary["skipped"].get("no_overview", 0) > 0, "the sample has movies without an overview"

    probabilities = _probabilities(table)
    assert probabilities.dtype == np.float32 and np.all((probabilities >= 0) & (probabilities <= 1))
    served = predict_probabilities(model_dir, list(expected.values()))
    np.testing.assert_allclose(probabilities, served, atol=1e-5)
    chosen = [[g for g, p in zip(genres, row, strict=True) if float(p) >= thresholds[g]] for row in probabilities]
    assert table.column("genres").to_pylist() == chosen
    assert any(chosen), "movies get genres"

    texts = set(expected.values())
    assert summary["embeddings"] == {"texts": len(ids), "from_cache": 0, "computed": len(texts)}
    cached = EmbeddingCache(place["cache"], place["module"]["fingerprint"]).keys()
    assert {text_key(text) for text in texts} <= cached, "the vectors went into the module's cache"
    assert json.loads((out / SUMMARY_FILE).read_text())["scored"] == len(ids)


def test_chunks_give_the_result_of_one_chunk_and_a_rerun_embeds_nothing(place: dict) -> None:
    whole = _run(place)
    table, _ = read_predictions(Path(whole["path"]))
    chunked = _run(place, chunk_rows=37)
    again, _ = read_predictions(Path(chunked["path"]))
    assert chunked["path"] == whole["path"], "a rerun for the same version replaces its folder"
    assert again.column("id").to_pylist() == table.column("id").to_pylist()
    assert again.column("genres").to_pylist() == table.column("genres").to_pylist()
    np.testing.assert_allclose(_probabilities(again), _probabilities(table), atol=1e-6)
    assert pq.ParquetFile(chunked["path"]).metadata.num_row_groups == -(-whole["scored"] // 37)
    assert chunked["embeddings"]["computed"] == 0
    assert chunked["embeddings"]["from_cache"] == chunked["embeddings"]["texts"] == whole["scored"]


def test_a_version_without_its_module_is_scored_through_serving_default(place: dict, glove_export: Path) -> None:
    with_cache = _run(place)
    assert _publish(glove_export, place["served"], None) == 2
    without = _run(place)
    assert without["version"] == 2 and without["embeddings"] == "serving_default"
    first, _ = read_predictions(Path(with_cache["path"]))
    second, _ = read_predictions(Path(without["path"]))
    assert second.column("genres").to_pylist() == first.column("genres").to_pylist()
    np.testing.assert_allclose(_probabilities(second), _probabilities(first), atol=1e-5)


def test_skipped_records_are_counted_by_reason(place: dict) -> None:
    header = ["id", "title", "overview"]
    rows = [
        ["10", "A", "A detective hunts a killer in the city."],
        ["11", "B", "   "],
        ["1997-08-20", "C", "A shifted record."],
        ["10", "D", "The same id again."],
        ["12", "E"],  # too few fields
        [" 13 ", "F", "  Two friends fall in love in Paris.  "],
    ]
    movies = write_rows(place["data"] / "catalogue.csv", header, rows)
    summary = _run(place, str(movies))
    table, _ = read_predictions(Path(summary["path"]))
    assert table.column("id").to_pylist() == [10, 13]
    assert summary["skipped"] == {"duplicate_id": 1, "invalid_id": 1, "malformed_row": 1, "no_overview": 1}
    assert summary["records"] == 6 and summary["scored"] == 2


def _assert_nothing_written(place: dict) -> None:
    leftovers = list(place["predictions"].rglob("*")) if place["predictions"].exists() else []
    assert leftovers == [], f"a failed run left {leftovers}"


@pytest.mark.parametrize(
    ("name", "body", "max_bytes", "error", "message"),
    [
        ("page.csv", b"<!DOCTYPE html><html><body>Sign in</body></html>", 1 << 30, DownloadError, "HTML page"),
        ("missing.csv", None, 1 << 30, DownloadError, "no such file"),
        ("big.csv", b"id,overview\n" + b"1,A movie.\n" * 100, 500, DownloadError, "larger than max_download_bytes"),
        ("blank.csv", b"", 1 << 30, DownloadError, "empty body"),
        ("titles.csv", b"id,title\n1,Heat\n", 1 << 30, DataError, r"missing required column\(s\) overview"),
        ("nothing.csv", b"id,overview\nx,A movie.\n2,\n", 1 << 30, DataError, "no movie to score in 2 records"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(
    place: dict, name: str, body: bytes | None, max_bytes: int, error: type, message: str
) -> None:
    source = place["data"] / name
    if body is not None:
        source.write_bytes(body)
    with pytest.raises(error, match=message):
        _run(place, str(source), max_bytes=max_bytes)
    _assert_nothing_written(place)


def test_a_file_outside_the_data_root_is_refused(place: dict, tmp_path: Path) -> None:
    outside = write_rows(tmp_path / "elsewhere" / "movies.csv", ["id", "overview"], [["1", "A movie."]])
    with pytest.raises(DownloadError, match="outside the data root"):
        _run(place, outside.as_uri())
    _assert_nothing_written(place)


def test_a_stale_cache_fails_before_the_folder_appears(place: dict) -> None:
    """Vectors in the cache that the module would not give: the stage stops mid-file, and neither the
    version's folder nor a partial file is left."""
    texts = list(_scorable(place["movies"]).values())
    cache = EmbeddingCache(place["cache"], place["module"]["fingerprint"])
    cache.add([text_key(text) for text in dict.fromkeys(texts)], np.ones((len(set(texts)), 50), np.float32))
    with pytest.raises(ExportError, match="stale"):
        _run(place)
    _assert_nothing_written(place)


def test_nothing_served_or_nothing_to_score_is_a_clear_error(place: dict, tmp_path: Path) -> None:
    policy = DownloadPolicy(data_root=place["data"], max_bytes=1 << 30)
    with pytest.raises(ConfigError, match="no promoted model in"):
        batch_predict(str(place["movies"]), tmp_path / "empty", place["predictions"], place["cache"], policy)
    with pytest.raises(ConfigError, match="GENRE_SCORING_URL"):
        batch_predict("", place["served"], place["predictions"], place["cache"], policy)


def test_the_step_reads_settings_and_the_site_download_limit(place: dict, tmp_path: Path) -> None:
    from tasks import pipeline

    settings = Settings(
        model_dir=place["served"].parent,
        artifacts_dir=tmp_path / "artifacts",
        dataset_url="",
        data_root=place["data"],
        scoring_url=str(place["movies"]),
        site_param_defaults={"max_download_bytes": 1000},
    )
    with pytest.raises(DownloadError, match=r"larger than max_download_bytes \(1,000 bytes\)"):
        pipeline.batch_predict(settings)
    summary = pipeline.batch_predict(dataclasses.replace(settings, site_param_defaults={}), 1)
    assert summary["path"] == str(settings.predictions_dir / "1" / PREDICTIONS_FILE)
    assert summary["announced_version"] == 1 and summary["seconds"] > 0
