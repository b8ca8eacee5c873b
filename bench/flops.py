"""Head training against its FLOP limit: how far the measured training time is from the machine's peak.

The limit of one candidate is the arithmetic its training cannot avoid, at the machine's peak rate:

    FLOPs = epochs_run x (train_rows x 3 x 2 x W + validation_rows x 2 x W)
    W     = dims x hidden + hidden x genres            (deep: dense layers, multiply-adds per example)
          + nnz x genres                               (wide: the TF-IDF row's non-zeros only)
    peak  = cores x clock x SIMD fp32 lanes x 2 (an FMA is two FLOPs) x FMA units per core

Forward is 2 FLOPs a weight touched, backward twice that (gradients of the inputs and of the weights);
each epoch also runs the validation split forward. Everything else training does (tf.data, the
optimizer's update, metrics, early stopping, the export) counts as overhead against that limit.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import zipfile
from pathlib import Path
from typing import Any

from tasks.model.bundle import head_path, read_training_record

NNZ_SAMPLE = 5_000  # train texts tokenised to measure the TF-IDF rows' mean non-zeros
# TextVectorization's "lower_and_strip_punctuation", then "whitespace" split.
PUNCTUATION = re.compile(r"[!\"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~']")
VOCABULARY_FILE = re.compile(r"assets/.*text_vectorization/vocabulary\.txt$")


def peak_flops() -> dict[str, Any]:
    """The machine's fp32 peak and the figures it is the product of."""
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    avx512 = "avx512f" in fields.get("flags", "").split()
    cores, ghz = os.cpu_count() or 1, float(fields.get("cpu MHz", "0")) / 1000
    lanes, units = (16, _avx512_fma_units(fields)) if avx512 else (8, 2)
    return {
        "cores": cores,
        "ghz": round(ghz, 3),
        "fp32_lanes": lanes,
        "fma_units_per_core": units,
        "gflops": cores * ghz * lanes * 2 * units,
    }


def _avx512_fma_units(fields: dict[str, str]) -> int:
    """512-bit FMAs a core starts per cycle. AMD Zen 4 (family 25) splits each over its two 256-bit FMA
    pipes: one a cycle. Zen 5 (family 26) and Xeon Scalable Gold / Platinum have two full-width units."""
    if fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == "25":
        return 1
    return 2


def head_training(run_dir: Path, peak_gflops: float) -> dict[str, Any] | None:
    """Every candidate's training time against its FLOP limit, from `<run>/candidates/<i>/training.json`;
    None if the run trained nothing."""
    candidates = [_candidate(path, run_dir) for path in sorted(run_dir.glob("candidates/*/training.json"))]
    if not candidates:
        return None
    flops = sum(candidate["flops"] for candidate in candidates)
    seconds = sum(candidate["seconds"] for candidate in candidates)
    limit = flops / (peak_gflops * 1e9)
    return {
        "candidates": candidates,
        "flops": flops,
        "seconds": seconds,
        "limit_seconds": limit,
        "ratio": seconds / limit,
    }


def _candidate(training_json: Path, run_dir: Path) -> dict[str, Any]:
    summary = json.loads(training_json.read_text(encoding="utf-8"))
    model = Path(summary["model_path"])
    record = read_training_record(model)
    genres, hidden = len(record["genres"]), record["architecture"]["hidden_units"]
    layers = _head_layers(head_path(model))
    dims = layers["embedding"]["batch_input_shape"][1]
    nnz = _mean_nnz(model, run_dir) if "wide_logits" in layers else 0.0
    weights = dims * hidden + hidden * genres + nnz * genres
    epochs = summary["epochs_run"]
    flops = epochs * (summary["train_rows"] * 6 * weights + summary["validation_rows"] * 2 * weights)
    return {
        "index": int(training_json.parent.name),
        "wide": "wide_logits" in layers,
        "weights_per_example": weights,
        "tfidf_nnz": nnz,
        "train_rows": summary["train_rows"],
        "epochs_run": epochs,
        "seconds": summary["seconds"],
        "flops": flops,
    }


def _head_layers(keras_file: Path) -> dict[str, dict[str, Any]]:
    """Each layer's config, by name, from the saved head (a zip holding config.json): no TensorFlow."""
    with zipfile.ZipFile(keras_file) as archive:
        config = json.loads(archive.read("config.json"))
    layers = {layer["name"]: layer["config"] for layer in config["config"]["layers"]}
    for layer in layers.values():  # Keras 3 names it batch_shape
        layer.setdefault("batch_input_shape", layer.get("batch_shape"))
    return layers


def _mean_nnz(model: Path, run_dir: Path) -> float:
    """Mean non-zeros of a train text's TF-IDF row: its distinct in-vocabulary 1-2-grams, plus one for
    the out-of-vocabulary bucket if any fell there (sampled over NNZ_SAMPLE train texts)."""
    from tasks.data.prepare import read_split

    with zipfile.ZipFile(head_path(model)) as archive:
        name = next(name for name in archive.namelist() if VOCABULARY_FILE.search(name))
        vocabulary = set(archive.read(name).decode("utf-8").splitlines())
    texts = read_split(run_dir / "prepared", "train")[0]
    sample = random.Random(0).sample(texts, min(NNZ_SAMPLE, len(texts)))
    counts = []
    for text in sample:
        words = PUNCTUATION.sub("", text.lower()).split()
        grams = {*words, *(f"{first} {second}" for first, second in itertools.pairwise(words))}
        known = len(grams & vocabulary)
        counts.append(known + (known < len(grams)))
    return sum(counts) / max(len(counts), 1)
