"""The warm run's floor: what its fresh processes pay in imports before any stage does its work.

    .venv/bin/python -m bench.bench_floors MODULE_DIR [--repeats 5]

Each probe is a fresh Python process, timed from outside (start to exit), the probes taking turns in each
pass; each figure is the median. The stages' processes start with the pipeline's own module loaded (the
benchmark forks them from a process that imported `tasks.pipeline`, as Airflow's from one with Airflow
loaded), so an import is timed over that:
- `pipeline`: `import tasks.pipeline`;
- `tensorflow`: that, then `tasks.tensorflow_runtime`, what every TensorFlow stage imports;
- `great_expectations`: that, then Great Expectations, what the validate stage imports;
- `both`: that, then both (one process imports what they share once);
- `serving_interpreter`: a bare interpreter importing TensorFlow and loading the embedding module, the least
  the serving check's fresh interpreter does (the exported model holds that module, and a head besides).

A warm run pays the TensorFlow import in embed, in train (one candidate) and in evaluate, Great
Expectations' in validate, and the serving check's interpreter. In one process (the benchmark's 5k-row
runs) it pays both imports once; with each stage in a process of its own (as Airflow runs tasks, the
50k-row runs), TensorFlow's once per TensorFlow stage. No code inside a stage removes these costs, so the
floor against a cold run bounds the warm / cold ratio from below.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

from bench.bench_embedding import interleaved_medians

ROOT = Path(__file__).resolve().parents[1]
PROBES = {
    "pipeline": "import tasks.pipeline",
    "tensorflow": "import tasks.pipeline, tasks.tensorflow_runtime",
    "great_expectations": "import tasks.pipeline, great_expectations",
    "both": "import tasks.pipeline, tasks.tensorflow_runtime, great_expectations",
    "serving_interpreter": "from tasks.tensorflow_runtime import tf; tf.saved_model.load({module!r})",
}
WARM_TENSORFLOW_STAGES = ("embed", "train", "evaluate")  # besides the serving check's own interpreter


def measure_floors(module_dir: str, repeats: int = 5) -> dict[str, Any]:
    """Seconds of each probe, the imports they cost, and the warm floors they add up to."""
    runs = {name: partial(_fresh_process, code.format(module=module_dir)) for name, code in PROBES.items()}
    seconds = interleaved_medians(runs, repeats)
    imports = {name: seconds[name] - seconds["pipeline"] for name in ("tensorflow", "great_expectations", "both")}
    serving = seconds["serving_interpreter"]
    return {
        "repeats": repeats,
        "seconds": seconds,
        "imports": imports,
        "floors": {
            "one_process": imports["both"] + serving,
            "process_per_stage": len(WARM_TENSORFLOW_STAGES) * imports["tensorflow"]
            + imports["great_expectations"]
            + serving,
        },
    }


def _fresh_process(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT)


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
