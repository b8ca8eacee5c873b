from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.errors import ChampionError, ModelGateError
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


def _served_version(served: Path, version: int) -> None:
    (served / str(version)).mkdir(parents=True)


def _gate_on(tmp_path: Path, champion: dict | None, auc: float = 0.9) -> dict:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"auc_micro": auc, "champion": champion}))
    return check_model_gate(
        metrics, tmp_path / "gate.json", tmp_path / "served", metric="auc_micro", threshold=0.5, max_drop=0.005
    )


def test_gate_writes_its_decision_to_its_own_file(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"auc_micro": 0.7}))
    with pytest.raises(ModelGateError, match=r"auc_micro 0\.7000 < auc_threshold 0\.9900"):
        check_model_gate(
            metrics, tmp_path / "gate.json", tmp_path / "served", metric="auc_micro", threshold=0.99, max_drop=0.005
        )
    assert json.loads((tmp_path / "gate.json").read_text())["passed"] is False
    assert json.loads(metrics.read_text()) == {"auc_micro": 0.7}, "evaluate's file is evaluate's alone"


def test_the_gate_judges_on_evaluates_champion_scores(tmp_path: Path) -> None:
    """Evaluate scored the served version on the same split; the gate compares with its gate metric."""
    _served_version(tmp_path / "served", 3)
    scoring = {"path": "head_probabilities", "why": "trained on this run's module glove"}
    champion = {"version": 3, "auc_micro": 0.91, "auc_macro": 0.88, "scoring": scoring}
    assert _gate_on(tmp_path, champion, auc=0.906)["champion"] == {"version": 3, "value": 0.91, "scoring": scoring}
    with pytest.raises(ModelGateError, match=r"worse than the champion \(version 3: 0\.9100\)"):
        _gate_on(tmp_path, champion, auc=0.9)
    note = _gate_on(tmp_path, {"version": 3, "note": "it predicts ['Drama']"})
    assert note["champion"] == {"version": 3, "value": None, "note": "it predicts ['Drama']"}


def test_a_champion_evaluate_could_not_score_blocks_the_gate(tmp_path: Path) -> None:
    """Never judged on the threshold alone, which would let a promotion replace it silently."""
    _served_version(tmp_path / "served", 1)
    error = "the served model, version 1 in x, cannot be loaded or called (bad); promotion is blocked until it is"
    with pytest.raises(ChampionError, match="promotion is blocked"):
        _gate_on(tmp_path, {"version": 1, "error": error})


@pytest.mark.parametrize(("scored", "served"), [(None, 1), (1, None), (1, 2)])
def test_a_version_published_since_evaluate_ran_fails_the_gate(tmp_path: Path, scored, served) -> None:
    """The gate compares with the version served now, or fails saying so (a decision the report and the
    alert read); it never passes on stale scores."""
    if served is not None:
        _served_version(tmp_path / "served", served)
    champion = {"version": scored, "auc_micro": 0.5, "auc_macro": 0.5, "scoring": {}} if scored else None
    reason = f"served version {scored}, but version {served} is served now"
    with pytest.raises(ModelGateError, match=reason):
        _gate_on(tmp_path, champion)
    decision = json.loads((tmp_path / "gate.json").read_text())
    assert decision["passed"] is False and reason in decision["reason"]
    assert "clear evaluate to compare with it" in decision["reason"]
