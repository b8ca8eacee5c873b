"""Stage 3, the data gate: check the prepared data with Great Expectations 1.x.

Suites are data: every `expectations/*.json` is a GX expectation suite whose `meta.dataset` names the
table it checks. Static suites check a prepared table (`records`, `movies` or `genre_coverage`); drift
suites check this run's drift from the data the served version learned from (`drift`, one row of
distances, and `drift_genres`, one row per genre; see `tasks.data.drift`). Suite values written as
`{"$PARAMETER": "name"}` are filled from the run's params (e.g. `min_rows`, `max_genre_share_change`).

GX checks a typed, reduced frame: a text column (`overview`) arrives as its length in characters
(`overview_length`), computed by Arrow a row group at a time. The suites only look at lengths, and the
texts never become Python strings in pandas, which is what made validation's memory grow with the file.

Every run profiles its data (`validation/data_profile.json`, see `tasks.data.profile`): promotion keeps
it beside the version, so the next run can measure its drift against it. The drift suites are skipped,
with the reason in the summary and in `validation/drift.json`, when nothing is served, when the served
version has no profile, or when the run is forced.

Writes `validation/results.json`, `data_profile.json`, `drift.json` and the Data Docs site
(`validation/data_docs/index.html`). If any expectation fails, raises `DataGateError` naming each one
(a drift failure in words: the field, its value now and then, the tolerance), after the artifacts are
written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.artifacts import atomic_dir, write_json
from tasks.data.drift import (
    DRIFT_TABLES,
    MEASURES_TABLE,
    NOTHING_SERVED,
    TOLERANCE_PARAMS,
    Check,
    Drift,
    ServedProfile,
    drift_from,
    drift_record,
)
from tasks.data.prepare import MOVIES_FILE
from tasks.data.profile import EmbeddingSource, build_profile
from tasks.errors import ConfigError, DataGateError
from tasks.results import ValidateResult
from tasks.run_folder import ValidationFolder

log = logging.getLogger(__name__)

DATASOURCE = "prepared"
DATASET_NAME = "movies_metadata"  # The Movies Dataset's file, which every run's tables are prepared from
TEXT_COLUMNS = frozenset({"overview"})
REDUCE_BATCH_ROWS = 50_000
# Drift suites report every unexpected row's index, which names the genre or measure in the drift table.
DRIFT_RESULT_FORMAT = {"result_format": "COMPLETE"}


@dataclass(frozen=True)
class GxNames:
    """What GX calls this validation: the run (the Airflow run) and the dataset its assets belong to."""

    run: str
    dataset: str


def validate_dataset(
    prepared_dir: Path,
    expectations_dir: Path,
    out: ValidationFolder,
    suite_parameters: Mapping[str, Any],
    *,
    embeddings: EmbeddingSource | None = None,
    served: ServedProfile = NOTHING_SERVED,
    force: bool = False,
    run_name: str | None = None,
    dataset_name: str | None = None,
) -> ValidateResult:
    """Run every suite in `expectations_dir` on its table; results go to the folder `out`. `embeddings` gives
    the vectors of this run's overviews (for the profile's embedding summary); `served` is the served
    version and its data profile, the reference of the drift suites; `force` skips those. In GX and its
    Data Docs, the validation run is named `run_name` (default: the run's artifact folder, the name of
    `out`'s parent, which is the Airflow run id made safe for a path) and each data asset
    `<dataset_name>.<table>` (default dataset name: `movies_metadata`), e.g. `movies_metadata.movies`."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no phoning home from a closed network
    quiet_great_expectations()
    suites = load_suites(expectations_dir)
    profile = build_profile(prepared_dir / MOVIES_FILE, embeddings)
    drift, skipped = drift_from(profile, served, force)
    if drift is not None:
        _require_tolerances(suite_parameters)
    suites = [s for s in suites if s.meta["dataset"] not in DRIFT_TABLES or drift is not None]
    with atomic_dir(out.path) as tmp:
        names = GxNames(run_name or out.path.resolve().parent.name, dataset_name or DATASET_NAME)
        outcomes = _run_suites(tmp, suites, prepared_dir, drift.tables() if drift else {}, suite_parameters, names)
        drift_outcome = _drift_outcome(drift, skipped, suites, outcomes)
        written = ValidationFolder(tmp)
        write_json(written.results, {name: r.to_json_dict() for name, r in outcomes.items()})
        write_json(written.profile, profile)
        write_json(written.drift, drift_outcome)
        _keep_data_docs(tmp, written.data_docs)
    failed = _failures(suites, outcomes, drift_outcome)
    summary: ValidateResult = {
        "success": not failed,
        "suites": {name: {"success": o.success, "evaluated": len(o.results)} for name, o in outcomes.items()},
        "failed_expectations": failed,
        "drift": _drift_summary(drift_outcome),
        "results_path": str(out.results),
        "profile_path": str(out.profile),
        "data_docs_path": str(out.data_docs_index),
    }
    if failed:
        raise DataGateError(
            f"data gate failed: {len(failed)} expectation(s) not met: "
            + "; ".join(failed)
            + f". Data Docs: {summary['data_docs_path']}",
            failed,
        )
    log.info("data gate passed: %s; drift: %s", summary["suites"], summary["drift"])
    return summary


def _run_suites(
    gx_root: Path,
    suites: Sequence[Any],
    prepared_dir: Path,
    drift_tables: Mapping[str, Any],
    suite_parameters: Mapping[str, Any],
    names: GxNames,
) -> dict[str, Any]:
    """Each suite's GX validation result, by suite name; Data Docs are rendered under `gx_root`."""
    import great_expectations as gx
    from great_expectations.checkpoint.actions import UpdateDataDocsAction
    from great_expectations.core.result_format import DEFAULT_RESULT_FORMAT
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    # Progress bars would fill the task log with carriage-return noise.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas(DATASOURCE)
    run_id = RunIdentifier(run_name=names.run, run_time=datetime.now(UTC))
    outcomes = {}
    for suite in suites:
        table = suite.meta["dataset"]
        is_drift = table in DRIFT_TABLES
        frame = drift_tables[table] if is_drift else reduced_frame(prepared_dir / f"{table}.parquet")
        asset = source.add_dataframe_asset(f"{names.dataset}.{table}")
        batch = asset.add_batch_definition_whole_dataframe(suite.name)
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=suite.name,
                validation_definitions=[
                    context.validation_definitions.add(
                        gx.ValidationDefinition(name=suite.name, data=batch, suite=context.suites.add(suite))
                    )
                ],
                actions=[UpdateDataDocsAction(name="data_docs")],
                result_format=DRIFT_RESULT_FORMAT if is_drift else DEFAULT_RESULT_FORMAT,
            )
        )
        result = checkpoint.run(
            batch_parameters={"dataframe": frame}, expectation_parameters=dict(suite_parameters), run_id=run_id
        )
        outcomes[suite.name] = next(iter(result.run_results.values()))
    return outcomes


