"""The retraining DAG's steps (`tasks.pipeline`) called directly, in order, in this one Python process.

The same steps as `dags/movie_genre_retrain.py` calls, so the same stage functions, arguments and
artifact layout; the candidates are trained one after the other. Writes a timeline (wall-clock start
and end of each step, and its summary) as JSON, for the benchmarks to set beside the same run through
Airflow.

    python bench/pipeline.py --home DIR --timeline OUT.json [--params JSON] [--run-id ID] [--isolate]

DIR holds the artifacts (`DIR/artifacts`) and the served models (`DIR/models`); the dataset comes from
`dataset_url` in the params.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks import pipeline as steps
from tasks.config import Settings


def run_pipeline(run: steps.RunContext, isolate: bool = False) -> list[dict[str, Any]]:
    """Run every step up to promotion, then the report (or, with nothing new since the served version,
    up to the fingerprint); the timeline of (step, start, end, summary).
    `isolate`: each step in a process of its own, forked from this light one (as Airflow's executors
    run each task), so a step's peak memory is its own."""
    timeline: list[dict[str, Any]] = []
    summaries: dict[str, Any] = {}

    def timed(name: str, call: Callable[[], Any]) -> Any:
        start = time.time()
        summary = _in_own_process(call) if isolate else call()
        timeline.append({"stage": name, "start": start, "end": time.time(), "summary": summary})
        summaries[name] = summary
        return summary

    embedding = timed("embedding_module", lambda: steps.embedding_module(run))
    downloaded = timed("download", lambda: steps.download(run))
    prepared = timed("prepare", lambda: steps.prepare(run, downloaded))
    if not timed("fingerprint", lambda: steps.fingerprint(run, prepared, embedding))["retrain"]:
        return timeline  # what the DAG's short-circuit does: nothing new, nothing below runs
    timed("embed", lambda: steps.embed(run, prepared, embedding))
    timed("validate", lambda: steps.validate(run, prepared, embedding))
    planned = timed("candidates", lambda: steps.candidates(run, embedding))
    trained_candidates = [
        timed("train", lambda candidate=candidate: steps.train(run, candidate, prepared, embedding))
        for candidate in planned
    ]
    trained = timed("select_model", lambda: steps.select_model(run, trained_candidates))
    evaluation = timed("evaluate", lambda: steps.evaluate(run, trained, prepared, embedding))
    decision = timed("gate", lambda: steps.gate(run, evaluation))
    timed("serving_check", lambda: steps.serving_check(run, trained))
    manifest_stages = {name: summaries[step] for name, step in steps.MANIFEST_STAGES.items()}
    promoted = timed("promote", lambda: steps.promote(run, trained, decision, manifest_stages))
    timed("report", lambda: steps.report(run, trained, promoted, dag_id="bench"))
    ran = list(dict.fromkeys(entry["stage"] for entry in timeline))
    if ran != list(steps.STEPS):  # the order is declared once, in tasks.pipeline: the DAG's
        raise RuntimeError(f"the direct runner ran {ran}, not the pipeline's steps {list(steps.STEPS)}")
    return timeline


def _in_own_process(call: Callable[[], Any]) -> Any:
    """`call()` in a forked child; its summary comes back through a pipe."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def child() -> None:
        try:
            sender.send(("done", call()))
        except BaseException as err:
            sender.send(("failed", f"{type(err).__name__}: {err}"))
            raise

    process = context.Process(target=child)
    process.start()
    sender.close()
    try:
        status, value = receiver.recv()
    except EOFError:
        status, value = "failed", "the process died"
    process.join()
    if status != "done":
        raise RuntimeError(f"stage failed: {value}")
    return value


def home_settings(home: Path, dataset_url: str) -> Settings:
    """Settings for a pipeline whose artifacts and models live under `home`."""
    return Settings(
        model_dir=home / "models",
        artifacts_dir=home / "artifacts",
        dataset_url=dataset_url,
        data_root=Path(dataset_url).parent if "://" not in dataset_url else home,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--timeline", type=Path, required=True)
    parser.add_argument("--params", type=json.loads, default={})
    parser.add_argument("--run-id", default="bench")
    parser.add_argument("--isolate", action="store_true", help="each stage in a process of its own")
    args = parser.parse_args()
    settings = home_settings(args.home.resolve(), args.params.get("dataset_url", ""))
    timeline = run_pipeline(steps.RunContext.from_params(args.run_id, args.params, settings), args.isolate)
    args.timeline.write_text(json.dumps(timeline, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
