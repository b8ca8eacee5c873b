"""TensorFlow's native start-up lines go to Python logging at their own level; the no-GPU ones not at all.

The lines below are what TensorFlow 2.21 wrote to stderr on this project's CI host (no GPU) while
`import tensorflow` ran and at the first device lookup, with TF_CPP_MIN_LOG_LEVEL=0.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from tasks.tensorflow_runtime import native_records, native_stderr_to_logging
from tests.sample_data import PROJECT_ROOT

pytestmark = pytest.mark.slow  # imports TensorFlow

MEASURED_STARTUP = "".join(
    [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1796180336.196232   13698 cudart_stub.cc:31] Could not find cuda drivers on your machine, ",
        "GPU will not be used.\n",
        "I0000 00:00:1796180336.402806   13698 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to ",
        "use available CPU instructions in performance-critical operations.\n",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the ",
        "appropriate compiler flags.\n",
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1796180346.399333   13698 cudart_stub.cc:31] Could not find cuda drivers on your machine, ",
        "GPU will not be used.\n",
        "E0000 00:00:1796180355.847576   13698 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ",
        "Failed call to cuInit: UNKNOWN ERROR (303)\n",
    ]
)
NO_GPU_STARTUP = ("Could not find cuda drivers", "failed call to cuInit", "absl::InitializeLog()")
ONEDNN_NOTICE = (
    "oneDNN custom operations are on. You may see slightly different numerical results due to floating-point "
    "round-off errors from different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`."
)
# TensorFlow 2.21 on a 2-core AMD EPYC (no GPU) with TF_ENABLE_ONEDNN_OPTS=1, TF_CPP_MIN_LOG_LEVEL=1: the
# platform code's start-up lines twice, from libtensorflow_framework.so.2 and the profiler plugin's own copy.
MEASURED_ONEDNN_STARTUP = "".join(
    [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        f"I0000 00:00:1796673411.588809   12371 port.cc:153] {ONEDNN_NOTICE}\n",
        "I0000 00:00:1796673411.589224   12371 cudart_stub.cc:31] Could not find cuda drivers on your machine, ",
        "GPU will not be used.\n",
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        f"I0000 00:00:1796673419.738378   12371 port.cc:153] {ONEDNN_NOTICE}\n",
        "I0000 00:00:1796673419.743391   12371 cudart_stub.cc:31] Could not find cuda drivers on your machine, ",
        "GPU will not be used.\n",
        "E0000 00:00:1796673421.719992   12371 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ",
        "Failed call to cuInit: UNKNOWN ERROR (303)\n",
    ]
)


def test_the_measured_start_up_leaves_only_the_cpu_notice_at_info() -> None:
    assert native_records(MEASURED_STARTUP) == [
        (
            logging.INFO,
            "TensorFlow cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU "
            "instructions in performance-critical operations.\nTo enable the following instructions: AVX2 FMA, "
            "in other operations, rebuild TensorFlow with the appropriate compiler flags.",
        )
    ]


def test_the_start_up_lines_both_copies_of_the_platform_code_print_are_logged_once() -> None:
    assert native_records(MEASURED_ONEDNN_STARTUP) == [(logging.INFO, f"TensorFlow port.cc:153] {ONEDNN_NOTICE}")]


def test_real_warnings_and_errors_keep_their_level() -> None:
    text = (
        "2026-12-02 03:00:00.123456: W tensorflow/core/framework/op_kernel.cc:1857] OP_REQUIRES failed: x\n"
        "E0000 00:00:1796180355.847576   13698 saved_model_loader.cc:12] could not read the variables\n"
        "F0000 00:00:1796180355.847576   13698 check.cc:3] Check failed: ok\n"
        "/venv/lib/python3.11/site-packages/some_lib/__init__.py:3: DeprecationWarning: old API\n"
        "  import old_api\n"
    )
    assert native_records(text) == [
        (logging.WARNING, "TensorFlow tensorflow/core/framework/op_kernel.cc:1857] OP_REQUIRES failed: x"),
        (logging.ERROR, "TensorFlow saved_model_loader.cc:12] could not read the variables"),
        (logging.CRITICAL, "TensorFlow check.cc:3] Check failed: ok"),
        (
            logging.WARNING,
            "/venv/lib/python3.11/site-packages/some_lib/__init__.py:3: DeprecationWarning: old API\n  import old_api",
        ),
    ]


def test_what_is_written_to_fd_2_in_the_block_is_logged_after_it(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="tasks.tensorflow_runtime")
    with native_stderr_to_logging():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1.5   7 cudart_stub.cc:31] Could not find cuda drivers on your machine, ")
        os.write(2, b"GPU will not be used.\n")
        os.write(2, b"E0000 00:00:1.6   7 cuda_executor.cc:9] out of memory\n")
    assert capfd.readouterr().err == ""  # nothing reached the real stderr
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "TensorFlow cuda_executor.cc:9] out of memory")
    ]


def test_importing_tensorflow_prints_nothing_raw_to_stderr() -> None:
    """A fresh interpreter, as a task's: every line on its stderr comes from Python logging."""
    code = (
        "import logging; logging.basicConfig(level=logging.INFO, format='LOGGED %(levelname)s %(name)s: %(message)s')\n"
        "from tasks.tensorflow_runtime import tf\n"
        "print(tf.reduce_sum(tf.constant([1, 2])).numpy())\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "TF_ENABLE_ONEDNN_OPTS": "1"}  # every native line
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    lines = result.stderr.splitlines()
    records = [line for line in lines if line.startswith("LOGGED ")]
    continued = [line for line in lines if not line.startswith("LOGGED ")]
    assert not [line for line in lines if any(text in line for text in NO_GPU_STARTUP)], result.stderr
    assert any(line.startswith("LOGGED INFO tasks.tensorflow_runtime: TensorFlow ") for line in records), (
        f"TensorFlow's native INFO lines (TF_CPP_MIN_LOG_LEVEL=0) should be logged at INFO:\n{result.stderr}"
    )
    assert [line for line in records if "oneDNN custom operations are on" in line] == [
        f"LOGGED INFO tasks.tensorflow_runtime: TensorFlow port.cc:153] {ONEDNN_NOTICE}"
    ], "printed by two copies of TensorFlow's platform code, logged once"
    # A line that is not a record can only be the continuation of a multi-line native message.
    assert all(line.startswith("To enable the following instructions") for line in continued), result.stderr
