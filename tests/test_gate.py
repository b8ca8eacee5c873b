import pytest

from tasks.errors import ModelGateError
from tasks.gate import check_model_gate


def test_passes_at_or_above_the_threshold() -> None:
    assert check_model_gate({"auc_micro": 0.8}, "auc_micro", 0.8)["passed"] is True


def test_failure_message_gives_metric_and_threshold() -> None:
    with pytest.raises(ModelGateError, match=r"auc_micro 0\.7000 < auc_threshold 0\.9900"):
        check_model_gate({"auc_micro": 0.7}, "auc_micro", 0.99)


def test_missing_metric_fails() -> None:
    with pytest.raises(ModelGateError, match="auc_macro could not be computed"):
        check_model_gate({"auc_micro": 0.9, "auc_macro": None}, "auc_macro", 0.5)