def _require_tolerances(suite_parameters: Mapping[str, Any]) -> None:
    """A drift suite without its bound would fail on a GX error rather than on the data: say which."""
    missing = [name for name in TOLERANCE_PARAMS if name not in suite_parameters]
    if missing:
        raise ConfigError(f"drift checks need the suite parameter(s) {', '.join(missing)}")


def _drift_outcome(
    drift: Drift | None, skipped: str | None, suites: Sequence[Any], outcomes: Mapping[str, Any]
) -> dict[str, Any]:
    """What drift.json holds: the checked measures with GX's verdicts, or why they were not checked."""
    if drift is None:
        return {"checked": False, "reason": skipped}
    drift_suites = [s.name for s in suites if s.meta["dataset"] in DRIFT_TABLES]
    passed = all(outcomes[name].success for name in drift_suites)
    return {**drift_record(drift, _drift_checks(suites, outcomes)), "passed": passed, "suites": drift_suites}


def _drift_checks(suites: Sequence[Any], outcomes: Mapping[str, Any]) -> dict[tuple[str, str], Check]:
    """{(drift table, column): the bound GX applied and the rows it found unexpected}, from GX's results:
    the pass/fail of every drift measure comes from here."""
    checks: dict[tuple[str, str], Check] = {}
    for suite in suites:
        table = suite.meta["dataset"]
        if table not in DRIFT_TABLES:
            continue
        for result in outcomes[suite.name].results:
            column = result.expectation_config.kwargs.get("column")
            failed = _failed_rows(table, result)
            if column is None or failed is None:
                continue  # not about rows of a column: _failures describes it as GX states it
            earlier = checks.get((table, column))
            tolerance = result.expectation_config.kwargs.get("max_value")
            if earlier is not None:
                failed |= earlier.failed_rows
                tolerance = tolerance if earlier.tolerance is None else earlier.tolerance
            checks[table, column] = Check(tolerance, failed)
    return checks


