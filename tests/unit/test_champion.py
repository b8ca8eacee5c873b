"""The served model scored beside the challenger: on cached vectors when safe, else as TF Serving calls it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tasks.config import DEFAULT_GENRES
from tasks.data.prepare import read_split
from tasks.embedding.cache import EmbeddingCache, text_key
from tasks.model.champion import ChampionScorer, cached_path_refused
from tasks.registry.versions import ModelRegistry


def _score(served: Path, prepared: Path, cache: EmbeddingCache, fingerprint: str, chunk_rows: int = 50) -> dict:
    """What evaluate records: the champion scored on the test split, `chunk_rows` movies at a time."""
    texts, labels, genres = read_split(prepared, "test")
    scorer = ChampionScorer(ModelRegistry(served), genres, fingerprint)
    for start in range(0, len(texts), chunk_rows):
        chunk = texts[start : start + chunk_rows]
        found = cache.lookup([text_key(text) for text in chunk])
        scorer.add(chunk, np.stack([found[text_key(text)] for text in chunk]))
    return scorer.entry(labels)


@pytest.fixture
def served_glove(tmp_path: Path, glove_export: Path) -> Path:
    """The served folder, holding a copy of the GloVe export as version 1."""
    served = tmp_path / "served"
    shutil.copytree(glove_export, served / "1")
    return served


@pytest.fixture
def glove_cache(tmp_path: Path, prepared_sample: Path, glove_module: str) -> EmbeddingCache:
    """This run's embedding cache after embed: every test overview's GloVe vector."""
    from tasks.embedding.cache import fill_cache
    from tasks.embedding.embed import ModuleEmbedder

    cache = EmbeddingCache(tmp_path / "cache", "glove")
    fill_cache(read_split(prepared_sample, "test")[0], ModuleEmbedder(glove_module), cache)
    return cache


def test_nothing_served_gives_no_champion(tmp_path: Path) -> None:
    scorer = ChampionScorer(ModelRegistry(tmp_path / "served"), DEFAULT_GENRES, "glove")
    scorer.add(["a movie"], np.zeros((1, 4), dtype=np.float32))
    assert scorer.entry(np.zeros((1, len(DEFAULT_GENRES)))) is None


@pytest.mark.slow
def test_champion_on_the_same_module_is_scored_on_cached_vectors_as_served(
    served_glove: Path, prepared_sample: Path, glove_cache: EmbeddingCache
) -> None:
    cached = _score(served_glove, prepared_sample, glove_cache, "glove")
    assert cached["version"] == 1
    assert cached["scoring"] == {"path": "head_probabilities", "why": "trained on this run's module glove"}
    served = _score(served_glove, prepared_sample, glove_cache, "other-module", chunk_rows=10_000)
    assert served["scoring"]["path"] == "serving_default"
    assert cached["auc_micro"] == pytest.approx(served["auc_micro"], abs=1e-6)
    assert cached["auc_macro"] == pytest.approx(served["auc_macro"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("change", ["other_module", "no_record"])
def test_champion_goes_through_serving_when_cached_vectors_do_not_fit(
    served_glove: Path, prepared_sample: Path, glove_cache: EmbeddingCache, change: str
) -> None:
    from tasks.model.bundle import training_record_path

    record = training_record_path(served_glove / "1")
    if change == "other_module":
        record.write_text(json.dumps({**json.loads(record.read_text()), "embedding_fingerprint": "use-v4"}))
    else:
        record.unlink()
    champion = _score(served_glove, prepared_sample, glove_cache, "glove")
    assert champion["scoring"] == {
        "path": "serving_default",
        "why": {
            "other_module": "trained on module use-v4, this run embeds with glove",
            "no_record": "no readable training record",
        }[change],
    }
    assert champion["auc_micro"] > 0.5


@pytest.mark.slow
def test_a_champion_of_other_genres_is_not_comparable(
    served_glove: Path, prepared_sample: Path, glove_cache: EmbeddingCache
) -> None:
    from tasks.model.bundle import labels_path

    labels_path(served_glove / "1").write_text("Drama\nComedy\n")
    assert _score(served_glove, prepared_sample, glove_cache, "glove") == {
        "version": 1,
        "note": "it predicts ['Drama', 'Comedy']",
    }


@pytest.mark.slow
def test_a_champion_that_fails_when_called_is_recorded_as_an_error(
    served_glove: Path, prepared_sample: Path, glove_cache: EmbeddingCache
) -> None:
    """A first chunk scored, then vectors of the wrong width: the signature refuses them, and the entry
    says promotion is blocked (no AUC from the chunks that were scored)."""
    texts, labels, genres = read_split(prepared_sample, "test")
    scorer = ChampionScorer(ModelRegistry(served_glove), genres, "glove")
    found = glove_cache.lookup([text_key(text) for text in texts[:5]])
    scorer.add(texts[:5], np.stack([found[text_key(text)] for text in texts[:5]]))
    assert len(scorer.chunks) == 1
    scorer.add(texts[5:10], np.zeros((5, 7), dtype=np.float32))
    entry = scorer.entry(labels)
    assert entry is not None and entry["version"] == 1
    assert "cannot be loaded or called" in entry["error"] and "promotion is blocked" in entry["error"]


@pytest.mark.parametrize("damage", ["garbage_graph", "no_variables", "no_labels", "empty_folder"])
def test_an_unloadable_champion_is_recorded_and_stays_as_it_was(tmp_path: Path, damage: str) -> None:
    """The served model cannot be loaded: the entry carries the error for the gate, which blocks promotion
    on it; nothing in the model folder changes."""
    version = tmp_path / "served" / "1"
    (version / "assets").mkdir(parents=True)
    (version / "variables").mkdir()
    if damage != "empty_folder":
        (version / "saved_model.pb").write_bytes(b"\x08\x01 not a SavedModel protobuf" * 10)
        (version / "variables" / "variables.index").write_bytes(b"index")
    if damage not in ("no_labels", "empty_folder"):
        (version / "assets" / "labels.txt").write_text("".join(f"{g}\n" for g in DEFAULT_GENRES))
    if damage == "no_variables":
        (version / "variables" / "variables.index").unlink()
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in version.rglob("*") if p.is_file()}
    scorer = ChampionScorer(ModelRegistry(tmp_path / "served"), DEFAULT_GENRES, "glove")
    scorer.add(["a movie"], np.zeros((1, 4), dtype=np.float32))
    entry = scorer.entry(np.zeros((1, len(DEFAULT_GENRES)), dtype=np.float32))
    assert entry is not None and set(entry) == {"version", "error"}
    assert f"version 1 in {version}, cannot be loaded or called" in entry["error"]
    assert entry["error"].endswith(
        "promotion is blocked until it is repaired or rolled back, then evaluate is cleared to score it again"
    )
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in version.rglob("*") if p.is_file()} == before


def test_a_champion_exported_before_head_probabilities_goes_through_serving(tmp_path: Path) -> None:
    from tasks.model.bundle import training_record_path

    record = training_record_path(tmp_path)
    record.parent.mkdir()
    record.write_text(json.dumps({"embedding_fingerprint": "glove"}))
    assert cached_path_refused(tmp_path, object(), "glove") == "exported without head_probabilities"
    assert cached_path_refused(tmp_path, object(), "use") == "trained on module glove, this run embeds with use"
