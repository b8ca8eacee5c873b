"""All configuration, read in one place.

`Settings` comes from the environment (where things live); `RunConfig` (and the rollback DAG's
`RollbackConfig`) comes from a run's params (what to do). Each param is declared once, as a field of its
config class with its JSON schema, default, form section and description. `PARAM_SCHEMAS` is derived
from those fields: the DAG turns it into the Airflow trigger form, and `RunConfig.from_params` checks
against the same schema when a stage runs, resolving `null` (an empty form field) to the default.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError
from tasks.run_folder import RunFolder

MODEL_NAME = "movie_genre"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"

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
    scoring_url: str = ""  # the movies batch predict scores when the served model changes
    # Internal hosts downloads may reach (GENRE_DOWNLOAD_ALLOWED_HOSTS): names, IPs, networks, each maybe :port.
    download_allowed_hosts: tuple[str, ...] = ()
    # Site defaults of run params (GENRE_PARAM_DEFAULTS, a JSON object), over the schemas' own defaults.
    site_param_defaults: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            model_dir=Path(environ.get("GENRE_MODEL_DIR", "models")).resolve(),
            artifacts_dir=Path(environ.get("GENRE_ARTIFACTS_DIR", "artifacts")).resolve(),
            dataset_url=environ.get("MOVIES_DATASET_URL", ""),
            data_root=Path(environ.get("GENRE_DATA_ROOT", PROJECT_ROOT / "data")).resolve(),
            alert_emails=tuple(a.strip() for a in environ.get("GENRE_ALERT_EMAILS", "").split(",") if a.strip()),
            alert_sender=environ.get("GENRE_ALERT_FROM", "").strip() or DEFAULT_ALERT_SENDER,
            scoring_url=environ.get("GENRE_SCORING_URL", ""),
            download_allowed_hosts=tuple(
                h.strip() for h in environ.get("GENRE_DOWNLOAD_ALLOWED_HOSTS", "").split(",") if h.strip()
            ),
            site_param_defaults=_site_param_defaults(environ.get("GENRE_PARAM_DEFAULTS", "")),
        )

    def param_defaults(self, schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The default of each param in `schemas`: the site's, else the environment's dataset, else the
        schema's. What the trigger form shows, and what a param left empty (null) means."""
        defaults = {name: schema.get("default") for name, schema in schemas.items()}
        if "dataset_url" in defaults:
            defaults["dataset_url"] = self.dataset_url or None
        defaults.update({k: v for k, v in self.site_param_defaults.items() if k in defaults})
        return defaults

    def run_dir(self, run_id: str) -> Path:
        """The artifact folder of one DAG run: `runs/<run_folder_name(run_id)>`."""
        return self.artifacts_dir / "runs" / run_folder_name(run_id)

    def run_folder(self, run_id: str) -> RunFolder:
        """The files of one DAG run's artifact folder."""
        return RunFolder(self.run_dir(run_id))

    @property
    def embedding_modules_dir(self) -> Path:
        return self.artifacts_dir / "embedding_modules"

    @property
    def embedding_cache_dir(self) -> Path:
        return self.artifacts_dir / "embedding_cache"

    @property
    def predictions_dir(self) -> Path:
        """Batch predictions, one folder per served version."""
        return self.artifacts_dir / "predictions"

    @property
    def served_model_dir(self) -> Path:
        """TensorFlow Serving's base path for this model: integer version folders below it."""
        return self.model_dir / MODEL_NAME


# Run folder names: these characters stand for themselves; every other byte of the run id's UTF-8 is
# written `~XX`. "~" is escaped too, so decoding is unambiguous and two run ids never share a folder
# (`a:1` → `a~3A1`, `a_1` → `a_1`). A leading "." is escaped, so no name is hidden, "." or "..".
_RUN_FOLDER_KEPT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
# Folder names stay well under the usual 255-byte limit: a longer encoding keeps its first part and adds
# the run id's SHA-256 after "~~", which no short encoding contains.
_RUN_FOLDER_MAX = 200
_RUN_FOLDER_KEPT_PREFIX = 120


def run_folder_name(run_id: str) -> str:
    """The artifact folder name of a DAG run: an injective, path-safe encoding of its run id."""
    if not run_id:
        raise ConfigError("an empty run id has no artifact folder")
    encoded = "".join(
        chr(byte) if byte in _RUN_FOLDER_KEPT and not (index == 0 and byte == ord(".")) else f"~{byte:02X}"
        for index, byte in enumerate(run_id.encode("utf-8", "surrogatepass"))
    )
    if len(encoded) <= _RUN_FOLDER_MAX:
        return encoded
    prefix = encoded[:_RUN_FOLDER_KEPT_PREFIX]
    prefix = prefix[: prefix.rfind("~")] if "~" in prefix[-2:] else prefix  # never half an escape
    digest = hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{prefix}~~{digest}"


