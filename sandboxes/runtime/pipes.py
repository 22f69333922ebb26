"""Reading from a helper process's pipe with a deadline (compile helper, component executor)."""

from __future__ import annotations

import os
import select
import threading
import time


def read_exact(fd: int, n: int, deadline: float) -> bytes:
    """Exactly ``n`` bytes from ``fd``; TimeoutError past ``deadline`` (monotonic), EOFError
    when the writer is gone."""
    chunks: list[bytes] = []
    while n > 0:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def exit_with_parent() -> None:
    """End this helper process when the worker that started it dies (call at start).

    Not PR_SET_PDEATHSIG: that fires when the parent *thread* that forked the helper exits,
    which killed helpers started from short-lived threads (warm-up, stack hops).
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="warden-parent-watch", daemon=True).start()
