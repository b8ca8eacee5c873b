"""`make ui`: run `airflow standalone` and stop it cleanly.

The standalone runs in a session of its own, so that no signal reaches its components twice: Airflow
3.3.2's scheduler logs in its SIGTERM/SIGINT handler, and a signal that lands while it is logging (the
terminal's Ctrl-C, then standalone's own SIGTERM a moment later) deadlocks it for good. A stop request
(Ctrl-C, SIGTERM or SIGHUP) is passed on as one SIGINT to the standalone, which stops each component
with one SIGTERM and waits for it; whatever still runs 30 s later (or after a second Ctrl-C) is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress

import psutil

STOP_SECONDS = 30
POLL_SECONDS = 0.2


def kill_tree(pid: int) -> None:
    with suppress(psutil.NoSuchProcess):
        leader = psutil.Process(pid)
        for process in [*leader.children(recursive=True), leader]:
            with suppress(psutil.NoSuchProcess):
                process.kill()


def main() -> int:
    received: list[int] = []
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda number, frame: received.append(number))
    standalone = subprocess.Popen(["airflow", "standalone"], stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = None
    while not os.waitid(os.P_PID, standalone.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
        if received and deadline is None:
            print(f"make ui: stopping Airflow, {STOP_SECONDS} s at most (Ctrl-C again: at once)", flush=True)
            standalone.send_signal(signal.SIGINT)
            deadline = time.monotonic() + STOP_SECONDS
        if deadline and (received.count(signal.SIGINT) > 1 or time.monotonic() > deadline):
            kill_tree(standalone.pid)
        time.sleep(POLL_SECONDS)
    with suppress(ProcessLookupError):  # the rest of its process group (its unreaped leader holds the id)
        os.killpg(standalone.pid, signal.SIGKILL)
    return 0 if received or standalone.wait() == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
