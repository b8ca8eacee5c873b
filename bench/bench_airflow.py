"""The same retrain through Airflow (`airflow dags test`, what `make run` does) and called directly.

Each repeat runs both, one after the other, each in a fresh process with a fresh home (empty embedding
cache, no served model), on the shared 5,000-row file with every default param. The ratio of the medians
is what orchestration costs: Airflow's startup, parse, metadata DB and task bookkeeping.

    python -m bench.bench_airflow MODULE_DIR [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench.measure import median
from bench.runs import Run, run_airflow, run_direct
from bench.sample import SHARED_SAMPLE_CSV

GOAL_RATIO = 1.3


def measure_overhead(
    module_dir: str, work: Path, repeats: int = 3, csv: Path = SHARED_SAMPLE_CSV
) -> tuple[dict[str, Any], list[Run]]:
    """The figures, and the direct runs (cold retrains, for the warm benchmark to reuse)."""
    params = {"dataset_url": str(csv), "embedding_module": module_dir}
    direct: list[Run] = []
    airflow: list[Run] = []
    for repeat in range(repeats):
        direct.append(run_direct(work / f"direct-{repeat}", params))
        airflow.append(run_airflow(work / f"airflow-{repeat}", params))
    return {
        "repeats": repeats,
        "rows": csv.name,
        "goal_ratio": GOAL_RATIO,
        "direct": summarize(direct),
        "airflow": summarize(airflow),
        "ratio": median([r.seconds for r in airflow]) / median([r.seconds for r in direct]),
    }, direct


def summarize(runs: list[Run]) -> dict[str, Any]:
    """Medians over runs: whole-process seconds and peak RSS, and per stage."""
    stages = list(dict.fromkeys(stage for run in runs for stage in run.stages))
    return {
        "seconds": median([run.seconds for run in runs]),
        "peak_rss_mb": median([run.peak_rss_mb for run in runs]),
        "stages": {
            stage: {
                key: median([run.stages[stage][key] for run in runs if stage in run.stages])
                for key in ("seconds", "peak_rss_mb")
            }
            for stage in stages
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("module_dir")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-airflow-") as scratch:
        result, _ = measure_overhead(args.module_dir, Path(scratch), args.repeats)
    print(
        f"direct {result['direct']['seconds']:.1f} s, airflow {result['airflow']['seconds']:.1f} s, "
        f"ratio {result['ratio']:.2f} (goal <= {GOAL_RATIO})"
    )


if __name__ == "__main__":
    main()
