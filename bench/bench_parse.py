"""DAG file parse time in a fresh process, against an empty DAG file: what the dag-processor pays per file.

The dag-processor parses each file in a fresh process that already has Airflow imported; so does this:
it imports Airflow's DagBag, then times parsing one file. Each file is parsed in `repeats` fresh
processes; the median is reported. Also lists which heavy libraries the parse imported.

    python -m bench.bench_parse [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.measure import median

ROOT = Path(__file__).resolve().parents[1]
DAG_FILES = ("movie_genre_retrain.py", "movie_genre_rollback.py")
HEAVY_MODULES = ("tensorflow", "great_expectations", "pandas", "sklearn", "pyarrow")
GOAL_SECONDS = 0.2

EMPTY_DAG = """
from datetime import datetime

from airflow.sdk import dag


@dag(dag_id="empty", schedule=None, start_date=datetime(2026, 1, 1))
def empty() -> None:
    pass


empty()
"""

# Runs in the fresh process: Airflow first (untimed, the dag-processor has it), then the parse (timed).
PARSE_ONE_FILE = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1], bundle_name="bench")
seconds = time.perf_counter() - started
heavy = [name for name in sys.argv[2].split(",") if name in sys.modules]
print(json.dumps({"seconds": seconds, "dags": sorted(bag.dags), "errors": bag.import_errors, "heavy": heavy}))
"""


def parse_once(dag_file: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", PARSE_ONE_FILE, str(dag_file), ",".join(HEAVY_MODULES)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    if parsed["errors"] or not parsed["dags"]:
        raise RuntimeError(f"{dag_file} did not parse: {parsed['errors']}")
    return parsed


def measure_parse(repeats: int = 7) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as scratch:
        empty = Path(scratch) / "empty_dag.py"
        empty.write_text(EMPTY_DAG, encoding="utf-8")
        files = {"empty DAG file": empty, **{name: ROOT / "dags" / name for name in DAG_FILES}}
        results = {}
        for label, path in files.items():
            runs = [parse_once(path) for _ in range(repeats)]
            results[label] = {
                "seconds": median([run["seconds"] for run in runs]),
                "heavy_imports": sorted({name for run in runs for name in run["heavy"]}),
            }
    return {"repeats": repeats, "goal_seconds": GOAL_SECONDS, "files": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    result = measure_parse(parser.parse_args().repeats)
    for label, figures in result["files"].items():
        print(f"{label:28} {figures['seconds']:.3f} s  heavy imports: {', '.join(figures['heavy_imports']) or 'none'}")


if __name__ == "__main__":
    main()
