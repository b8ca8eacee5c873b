from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.embedding.cache import EmbeddingCache
from tasks.errors import ModelGateError
from tasks.model.gate import cached_path_refused, check_model_gate, decide, score_champion
from tasks.registry.versions import ModelRegistry


def test_first_model_is_judged_on_the_threshold_alone() -> None:
    decision = decide("auc_micro", 0.85, 0.8, None, 0.005)
    assert decision["passed"] and "judged on the threshold alone" in decision["reason"]


def test_below_threshold_fails_with_both_numbers() -> None:
    decision = decide("auc_micro", 0.7, 0.99, None, 0.005)
    assert not decision["passed"] and "auc_micro 0.7000 < auc_threshold 0.9900" in decision["reason"]


def test_champion_may_be_beaten_or_nearly_matched() -> None:
    champion = {"version": 3, "value": 0.86}
    assert decide("auc_micro", 0.856, 0.8, champion, 0.005)["passed"]
    worse = decide("auc_micro", 0.85, 0.8, champion, 0.005)
    assert not worse["passed"]
    assert "worse than the champion (version 3: 0.8600) by more than max_auc_drop 0.0050" in worse["reason"]


def test_incomparable_champion_is_said_so() -> None:
    decision = decide("auc_micro", 0.85, 0.8, {"version": 2, "value": None, "note": "it predicts ['Drama']"}, 0.005)
    assert decision["passed"] and "not comparable" in decision["reason"]


def test_missing_metric_fails() -> None:
    assert not decide("auc_macro", None, 0.5, None, 0.005)["passed"]


def test_gate_writes_its_decision_into_metrics(tmp_path, prepared_sample) -> None:

    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"auc_micro": 0.7}))
    with pytest.raises(ModelGateError, match=r"auc_micro 0\.7000 < auc_threshold 0\.9900"):
        check_model_gate(
            metrics, prepared_sample, tmp_path / "served", metric="auc_micro", threshold=0.99, max_drop=0.005
        )
    assert json.loads(metrics.read_text())["gate"]["passed"] is False


@pytest.mark.parametrize(
    "damage",
    ["garbage_graph", "no_variables", "no_labels", "empty_folder"],
)
def test_an_unloadable_champion_blocks_the_gate_and_stays_served(tmp_path, prepared_sample, damage: str) -> None:
    """The served model cannot be scored: the gate fails with ChampionError (never judged on the threshold
    alone, which would let a promotion replace it silently), and nothing in the model folder changes."""
    import hashlib

    from tasks.config import DEFAULT_GENRES
    from tasks.errors import ChampionError

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
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"auc_micro": 0.95}))
    with pytest.raises(ChampionError, match=r"version 1 .* cannot be loaded or called .* promotion is blocked"):
        check_model_gate(
            metrics, prepared_sample, tmp_path / "served", metric="auc_micro", threshold=0.5, max_drop=0.005
        )
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in version.rglob("*") if p.is_file()} == before


@pytest.fixture
def served_glove(tmp_path: Path, glove_export: Path) -> Path:
    """The served folder, holding a copy of the GloVe export as version 1."""
    import shutil

    served = tmp_path / "served"
    shutil.copytree(glove_export, served / "1")
    return served


@pytest.fixture
def glove_cache(tmp_path: Path, prepared_sample: Path, glove_module: str) -> EmbeddingCache:
    """This run's embedding cache after embed: every test overview's GloVe vector."""
    from tasks.data.prepare import read_split
    from tasks.embedding.cache import fill_cache
    from tasks.embedding.embed import ModuleEmbedder

    cache = EmbeddingCache(tmp_path / "cache", "glove")
    fill_cache(read_split(prepared_sample, "test")[0], ModuleEmbedder(glove_module), cache)
    return cache


@pytest.mark.slow
def test_champion_on_the_same_module_is_scored_on_cached_vectors_as_served(
    served_glove: Path, prepared_sample: Path, glove_cache: EmbeddingCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.model import gate

    served = score_champion(ModelRegistry(served_glove), prepared_sample, "auc_micro")
    assert served is not None and served["scoring"] == {"path": "serving_default", "why": "no embedding cache given"}
    monkeypatch.setattr(gate, "CHUNK_ROWS", 50)  # several chunks on the sample's test split
    cached = score_champion(ModelRegistry(served_glove), prepared_sample, "auc_micro", glove_cache)
    assert cached is not None and cached["scoring"]["path"] == "head_probabilities"
    assert cached["value"] == pytest.approx(served["value"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("change", ["other_module", "no_record", "cache_lacks_vectors"])
def test_champion_goes_through_serving_when_cached_vectors_do_not_fit(
    served_glove: Path, prepared_sample: Path, glove_cache: EmbeddingCache, change: str
) -> None:
    from tasks.model.bundle import training_record_path

    record = training_record_path(served_glove / "1")
    if change == "other_module":
        record.write_text(json.dumps({**json.loads(record.read_text()), "embedding_fingerprint": "use-v4"}))
    elif change == "no_record":
        record.unlink()
    else:
        for shard in glove_cache.folder.glob("*.npz"):
            shard.unlink()
    champion = score_champion(ModelRegistry(served_glove), prepared_sample, "auc_micro", glove_cache)
    assert champion is not None and champion["scoring"]["path"] == "serving_default"
    assert (
        champion["scoring"]["why"]
        == {
            "other_module": "trained on module use-v4, this run embeds with glove",
            "no_record": "no readable training record",
            "cache_lacks_vectors": "the embedding cache lacks some test overviews",
        }[change]
    )
    assert champion["value"] > 0.5


def test_a_champion_exported_before_head_probabilities_goes_through_serving(tmp_path: Path) -> None:
    from tasks.model.bundle import training_record_path

    record = training_record_path(tmp_path)
    record.parent.mkdir()
    record.write_text(json.dumps({"embedding_fingerprint": "glove"}))
    assert cached_path_refused(tmp_path, object(), "glove") == "exported without head_probabilities"
    assert cached_path_refused(tmp_path, object(), "use") == "trained on module glove, this run embeds with use"
