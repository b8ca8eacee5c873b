"""Import TensorFlow the one way this project supports.

`hub.KerasLayer` works with tf-keras (Keras 2) only; TF_USE_LEGACY_KERAS must be set before TensorFlow
is first imported. TensorFlow Text is imported for its ops: the USE module's graph tokenises with
`SentencepieceOp`, which must be registered before such a SavedModel loads. Modules that need
TensorFlow import it from here.

Why fd 2 is captured while TensorFlow starts: its C++ code writes start-up lines straight to stderr,
before its logging is set up (so TF_CPP_MIN_LOG_LEVEL, even 3, does not hide them all), and Airflow's
task supervisor records a task's stderr at ERROR. On a host without a GPU every TensorFlow stage's log
opened with five ERROR lines that were no error (TensorFlow 2.21, during `import tensorflow`, twice:
"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR" and "I…
cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used."; at the first
device lookup: "E… cuda_platform.cc:52] failed call to cuInit: … (303)"), and they came before a failed
gate's reason. So each captured line is logged through Python logging at the level its prefix gives
(I, W, E, F), except those known no-GPU lines (`NO_GPU_STARTUP`), which are dropped. What TensorFlow
writes later still goes to stderr, as before.

`import tensorflow` loads TensorFlow's platform code twice: libtensorflow_framework.so.2, and the
profiler's `_pywrap_profiler_plugin.so` (imported for `tf.profiler.experimental.client`), which links
its own copy. Each copy's static initialisers print the same start-up lines ("oneDNN custom operations
are on", the no-GPU ones, absl's preamble), so a line already logged in the block is not logged again.
"""

import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# 1: TensorFlow's native INFO lines (CPU features, thread pools) stay out; its warnings and errors show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# oneDNN on: the USE module multiplies in bfloat16 (AVX-512 BF16), which only oneDNN's kernels run fast
# (without it the module runs slower than its float32 build), and training is faster with it (bench/FINDINGS.md,
# "Training speed").
# oneDNN keeps primitives and memory per input shape, which once grew the embed stage with every batch; the
# module now pads its shapes to a few bucket sizes (tasks/embedding/use_module.py), so memory stays flat.
# With it, the first int64 Transpose a process runs (a ragged `tf.concat` along axis 1 makes one of its row
# splits) logs once "E… util.cc:131] oneDNN supports DT_INT64 only on platforms with AVX-512. Falling back
# to … Eigen": harmless, but an ERROR line in a task's log, so the USE module lays out its pieces without
# ragged concats (builder revision 2). Set it to 0 to compare.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

log = logging.getLogger(__name__)

# A native log line: absl's "I0000 00:00:1796179939.483953    6965 cudart_stub.cc:31] text" (before
# absl::InitializeLog) or TensorFlow's "2026-01-01 10:00:00.000000: W tensorflow/…/x.cc:12] text".
NATIVE_LINE = re.compile(
    r"^(?:(?P<absl>[IWEF])\d{4} [\d:.]+ +\d+ "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<tsl>[IWEF]) )(?P<where>[^\]\s]+)\] ?(?P<text>.*)$"
)
LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}
ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# What TensorFlow prints at start-up on a host without a GPU (or CUDA libraries): no news, not logged.
NO_GPU_STARTUP = re.compile(
    r"Could not find cuda drivers on your machine, GPU will not be used"
    r"|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
)
PYTHON_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")  # what `warnings` prints: path:line: Category: text


@contextmanager
def native_stderr_to_logging() -> Iterator[None]:
    """Capture fd 2 in a temporary file for the block; then log each line (see the module docstring)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for level, message in native_records(capture.read().decode(errors="replace")):
                log.log(level, "%s", message)


def native_records(text: str) -> list[tuple[int, str]]:
    """(level, message) of each record worth logging in captured stderr `text`. A line without a prefix
    continues the record before it (TensorFlow writes some messages over several lines), unless it
    starts a Python warning or comes first: then it is a WARNING of its own."""
    records: list[tuple[int, list[str], bool]] = []  # level, lines, whether to log it
    seen: set[str] = set()  # native lines so far: the second copy of the platform code repeats them
    for line in text.splitlines():
        if not line.strip():
            continue
        if match := NATIVE_LINE.match(line):
            message = f"TensorFlow {match['where']}] {match['text']}"
            keep = not NO_GPU_STARTUP.search(match["text"]) and message not in seen
            seen.add(message)
            records.append((LEVELS[match["absl"] or match["tsl"]], [message], keep))
        elif line == ABSL_PREAMBLE:
            records.append((logging.WARNING, [line], False))
        elif records and not PYTHON_WARNING.match(line):
            records[-1][1].append(line)
        else:
            records.append((logging.WARNING, [line], True))
    return [(level, "\n".join(lines)) for level, lines, keep in records if keep]


with native_stderr_to_logging():
    import tensorflow as tf

    tf.config.list_physical_devices("GPU")  # the first device lookup is what calls cuInit

import tensorflow_text  # noqa: E402, F401  (registers the SentencePiece ops the USE module uses)
import tf_keras  # noqa: E402

with warnings.catch_warnings():
    # tensorflow_hub 0.16 imports pkg_resources, which warns that it is deprecated: nothing to act on here.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    import tensorflow_hub as hub

# What a SavedModel export does ("Assets written to …", inputs renamed) TensorFlow's and absl's Python
# loggers report at INFO: not the stage's news. Their warnings and errors still show.
logging.getLogger("tensorflow").setLevel(logging.WARNING)
logging.getLogger("absl").setLevel(logging.WARNING)

__all__ = ["hub", "tf", "tf_keras"]
