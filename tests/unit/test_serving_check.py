"""The serving check, in a fresh process, on a real exported model and on broken ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.errors import ServingCheckError
from tasks.model.serving_check import check_serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(prepared_sample: Path, glove_module: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tasks.embedding.cache import EmbeddingCache
    from tasks.model.train import TrainConfig, train_model

    config = TrainConfig(
        embedding_module=glove_module, epochs=1, batch_size=64, hidden_units=8, learning_rate=0.01, seed=0
    )
    out = tmp_path_factory.mktemp("run") / "model"
    train_model(prepared_sample, out, config, EmbeddingCache(tmp_path_factory.mktemp("cache"), "glove"))
    return out


def test_a_real_export_passes(exported: Path) -> None:
    result = check_serving(exported)
    assert result["passed"]
    assert result["shapes"] == {"empty": [1, 9], "very_long": [1, 9], "non_ascii": [1, 9], "batch_of_64": [64, 9]}


def test_a_model_missing_its_variables_fails(exported: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(exported, broken)
    shutil.rmtree(broken / "variables")
    with pytest.raises(ServingCheckError, match="serving check failed"):
        check_serving(broken)


def test_labels_that_do_not_match_the_outputs_fail(exported: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(exported, broken)
    (broken / "assets" / "labels.txt").write_text("Comedy\nDrama\n")
    with pytest.raises(ServingCheckError, match=r"want float32 \(1, 2\)"):
        check_serving(broken)
