from __future__ import annotations

import pytest

from tasks.errors import ModelGateError
from tasks.model.gate import check_model_gate, decide


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
    import json

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
    import json

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