# A JSON-schema pattern prefix: no ".." path segment and no control character anywhere in the value.
NO_DOT_DOT = r"^(?!.*(^|[/\\])\.\.([/\\]|$))(?!.*[\x00-\x1f\x7f])"

# The trigger form's sections, in reading order.
DATA, DATA_GATE, TRAINING, MODEL_GATE, REGISTRY = "Data", "Data gate", "Training", "Model gate", "Registry"


def nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` that also admits null: the trigger form's (and JSON schema's) way to make a field optional.
    Every value that is not null still meets the bounds, pattern and enum."""
    widened = {key: value for key, value in schema.items() if key != "default"}
    widened["type"] = [schema["type"], "null"]
    if "enum" in schema:
        widened["enum"] = [*schema["enum"], None]
    return widened


def resolve_params(
    schemas: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """Each param's value: the one given, or its default where it is missing or null; checked against its
    schema. A bad value is refused with the param's name."""
    import jsonschema

    unknown = set(params) - set(schemas)
    if unknown:
        raise ConfigError(f"unknown params: {', '.join(sorted(unknown))}")
    values = {name: defaults[name] if params.get(name) is None else params[name] for name in schemas}
    for name, schema in schemas.items():
        if values[name] is None:
            continue
        try:
            jsonschema.validate(values[name], {k: v for k, v in schema.items() if k != "default"})
        except jsonschema.ValidationError as err:
            raise ConfigError(f"param {name}={values[name]!r}: {err.message}") from None
    return values


def _site_param_defaults(text: str) -> dict[str, Any]:
    """GENRE_PARAM_DEFAULTS: a JSON object of param defaults for this deployment, e.g. {"epochs": 20}."""
    if not text.strip():
        return {}
    try:
        defaults = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"GENRE_PARAM_DEFAULTS is not JSON: {err}") from None
    if not isinstance(defaults, dict):
        raise ConfigError("GENRE_PARAM_DEFAULTS must be a JSON object of param names and values")
    unknown = set(defaults) - set(PARAM_SCHEMAS) - set(ROLLBACK_PARAM_SCHEMAS)
    if unknown:
        raise ConfigError(f"GENRE_PARAM_DEFAULTS names unknown params: {', '.join(sorted(unknown))}")
    for schemas in (PARAM_SCHEMAS, ROLLBACK_PARAM_SCHEMAS):
        resolve_params(schemas, {k: v for k, v in defaults.items() if k in schemas}, {k: None for k in schemas})
    return defaults


def param(*, default: Any, section: str, description: str, **schema: Any) -> Any:
    """A config field declared as a run param: its JSON schema (`type`, bounds, ...), its default, the
    trigger form's section and description. `params_schemas` reads them back."""
    return field(metadata={"param": {"default": default, **schema, "section": section, "description": description}})


def param_of(config_class: type, name: str) -> Any:
    """The same param as `config_class`'s field `name`: one declaration shared by two config classes."""
    return field(metadata=next(f for f in fields(config_class) if f.name == name).metadata)


def params_schemas(config_class: type) -> dict[str, dict[str, Any]]:
    """{param: JSON schema with its default, section and description}, in the declared order."""
    return {f.name: f.metadata["param"] for f in fields(config_class)}


@dataclass(frozen=True)
class RunConfig:
    """One retrain run's params, checked: each declared once, in the trigger form's reading order. `null`
    is always accepted too (see `nullable`) and means the default."""

    dataset_url: str = param(
        default=None,  # from $MOVIES_DATASET_URL (Settings.param_defaults)
        type="string",
        maxLength=2048,
        # http(s)://, file:// or a path; any other scheme (ftp:, gopher:, data:, ...) is refused.
        pattern=NO_DOT_DOT + "(https?://|file://|[^:]*$)",
        section=DATA,
        description="Where to download movies_metadata.csv (plain or gzip): http(s)://, file:// or a local "
        "path below $GENRE_DATA_ROOT. Defaults to $MOVIES_DATASET_URL.",
    )
    max_download_bytes: int = param(
        default=1 << 30,
        type="integer",
        minimum=1,
        section=DATA,
        description="Abort a download whose CSV (after decompression) is larger than this.",
    )
    test_fraction: float = param(
        default=0.2,
        type="number",
        minimum=0.05,
        maximum=0.5,
        section=DATA,
        description="Share of movies in the test split (chosen by a stable hash of the movie id).",
    )
    validation_fraction: float = param(
        default=0.1,
        type="number",
        minimum=0.05,
        maximum=0.3,
        section=DATA,
        description="Share of movies held out of training for early stopping and decision thresholds.",
    )
    min_rows: int = param(
        default=1000,
        type="integer",
        minimum=1,
        section=DATA_GATE,
        description="Data gate: fewest CSV records, and fewest movies left after filtering, to train on.",
    )
    force: bool = param(
        default=False,
        type="boolean",
        section=DATA_GATE,
        description="Retrain even when nothing changed since the served version, and accept the data's drift "
        "from that version's training data (the other data checks still apply).",
    )
    max_genre_share_change: float = param(
        default=0.10,
        type="number",
        minimum=0,
        maximum=1,
        section=DATA_GATE,
        description="Drift: most change of a genre's share of movies against the served version's training data "
        "(0.10 = 10 points).",
    )
    max_length_distance: float = param(
        default=0.25,
        type="number",
        minimum=0,
        maximum=1,
        section=DATA_GATE,
        description="Drift: most distance between the overview-length distributions now and in the served "
        "version's training data (Kolmogorov-Smirnov on log-spaced length bins, 0 to 1).",
    )
    max_language_distance: float = param(
        default=0.15,
        type="number",
        minimum=0,
        maximum=1,
        section=DATA_GATE,
        description="Drift: most distance between the original_language shares now and then (total variation, 0 to 1).",
    )
    max_new_share: float = param(
        default=0.5,
        type="number",
        minimum=0,
        maximum=1,
        section=DATA_GATE,
        description="Drift: most share of movies that the served version's training data did not have.",
    )
    max_gone_share: float = param(
        default=0.5,
        type="number",
        minimum=0,
        maximum=1,
        section=DATA_GATE,
        description="Drift: most share of the served version's training movies that are gone now.",
    )
    max_changed_share: float = param(
        default=0.2,
        type="number",
        minimum=0,
        maximum=1,
        section=DATA_GATE,
        description="Drift: most share of the movies in both whose overview or genres changed.",
    )
    max_embedding_drift: float = param(
        default=0.15,
        type="number",
        minimum=0,
        maximum=2,
        section=DATA_GATE,
        description="Drift: most embedding drift against the served version's training data: 1 - cosine "
        "between a genre's direction in the embedding space (from the mean of all overviews to the mean of the "
        "genre's) now and then, the largest over the genres (0 to 2); bench/FINDINGS.md has what ordinary and "
        "broken weeks measure.",
    )
    genres: tuple[str, ...] = param(
        default=list(DEFAULT_GENRES),
        type="array",
        # A genre names a Parquet column and a line of labels.txt: no control characters, no path
        # separators, not one of the other columns.
        items={
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "pattern": r"^[^\x00-\x1f\x7f/\\]+$",
            "not": {"enum": ["id", "overview", "split", "original_language"]},
        },
        minItems=1,
        maxItems=100,
        uniqueItems=True,
        section=TRAINING,
        description="Genres the model predicts, in output order.",
    )
    embedding_module: str | None = param(  # None: the project's own module
        default=None,
        type="string",
        maxLength=2048,
        # http(s):// or a path without ".." segments or control characters; no other scheme.
        pattern=NO_DOT_DOT + r"(https?://|[^:]*$)",
        section=TRAINING,
        description="TF Hub text-embedding module: a handle or a local SavedModel folder. "
        "Empty: the project's own module, built locally once.",
    )
    # The deep-only candidate learns at 0.006: it converges in fewer epochs at about the same AUC. The wide
    # candidate, which wins, keeps the run's 0.003. Why: bench/FINDINGS.md, "Training defaults".
    candidates: tuple[dict[str, Any], ...] = param(
        default=[{"wide": True}, {"wide": False, "learning_rate": 0.006}],
        type="array",
        minItems=1,
        maxItems=8,
        items={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "wide": {"type": "boolean"},
                "hidden_units": {"type": "integer", "minimum": 1, "maximum": 4096},
                "learning_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "dropout": {"type": "number", "minimum": 0, "maximum": 0.9},
            },
        },
        section=TRAINING,
        description="Model configurations trained side by side (each overrides the training params below); "
        "the best on the validation split goes to the model gate. wide: add the TF-IDF branch.",
    )
    epochs: int = param(
        default=60,
        type="integer",
        minimum=1,
        maximum=500,
        section=TRAINING,
        description="Most training epochs; early stopping on the validation split usually ends sooner.",
    )
    # batch_size 512 and learning_rate 0.003 (with early-stopping patience 3, tasks/model/train.py): much
    # faster than 64 / 0.001 / 8 at about the same test AUC; larger batches need the larger rate to converge
    # in as few epochs. Why 512 / 0.003: bench/FINDINGS.md, "Training defaults".
    batch_size: int = param(
        default=512,
        type="integer",
        minimum=1,
        maximum=4096,
        section=TRAINING,
        description="Training batch size (the default's measurements: bench/FINDINGS.md, Training defaults).",
    )
    hidden_units: int = param(
        default=256,
        type="integer",
        minimum=1,
        maximum=4096,
        section=TRAINING,
        description="Width of the dense layer between the embedding and the outputs.",
    )
    learning_rate: float = param(
        default=0.003,
        type="number",
        exclusiveMinimum=0,
        maximum=1,
        section=TRAINING,
        description="Adam learning rate.",
    )
    seed: int = param(
        default=42,
        type="integer",
        minimum=0,
        section=TRAINING,
        description="Random seed for weight initialisation and shuffling.",
    )
    max_warm_starts: int = param(
        default=3,
        type="integer",
        minimum=0,
        maximum=52,
        section=TRAINING,
        description="Runs in a row that fine-tune the served model (same genres and embedding) for a few epochs "
        "instead of training every candidate from scratch; the next run trains from scratch. 0: always from scratch.",
    )
    gate_metric: str = param(
        default="auc_micro",
        type="string",
        enum=["auc_micro", "auc_macro"],
        section=MODEL_GATE,
        description="Which ROC AUC the model gate compares with auc_threshold.",
    )
    auc_threshold: float = param(
        default=0.8,
        type="number",
        minimum=0,
        maximum=1,
        section=MODEL_GATE,
        description="Model gate: promote only if the gate metric on the test split is at least this.",
    )
    max_auc_drop: float = param(
        default=0.005,
        type="number",
        minimum=0,
        maximum=1,
        section=MODEL_GATE,
        description="Model gate: refuse a model worse than the one in production by more than this.",
    )
    require_approval: bool = param(
        default=False,
        type="boolean",
        section=MODEL_GATE,
        description="Wait for a person to approve the model (the run's Required actions in the UI) after the "
        "model gate and serving check, before promotion. A rejection or no answer skips the promotion.",
    )
    approval_timeout: float = param(
        default=24,
        type="number",
        exclusiveMinimum=0,
        maximum=720,
        section=MODEL_GATE,
        description="Hours to wait for the approval (with require_approval); no answer by then rejects the model.",
    )
    keep_versions: int = param(
        default=5,
        type="integer",
        minimum=1,
        maximum=1000,
        section=REGISTRY,
        description="Retention: promoted versions to keep (the served one and rollback sources are always kept).",
    )

    @classmethod
    def from_params(cls, params: Mapping[str, Any], settings: Settings) -> RunConfig:
        """Check `params` against PARAM_SCHEMAS; missing or null params take their defaults."""
        values = resolve_params(PARAM_SCHEMAS, params, settings.param_defaults(PARAM_SCHEMAS))
        if not values["dataset_url"]:
            raise ConfigError("no dataset: pass the dataset_url param or set MOVIES_DATASET_URL")
        values["genres"] = tuple(values["genres"])
        values["candidates"] = tuple(values["candidates"])
        return cls(**{f.name: values[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class RollbackConfig:
    """The rollback DAG's params, checked. `version` None: the version served before the current one."""

    version: int | None = param(
        default=None,
        type="integer",
        minimum=1,
        section=REGISTRY,
        description="The promoted version to serve again. Empty: the version served before the current one.",
    )
    reason: str = param(
        default="manual rollback",
        type="string",
        minLength=1,
        maxLength=500,
        section=REGISTRY,
        description="Why: kept in the history.",
    )
    keep_versions: int = param_of(RunConfig, "keep_versions")

    @classmethod
    def from_params(cls, params: Mapping[str, Any], settings: Settings) -> RollbackConfig:
        values = resolve_params(ROLLBACK_PARAM_SCHEMAS, params, settings.param_defaults(ROLLBACK_PARAM_SCHEMAS))
        return cls(**values)


PARAM_SCHEMAS = params_schemas(RunConfig)
ROLLBACK_PARAM_SCHEMAS = params_schemas(RollbackConfig)
