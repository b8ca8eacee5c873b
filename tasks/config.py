"""All configuration, read in one place.

`Settings` comes from the environment (where things live); `RunConfig` comes from a run's params (what
to do). `PARAM_SCHEMAS` is the JSON schema of every param: the DAG turns it into the Airflow trigger
form, and `RunConfig.from_params` checks against the same schema when a stage runs without Airflow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError

MODEL_NAME = "movie_genre"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
# The real first 5,000 rows of movies_metadata.csv, beside the project checkout (never inside it).
SHARED_SAMPLE_CSV = PROJECT_ROOT.parent / "shared" / "data" / "movies_metadata_head5000.csv"

DEFAULT_ALERT_SENDER = "movie-genre-retrain@localhost"
DEFAULT_GENRES = (
    "Comedy",
    "Thriller",
    "Romance",
    "Action",
    "Horror",
    "Crime",
    "Documentary",
    "Adventure",
    "Science Fiction",
)


@dataclass(frozen=True)
class Settings:
    """Where the pipeline reads and writes, from the environment."""

    model_dir: Path
    artifacts_dir: Path
    dataset_url: str
    data_root: Path  # a local dataset (path or file://) must lie below it
    alert_emails: tuple[str, ...] = ()  # failure alert recipients (with the smtp_default connection)
    alert_sender: str = DEFAULT_ALERT_SENDER

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        shared = SHARED_SAMPLE_CSV.is_file()
        return cls(
            model_dir=Path(environ.get("GENRE_MODEL_DIR", "models")).resolve(),
            artifacts_dir=Path(environ.get("GENRE_ARTIFACTS_DIR", "artifacts")).resolve(),
            dataset_url=environ.get("MOVIES_DATASET_URL", str(SHARED_SAMPLE_CSV) if shared else ""),
            data_root=Path(
                environ.get("GENRE_DATA_ROOT", SHARED_SAMPLE_CSV.parent if shared else PROJECT_ROOT / "data")
            ).resolve(),
            alert_emails=tuple(a.strip() for a in environ.get("GENRE_ALERT_EMAILS", "").split(",") if a.strip()),
            alert_sender=environ.get("GENRE_ALERT_FROM", "").strip() or DEFAULT_ALERT_SENDER,
        )

    def run_dir(self, run_id: str) -> Path:
        """The artifact folder of one DAG run; the run id is reduced to characters safe in a path."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._")
        if not safe:
            raise ConfigError(f"run id {run_id!r} gives an empty folder name")
        return self.artifacts_dir / "runs" / safe

    @property
    def embedding_modules_dir(self) -> Path:
        return self.artifacts_dir / "embedding_modules"

    @property
    def embedding_cache_dir(self) -> Path:
        return self.artifacts_dir / "embedding_cache"

    @property
    def served_model_dir(self) -> Path:
        """TensorFlow Serving's base path for this model: integer version folders below it."""
        return self.model_dir / MODEL_NAME


# A JSON-schema pattern prefix: no ".." path segment and no control character anywhere in the value.
NO_DOT_DOT = r"^(?!.*(^|[/\\])\.\.([/\\]|$))(?!.*[\x00-\x1f\x7f])"

