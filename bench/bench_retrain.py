"""Cold versus warm retrain on the shared 5,000-row file, stage by stage, in one process.

cold: empty embedding cache, every description is embedded.
warm: the cache holds the vectors of a previous run on 95% of the movies; the new file adds the other
5% (the weekly-retrain case), so only those are embedded.

The embedding module is built (or found cached) before timing: it is a one-off cost, reported apart.
Usage: python bench/bench_retrain.py [CSV] [--epochs N]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import tempfile
import time
from pathlib import Path

from tasks.config import DEFAULT_GENRES, PARAM_SCHEMAS, SHARED_SAMPLE_CSV
from tasks.embed import embed_dataset
from tasks.embedding_cache import EmbeddingCache
from tasks.embedding_module import ensure_default_module
from tasks.evaluate import evaluate_model
from tasks.prepare import prepare_dataset
from tasks.train import TrainConfig, train_model

NEW_SHARE = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", type=Path, default=SHARED_SAMPLE_CSV)
    parser.add_argument("--epochs", type=int, default=PARAM_SCHEMAS["epochs"]["default"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-retrain-") as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        module = ensure_default_module(root / "modules")
        print(f"embedding module {module['module']}: built in {time.perf_counter() - started:.1f} s (one-off)")
        older = _without_new_share(args.csv, root / "older.csv")
        cold = _retrain(
            args.csv, root / "cold", module, EmbeddingCache(root / "cache-cold", module["fingerprint"]), args
        )
        warm_cache = EmbeddingCache(root / "cache-warm", module["fingerprint"])
        _retrain(older, root / "previous", module, warm_cache, args)
        warm = _retrain(args.csv, root / "warm", module, warm_cache, args)
    print(f"\n{'stage':<10}{'cold s':>10}{'warm s':>10}")
    for stage in cold:
        print(f"{stage:<10}{cold[stage]:>10.2f}{warm[stage]:>10.2f}")
    print(f"{'total':<10}{sum(cold.values()):>10.2f}{sum(warm.values()):>10.2f}")
    print(f"\nwarm / cold = {sum(warm.values()) / sum(cold.values()):.2f}  (goal <= 0.25)")


def _retrain(csv_path: Path, out: Path, module: dict, cache: EmbeddingCache, args: argparse.Namespace) -> dict:
    timings: dict[str, float] = {}

    def timed(stage: str, call):
        started = time.perf_counter()
        result = call()
        timings[stage] = time.perf_counter() - started
        return result

    prepared = Path(
        timed("prepare", lambda: prepare_dataset(csv_path, out / "prepared", DEFAULT_GENRES, 0.2, 0.1))["path"]
    )
    embedded = timed("embed", lambda: embed_dataset(prepared, module["path"], cache))
    config = TrainConfig(
        embedding_module=module["path"],
        epochs=args.epochs,
        batch_size=PARAM_SCHEMAS["batch_size"]["default"],
        hidden_units=PARAM_SCHEMAS["hidden_units"]["default"],
        learning_rate=PARAM_SCHEMAS["learning_rate"]["default"],
        seed=PARAM_SCHEMAS["seed"]["default"],
    )
    trained = timed("train", lambda: train_model(prepared, out / "model", config, cache))
    timed(
        "evaluate",
        lambda: evaluate_model(Path(trained["model_path"]), prepared, out / "metrics.json", module["path"], cache),
    )
    print(f"{out.name}: embedded {embedded['computed']} of {embedded['texts']} descriptions", file=sys.stderr)
    return timings


def _without_new_share(source: Path, target: Path) -> Path:
    """The CSV without a stable 5% of its records: the previous week's file."""
    csv.field_size_limit(sys.maxsize)
    with source.open(encoding="utf-8", newline="") as src, target.open("w", encoding="utf-8", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        writer.writerow(next(reader))
        for row in reader:
            bucket = int.from_bytes(hashlib.sha256("\x1f".join(row).encode()).digest()[:8], "big") / 2**64
            if bucket >= NEW_SHARE:
                writer.writerow(row)
    return target


if __name__ == "__main__":
    main()
