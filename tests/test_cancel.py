"""Cancellation from another thread stops a running guest within a few ticks."""

from __future__ import annotations

import threading
import time

from sandboxes.runtime.control import CancelToken
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Limits, RunStatus
from tests import wat_modules as W


def test_cancel_running_loop(sandbox: Sandbox) -> None:
    token = CancelToken()
    threading.Timer(0.2, token.cancel).start()
    started = time.monotonic()
    result = sandbox.run(W.LOOP, Limits(fuel=10**12, wall_time_s=30), cancel=token)
    assert result.status is RunStatus.CANCELLED
    assert time.monotonic() - started < 1.0


def test_cancel_sleeping_guest(sandbox: Sandbox) -> None:
    token = CancelToken()
    threading.Timer(0.2, token.cancel).start()
    started = time.monotonic()
    result = sandbox.run(W.sleep(30), Limits(wall_time_s=60), cancel=token)
    assert result.status is RunStatus.CANCELLED
    assert time.monotonic() - started < 1.0


def test_cancel_before_start(sandbox: Sandbox) -> None:
    token = CancelToken()
    token.cancel()
    result = sandbox.run(W.LOOP, Limits(fuel=10**12), cancel=token)
    assert result.status is RunStatus.CANCELLED


def test_concurrent_runs_do_not_disturb_each_other(sandbox: Sandbox) -> None:
    """One run timing out and another being cancelled leave a third untouched."""
    results: dict[str, object] = {}
    token = CancelToken()

    def go(name: str, source: str, limits: Limits, cancel: CancelToken | None = None) -> None:
        results[name] = sandbox.run(source, limits, cancel=cancel).status

    threads = [
        threading.Thread(target=go, args=("timeout", W.LOOP, Limits(fuel=10**12, wall_time_s=0.3))),
        threading.Thread(
            target=go, args=("cancel", W.LOOP, Limits(fuel=10**12, wall_time_s=30), token)
        ),
        threading.Thread(target=go, args=("sleep", W.sleep(0.6), Limits(wall_time_s=5))),
    ]
    for t in threads:
        t.start()
    threading.Timer(0.1, token.cancel).start()
    for t in threads:
        t.join()
    assert results == {
        "timeout": RunStatus.WALL_TIMEOUT,
        "cancel": RunStatus.CANCELLED,
        "sleep": RunStatus.OK,
    }
