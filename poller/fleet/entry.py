"""A tenant's process as a worker starts it: `python -m poller.fleet.entry run --config F`.

It first arranges to die with its worker (Linux: the parent-death signal SIGKILL, set here in
the child rather than in a pre-exec hook, which is unsafe in a threaded parent), then checks
the worker is still its parent (it may have died in between), then becomes the ordinary
`poller` command (exec keeps the parent-death signal).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PARENT_ENV = "POLLER_WORKER_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    except (OSError, AttributeError):
        # Not Linux: watch the parent instead (reparenting changes getppid()).
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(137)

        threading.Thread(target=watch, daemon=True, name="parent-watch").start()
    if os.getppid() != parent:
        os._exit(137)  # the worker died before the signal was armed


def main() -> None:
    parent = os.environ.get(PARENT_ENV)
    if parent and parent.isdigit():
        die_with_parent(int(parent))
    os.execv(sys.executable, [sys.executable, "-m", "poller", *sys.argv[1:]])


if __name__ == "__main__":
    main()