# JSON schema of each run param, with its default and the description the trigger form shows.
PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "dataset_url": {
        "type": "string",
        "maxLength": 2048,
        # http(s)://, file:// or a path; any other scheme (ftp:, gopher:, data:, ...) is refused.
        "pattern": NO_DOT_DOT + "(https?://|file://|[^:]*$)",
        "description": "Where to download movies_metadata.csv (plain or gzip): http(s)://, file:// or a local "
        "path below $GENRE_DATA_ROOT. Defaults to $MOVIES_DATASET_URL.",
    },
    "max_download_bytes": {
        "default": 1 << 30,
        "type": "integer",
        "minimum": 1,
        "description": "Abort a download whose CSV (after decompression) is larger than this.",
    },
    "auc_threshold": {
        "default": 0.8,
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "Model gate: promote only if the gate metric on the test split is at least this.",
    },
    "max_auc_drop": {
        "default": 0.005,
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "Model gate: refuse a model worse than the one in production by more than this.",
    },
    "keep_versions": {
        "default": 5,
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "description": "Retention: promoted versions to keep (the served one and rollback sources are always kept).",
    },
    "gate_metric": {
        "default": "auc_micro",
        "type": "string",
        "enum": ["auc_micro", "auc_macro"],
        "description": "Which ROC AUC the model gate compares with auc_threshold.",
    },
    "min_rows": {
        "default": 1000,
        "type": "integer",
        "minimum": 1,
        "description": "Data gate: fewest CSV records, and fewest movies left after filtering, to train on.",
    },
    "embedding_module": {
        "default": "",
        "type": "string",
        "maxLength": 2048,
        # http(s):// or a path without ".." segments or control characters; no other scheme.
        "pattern": NO_DOT_DOT + r"(https?://|[^:]*$)",
        "description": "TF Hub text-embedding module: a handle or a local SavedModel folder. "
        "Empty: the project's own module, built locally once.",
    },
    "genres": {
        "default": list(DEFAULT_GENRES),
        "type": "array",
        # A genre names a Parquet column and a line of labels.txt: no control characters, no path
        # separators, not one of the other columns.
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "pattern": r"^[^\x00-\x1f\x7f/\\]+$",
            "not": {"enum": ["id", "overview", "split"]},
        },
        "minItems": 1,
        "maxItems": 100,
        "uniqueItems": True,
        "description": "Genres the model predicts, in output order.",
    },
    "epochs": {
        "default": 60,
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "description": "Most training epochs; early stopping on the validation split usually ends sooner.",
    },
    "batch_size": {
        "default": 64,
        "type": "integer",
        "minimum": 1,
        "maximum": 4096,
        "description": "Training batch size.",
    },
    "hidden_units": {
        "default": 256,
        "type": "integer",
        "minimum": 1,
        "maximum": 4096,
        "description": "Width of the dense layer between the embedding and the outputs.",
    },
    "learning_rate": {
        "default": 0.001,
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 1,
        "description": "Adam learning rate.",
    },
    "test_fraction": {
        "default": 0.2,
        "type": "number",
        "minimum": 0.05,
        "maximum": 0.5,
        "description": "Share of movies in the test split (chosen by a stable hash of the movie id).",
    },
    "candidates": {
        "default": [{"wide": True}, {"wide": False}],
        "type": "array",
        "minItems": 1,
        "maxItems": 8,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "wide": {"type": "boolean"},
                "hidden_units": {"type": "integer", "minimum": 1, "maximum": 4096},
                "learning_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "dropout": {"type": "number", "minimum": 0, "maximum": 0.9},
            },
        },
        "description": "Model configurations trained side by side (each overrides the training params above); "
        "the best on the validation split goes to the model gate. wide: add the TF-IDF branch.",
    },
    "max_warm_starts": {
        "default": 3,
        "type": "integer",
        "minimum": 0,
        "maximum": 52,
        "description": "Runs in a row that fine-tune the served model (same genres and embedding) for a few epochs "
        "instead of training every candidate from scratch; the next run trains from scratch. 0: always from scratch.",
    },
    "validation_fraction": {
        "default": 0.1,
        "type": "number",
        "minimum": 0.05,
        "maximum": 0.3,
        "description": "Share of movies held out of training for early stopping and decision thresholds.",
    },
    "seed": {
        "default": 42,
        "type": "integer",
        "minimum": 0,
        "description": "Random seed for weight initialisation and shuffling.",
    },
}


@dataclass(frozen=True)
class RunConfig:
    """One run's params, checked."""

    dataset_url: str
    max_download_bytes: int
    auc_threshold: float
    max_auc_drop: float
    keep_versions: int
    gate_metric: str
    min_rows: int
    embedding_module: str
    genres: tuple[str, ...]
    epochs: int
    batch_size: int
    hidden_units: int
    learning_rate: float
    candidates: tuple[dict[str, Any], ...]
    max_warm_starts: int
    test_fraction: float
    validation_fraction: float
    seed: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any], settings: Settings) -> RunConfig:
        """Check `params` against PARAM_SCHEMAS; missing params take their defaults."""
        import jsonschema

        unknown = set(params) - set(PARAM_SCHEMAS)
        if unknown:
            raise ConfigError(f"unknown params: {', '.join(sorted(unknown))}")
        values = {name: schema.get("default") for name, schema in PARAM_SCHEMAS.items()}
        values["dataset_url"] = settings.dataset_url
        values.update({name: value for name, value in params.items() if value is not None})
        for name, schema in PARAM_SCHEMAS.items():
            try:
                jsonschema.validate(values[name], schema)
            except jsonschema.ValidationError as err:
                raise ConfigError(f"param {name}={values[name]!r}: {err.message}") from None
        if not values["dataset_url"]:
            raise ConfigError("no dataset: pass the dataset_url param or set MOVIES_DATASET_URL")
        values["genres"] = tuple(values["genres"])
        values["candidates"] = tuple(values["candidates"])
        return cls(**{f.name: values[f.name] for f in fields(cls)})
