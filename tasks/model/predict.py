"""Genre predictions from the served model, as the blog post's last step shows them, plus the genres
each description gets with the model's tuned per-genre thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks.errors import ConfigError
from tasks.model.bundle import predict_probabilities, read_labels, read_thresholds
from tasks.model.metrics import DECISION_THRESHOLD
from tasks.registry.versions import ModelRegistry


@dataclass(frozen=True)
class Prediction:
    top: list[tuple[str, float]]  # the most likely genres with their probabilities
    genres: list[str]  # every genre at or above its tuned threshold
    probabilities: dict[str, float]  # every genre's
    thresholds: dict[str, float]  # the threshold each genre is held to


def prediction_lines(prediction: Prediction) -> list[str]:
    """The two lines `python -m tasks predict` prints under a description. Each says what it lists: the
    predicted genres need not be the most probable ones, since each genre has its own threshold."""
    top = ", ".join(f"{genre} {probability:.3f}" for genre, probability in prediction.top)
    chosen = ", ".join(
        f"{genre} {prediction.probabilities[genre]:.3f} >= {prediction.thresholds[genre]:.3f}"
        for genre in prediction.genres
    )
    return [
        f"  most probable: {top}",
        f"  predicted genres (probability >= the genre's tuned threshold): {chosen or 'none'}",
    ]


def predict_genres(descriptions: list[str], served_dir: Path, top: int = 2) -> list[Prediction]:
    """Predictions of the served (highest) version for each description."""
    registry = ModelRegistry(served_dir)
    version = registry.serving_version()
    if version is None:
        raise ConfigError(f"no promoted model in {served_dir}: run the movie_genre_retrain DAG first")
    model_dir = registry.version_dir(version)
    genres = read_labels(model_dir)
    thresholds = _tuned_thresholds(model_dir)
    probabilities = predict_probabilities(model_dir, descriptions)
    held_to = {genre: thresholds.get(genre, DECISION_THRESHOLD) for genre in genres}
    predictions = []
    for row in probabilities:
        scored = sorted(zip(genres, map(float, row), strict=True), key=lambda pair: pair[1], reverse=True)
        chosen = [genre for genre, p in scored if p >= held_to[genre]]
        predictions.append(Prediction(top=scored[:top], genres=chosen, probabilities=dict(scored), thresholds=held_to))
    return predictions


def _tuned_thresholds(model_dir: Path) -> dict[str, float]:
    """The model's tuned thresholds; none for a model exported before they were tuned (every genre then
    uses DECISION_THRESHOLD)."""
    try:
        return read_thresholds(model_dir)
    except FileNotFoundError:
        return {}
