"""`python -m tasks predict | models | rollback`, run in this process on real model folders."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from tasks.__main__ import main
from tasks.model.bundle import ASSETS_DIR, read_labels, write_assets
from tasks.model.predict import predict_genres
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


@pytest.mark.slow
def test_predict_says_what_each_line_lists(
    models: Path, tmp_path: Path, glove_export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The predicted genres need not be the most probable: the least probable genre, held to a threshold
    just below its probability while every other genre is held to 1, is the one predicted."""
    served = models / "movie_genre"
    description = "A detective hunts a killer through the rainy streets of a city that never sleeps."
    promote_model(glove_export, served, {"dag_run_id": "as trained"}, actor="test", reason="test", keep_versions=5)
    [prediction] = predict_genres([description], served)
    (first, p1), (second, p2) = prediction.top
    least, p_least = min(prediction.probabilities.items(), key=lambda item: item[1])
    held_to = math.floor(p_least * 1000) / 1000
    strict = tmp_path / "strict"
    shutil.copytree(glove_export, strict)
    genres = read_labels(glove_export)
    write_assets(strict / ASSETS_DIR, genres, {genre: held_to if genre == least else 1.0 for genre in genres})
    promote_model(strict, served, {"dag_run_id": "strict"}, actor="test", reason="test", keep_versions=5)

    assert main(["predict", description]) == 0
    assert capsys.readouterr().out.splitlines() == [
        description,
        f"  most probable: {first} {p1:.3f}, {second} {p2:.3f}",
        f"  predicted genres (probability >= the genre's tuned threshold): {least} {p_least:.3f} >= {held_to:.3f}",
    ]
    write_assets(strict / ASSETS_DIR, genres, dict.fromkeys(genres, 1.0))
    promote_model(strict, served, {"dag_run_id": "none"}, actor="test", reason="test", keep_versions=5)
    assert main(["predict", "--top", "1", description]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        f"  most probable: {first} {p1:.3f}",
        "  predicted genres (probability >= the genre's tuned threshold): none",
    ]
