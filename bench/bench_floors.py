"""The warm run's floor: what its fresh processes pay in imports before any stage does its work.

    .venv/bin/python -m bench.bench_floors MODULE_DIR [--repeats 5]

Each probe is a fresh Python process, timed from outside (start to exit), the probes taking turns in each
pass; each figure is the median:
- `interpreter`: `python -c pass`;
- `tensorflow`: importing `tasks.tensorflow_runtime`, what every TensorFlow stage imports;
- `great_expectations`: importing it, what the validate stage imports;
- `serving_interpreter`: the TensorFlow import and loading the embedding module, the least the serving
  check's fresh interpreter does (the exported model holds that module, and a head besides).

A warm run pays the TensorFlow import in embed, in train (one candidate) and in evaluate, Great
Expectations' in validate, and the serving check's interpreter. In one process (the benchmark's 5k-row
runs) it pays the TensorFlow import once; with each stage in a process of its own (as Airflow runs
tasks, the 50k-row runs), once per TensorFlow stage. No code inside a stage removes these costs, so the
floor against a cold run bounds the warm / cold ratio from below.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

from bench.measure import median

PROBES = {
    "interpreter": "pass",
    "tensorflow": "import tasks.tensorflow_runtime",
    "great_expectations": "import great_expectations",
    "serving_interpreter": "from tasks.tensorflow_runtime import tf; tf.saved_model.load({module!r})",
}
WARM_TENSORFLOW_STAGES = ("embed", "train", "evaluate")  # besides the serving check's own interpreter


def measure_floors(module_dir: str, repeats: int = 5) -> dict[str, Any]:
    """Seconds of each probe, the imports they cost, and the warm floors they add up to."""
    times: dict[str, list[float]] = {name: [] for name in PROBES}
    for _ in range(repeats):
        for name, code in PROBES.items():
            times[name].append(_fresh_process_seconds(code.format(module=module_dir)))
    seconds = {name: median(values) for name, values in times.items()}
    tensorflow = seconds["tensorflow"] - seconds["interpreter"]
    great_expectations = seconds["great_expectations"] - seconds["interpreter"]
    serving = seconds["serving_interpreter"]
    return {
        "repeats": repeats,
        "seconds": seconds,
        "imports": {"tensorflow": tensorflow, "great_expectations": great_expectations},
        "floors": {
            "one_process": tensorflow + great_expectations + serving,
            "process_per_stage": len(WARM_TENSORFLOW_STAGES) * tensorflow + great_expectations + serving,
        },
    }


def _fresh_process_seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("module_dir")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    result = measure_floors(args.module_dir, args.repeats)
    for name, seconds in result["seconds"].items():
        print(f"{name:20s} {seconds:5.2f} s")
    floors = result["floors"]
    print(f"floor: one process {floors['one_process']:.1f} s, a process per stage {floors['process_per_stage']:.1f} s")


if __name__ == "__main__":
    main()