def _failed_rows(table: str, result: Any) -> frozenset[int] | None:
    """The rows of drift table `table` that an expectation found unexpected (none if it passed); None when
    GX does not say which (an aggregate expectation on the many-row genres table)."""
    if result.success:
        return frozenset()
    if _raised(result):
        return None  # GX could not evaluate it: no row is to blame
    if "unexpected_index_list" in result.result:
        return frozenset(result.result["unexpected_index_list"])
    return frozenset({0}) if table == MEASURES_TABLE else None  # the measures table has one row


def _raised(result: Any) -> bool:
    """Whether evaluating the expectation raised (GX keeps the error as the result, flat or per metric)."""
    info = result.exception_info or {}
    return bool(info.get("raised_exception")) or any(
        isinstance(value, Mapping) and value.get("raised_exception") for value in info.values()
    )


def _failures(suites: Sequence[Any], outcomes: Mapping[str, Any], drift_outcome: Mapping[str, Any]) -> list[str]:
    """Every unmet expectation, in words: a drift one that GX pins to rows as a sentence per row from the
    drift table (`drift_outcome`), any other as its GX call."""
    failed = []
    for suite in suites:
        table = suite.meta["dataset"]
        for result in outcomes[suite.name].results:
            in_words = table in DRIFT_TABLES and "column" in result.expectation_config.kwargs
            if not result.success and not (in_words and _failed_rows(table, result) is not None):
                failed.append(f"{suite.name}: {_describe(result.expectation_config)}")
    return failed + [f"drift: {message}" for message in drift_outcome.get("failures", [])]


def _drift_summary(drift_outcome: Mapping[str, Any]) -> dict[str, Any]:
    """The drift part of the validate summary (and so of the manifest): verdict and measures, compactly."""
    keys = ("checked", "reason", "served_version", "passed", "measures")
    return {key: drift_outcome[key] for key in keys if key in drift_outcome}


def quiet_great_expectations() -> None:
    """Keep GX's own INFO chatter out of the stage's log; its warnings and errors still show. Set before
    GX is imported: its import alone logs hundreds of "Skipping registering function …" lines, and a run
    more about its config files, burying the data gate's result (counted: bench/FINDINGS.md, "Great
    Expectations' log")."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def reduced_frame(parquet_file: Path) -> Any:
    """The table as pandas, with each text column replaced by its lengths (`<name>_length`)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(parquet_file)
    names = parquet.schema_arrow.names
    table = parquet.read(columns=[name for name in names if name not in TEXT_COLUMNS])
    for name in (name for name in names if name in TEXT_COLUMNS):
        batches = parquet.iter_batches(batch_size=REDUCE_BATCH_ROWS, columns=[name])
        lengths = pa.chunked_array([pc.utf8_length(batch.column(0)) for batch in batches], pa.int32())
        table = table.append_column(f"{name}_length", lengths)
    return table.to_pandas()


def load_suites(expectations_dir: Path) -> list[Any]:
    import great_expectations as gx

    files = sorted(expectations_dir.glob("*.json"))
    if not files:
        raise ConfigError(f"no expectation suites in {expectations_dir}")
    suites = []
    for path in files:
        try:
            suites.append(gx.ExpectationSuite(**json.loads(path.read_text(encoding="utf-8"))))
        except (ValueError, TypeError) as err:
            raise ConfigError(f"expectation suite {path.name} is invalid: {err}") from err
        if "dataset" not in suites[-1].meta:
            raise ConfigError(f"expectation suite {path.name} has no meta.dataset naming its table")
    return suites


def _describe(config: Any) -> str:
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "result_format")}
    arguments = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"{config.type}({arguments})"


def _keep_data_docs(gx_root: Path, data_docs: Path) -> None:
    """Move the rendered site to `data_docs`, where people look for it."""
    site = gx_root / "gx" / "uncommitted" / "data_docs" / "local_site"
    shutil.move(str(site), str(data_docs))
