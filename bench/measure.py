"""What every benchmark needs: run a command while sampling its memory, the machine it ran on, medians."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

SAMPLE_INTERVAL_SECONDS = 0.05
MIB = 1 << 20


@dataclass(frozen=True)
class Measured:
    """A finished command: its wall time and (wall-clock time, RSS of its process tree) samples."""

    seconds: float
    samples: list[tuple[float, int]]

    @property
    def peak_rss_mb(self) -> float:
        return max((rss for _, rss in self.samples), default=0) / MIB

    def peak_rss_mb_between(self, start: float, end: float) -> float:
        """Peak RSS while a stage ran (wall-clock start and end); for a stage shorter than the sampling
        interval, the first sample after it started."""
        inside = [rss for at, rss in self.samples if start <= at <= end]
        after = [rss for at, rss in self.samples if at > start][:1]
        return max(inside or after, default=0) / MIB


def run_measured(command: Sequence[str], log_file: Path, env: Mapping[str, str] | None = None) -> Measured:
    """Run `command` (output to `log_file`), sampling the summed RSS of it and its children; raise if it fails."""
    samples: list[tuple[float, int]] = []
    with log_file.open("w", encoding="utf-8") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(env or os.environ))
        sampler = threading.Thread(target=_sample, args=(process.pid, process, samples), daemon=True)
        sampler.start()
        returncode = process.wait()
        seconds = time.perf_counter() - started
        sampler.join()
    if returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {returncode}; see {log_file}")
    return Measured(seconds, samples)


def _sample(pid: int, process: subprocess.Popen, samples: list[tuple[float, int]]) -> None:
    try:
        root = psutil.Process(pid)
        while process.poll() is None:
            samples.append((time.time(), _tree_rss(root)))
            time.sleep(SAMPLE_INTERVAL_SECONDS)
    except psutil.NoSuchProcess:
        pass


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, Any]:
    """The machine the figures belong to."""
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "cpu": cpu_model,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
    }
