"""Fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def glove_export(prepared_sample: Path, glove_module: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real exported serving model, small and quick: one epoch of a narrow head on the GloVe module.
    Tests that break it work on a copy."""
    from tasks.embedding.cache import EmbeddingCache
    from tasks.model.train import TrainConfig, train_model

    config = TrainConfig(
        embedding_module=glove_module, epochs=1, batch_size=64, hidden_units=8, learning_rate=0.01, seed=0
    )
    out = tmp_path_factory.mktemp("run") / "model"
    train_model(prepared_sample, out, config, EmbeddingCache(tmp_path_factory.mktemp("cache"), "glove"))
    return out
