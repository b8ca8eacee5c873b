"""Genre predictions from the served model, as the blog post's last step shows them, plus the genres
each description gets with the model's tuned per-genre thresholds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import ConfigError
from tasks.model.evaluate import DECISION_THRESHOLD, predict_probabilities
from tasks.model.train import LABELS_FILE, THRESHOLDS_FILE
from tasks.registry.versions import ModelRegistry


@dataclass(frozen=True)
class Prediction:
    top: list[tuple[str, float]]  # the most likely genres with their probabilities
    genres: list[str]  # every genre at or above its tuned threshold


def predict_genres(descriptions: list[str], served_dir: Path, top: int = 2) -> list[Prediction]:
    """Predictions of the served (highest) version for each description."""
    registry = ModelRegistry(served_dir)
    version = registry.serving_version()
    if version is None:
        raise ConfigError(f"no promoted model in {served_dir}: run the movie_genre_retrain DAG first")
    assets = registry.version_dir(version) / "assets"
    genres = (assets / LABELS_FILE).read_text(encoding="utf-8").splitlines()
    thresholds_file = assets / THRESHOLDS_FILE
    thresholds = json.loads(thresholds_file.read_text(encoding="utf-8")) if thresholds_file.is_file() else {}
    probabilities = predict_probabilities(registry.version_dir(version), descriptions)
    predictions = []
    for row in probabilities:
        scored = sorted(zip(genres, map(float, row), strict=True), key=lambda pair: pair[1], reverse=True)
        chosen = [genre for genre, p in scored if p >= thresholds.get(genre, DECISION_THRESHOLD)]
        predictions.append(Prediction(top=scored[:top], genres=chosen))
    return predictions
