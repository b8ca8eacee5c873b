"""`make ui`: run `airflow standalone` and stop it cleanly.

The standalone runs in a session of its own, so that no signal reaches its components twice: Airflow
3.3.2's scheduler logs in its SIGTERM/SIGINT handler, and a signal that lands while it is logging (the
terminal's Ctrl-C, then standalone's own SIGTERM a moment later) deadlocks it for good. A stop request
(Ctrl-C, SIGTERM or SIGHUP) is passed on as one SIGINT to the standalone, which stops each component
with one SIGTERM and waits for it; whatever still runs 30 s later (or after a second Ctrl-C) is killed.

The standalone says "Complete" once it has read each component's output to its end, which needs every
process holding that output open gone, and the scheduler waits for its running tasks before it exits.
So at the deadline only the components are killed (every process of the standalone's group but itself):
their output ends, and the standalone finishes and says "Complete" itself. Killing the standalone too
cut its log short at "Shutting down components". It is killed only if it has not finished 10 s later.
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
COMPLETE_SECONDS = 10  # after its components are killed, for the standalone to say "Complete" and exit
POLL_SECONDS = 0.2


def kill_components(standalone: int) -> int:
    """SIGKILL every process in the standalone's process group but the standalone (the group's leader),
    also those whose parent exited; return how many were killed."""
    killed = 0
    for process in psutil.process_iter():
        with suppress(psutil.Error, ProcessLookupError):
            if process.pid != standalone and os.getpgid(process.pid) == standalone:
                process.kill()
                killed += 1
    return killed


def main() -> int:
    received: list[int] = []
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda number, frame: received.append(number))
    standalone = subprocess.Popen(["airflow", "standalone"], stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = killed_at = None
    while not os.waitid(os.P_PID, standalone.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
        if received and deadline is None:
            print(f"make ui: stopping Airflow, {STOP_SECONDS} s at most (Ctrl-C again: at once)", flush=True)
            standalone.send_signal(signal.SIGINT)
            deadline = time.monotonic() + STOP_SECONDS
        if deadline and killed_at is None and (received.count(signal.SIGINT) > 1 or time.monotonic() > deadline):
            killed = kill_components(standalone.pid)
            print(f"make ui: killed the {killed} Airflow processes still running, with any task they ran", flush=True)
            killed_at = time.monotonic()
        if killed_at and time.monotonic() > killed_at + COMPLETE_SECONDS:
            standalone.kill()
        time.sleep(POLL_SECONDS)
    with suppress(ProcessLookupError):  # the rest of its process group (its unreaped leader holds the id)
        os.killpg(standalone.pid, signal.SIGKILL)
    return 0 if received or standalone.wait() == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
