"""Genre predictions from the newest promoted model, as the article's last step shows them."""

from __future__ import annotations

from pathlib import Path

from tasks.errors import ConfigError
from tasks.evaluate import predict_probabilities
from tasks.registry import ModelRegistry
from tasks.train import LABELS_FILE


def predict_top_genres(descriptions: list[str], served_dir: Path, top: int = 2) -> list[list[tuple[str, float]]]:
    """For each description, the `top` genres with their probabilities, most likely first."""
    registry = ModelRegistry(served_dir)
    version = registry.serving_version()
    if version is None:
        raise ConfigError(f"no promoted model in {served_dir}: run the movie_genre_retrain DAG first")
    version_dir = registry.version_dir(version)
    genres = (version_dir / "assets" / LABELS_FILE).read_text(encoding="utf-8").splitlines()
    probabilities = predict_probabilities(version_dir, descriptions)
    return [
        sorted(zip(genres, map(float, row), strict=True), key=lambda pair: pair[1], reverse=True)[:top]
        for row in probabilities
    ]
