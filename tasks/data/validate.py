"""Stage 3, the data gate: check the prepared data with Great Expectations 1.x.

Suites are data: every `expectations/*.json` is a GX expectation suite whose `meta.dataset` names the
prepared table it checks (`records`, `movies` or `genre_coverage`). Suite values written as
`{"$PARAMETER": "name"}` are filled from the run's params (e.g. `min_rows`).

GX checks a typed, reduced frame: a text column (`overview`) arrives as its length in characters
(`overview_length`), computed by Arrow a row group at a time. The suites only look at lengths, and the
texts never become Python strings in pandas, which is what made validation's memory grow with the file.

Writes `validation/results.json` and the Data Docs site (`validation/data_docs/index.html`). If any
expectation fails, raises `DataGateError` naming each one, after the artifacts are written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.artifacts import atomic_dir, write_json
from tasks.errors import ConfigError, DataGateError

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
DATA_DOCS_DIR = "data_docs"
DATASOURCE = "prepared"
TEXT_COLUMNS = frozenset({"overview"})
REDUCE_BATCH_ROWS = 50_000


def validate_dataset(
    prepared_dir: Path, expectations_dir: Path, out_dir: Path, suite_parameters: Mapping[str, Any]
) -> dict[str, Any]:
    """Run every suite in `expectations_dir` on its table in `prepared_dir`; results go to `out_dir`."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no phoning home from a closed network
    quiet_great_expectations()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    suites = load_suites(expectations_dir)
    with atomic_dir(out_dir) as tmp:
        context = gx.get_context(mode="file", project_root_dir=str(tmp))
        # Progress bars would fill the task log with carriage-return noise.
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas(DATASOURCE)
        outcomes = {}
        for suite in suites:
            table = suite.meta["dataset"]
            frame = reduced_frame(prepared_dir / f"{table}.parquet")
            batch = source.add_dataframe_asset(suite.name).add_batch_definition_whole_dataframe(suite.name)
            checkpoint = context.checkpoints.add(
                gx.Checkpoint(
                    name=suite.name,
                    validation_definitions=[
                        context.validation_definitions.add(
                            gx.ValidationDefinition(name=suite.name, data=batch, suite=context.suites.add(suite))
                        )
                    ],
                    actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                )
            )
            result = checkpoint.run(
                batch_parameters={"dataframe": frame}, expectation_parameters=dict(suite_parameters)
            )
            outcomes[suite.name] = next(iter(result.run_results.values()))
        write_json(tmp / RESULTS_FILE, {name: r.to_json_dict() for name, r in outcomes.items()})
        _keep_data_docs(tmp)
    failed = [
        f"{name}: {_describe(r.expectation_config)}"
        for name, outcome in outcomes.items()
        for r in outcome.results
        if not r.success
    ]
    summary = {
        "success": not failed,
        "suites": {name: {"success": o.success, "evaluated": len(o.results)} for name, o in outcomes.items()},
        "failed_expectations": failed,
        "results_path": str(out_dir / RESULTS_FILE),
        "data_docs_path": str(out_dir / DATA_DOCS_DIR / "index.html"),
    }
    if failed:
        raise DataGateError(
            f"data gate failed: {len(failed)} expectation(s) not met: "
            + "; ".join(failed)
            + f". Data Docs: {summary['data_docs_path']}",
            failed,
        )
    log.info("data gate passed: %s", summary["suites"])
    return summary


def quiet_great_expectations() -> None:
    """Keep GX's own INFO chatter out of the stage's log; its warnings and errors still show. Set before
    GX is imported: its import alone logged 215 "Skipping registering function …" lines (GX 1.24), and a
    run about 30 more about its config files, burying the data gate's result (line 248 of 249)."""
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


def _keep_data_docs(gx_root: Path) -> None:
    """Move the rendered site to `data_docs/`, where people look for it."""
    site = gx_root / "gx" / "uncommitted" / "data_docs" / "local_site"
    shutil.move(str(site), str(gx_root / DATA_DOCS_DIR))
