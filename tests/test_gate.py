from __future__ import annotations

import pytest

from tasks.errors import ModelGateError
from tasks.gate import check_model_gate, decide


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
