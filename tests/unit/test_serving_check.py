"""The serving check, in a fresh process, on a real exported model and on broken ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.errors import ServingCheckError
from tasks.model.serving_check import check_serving

pytestmark = pytest.mark.slow


def test_a_real_export_passes(glove_export: Path) -> None:
    result = check_serving(glove_export)
    assert result["passed"]
    assert result["shapes"] == {"empty": [1, 9], "very_long": [1, 9], "non_ascii": [1, 9], "batch_of_64": [64, 9]}


def test_a_model_missing_its_variables_fails(glove_export: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(glove_export, broken)
    shutil.rmtree(broken / "variables")
    with pytest.raises(ServingCheckError, match="serving check failed"):
        check_serving(broken)


def test_labels_that_do_not_match_the_outputs_fail(glove_export: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(glove_export, broken)
    (broken / "assets" / "labels.txt").write_text("Comedy\nDrama\n")
    with pytest.raises(ServingCheckError, match=r"want float32 \(1, 2\)"):
        check_serving(broken)
