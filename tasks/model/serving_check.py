"""Stage: load the exported SavedModel in a fresh process and call it as TensorFlow Serving would.

A fresh interpreter proves the folder is self-contained (nothing borrowed from the training process).
The signature must answer an empty string, a very long text, non-ASCII text, and batches of 1 and 64
with float32 probabilities of the right shape, finite and within [0, 1].
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tasks.errors import ServingCheckError
from tasks.model.bundle import SERVING_SIGNATURE, SIGNATURE_OUTPUT, read_labels
from tasks.results import ServingCheckResult

SAMPLES = {
    "empty": [""],
    "very_long": ["A long description of a movie. " * 3300],  # about 100 KB
    "non_ascii": ["Amélie découvre un trésor — 東京物語 — Москва слезам не верит 🎬"],
    "batch_of_64": [f"Movie number {i}: a detective story with a twist." for i in range(64)],
}
CHECK_TIMEOUT_SECONDS = 600


def check_serving(model_dir: Path) -> ServingCheckResult:
    """Run the check in a fresh Python process; raise `ServingCheckError` naming what failed."""
    result = subprocess.run(
        [sys.executable, "-m", "tasks", "serving-check", str(model_dir)],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_SECONDS,
    )
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ServingCheckError(f"serving check failed for {model_dir}: {detail}")
    checked: ServingCheckResult = json.loads(result.stdout.strip().splitlines()[-1])  # check_in_this_process's
    return checked


def check_in_this_process(model_dir: Path) -> ServingCheckResult:
    """Call `serving_default` on every sample; return the shapes seen, or raise on the first problem."""
    import numpy as np

    from tasks.tensorflow_runtime import tf

    genres = read_labels(model_dir)
    serve = tf.saved_model.load(str(model_dir)).signatures[SERVING_SIGNATURE]
    shapes: dict[str, list[int]] = {}
    for name, texts in SAMPLES.items():
        outputs = serve(tf.constant(texts))
        if SIGNATURE_OUTPUT not in outputs:
            raise ServingCheckError(f"{name}: no '{SIGNATURE_OUTPUT}' output, only {sorted(outputs)}")
        values = outputs[SIGNATURE_OUTPUT].numpy()
        if values.shape != (len(texts), len(genres)) or values.dtype != np.float32:
            raise ServingCheckError(
                f"{name}: got {values.dtype} {values.shape}, want float32 {(len(texts), len(genres))}"
            )
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
            raise ServingCheckError(f"{name}: probabilities not finite or outside [0, 1]")
        shapes[name] = list(values.shape)
    return {"model_dir": str(model_dir), "passed": True, "shapes": shapes}
