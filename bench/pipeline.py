"""The retraining DAG's stages called directly, in order, in this one Python process (no Airflow).

Same stage functions, same arguments and artifact layout as `dags/movie_genre_retrain.py`; the
candidates are trained one after the other. Writes a timeline (wall-clock start and end of each stage,
and each stage's summary) as JSON, for the benchmarks to set beside the same run through Airflow.

    python bench/pipeline.py --home DIR --timeline OUT.json [--params JSON] [--run-id ID] [--isolate]

DIR holds the artifacts (`DIR/artifacts`) and the served models (`DIR/models`); the dataset comes from
`dataset_url` in the params.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

from tasks.config import EXPECTATIONS_DIR, RunConfig, Settings
from tasks.embedding_cache import EmbeddingCache


def run_pipeline(settings: Settings, config: RunConfig, run_id: str, isolate: bool = False) -> list[dict[str, Any]]:
    """Run every stage up to promotion, then the report; the timeline of (stage, start, end, summary).
    `isolate`: each stage in a process of its own, forked from this light one (as Airflow's executors
    run each task), so a stage's peak memory is its own."""
    run_dir = settings.run_dir(run_id)
    timeline: list[dict[str, Any]] = []

    def timed(name: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        start = time.time()
        summary = _in_own_process(call) if isolate else call()
        timeline.append({"stage": name, "start": start, "end": time.time(), "summary": summary})
        return summary

    handle = config.embedding_module
    embedding = timed(
        "embedding_module",
        lambda: (
            {"path": handle, "fingerprint": stage("embedding_module").module_fingerprint(handle)}
            if handle
            else stage("embedding_module").ensure_default_module(settings.embedding_modules_dir)
        ),
    )
    cache = EmbeddingCache(settings.embedding_cache_dir, embedding["fingerprint"])
    policy = stage("download").DownloadPolicy(data_root=settings.data_root, max_bytes=config.max_download_bytes)
    downloaded = timed(
        "download", lambda: stage("download").download_dataset(config.dataset_url, run_dir / "raw", policy)
    )
    prepared = timed(
        "prepare",
        lambda: stage("prepare").prepare_dataset(
            Path(downloaded["path"]),
            run_dir / "prepared",
            config.genres,
            config.test_fraction,
            config.validation_fraction,
        ),
    )
    prepared_dir = Path(prepared["path"])
    validated = timed(
        "validate",
        lambda: stage("validate").validate_dataset(
            prepared_dir, EXPECTATIONS_DIR, run_dir / "validation", {"min_rows": config.min_rows}
        ),
    )
    embedded = timed("embed", lambda: stage("embed").embed_dataset(prepared_dir, embedding["path"], cache))
    planned = timed(
        "candidates",
        lambda: {
            "candidates": stage("candidates").plan_candidates(
                config, settings.served_model_dir, embedding["fingerprint"]
            )
        },
    )
    trained_candidates = [
        timed(
            "train",
            lambda candidate=candidate: stage("train").train_candidate(
                prepared_dir, run_dir / "candidates", config, candidate, embedding["path"], cache
            ),
        )
        for candidate in planned["candidates"]
    ]
    trained = timed("select_model", lambda: stage("candidates").best_candidate(trained_candidates))
    model_dir = Path(trained["model_path"])
    evaluation = timed(
        "evaluate", lambda: stage("evaluate").evaluate_model(model_dir, prepared_dir, run_dir, embedding["path"], cache)
    )
    decision = timed(
        "gate",
        lambda: stage("gate").check_model_gate(
            Path(evaluation["path"]),
            prepared_dir,
            settings.served_model_dir,
            metric=config.gate_metric,
            threshold=config.auc_threshold,
            max_drop=config.max_auc_drop,
        ),
    )
    checked = timed("serving_check", lambda: stage("serving_check").check_serving(model_dir))
    stages = {
        "embedding_module": embedding,
        "download": downloaded,
        "prepare": prepared,
        "validate": validated,
        "embed": embedded,
        "train": trained,
        "evaluate": evaluation,
        "gate": decision,
        "serving_check": checked,
    }
    promoted = timed(
        "promote",
        lambda: stage("promote").promote_model(
            model_dir,
            settings.served_model_dir,
            stage("promote").build_manifest(run_id, asdict(config), stages),
            actor=f"bench:{run_id}",
            reason=decision["reason"],
            keep_versions=config.keep_versions,
        ),
    )
    timed(
        "report",
        lambda: stage("report").write_report(
            run_dir,
            model_dir,
            settings.served_model_dir,
            dag_id="bench",
            run_id=run_id,
            version=promoted["version"],
        ),
    )
    return timeline


def stage(name: str) -> ModuleType:
    """A stage module of `tasks/`, imported when first called (in the stage's own process if isolated)."""
    return importlib.import_module(f"tasks.{name}")


def _in_own_process(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
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
    config = RunConfig.from_params(args.params, settings)
    timeline = run_pipeline(settings, config, args.run_id, args.isolate)
    args.timeline.write_text(json.dumps(timeline, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
