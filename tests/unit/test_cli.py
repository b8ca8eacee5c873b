"""`python -m tasks models | rollback`, run in this process on real model folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.__main__ import main
from tasks.registry.promote import promote_model
from tasks.registry.versions import HISTORY_FILE, ModelRegistry


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GENRE_MODEL_DIR, pointed at an empty tmp folder; its movie_genre/ does not exist yet."""
    monkeypatch.setenv("GENRE_MODEL_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def _promote_runs(models: Path, tmp_path: Path, *runs: str) -> None:
    exported = tmp_path / "exported"
    exported.mkdir(exist_ok=True)
    (exported / "saved_model.pb").write_bytes(b"graph")
    for run in runs:
        manifest = {"dag_run_id": run, "metrics": {"auc_micro": 0.87}}
        promote_model(exported, models / "movie_genre", manifest, actor=run, reason="test", keep_versions=5)


def test_models_names_a_missing_folder(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    assert capsys.readouterr().out == f"no promoted versions in {models / 'movie_genre'} (the folder does not exist)\n"


def test_models_names_an_empty_folder(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (models / "movie_genre").mkdir(parents=True)
    assert main(["models"]) == 0
    assert capsys.readouterr().out == f"no promoted versions in {models / 'movie_genre'} (the folder is empty)\n"


def test_rollback_without_to_serves_the_previous_version(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _promote_runs(models, tmp_path, "weekly-1", "weekly-2")
    assert main(["rollback", "--reason", "v2 mislabels documentaries"]) == 0
    assert capsys.readouterr().out == (
        "version 1 is now served as version 3 (it replaces version 2); retired by retention: none\n"
    )
    assert ModelRegistry(models / "movie_genre").history()[-1]["reason"] == "v2 mislabels documentaries"


def test_a_refused_rollback_exits_1_and_says_why(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _promote_runs(models, tmp_path, "weekly-1")
    history = (models / "movie_genre" / HISTORY_FILE).read_bytes()
    assert main(["rollback"]) == 1
    assert capsys.readouterr().err == "error: nothing to roll back to: version 1 is the only promoted version\n"
    assert main(["rollback", "--to", "1"]) == 1
    assert capsys.readouterr().err == "error: version 1 is already served\n"
    assert (models / "movie_genre" / HISTORY_FILE).read_bytes() == history
