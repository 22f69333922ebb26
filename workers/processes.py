"""How supervised child processes start: out of the terminal's reach, but not orphaned.

Ctrl-C in a terminal signals the whole foreground process group. If Redis, the API and the
workers shared it, Redis would quit at once while workers were still finishing their jobs.
So each child starts its own session (only the supervisor sees Ctrl-C and stops them in
order), and asks the kernel for SIGTERM if the supervisor itself dies (PR_SET_PDEATHSIG),
so a SIGKILLed `warden up` leaves nothing running.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence

_PR_SET_PDEATHSIG = 1


def child_setup() -> None:
    """``preexec_fn`` for supervised children (runs in the child, before exec)."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def stop_gracefully(procs: Sequence[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM every process still running, wait up to ``grace_s`` in all, then SIGKILL."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
