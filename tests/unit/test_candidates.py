"""Warm starts: when a run fine-tunes the served model, and that the fine-tuned export is whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.config import DEFAULT_GENRES, RunConfig, Settings
from tasks.embedding.cache import EmbeddingCache
from tasks.model.bundle import EXTRA_DIR, HEAD_FILE, TRAINING_RECORD_FILE
from tasks.model.candidates import best_candidate, plan_candidates

ARCHITECTURE = {"wide": True, "hidden_units": 16, "dropout": 0.5, "vocabulary_size": 20_000}


def _config(tmp_path: Path, **params) -> RunConfig:
    settings = Settings(tmp_path / "models", tmp_path / "artifacts", str(tmp_path / "movies.csv"), tmp_path)
    return RunConfig.from_params(params, settings)


def _serve(served: Path, version: int, **record) -> Path:
    extra = served / str(version) / EXTRA_DIR
    extra.mkdir(parents=True)
    defaults = {"genres": list(DEFAULT_GENRES), "embedding_fingerprint": "fp", "architecture": ARCHITECTURE}
    (extra / TRAINING_RECORD_FILE).write_text(json.dumps(defaults | {"warm_starts": 0} | record))
    return served / str(version)


def test_without_a_served_model_every_candidate_trains_from_scratch(tmp_path: Path) -> None:
    planned = plan_candidates(_config(tmp_path), tmp_path / "served", "fp")
    assert planned == [{"index": 0, "wide": True}, {"index": 1, "wide": False, "learning_rate": 0.006}]


def test_a_compatible_served_model_is_fine_tuned_alone(tmp_path: Path) -> None:
    _serve(tmp_path / "served", 1)
    newest = _serve(tmp_path / "served", 2, warm_starts=2)
    (planned,) = plan_candidates(_config(tmp_path), tmp_path / "served", "fp")
    assert planned == {"index": 0, **ARCHITECTURE, "warm_start_from": str(newest), "warm_starts_before": 2}


@pytest.mark.parametrize(
    ("record", "params", "fingerprint"),
    [
        ({"genres": ["Comedy", "Drama"]}, {}, "fp"),
        ({}, {}, "another module"),
        ({"warm_starts": 3}, {}, "fp"),
        ({}, {"max_warm_starts": 0}, "fp"),
        ({"architecture": None}, {}, "fp"),
    ],
    ids=["other genres", "other embedding", "warm starts used up", "disabled", "no architecture"],
)
def test_an_incompatible_served_model_means_from_scratch(tmp_path: Path, record, params, fingerprint) -> None:
    _serve(tmp_path / "served", 1, **record)
    assert len(plan_candidates(_config(tmp_path, **params), tmp_path / "served", fingerprint)) == 2


def test_a_model_exported_without_a_training_record_means_from_scratch(tmp_path: Path) -> None:
    (tmp_path / "served" / "1").mkdir(parents=True)
    (tmp_path / "served" / "2" / EXTRA_DIR).mkdir(parents=True)
    (tmp_path / "served" / "2" / EXTRA_DIR / TRAINING_RECORD_FILE).write_text("{not json")
    assert len(plan_candidates(_config(tmp_path), tmp_path / "served", "fp")) == 2


def test_the_selection_carries_every_candidates_training_time() -> None:
    summaries = [
        {"candidate": {"index": 0}, "validation_auc_micro": 0.88, "seconds": 12.5},
        {"candidate": {"index": 1}, "validation_auc_micro": 0.89, "seconds": 7.25},
    ]
    best = best_candidate(summaries)
    assert best["candidate"] == {"index": 1} and best["seconds"] == 7.25
    assert best["training_seconds"] == {"total": 19.75, "per_candidate": [12.5, 7.25]}
    assert [c["seconds"] for c in best["candidates"]] == [12.5, 7.25]


@pytest.mark.slow
def test_fine_tuning_continues_from_the_exported_head(prepared_sample: Path, glove_module: str, tmp_path: Path) -> None:
    from tasks.errors import ChampionError
    from tasks.model.train import TrainConfig, train_model
    from tasks.tensorflow_runtime import tf_keras

    cache = EmbeddingCache(tmp_path / "cache", "glove")
    config = TrainConfig(
        embedding_module=glove_module, epochs=3, batch_size=32, hidden_units=16, learning_rate=0.01, seed=1
    )
    cold = train_model(prepared_sample, tmp_path / "cold" / "model", config, cache)
    champion = Path(cold["model_path"])
    record = json.loads((champion / EXTRA_DIR / TRAINING_RECORD_FILE).read_text())
    assert record == {
        "genres": list(DEFAULT_GENRES),
        "embedding_fingerprint": "glove",
        "architecture": {"wide": True, "hidden_units": 16, "dropout": 0.5, "vocabulary_size": 20_000},
        "warm_starts": 0,
    }

    warm_config = TrainConfig(**{**config.__dict__, "warm_start_from": str(champion), "warm_starts_before": 0})
    warm = train_model(prepared_sample, tmp_path / "warm" / "model", warm_config, cache)
    assert warm["warm_starts"] == 1 and warm["warm_start_from"] == str(champion)
    warm_first_epoch = json.loads((tmp_path / "warm" / "training.json").read_text())
    first_epoch_auc = warm_first_epoch["history"]["val_auc_micro"][0]
    assert first_epoch_auc >= cold["validation_auc_micro"] - 0.02, "training went on from the champion's weights"
    heads = [tf_keras.models.load_model(p / EXTRA_DIR / HEAD_FILE) for p in (champion, Path(warm["model_path"]))]
    assert heads[0].get_layer("tfidf").get_vocabulary() == heads[1].get_layer("tfidf").get_vocabulary()
    assert not np.array_equal(
        heads[0].get_layer("hidden").get_weights()[0], heads[1].get_layer("hidden").get_weights()[0]
    )

    (champion / EXTRA_DIR / HEAD_FILE).write_bytes(b"not a keras file")
    with pytest.raises(ChampionError, match="max_warm_starts=0"):
        train_model(prepared_sample, tmp_path / "broken" / "model", warm_config, cache)
    assert not (tmp_path / "broken" / "model").exists()
