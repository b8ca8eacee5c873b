"""Fixtures of the deployment tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sample_data import write_head


@pytest.fixture
def dataset(tmp_path: Path, shared_csv: Path) -> Path:
    """The first 800 real movies, in a data folder of the test's own (the cluster's GENRE_DATA_ROOT)."""
    data = tmp_path / "data"
    data.mkdir()
    return write_head(shared_csv, data / "movies_head800.csv", 800)
